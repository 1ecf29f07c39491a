"""The response cache of one replica: exact and semantic lookups, stores, purges, and the
follower that keeps this replica's in-memory copy in step with the `cache_entries` table.

All CPU work (embedding, vector search, verification, index updates) runs on one worker
thread, so the index needs no locks and the event loop never blocks. Concurrent semantic
lookups queue up while the worker is busy and are then embedded as one batch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import orjson
from sqlalchemy.ext.asyncio import AsyncEngine

from gateway.cache.embedder import Embedder, OnnxMiniLM, WordVectorCache
from gateway.cache.index import ANN_MIN, Vector
from gateway.cache.memory import CacheMemory
from gateway.cache.policy import DEFAULT_MAX_ENTRIES, CachePolicy
from gateway.cache.store import CacheStore, StoredEntry
from gateway.cache.text_facts import analyse, embedding_text
from gateway.cache.verifier import PairVerifier, Verdict, VerifierConfig
from gateway.db.models import utcnow
from gateway.db.session import FailureLog

log = logging.getLogger("thriftgate.cache")
T = TypeVar("T")
MAX_BATCH = 32
RECENT_VECTORS = 10_000  # query text -> embedding, for repeated semantic lookups (~15 MB)


@dataclass(frozen=True, slots=True)
class CacheConfig:
    semantic: bool = True  # load the embedding model (exact caching works without it)
    model_cache_dir: Path | None = None  # where the exported ONNX model is kept
    embed_threads: int = 2
    poll_interval_s: float = 1.0
    overlap_s: float = 30.0  # re-read window for rows committed late or by a skewed clock
    expire_sweep_s: float = 60.0
    max_entries_per_tenant: int = DEFAULT_MAX_ENTRIES
    ann_min: int = ANN_MIN
    candidates: int = 4  # nearest neighbours the verifier may look at


@dataclass(frozen=True, slots=True)
class SemanticResult:
    entry: StoredEntry | None
    similarity: float | None
    vector: Vector | None  # the query's embedding, reused when the answer is stored
    verdict: Verdict | None


@dataclass(slots=True)
class _Lookup:
    scope: str
    query: str
    policy: CachePolicy
    future: asyncio.Future[SemanticResult]


def with_usage(response: bytes, prompt_tokens: int, completion_tokens: int) -> bytes:
    """The answer with a `usage` block: an upstream that reports none has its answer billed on
    counted tokens, and the miss's body says so (`pipeline.fill_missing_usage`); its hits must
    say the same, not `usage: null`."""
    if b'"usage"' in response:
        return response  # (or the words in the answer's text: then it goes without, as before)
    body = orjson.loads(response)
    if not isinstance(body, dict) or body.get("usage"):
        return response
    body["usage"] = {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
    return orjson.dumps(body)


class ResponseCache:
    def __init__(
        self, store: CacheStore, embedder: Embedder | None, config: CacheConfig | None = None
    ) -> None:
        self.config = config or CacheConfig()
        self.store = store
        self.embedder = embedder
        dim = embedder.dim if embedder is not None else 384
        self.memory = CacheMemory(
            dim, max_entries_per_tenant=self.config.max_entries_per_tenant,
            ann_min=self.config.ann_min,
        )  # fmt: skip
        self._words = WordVectorCache(embedder) if embedder is not None else None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="thriftgate-cache")
        self._queue: asyncio.Queue[_Lookup] = asyncio.Queue()
        self._limits: dict[str, int] = {}
        self._unembedded: dict[str, int] = {}  # scope -> stored entries still being embedded
        self._recent_vectors: OrderedDict[str, Vector] = OrderedDict()  # worker thread only
        self._seen: dict[str, datetime] = {}  # ids read from the table within the overlap
        self._seen_purges: set[str] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._loaded = True
        self._pending_writes: set[asyncio.Task[None]] = set()
        # a database outage: one traceback, then a line a minute, then one when it is back
        self._poll_log = FailureLog(log, "cache follower: polling the table")
        self._write_log = FailureLog(log, "writing a cache entry", level=logging.ERROR)

    # -- life cycle ---------------------------------------------------------------------
    @classmethod
    async def start(cls, engine: AsyncEngine, config: CacheConfig | None = None) -> ResponseCache:
        config = config or CacheConfig()
        embedder: Embedder | None = None
        if config.semantic:
            try:
                embedder = await asyncio.to_thread(
                    OnnxMiniLM.load, config.model_cache_dir, threads=config.embed_threads
                )
            except ImportError as exc:  # the `local` extra is not installed
                log.warning("semantic cache off: embedding runtime missing (%s)", exc)
        cache = cls(CacheStore(engine), embedder, config)
        try:
            await cache.load()
        except Exception:  # a database outage must not stop the gateway: retry from the follower
            log.warning("cache: loading entries failed; will retry", exc_info=True)
            cache._loaded = False
        cache.run(follow=True)
        return cache

    def run(self, *, follow: bool = True) -> None:
        """Start serving semantic lookups and (unless told not to) following the table."""
        self._tasks.append(asyncio.create_task(self._serve_lookups(), name="cache-lookups"))
        if follow:
            self._tasks.append(asyncio.create_task(self._follow(), name="cache-follower"))

    async def load(self) -> None:
        """Read every live row into memory (start-up)."""
        started = utcnow()
        # Purges first: a row that was still being written when its tenant was purged must
        # not come back with a restart.
        for purge_id, tenant_id, at in await self.store.purges_since(
            datetime(1970, 1, 1, tzinfo=UTC)
        ):
            self._seen_purges.add(purge_id)
            await self._run(self.memory.purge_tenant, tenant_id, at)
        count = 0
        async for batch in self.store.live(started):
            await self._run(self.memory.add, batch, started, self._limits)
            for e in batch:
                self._mark_seen(e)
            count += len(batch)
        log.info("cache loaded %d entries", count)

    async def aclose(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._pending_writes:
            await asyncio.gather(*self._pending_writes, return_exceptions=True)
        self._worker.shutdown(wait=True)

    # -- lookups ------------------------------------------------------------------------
    @property
    def semantic_enabled(self) -> bool:
        return self.embedder is not None

    def exact(self, key: str) -> StoredEntry | None:
        return self.memory.exact(key, utcnow())

    async def semantic(self, scope: str, query: str, policy: CachePolicy) -> SemanticResult:
        if self.embedder is None:
            return SemanticResult(None, None, None, None)
        future: asyncio.Future[SemanticResult] = asyncio.get_running_loop().create_future()
        await self._queue.put(_Lookup(scope, query, policy, future))
        return await future

    async def _serve_lookups(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while not self._queue.empty() and len(batch) < MAX_BATCH:
                batch.append(self._queue.get_nowait())
            try:
                results = await self._run(self._lookup_batch, batch)
            except Exception as exc:  # never leave a request waiting
                log.exception("semantic lookup failed")
                for item in batch:
                    if not item.future.done():
                        item.future.set_exception(exc)
                continue
            for item, result in zip(batch, results, strict=True):
                if not item.future.done():
                    item.future.set_result(result)

    def _lookup_batch(self, batch: list[_Lookup]) -> list[SemanticResult]:
        vectors = self._query_vectors([item.query for item in batch])
        now = utcnow()
        return [self._best(item, vec, now) for item, vec in zip(batch, vectors, strict=True)]

    def _query_vectors(self, questions: list[str]) -> list[Vector]:
        """Embed the questions (in their `embedding_text` form), reusing the vectors of
        recently seen ones (FAQ traffic repeats)."""
        assert self.embedder is not None
        texts = [embedding_text(q) for q in questions]
        missing = [t for t in dict.fromkeys(texts) if t not in self._recent_vectors]
        if missing:
            for text, vec in zip(missing, self.embedder.embed(missing), strict=True):
                self._recent_vectors[text] = vec
        out = []
        for text in texts:
            self._recent_vectors.move_to_end(text)
            out.append(self._recent_vectors[text])
        while len(self._recent_vectors) > RECENT_VECTORS:
            self._recent_vectors.popitem(last=False)
        return out

    def _best(self, item: _Lookup, vec: Vector, now: datetime) -> SemanticResult:
        verifier = PairVerifier(
            VerifierConfig(
                min_cos=item.policy.min_similarity, score_threshold=item.policy.threshold
            ),
            word_vectors=self._words,
        )
        facts = None
        best_cos: float | None = None
        for n in self.memory.search(item.scope, vec, self.config.candidates):
            entry = self.memory.entries.get(n.entry_id)
            if entry is None or entry.expired(now):
                continue
            best_cos = n.cos if best_cos is None else max(best_cos, n.cos)
            if n.cos < item.policy.min_similarity:
                break
            facts = facts or analyse(item.query)
            verdict = verifier.verify(facts, self.memory.facts(entry), n.cos)
            if verdict.ok:
                return SemanticResult(entry, n.cos, vec, verdict)
        return SemanticResult(None, best_cos, vec, None)

    # -- writes -------------------------------------------------------------------------
    async def put(self, entry: StoredEntry, max_entries: int | None = None) -> None:
        """Serve the entry from this replica at once (exact hits); embed it and write it to
        the table in the background, off the response's path."""
        if max_entries is not None:
            self._limits[entry.tenant_id] = max_entries
        entry.response = with_usage(entry.response, entry.prompt_tokens, entry.completion_tokens)
        self._mark_seen(entry)
        embed = entry.embedding is None and bool(entry.query) and self.embedder is not None
        if embed:
            self._unembedded[entry.scope] = self._unembedded.get(entry.scope, 0) + 1
        try:
            evicted = await self._run(self.memory.add, [entry], utcnow(), self._limits)
        except BaseException:  # a client that hung up: no embedding is coming for this one
            if embed:
                self._embedded(entry.scope)
            raise
        task = asyncio.create_task(self._complete(entry, evicted, embed))
        self._pending_writes.add(task)
        task.add_done_callback(self._pending_writes.discard)

    async def _complete(self, entry: StoredEntry, evicted: list[str], embed: bool) -> None:
        try:
            if embed:
                try:
                    # one worker job: a lookup queued behind it already sees the vector
                    await self._run(self._embed_into_index, entry)
                finally:
                    self._embedded(entry.scope)
            await self.store.insert([entry])
            if evicted:
                await self.store.delete_ids(evicted)
            self._write_log.succeeded()
        except Exception:  # the cache is an optimisation: a lost write is a later miss
            self._write_log.failed()

    def _embedded(self, scope: str) -> None:
        """One of the scope's stored entries is no longer waiting for its embedding."""
        left = self._unembedded.get(scope, 1) - 1
        if left > 0:
            self._unembedded[scope] = left
        else:
            self._unembedded.pop(scope, None)

    def _embed_into_index(self, entry: StoredEntry) -> None:
        assert entry.query
        entry.embedding = self._query_vectors([entry.query])[0]
        self.memory.attach(entry)

    def scope_may_match(self, scope: str) -> bool:
        """False when the scope has nothing to compare with: the lookup can skip embedding."""
        return self.memory.index.size(scope) > 0 or scope in self._unembedded

    def note_limit(self, tenant_id: str, max_entries: int) -> None:
        self._limits[tenant_id] = max_entries

    async def purge(self, tenant_id: str) -> int:
        deleted = await self.store.purge_tenant(tenant_id)
        await self.forget_tenant(tenant_id)
        return deleted

    async def forget_tenant(self, tenant_id: str) -> None:
        """Drop this replica's in-memory entries of a tenant whose rows (and purge record) the
        database no longer holds: the others follow the purge record within a poll."""
        await self._run(self.memory.purge_tenant, tenant_id, utcnow())

    # -- following the table ----------------------------------------------------------
    async def _follow(self) -> None:
        last_sweep = time.monotonic()
        while True:
            await asyncio.sleep(self.config.poll_interval_s)
            try:
                if not self._loaded:
                    await self.load()
                    self._loaded = True
                await self.sync_once()
                if time.monotonic() - last_sweep >= self.config.expire_sweep_s:
                    last_sweep = time.monotonic()
                    await self.store.delete_expired(utcnow())
                self._poll_log.succeeded()
            except asyncio.CancelledError:
                raise
            except Exception:
                self._poll_log.failed()

    async def sync_once(self) -> int:
        """Apply purges and rows other replicas wrote since the last poll; return rows added."""
        now = utcnow()
        since = now - timedelta(seconds=self.config.overlap_s)
        for purge_id, tenant_id, at in await self.store.purges_since(since):
            if purge_id not in self._seen_purges:
                self._seen_purges.add(purge_id)
                await self._run(self.memory.purge_tenant, tenant_id, at)
        fresh = [(i, ts) for i, ts in await self.store.created_since(since) if i not in self._seen]
        added: list[StoredEntry] = []
        if fresh:
            added = await self.store.fetch([i for i, _ in fresh])
            for e in added:
                self._mark_seen(e)
            await self._run(self.memory.add, added, now, self._limits)
        await self._run(self.memory.expire, now)
        horizon = since - timedelta(seconds=self.config.overlap_s)
        self._seen = {i: ts for i, ts in self._seen.items() if ts > horizon}
        return len(added)

    def _mark_seen(self, entry: StoredEntry) -> None:
        self._seen[entry.id] = entry.created_at

    async def _run(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._worker, fn, *args)
