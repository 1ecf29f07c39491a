"""The decode loop: one worker thread, continuous batching, per-row speculative decoding.

Requests join the running batch at any step boundary (prefilled alone, then merged; a prompt
longer than `prefill_chunk_tokens` joining running rows is fed one chunk per step, so they keep
decoding), leave when done or cancelled, and each step is ONE forward pass over every row's next
input plus its drafts.
Per row, drafts come from the row's proposer, sized by its adaptive controller and by load (the
batch shares a draft-token budget), and are verified against that same pass's logits.
When GPU energy is measured, each row's work (prompt positions at its prefill, 1 + drafts per
decode step) is recorded for `EnergyAttributor`, and a row's `FinishEvent` carries its joules.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from dataclasses import dataclass

import torch
from transformers import DynamicCache, PreTrainedModel

from local_engine.backends.fair_queue import FairQueue
from local_engine.backends.hf_cache import cache_kwargs
from local_engine.backends.kv_batch import BatchKV
from local_engine.backends.sequence import (
    FinishEvent,
    FinishReason,
    GenerationRequest,
    Sequence,
    TokensEvent,
)
from local_engine.config import EngineConfig
from local_engine.energy_attribution import EnergyAttributor
from local_engine.sampling import choose_tokens
from local_engine.spec_decode.adaptive import AdaptiveSpeculation
from local_engine.spec_decode.draft_model import DraftModel
from local_engine.spec_decode.proposer import create_proposer
from local_engine.spec_decode.step_cost import StepCost
from local_engine.spec_decode.verify import Verdict, verify_greedy, verify_sampled
from local_engine.stats import StatsRecorder

log = logging.getLogger(__name__)


@dataclass(slots=True)
class PartialPrefill:
    """A long prompt prefilled a chunk per loop turn, so running rows keep decoding meanwhile."""

    seq: Sequence
    cache: DynamicCache
    done: int = 0  # prompt tokens already in the cache
    busy_s: float = 0.0  # time spent in its passes (the engine's throughput counts it)


class EngineCore:
    def __init__(
        self,
        model: PreTrainedModel,
        config: EngineConfig,
        stats: StatsRecorder,
        draft: DraftModel | None = None,
        energy: EnergyAttributor | None = None,
    ) -> None:
        self.model = model
        self.config = config
        self.spec_config = config.speculative
        self.stats = stats
        self.draft = draft
        # None unless the meter is readable: a CPU host does no energy bookkeeping at all.
        self.energy = energy if energy is not None and energy.available else None
        # At least one slot is never kept back, so a lone owner can always run.
        newcomer = min(config.newcomer_slots, config.max_batch_size - 1)
        self._pending = FairQueue(config.max_queue, newcomer)
        self._cond = threading.Condition()
        self._stopping = False
        self._seqs: list[Sequence] = []
        self._partial: PartialPrefill | None = None
        self._kv = BatchKV()
        self._step_cost = StepCost()  # measured step time per (rows, width): batch drafting
        self._thread = threading.Thread(target=self._run, name="local-engine", daemon=True)

    # -- called from any thread -------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def submit(self, request: GenerationRequest) -> None:
        with self._cond:
            pushed_out = self._pending.push(request)  # raises EngineOverloaded when full
            self.stats.queue_depth = len(self._pending)
            self._cond.notify()
        if pushed_out is not None:  # not started: its caller retries or falls back
            pushed_out.sink(FinishEvent("overloaded", "the local engine's queue is full"))

    def shutdown(self, timeout_s: float = 10.0) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout_s)

    # -- the worker thread ----------------------------------------------------------------------

    def _run(self) -> None:
        with torch.inference_mode():
            while True:
                with self._cond:
                    while (
                        not self._pending
                        and not self._seqs
                        and self._partial is None
                        and not self._stopping
                    ):
                        self._cond.wait()
                    if self._stopping:
                        break
                    idle = not self._seqs and self._partial is None
                if idle and self.config.batch_wait_ms > 0:
                    time.sleep(self.config.batch_wait_ms / 1000.0)  # let simultaneous ones arrive
                try:
                    self._admit()
                    if self._partial is not None:
                        self._prefill_chunk(self._partial)
                    if self._seqs:
                        self._step()
                except Exception as exc:  # a failed step fails its requests, not the engine
                    log.exception("local engine step failed")
                    self._fail_all(f"local engine error: {exc}")
        self._fail_all("local engine stopped")

    def _fail_all(self, message: str) -> None:
        with self._cond:
            pending = self._pending.clear()
        if self.energy is not None:
            self.energy.close(seq.energy for seq in self._seqs)
        for seq in self._seqs:
            seq.request.sink(FinishEvent("error", message))
        for req in pending:
            req.sink(FinishEvent("error", message))
        if self._partial is not None:
            self._close_energy([self._partial.seq])
            self._partial.seq.request.sink(FinishEvent("error", message))
            self._partial = None
        self._seqs = []
        self._kv = BatchKV()
        self.stats.running = 0

    def _admit(self) -> None:
        # A chunked prefill in progress holds a slot, and while it lasts only prompts short
        # enough for one pass start beside it (the next long one waits: the queue's order is
        # kept). A tenant's short question used to wait out a flood's long prefills too.
        while len(self._seqs) + (self._partial is not None) < self.config.max_batch_size:
            running = Counter(seq.request.owner for seq in self._seqs)
            short_only = None
            if self._partial is not None:
                running[self._partial.seq.request.owner] += 1
                short_only = self.config.prefill_chunk_tokens
            free = self.config.max_batch_size - len(self._seqs) - (self._partial is not None)
            with self._cond:
                request = self._pending.pop(running, free, max_prompt=short_only)
                self.stats.queue_depth = len(self._pending)
            if request is None:
                break
            if request.cancelled.is_set():
                request.sink(FinishEvent("cancelled"))
                continue
            self._prefill(request)
        self.stats.running = len(self._seqs) + (self._partial is not None)

    def _prefill(self, request: GenerationRequest) -> None:
        use_spec = request.speculate and self.spec_config.enabled
        seq = Sequence(
            request,
            AdaptiveSpeculation(self.spec_config),
            create_proposer(self.spec_config, self.draft) if use_spec else None,
        )
        self.stats.admitted(seq.num_prompt)
        if self.energy is not None:
            seq.energy = self.energy.open()
            self.energy.add_work(seq.energy, seq.num_prompt)
        partial = PartialPrefill(seq, DynamicCache(config=self.model.config))
        if self._seqs and seq.num_prompt > self.config.prefill_chunk_tokens:
            # One pass over a long prompt would stall every running row for seconds on a CPU.
            self._partial = partial
            return
        self._prefill_chunk(partial, seq.num_prompt)

    def _prefill_chunk(self, partial: PartialPrefill, size: int | None = None) -> None:
        """Feed the next `size` prompt tokens (a chunk); after the last, the row joins the batch."""
        seq, request, cache = partial.seq, partial.seq.request, partial.cache
        if request.cancelled.is_set():
            self._drop_partial(partial)
            self._close_energy([seq])
            request.sink(FinishEvent("cancelled"))
            return
        started = time.perf_counter()
        end = min(seq.num_prompt, partial.done + (size or self.config.prefill_chunk_tokens))
        try:
            ids = torch.tensor([request.prompt_ids[partial.done : end]], dtype=torch.long)
            out = self.model(
                input_ids=ids, **cache_kwargs(self.model, cache), use_cache=True, logits_to_keep=1
            )
            partial.done = end
            if end < seq.num_prompt:
                partial.busy_s += time.perf_counter() - started
                return
            self._drop_partial(partial)
            token = int(choose_tokens(out.logits[:, -1], request.sampling, seq.generator)[0])
        except Exception as exc:
            # This request's input broke its own pass (it is not in the batch yet): fail it
            # alone. Left to `_run`, it would fail every other request and never answer this one.
            log.exception("local engine prefill failed")
            self._drop_partial(partial)
            self._close_energy([seq])
            request.sink(FinishEvent("error", f"local engine error: {exc}"))
            return
        seq.position = seq.num_prompt
        kept = seq.accept([token])
        self.stats.first_token(time.perf_counter() - request.submitted_at)
        self.stats.step(partial.busy_s + time.perf_counter() - started, len(kept))
        request.sink(TokensEvent(kept))
        if seq.finished is not None:
            request.sink(FinishEvent(seq.finished, energy_joules=self._close_energy([seq])[0]))
            return
        if self.energy is not None:
            self.energy.settle_if_due()
        self._kv.add_row(cache)
        self._seqs.append(seq)

    def _drop_partial(self, partial: PartialPrefill) -> None:
        """`partial` is done (or failed): the slot it held for a chunked prefill is free. A
        short prompt prefilled in one pass meanwhile is not the one in progress."""
        if self._partial is partial:
            self._partial = None

    def _draft_cap(self, rows: int) -> int:
        if rows <= 1:
            return self.spec_config.num_speculative_tokens
        cap = self.spec_config.max_batch_draft_tokens // rows
        return cap if cap >= 2 else 0

    def _step(self) -> None:
        started = time.perf_counter()
        seqs = self._seqs
        rows = len(seqs)
        cap = self._draft_cap(rows)
        drafts: list[list[int]] = []
        for seq in seqs:
            want = 0
            if seq.proposer is not None and cap > 0:
                room = min(seq.remaining - 1, self.config.max_model_len - seq.length)
                want = min(seq.adaptive.num_drafts(batched=rows > 1), cap, room)
            drafts.append(
                seq.proposer.propose(seq.tokens, want) if want > 0 and seq.proposer else []
            )
        if rows > 1 and any(drafts):  # the width that pays for the whole batch, or none
            drafts = self._step_cost.best_drafts(drafts, [s.adaptive.acceptance for s in seqs])
        q = 1 + max(len(d) for d in drafts)
        width = self._kv.width
        ids = torch.empty((rows, q), dtype=torch.long)
        new_cols = torch.zeros((rows, q), dtype=torch.long)
        positions = torch.empty((rows, q), dtype=torch.long)
        for i, (seq, draft) in enumerate(zip(seqs, drafts, strict=True)):
            row = [seq.last_token, *draft]
            ids[i, : len(row)] = torch.tensor(row)
            ids[i, len(row) :] = seq.last_token  # filler, masked out below
            new_cols[i, : len(row)] = 1
            # Filler columns are masked but still looked up: keep them inside the model's
            # positions (a row near the end, beside a row with many drafts).
            positions[i] = torch.arange(seq.position, seq.position + q).clamp_(
                max=self.config.max_model_len - 1
            )
            if self.energy is not None:
                self.energy.add_work(seq.energy, len(row))
        mask = self._kv.extend(new_cols)
        out = self.model(
            input_ids=ids,
            attention_mask=mask if self._kv.has_holes else None,
            position_ids=positions,
            **cache_kwargs(self.model, self._kv.cache),
            use_cache=True,
        )
        logits = out.logits
        produced = 0
        keep: list[int] = []
        done: list[tuple[Sequence, FinishReason]] = []
        for i, (seq, draft) in enumerate(zip(seqs, drafts, strict=True)):
            verdict = self._verify(seq, draft, logits[i, : len(draft) + 1])
            if draft:
                seq.adaptive.record(len(draft), verdict.num_accepted)
                self.stats.spec.observe(len(draft), verdict.num_accepted)
            self._kv.reject(i, width + verdict.num_accepted + 1)
            seq.position += verdict.num_accepted + 1
            kept = seq.accept(verdict.tokens)
            produced += len(kept)
            if kept:
                seq.request.sink(TokensEvent(kept))
            if seq.finished is None and seq.request.cancelled.is_set():
                seq.finished = "cancelled"
            if seq.finished is not None:
                done.append((seq, seq.finished))
            else:
                keep.append(i)
        # The verdicts above read the logits back, so the GPU has finished this step's work.
        energy = self._close_energy([seq for seq, _ in done])
        for (seq, reason), joules in zip(done, energy, strict=True):
            seq.request.sink(FinishEvent(reason, energy_joules=joules))
        if self.energy is not None and not done:
            self.energy.settle_if_due()
        self._kv.trim_right()
        if len(keep) < rows:
            self._kv.keep_rows(keep)
            self._seqs = [seqs[i] for i in keep]
            self.stats.running = len(self._seqs)
        elapsed = time.perf_counter() - started
        self._step_cost.observe(rows, q, elapsed)
        self.stats.step(elapsed, produced)

    def _close_energy(self, seqs: list[Sequence]) -> list[float | None]:
        """Finished rows' joules (one meter read for all); Nones when energy is not measured."""
        if self.energy is None or not seqs:
            return [None] * len(seqs)
        return self.energy.close(seq.energy for seq in seqs)

    def _verify(self, seq: Sequence, draft: list[int], logits: torch.Tensor) -> Verdict:
        params = seq.request.sampling
        if params.greedy:
            return verify_greedy(draft, logits.argmax(dim=-1).tolist())
        return verify_sampled(draft, logits, params, seq.generator)
