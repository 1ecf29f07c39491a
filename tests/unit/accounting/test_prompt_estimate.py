"""The prompt ceiling behind budget reservations must not fall far short of what the upstream
bills: every request admitted beside others overspends a budget by what its real cost outgrows
its reservation (hunt9 h2: 16 concurrent requests with max_tokens=5 spent 4.5x a $0.01 budget
with Chinese prompts, 12x with five images each). The rate limits' estimate stays ~4 characters
a token: a TPM limit refuses for good a request whose estimate exceeds it."""

from __future__ import annotations

import asyncio
import base64
import io
import wave
from decimal import Decimal
from typing import Any

from gateway.accounting.tokenizer import (
    IMAGE_TOKENS_ESTIMATE,
    count_text,
    estimate_prompt_tokens,
    prompt_tokens_ceiling,
)
from gateway.pipeline.context import TenantInfo
from gateway.pipeline.limits import BudgetStage
from gateway.routing.catalog import Catalog
from gateway.settings import DeploymentConfig
from tests.support.context import bare_context

TEXTS = {
    "english": "The quick brown fox jumps over the lazy dog. " * 50,
    "chinese": "我们今天讨论一下人工智能在医疗领域的应用以及未来的发展方向。" * 50,
    "japanese": "今日は天気がとても良いので、公園に散歩に行きましょう。" * 50,
    "korean": "오늘은 날씨가 매우 좋아서 공원에 산책하러 갑시다." * 50,
    "russian": "Сегодня очень хорошая погода, давайте пойдём гулять в парк." * 50,
    "hindi": "आज मौसम बहुत अच्छा है, चलो पार्क में टहलने चलते हैं।" * 50,
    "arabic": "الطقس جميل جدا اليوم، دعونا نذهب للتنزه في الحديقة." * 50,
    "thai": "วันนี้อากาศดีมาก ไปเดินเล่นที่สวนสาธารณะกันเถอะ" * 50,
}


def _chat(content: object) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": content}]}


def test_the_ceiling_is_not_far_below_the_tokenizers_count_in_any_script() -> None:
    for name, text in TEXTS.items():
        real = count_text(text, "gpt-4")  # cl100k: the hungriest of the common tokenizers
        estimate = prompt_tokens_ceiling(_chat(text))
        assert estimate >= 0.95 * real, (name, estimate, real)
        assert estimate <= 3.5 * real, (name, estimate, real)  # and not absurdly high


def test_text_parts_and_completions_prompts_count_the_same_way() -> None:
    text = TEXTS["chinese"]
    real = count_text(text, "gpt-4")
    parts = _chat([{"type": "text", "text": text}])
    assert prompt_tokens_ceiling(parts) >= 0.95 * real
    assert prompt_tokens_ceiling({"model": "m", "prompt": text}) >= 0.95 * real
    assert prompt_tokens_ceiling({"model": "m", "input": [text]}) >= 0.95 * real


def test_english_keeps_its_four_characters_a_token() -> None:
    text = TEXTS["english"]
    assert prompt_tokens_ceiling(_chat(text)) == (len(text) + 16) // 4 + 8


def test_the_rate_limits_estimate_is_unchanged() -> None:
    text = TEXTS["chinese"]
    image = {"type": "image_url", "image_url": {"url": "https://example.invalid/cat.png"}}
    assert estimate_prompt_tokens(_chat(text)) == (len(text) + 16) // 4 + 8
    assert estimate_prompt_tokens(_chat([image])) == 16 // 4 + 8


def test_a_lone_surrogate_is_counted_not_a_crash() -> None:
    assert prompt_tokens_ceiling(_chat("a\ud800b")) > 0


def test_each_image_counts_as_a_large_image() -> None:
    image = {"type": "image_url", "image_url": {"url": "https://example.invalid/cat.png"}}
    body = _chat([{"type": "text", "text": "Describe these."}, image, image, image])
    # OpenAI bills a high-detail image up to 1,445 tokens on gpt-4o (85 + 170 per 512 px tile)
    assert IMAGE_TOKENS_ESTIMATE >= 1445
    assert prompt_tokens_ceiling(body) >= 3 * IMAGE_TOKENS_ESTIMATE


def test_a_files_data_counts_as_its_characters() -> None:
    data = "data:application/pdf;base64," + "QUJD" * 5000
    part = {"type": "file", "file": {"filename": "a.pdf", "file_data": data}}
    assert prompt_tokens_ceiling(_chat([part])) >= len(data) // 4


def test_a_budget_reserves_on_the_ceiling() -> None:
    amounts: list[Decimal] = []

    class Book:
        async def reserve(self, tenant: str, budget: Decimal, period: str, amount: Decimal) -> Any:
            amounts.append(amount)
            return None, 0

        def hold(self, *args: Any, **kwargs: Any) -> None:
            return None

    cfg = DeploymentConfig(
        name="d", model="m", input_cost_per_mtok=Decimal(1), output_cost_per_mtok=Decimal(0)
    )
    catalog = Catalog.build([cfg])
    body = _chat(TEXTS["chinese"]) | {"max_tokens": 1}
    ctx = bare_context(
        body=body,
        tenant=TenantInfo(id="t", name="t", key_id=None, budget_usd=Decimal(1)),
        candidates=list(catalog.group("m")),
        prompt_tokens_estimate=estimate_prompt_tokens(body),
    )
    asyncio.run(BudgetStage(Book(), catalog, fail_open=False).before(ctx))  # type: ignore[arg-type]
    assert amounts[0] >= Decimal(count_text(TEXTS["chinese"], "gpt-4")) / 1_000_000


def _wav_b64(seconds: float, rate: int = 16000) -> str:
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"\0\0" * int(rate * seconds))
    return base64.b64encode(buf.getvalue()).decode()


def audio_body(data: str, fmt: str = "wav") -> dict[str, object]:
    part = {"type": "input_audio", "input_audio": {"data": data, "format": fmt}}
    return {"messages": [{"role": "user", "content": [part]}]}


def test_a_wav_counts_by_its_length_in_the_prompt_ceiling() -> None:
    # ~10 tokens a second: a minute of 16 kHz WAV (2.5 MB of base64) is ~600 tokens, not 640k
    ceiling = prompt_tokens_ceiling(audio_body(_wav_b64(60)))
    assert 600 <= ceiling <= 700


def test_audio_of_unknown_length_counts_at_the_lowest_bitrate() -> None:
    # 8 kbit/s: a second is ~1,333 base64 characters, i.e. >= 10 tokens
    data = base64.b64encode(b"\xff\xfb" + bytes(999)).decode()
    assert prompt_tokens_ceiling(audio_body(data, "mp3")) >= 10
    assert prompt_tokens_ceiling(audio_body("")) == prompt_tokens_ceiling(audio_body("", "mp3"))
