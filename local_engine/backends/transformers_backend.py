"""The in-process backend: a Hugging Face model driven by `EngineCore` on its own thread.

The event loop only tokenizes (in a worker thread), submits, and turns token events into text;
all model work happens on the engine thread. Usage counts are exact: prompt tokens are the
templated prompt's ids, completion tokens are the ids generated up to and including the one
that finished the answer (EOS, a stop sequence, or max_tokens). Where GPU energy is measured,
`usage.energy_joules` is the energy the engine charged to the request (`energy_attribution`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from local_engine.backends.engine_core import EngineCore
from local_engine.backends.sequence import Event, FinishEvent, GenerationRequest, TokensEvent
from local_engine.config import EngineConfig
from local_engine.energy_attribution import EnergySource, engine_attributor
from local_engine.errors import BadEngineRequest, EngineError, EngineOverloaded
from local_engine.model_store import resolve_model_dir
from local_engine.protocol import (
    Endpoint,
    Json,
    ParsedRequest,
    chunk,
    new_id,
    parse_request,
    response,
    usage_chunk,
)
from local_engine.stats import EngineStats, StatsRecorder
from local_engine.textstream import IncrementalDetokenizer, StopMatcher

log = logging.getLogger(__name__)
# A request ended by a stop string is cancelled; the engine drops it at its next step and
# reports its energy then. Waited for only where energy is measured.
FINISH_WAIT_S = 5.0


def pick_dtype(name: str) -> torch.dtype:
    """`auto`: bf16 where the hardware has fast bf16 matmuls (CUDA, or x86 AMX/AVX512-BF16:
    2-3x the fp32 throughput at batch 8 here), else fp32. Only fp32 keeps greedy output
    token-identical with and without speculation."""
    if name != "auto":
        return dtype_by_name(name)
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if _cpu_has_fast_bf16() else torch.float32


def _cpu_has_fast_bf16() -> bool:
    try:
        with open("/proc/cpuinfo") as info:
            flags = next((line for line in info if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"amx_bf16", "avx512_bf16"} & set(flags.split()))


def dtype_by_name(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


@dataclass(slots=True)
class Tally:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = "stop"
    energy_joules: float | None = None


class TransformersBackend:
    name = "transformers"

    def __init__(self, config: EngineConfig, meter: EnergySource | None = None) -> None:
        self.config = config
        self.model_name = config.served_model_name
        self._energy = engine_attributor(meter, config.energy_read_interval_ms)
        self.meter: EnergySource = self._energy.meter
        self._stats = StatsRecorder(config.hardware_usd_per_hour)
        self._core: EngineCore | None = None
        self._tokenizer: Any = None
        self._stop_ids: frozenset[int] = frozenset()
        self._vocab_size = 0  # a token id at or past it breaks the forward pass
        self.model_dir: Path | None = None
        self.dtype: torch.dtype | None = None

    async def start(self) -> None:
        if self._core is None:
            await asyncio.to_thread(self._load)

    def _load(self) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.config.num_threads:
            torch.set_num_threads(self.config.num_threads)
        model_dir = resolve_model_dir(self.config.model, self.config.model_cache_dir)
        dtype = pick_dtype(self.config.dtype)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype)
        model.eval()  # type: ignore[no-untyped-call]
        draft = None
        spec = self.config.speculative
        if spec.method == "draft" and spec.draft_model is not None:
            from local_engine.spec_decode.draft_model import DraftModel

            draft = DraftModel.load(resolve_model_dir(spec.draft_model), dtype)
        stop_ids = set()
        eos = model.generation_config.eos_token_id
        stop_ids.update(eos if isinstance(eos, list) else [] if eos is None else [eos])
        if tokenizer.eos_token_id is not None:
            stop_ids.add(int(tokenizer.eos_token_id))
        positions = getattr(model.config, "max_position_embeddings", None)
        if isinstance(positions, int) and 0 < positions < self.config.max_model_len:
            # GPT-2's 1,024 under the default 2,048: past its positions the model cannot run.
            log.warning(
                "max_model_len %d is more than %s takes; serving %d tokens of context",
                self.config.max_model_len,
                model_dir.name,
                positions,
            )
            self.config = self.config.model_copy(update={"max_model_len": positions})
        core = EngineCore(model, self.config, self._stats, draft, self._energy)
        core.start()
        self._vocab_size = int(model.config.vocab_size)
        self._tokenizer, self._stop_ids, self._core = tokenizer, frozenset(stop_ids), core
        self.model_dir, self.dtype = model_dir, dtype
        log.info("local engine ready: %s (%s, speculative=%s)", model_dir, dtype, spec.method)

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            raise EngineError("the local engine is not started")
        return self._tokenizer

    def encode(self, req: ParsedRequest) -> list[int]:
        """Prompt token ids: the chat template for chat, the raw text (or ids) for completions."""
        if req.messages is not None:
            try:
                enc = self.tokenizer.apply_chat_template(
                    req.messages, add_generation_prompt=True, tokenize=True
                )
            except Exception as exc:  # a template may reject a message sequence
                raise BadEngineRequest(f"chat template failed: {exc}", param="messages") from exc
            ids = enc["input_ids"] if not isinstance(enc, list) else enc
            return [int(t) for t in ids]
        if isinstance(req.prompt, list):
            bad = next((t for t in req.prompt if t >= self._vocab_size), None)
            if bad is not None:
                raise BadEngineRequest(
                    f"token id {bad} is out of range (vocabulary {self._vocab_size})",
                    param="prompt",
                )
            return req.prompt
        ids = [int(t) for t in self.tokenizer(req.prompt or "")["input_ids"]]
        if ids:
            return ids
        # The model cannot run on zero positions; like OpenAI's, an empty prompt starts from
        # the start token.
        bos = self.tokenizer.bos_token_id
        if bos is None:
            raise BadEngineRequest("'prompt' must not be empty", param="prompt")
        return [int(bos)]

    def _decode(self, ids: Any) -> str:
        return str(self.tokenizer.decode(list(ids), skip_special_tokens=True))

    def _max_tokens(self, req: ParsedRequest, prompt_n: int) -> int:
        """How many tokens to generate at most. A prompt, or a prompt plus `max_tokens`, that does
        not fit the context is a 400 `context_length_exceeded`, as OpenAI and vLLM answer: clamping
        would silently give less than was asked. Without `max_tokens`, the context's end is the
        limit."""
        context = self.config.max_model_len
        room = context - prompt_n
        if room < 1:
            raise BadEngineRequest(
                f"the prompt has {prompt_n} tokens; this model takes at most {context - 1}",
                param="messages" if req.messages is not None else "prompt",
                code="context_length_exceeded",
            )
        if req.max_tokens is None:
            return min(self.config.default_max_tokens, room)
        if req.max_tokens > room:
            raise BadEngineRequest(
                f"the prompt has {prompt_n} tokens and {req.max_tokens_param} is "
                f"{req.max_tokens}: together more than this model's context of {context} tokens; "
                f"ask for at most {room}",
                param=req.max_tokens_param,
                code="context_length_exceeded",
            )
        return req.max_tokens

    async def generate(
        self, req: ParsedRequest, tally: Tally, owner: str = ""
    ) -> AsyncGenerator[str, None]:
        """Text pieces as they are decoded; fills `tally` (usage, finish reason) as it goes.
        `owner` (the gateway's tenant) is whom the engine queues the request for fairly."""
        if self._core is None:
            raise EngineError("the local engine is not started")
        prompt_ids = await asyncio.to_thread(self.encode, req)
        max_tokens = self._max_tokens(req, len(prompt_ids))
        tally.prompt_tokens = len(prompt_ids)
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event] = asyncio.Queue()

        def sink(event: Event) -> None:  # runs on the engine thread
            loop.call_soon_threadsafe(queue.put_nowait, event)

        gen = GenerationRequest(
            prompt_ids=prompt_ids,
            max_tokens=max_tokens,
            sampling=req.sampling,
            stop_token_ids=self._stop_ids,
            sink=sink,
            owner=owner,
        )
        self._core.submit(gen)
        detok = IncrementalDetokenizer(self._decode)
        stops = StopMatcher(req.stop)
        try:
            while True:
                event = await queue.get()
                if isinstance(event, TokensEvent):
                    for token in event.token_ids:
                        tally.completion_tokens += 1
                        text = stops.feed(detok.push(token))
                        if text:
                            yield text
                        if stops.stopped:
                            tally.finish_reason = "stop"
                            if self._energy.available:
                                gen.cancel()
                                tally.energy_joules = await _energy_at_finish(queue)
                            return
                    continue
                assert isinstance(event, FinishEvent)
                if event.reason == "error":
                    raise EngineError(event.error or "local engine error")
                if event.reason == "overloaded":  # pushed out of the queue before it started
                    raise EngineOverloaded(event.error or "the local engine is overloaded")
                tally.finish_reason = "length" if event.reason == "length" else "stop"
                tally.energy_joules = event.energy_joules
                tail = stops.flush()
                if tail:
                    yield tail
                return
        finally:
            gen.cancel()  # no-op when finished; stops decoding when the caller went away

    async def complete(self, endpoint: Endpoint, body: Json, owner: str = "") -> Json:
        req = parse_request(endpoint, body)
        tally = Tally()
        text = "".join([piece async for piece in self.generate(req, tally, owner)])
        return response(
            req,
            new_id(endpoint),
            self.model_name,
            text,
            tally.finish_reason,
            tally.prompt_tokens,
            tally.completion_tokens,
            energy_joules=tally.energy_joules,
        )

    async def stream(
        self, endpoint: Endpoint, body: Json, owner: str = ""
    ) -> AsyncGenerator[Json, None]:
        req = parse_request(endpoint, body)
        tally = Tally()
        rid, created, model = new_id(endpoint), int(time.time()), self.model_name
        pieces = self.generate(req, tally, owner)
        try:
            first = await anext(pieces, None)  # errors surface before any chunk is sent
            yield chunk(req, rid, model, created, text="", role=True)
            if first is not None:
                yield chunk(req, rid, model, created, text=first)
                async for piece in pieces:
                    yield chunk(req, rid, model, created, text=piece)
        finally:
            await pieces.aclose()
        yield chunk(req, rid, model, created, finish=tally.finish_reason)
        if req.include_usage:
            yield usage_chunk(
                req,
                rid,
                model,
                created,
                tally.prompt_tokens,
                tally.completion_tokens,
                energy_joules=tally.energy_joules,
            )

    def stats(self) -> EngineStats:
        return self._stats.snapshot()

    async def extra_metrics(self) -> str:
        return ""

    async def aclose(self) -> None:
        core, self._core = self._core, None
        if core is not None:
            await asyncio.to_thread(core.shutdown)


async def _energy_at_finish(queue: asyncio.Queue[Event]) -> float | None:
    """The cancelled request's joules, from the `FinishEvent` the engine sends at its next step."""
    try:
        async with asyncio.timeout(FINISH_WAIT_S):
            while True:
                event = await queue.get()
                if isinstance(event, FinishEvent):
                    return event.energy_joules
    except TimeoutError:
        return None
