"""The guarantees of PromptCompressor: what never changes, order, ratio, thresholds, prefix."""

from __future__ import annotations

import copy
import json
import random
from decimal import Decimal
from typing import Any

from gateway.compression import CompressionOptions, PrefixMemory, PromptCompressor
from gateway.compression.tokens import TiktokenCounter
from tests.unit.compression.conftest import filler_passage

SYSTEM = "You are a careful assistant.\n\n  Always   cite the document number.  "
CODE = "```python\ndef total(xs):\n    return   sum(xs)   \n\n\n\n```"
GOLD = "The lighthouse keeper Margarethe Voss repainted the lantern room in 1911."


def rag_messages(rng: random.Random, *, passages: int = 12) -> list[dict[str, Any]]:
    docs = [filler_passage(rng) for _ in range(passages)]
    docs.insert(passages // 2, GOLD + " " + filler_passage(rng, 3))
    body = "\n\n".join(f"Document {i + 1}:\n{d}" for i, d in enumerate(docs))
    return [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Documents:\n\n" + body + "\n\n" + CODE},
        {"role": "assistant", "content": "I have read the documents."},
        {
            "role": "user",
            "content": "Who   repainted the lantern room of the lighthouse?  ",
            "name": "alice",
        },
    ]


def balanced(**kw: Any) -> CompressionOptions:
    return CompressionOptions(mode="balanced", min_prompt_tokens=0, **kw)


def test_balanced_keeps_the_answer_and_reaches_the_ratio(counter: TiktokenCounter) -> None:
    msgs = rag_messages(random.Random(1))
    res = PromptCompressor(counter).compress(msgs, balanced(target_ratio=3.0))
    doc_before = counter.count(msgs[1]["content"])
    doc_after = counter.count(res.messages[1]["content"])
    assert res.method == "balanced"
    assert GOLD in res.messages[1]["content"]
    assert doc_before / doc_after >= 2.5
    assert res.tokens_after < res.tokens_before


def test_system_last_user_code_and_extra_fields_never_change(counter: TiktokenCounter) -> None:
    for seed in range(5):
        msgs = rag_messages(random.Random(seed))
        msgs[2]["tool_calls"] = [{"id": "c1", "type": "function", "function": {"name": "f"}}]
        original = copy.deepcopy(msgs)
        res = PromptCompressor(counter).compress(msgs, balanced())
        assert msgs == original  # the input is not mutated
        assert res.messages[0] == original[0]
        assert res.messages[-1] == original[-1]
        assert CODE in res.messages[1]["content"]
        assert res.messages[2]["tool_calls"] == original[2]["tool_calls"]
        assert [m["role"] for m in res.messages] == [m["role"] for m in original]


def test_kept_sentences_are_verbatim_and_in_original_order(counter: TiktokenCounter) -> None:
    msgs = rag_messages(random.Random(2))
    res = PromptCompressor(counter).compress(msgs, balanced(target_ratio=4.0))
    original = msgs[1]["content"]
    position = 0
    for para in res.messages[1]["content"].split("\n\n"):
        for line in para.split("\n"):
            for sentence in line.replace(". ", ".\x00").split("\x00"):
                found = original.find(sentence, position)
                assert found >= 0, sentence
                position = found + len(sentence)


def test_tool_results_are_minified_and_still_valid_json(counter: TiktokenCounter) -> None:
    rows = [{"id": i, "city": f"Town {i}", "note": "two  spaces"} for i in range(80)]
    pretty = json.dumps({"rows": rows}, indent=4)
    msgs = [
        {"role": "user", "content": "List the towns."},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "t", "type": "function"}]},
        {"role": "tool", "tool_call_id": "t", "content": pretty},
    ]
    res = PromptCompressor(counter).compress(msgs, CompressionOptions(mode="lossless"))
    assert res.method == "lossless"
    assert json.loads(res.messages[2]["content"]) == {"rows": rows}
    assert res.messages[2]["tool_call_id"] == "t"
    assert res.tokens_after < res.tokens_before


def test_lossless_keeps_every_word(counter: TiktokenCounter) -> None:
    msgs = rag_messages(random.Random(3))
    msgs[1]["content"] = msgs[1]["content"].replace(". ", ".   \n\n\n   ")
    res = PromptCompressor(counter).compress(msgs, CompressionOptions(mode="lossless"))
    assert res.messages[1]["content"].split() == msgs[1]["content"].split()
    again = PromptCompressor(counter).compress(res.messages, CompressionOptions(mode="lossless"))
    assert again.messages == res.messages  # idempotent over a whole conversation


def test_duplicate_document_across_turns_is_removed(counter: TiktokenCounter) -> None:
    doc = filler_passage(random.Random(4), 12)
    msgs = [
        {"role": "user", "content": f"Read this:\n\n{doc}"},
        {"role": "assistant", "content": "Done."},
        {"role": "tool", "tool_call_id": "x", "content": doc},
        {"role": "user", "content": "Summarise it."},
    ]
    opts = CompressionOptions(mode="lossless", min_prompt_tokens=0)
    res = PromptCompressor(counter).compress(msgs, opts)
    assert doc in res.messages[0]["content"]
    assert doc not in res.messages[2]["content"]
    assert res.messages[2]["content"]  # a tool message keeps some content


def test_short_prompts_and_small_savings_go_out_untouched(counter: TiktokenCounter) -> None:
    msgs = [{"role": "user", "content": "hello   there"}, {"role": "user", "content": "hi"}]
    res = PromptCompressor(counter).compress(msgs, CompressionOptions(mode="lossless"))
    assert res.messages == msgs and res.method == "off" and "short prompt" in res.notes
    rag = rag_messages(random.Random(5))
    strict = balanced(min_saved_usd=Decimal("1"))
    res = PromptCompressor(counter).compress(rag, strict, input_price_per_mtok=Decimal("0.15"))
    assert res.messages == rag and res.method == "off"
    res = PromptCompressor(counter).compress(rag, balanced(), input_price_per_mtok=Decimal("3"))
    saved = res.tokens_before - res.tokens_after
    assert res.saved_usd == Decimal(saved) * Decimal("3") / Decimal(1_000_000)


def test_aggressive_without_a_model_is_balanced_and_says_so(counter: TiktokenCounter) -> None:
    msgs = rag_messages(random.Random(6))
    opts = CompressionOptions(mode="aggressive", min_prompt_tokens=0)
    res = PromptCompressor(counter).compress(msgs, opts)
    ref = PromptCompressor(counter).compress(msgs, balanced())
    assert res.method == "balanced" and res.messages == ref.messages
    assert any("aggressive unavailable" in n for n in res.notes)


def test_a_repeated_prefix_is_sent_byte_identical(counter: TiktokenCounter) -> None:
    memory = PrefixMemory()
    compressor = PromptCompressor(counter, memory=memory)
    first = rag_messages(random.Random(7))
    sent1 = compressor.compress(first, balanced(), scope="t1").messages
    # A follow-up the first cut still answers (one it does not: test_prefix_followup.py).
    follow_up = [
        *first,
        {"role": "assistant", "content": "Margarethe Voss."},
        {"role": "user", "content": "In which year did she do it?"},
    ]
    sent2 = compressor.compress(follow_up, balanced(), scope="t1").messages
    assert sent2[: len(sent1)] == sent1  # same bytes the provider has cached
    assert sent2[-1] == follow_up[-1]
    fresh = PromptCompressor(counter).compress(follow_up, balanced(), scope="t1").messages
    assert fresh[1] != sent1[1]  # without memory the new query would rewrite the history
    other_scope = compressor.compress(follow_up, balanced(), scope="t2").messages
    assert other_scope == fresh


def test_a_lossless_request_never_reuses_a_prefix_cut_by_a_lossy_mode(
    counter: TiktokenCounter,
) -> None:
    compressor = PromptCompressor(counter, memory=PrefixMemory())
    first = rag_messages(random.Random(7))
    cut = compressor.compress(first, balanced(), scope="t1").messages
    assert cut[1] != first[1]  # balanced dropped sentences of the documents
    follow_up = [
        *first,
        {"role": "assistant", "content": "Margarethe Voss."},
        {"role": "user", "content": "Which document mentions copper and falcon together?"},
    ]
    lossless = CompressionOptions(mode="lossless", min_prompt_tokens=0)
    sent = compressor.compress(follow_up, lossless, scope="t1").messages
    alone = PromptCompressor(counter).compress(follow_up, lossless, scope="t1").messages
    assert sent == alone  # what lossless makes of the chat, not the balanced history
    assert GOLD in sent[1]["content"] and len(sent[1]["content"]) > len(cut[1]["content"])


def test_allow_flags_open_system_and_last_user(counter: TiktokenCounter) -> None:
    rng = random.Random(8)
    docs = "\n\n".join(filler_passage(rng) for _ in range(10))
    msgs = [
        {"role": "system", "content": "Be brief.\n\n" + docs},
        {"role": "user", "content": docs + f"\n\n{GOLD}\n\nWho repainted the lantern room?"},
    ]
    closed = PromptCompressor(counter).compress(msgs, balanced())
    assert closed.messages == msgs  # both protected by default: nothing to compress
    opened = PromptCompressor(counter).compress(
        msgs, balanced(compress_system=True, compress_last_user=True)
    )
    last = opened.messages[1]["content"]
    assert last.endswith("\n\nWho repainted the lantern room?")
    assert GOLD in last
    assert opened.tokens_after < closed.tokens_after / 2


def test_multipart_content_compresses_text_parts_only(counter: TiktokenCounter) -> None:
    rng = random.Random(9)
    image = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
    text = {"type": "text", "text": "\n\n".join(filler_passage(rng) for _ in range(8))}
    msgs = [
        {"role": "user", "content": [image, text]},
        {"role": "user", "content": "What is in the image?"},
    ]
    res = PromptCompressor(counter).compress(msgs, balanced())
    assert res.messages[0]["content"][0] == image
    assert len(res.messages[0]["content"][1]["text"]) < len(text["text"])


def test_a_reused_prefix_is_kept_even_when_the_new_tail_does_not_pay(
    counter: TiktokenCounter,
) -> None:
    compressor = PromptCompressor(counter, memory=PrefixMemory())
    first = rag_messages(random.Random(10))
    sent1 = compressor.compress(first, balanced(), scope="t").messages
    follow_up = [
        *first,
        {"role": "assistant", "content": "Voss."},
        {"role": "user", "content": "ok"},
    ]
    res = compressor.compress(follow_up, balanced(), scope="t", input_price_per_mtok=Decimal(2))
    assert res.method == "prefix"
    assert res.messages[: len(sent1)] == sent1
    assert res.messages[len(sent1) :] == follow_up[len(sent1) :]
    assert res.saved_usd == Decimal(res.tokens_before - res.tokens_after) * 2 / 1_000_000 > 0
