"""Benchmark the response cache.

1. lookup: semantic lookup latency (embed + vector search + verify, through the cache's worker
   thread and batcher) with N entries in the index, all in ONE scope (the worst case), one
   request at a time and with concurrent requests.
2. gateway: requests/s through a running gateway (real Postgres, mock upstream) on a cache-hit
   workload vs a cache-miss workload, same client, same concurrency.

    python benchmarks/cache_bench.py lookup --entries 100000
    python benchmarks/cache_bench.py gateway --requests 2000 --concurrency 16 --upstream-ms 50

Figures are wall-clock on this machine: run under `nice` and say what else was running.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import random
import sys
import tempfile
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

from gateway.cache.embedder import OnnxMiniLM
from gateway.cache.policy import CachePolicy
from gateway.cache.response_cache import CacheConfig, ResponseCache
from gateway.cache.store import StoredEntry
from gateway.cache.text_facts import embedding_text
from gateway.db.models import utcnow

SUBJECTS = [
    "python",
    "rust",
    "java",
    "go",
    "kotlin",
    "swift",
    "postgres",
    "redis",
    "kafka",
    "docker",
    "kubernetes",
    "linux",
    "nginx",
    "react",
    "vue",
    "django",
    "flask",
    "fastapi",
    "numpy",
    "pandas",
    "git",
    "bash",
    "terraform",
    "ansible",
    "aws",
    "azure",
    "gcp",
    "spark",
    "hadoop",
    "tensorflow",
    "pytorch",
    "excel",
    "word",
    "chrome",
    "firefox",
    "android",
    "iphone",
    "windows",
    "macos",
    "ubuntu",
    "debian",
]
TASKS = [
    "install",
    "update",
    "uninstall",
    "configure",
    "debug",
    "profile",
    "test",
    "deploy",
    "monitor",
    "secure",
    "backup",
    "restore",
    "migrate",
    "benchmark",
    "document",
    "package",
    "containerize",
    "scale",
    "optimize",
    "learn",
    "teach",
]
OBJECTS = [
    "a web server",
    "a database",
    "unit tests",
    "a cron job",
    "logging",
    "environment variables",
    "a cache",
    "a message queue",
    "user authentication",
    "file uploads",
    "a REST API",
    "a CLI tool",
    "memory leaks",
    "slow queries",
    "SSL certificates",
    "a load balancer",
    "a CI pipeline",
    "dependencies",
    "a virtual environment",
    "timeouts",
]
FORMS = (
    "How do I {t} {o} with {s}?",
    "What is the best way to {t} {o} in {s}?",
    "Can you explain how to {t} {o} using {s}?",
    "Step by step, how can I {t} {o} on {s}?",
    "What are common mistakes when you {t} {o} with {s}?",
    "Is there a tool to {t} {o} for {s}?",
    "Why does it fail when I {t} {o} in {s}?",
)


def questions(n: int, seed: int = 0) -> list[str]:
    combos = list(itertools.product(FORMS, TASKS, OBJECTS, SUBJECTS))
    random.Random(seed).shuffle(combos)
    out = [f.format(t=t, o=o.strip(), s=s) for f, t, o, s in combos[:n]]
    if len(out) < n:  # more than the templates give: number the rest
        out += [f"{q} (variant {i})" for i, q in enumerate(out[: n - len(out)])]
    return out


def pct(xs: list[float], p: float) -> float:
    return float(np.percentile(np.array(xs), p))


async def bench_lookup(args: argparse.Namespace) -> None:
    model = OnnxMiniLM.load(threads=args.threads)
    # Embedding 100k texts costs ~30 CPU-minutes on this box, so only `--real` entries are
    # embedded questions (the ones probes paraphrase); the rest of the index is filled with
    # mixtures of three real embeddings: the same region of the space, never near-duplicates.
    texts = questions(args.real)
    saved = Path(tempfile.gettempdir()) / f"thriftgate-cache-bench-v2-{args.real}.npy"
    t0 = time.perf_counter()
    if saved.exists():
        real = np.load(saved)
    else:
        forms = [embedding_text(t) for t in texts]  # the form the gateway embeds
        real = np.concatenate([model.embed(forms[i : i + 64]) for i in range(0, len(forms), 64)])
        np.save(saved, real)
    print(f"{len(texts)} real entry embeddings ready in {time.perf_counter() - t0:.1f}s")
    rng_np = np.random.default_rng(0)
    n_fill = max(0, args.entries - len(texts))
    picks = rng_np.integers(0, len(texts), size=(n_fill, 3))
    fill = real[picks].sum(axis=1)
    fill /= np.linalg.norm(fill, axis=1, keepdims=True)
    vecs = np.concatenate([real, fill.astype(np.float32)])
    texts = texts + [f"background entry {i}" for i in range(n_fill)]
    cache = ResponseCache(store=None, embedder=model, config=CacheConfig())  # type: ignore[arg-type]
    now = utcnow()
    entries = [
        StoredEntry(
            id=f"e{i}",
            tenant_id="bench",
            scope="one-scope",
            key=f"k{i}",
            model="m",
            query=t,
            embedding=v,
            response=b"{}",
            prompt_tokens=10,
            completion_tokens=20,
            cost_usd=Decimal("0.0001"),
            created_at=now,
            expires_at=now + timedelta(days=1),
        )
        for i, (t, v) in enumerate(zip(texts, vecs, strict=True))
    ]
    t0 = time.perf_counter()
    await cache._run(cache.memory.add, entries, now, {"bench": len(entries)})
    print(f"indexed in {time.perf_counter() - t0:.1f}s: {len(cache.memory)} entries, one scope")
    print(f"load average at start: {os.getloadavg()[0]:.1f} (2 cores)")
    cache.run(follow=False)
    policy = CachePolicy(max_entries=len(entries))
    rng = random.Random(1)
    # half rewordings of stored questions (should hit), half unseen questions (should miss);
    # every probe text is new to the cache, so its memo of recent query vectors never helps
    fresh = iter(rng.sample(range(args.real), k=args.real))

    def make_probes(n: int) -> tuple[list[str], set[int]]:
        out, reworded = [], set()
        for i in range(n):
            if rng.random() < 0.5:
                reworded.add(i)
                out.append(texts[next(fresh)].lower().rstrip("?"))
            else:
                out.append(f"How do I {rng.choice(TASKS)} a {uuid.uuid4().hex[:6]} widget?")
        return out, reworded

    probes, reworded = make_probes(args.queries)
    for _ in range(20):  # warm-up
        await cache.semantic("one-scope", f"warm up {uuid.uuid4().hex[:6]}", policy)
    lat, hits, wrong = [], 0, 0
    cpu0 = time.process_time()
    for i, q in enumerate(probes):
        t = time.perf_counter()
        r = await cache.semantic("one-scope", q, policy)
        lat.append((time.perf_counter() - t) * 1000)
        if r.entry is not None:
            hits += i in reworded
            wrong += i not in reworded or r.entry.query.lower().rstrip("?") != q
    cpu_ms = (time.process_time() - cpu0) * 1000 / len(probes)
    print(
        f"sequential: {len(probes)} lookups (embed + search + verify), wall p50 {pct(lat, 50):.2f}"
        f" ms, p90 {pct(lat, 90):.2f} ms, p99 {pct(lat, 99):.2f} ms; CPU {cpu_ms:.2f} ms/lookup;"
        f" {hits} of {len(reworded)} rewordings hit, {wrong} wrong hits"
    )
    emb = []
    for q in probes[:200]:
        t = time.perf_counter()
        model.embed([embedding_text(q)])
        emb.append((time.perf_counter() - t) * 1000)
    print(f"  of which embedding alone: wall p50 {pct(emb, 50):.2f} ms, p99 {pct(emb, 99):.2f} ms")
    for conc in (8, 32):
        lat = []

        async def one(q: str, out: list[float] = lat) -> None:
            t = time.perf_counter()
            await cache.semantic("one-scope", q, policy)
            out.append((time.perf_counter() - t) * 1000)

        probes, _ = make_probes(args.queries)
        t0 = time.perf_counter()
        for i in range(0, len(probes), conc):
            await asyncio.gather(*(one(q) for q in probes[i : i + conc]))
        wall = time.perf_counter() - t0
        print(
            f"{conc} concurrent: {len(probes) / wall:.0f} lookups/s, p50 {pct(lat, 50):.2f} ms,"
            f" p99 {pct(lat, 99):.2f} ms (batched embedding)"
        )
    for task in cache._tasks:
        task.cancel()
    cache._worker.shutdown()


def bench_gateway(args: argparse.Namespace) -> None:
    import httpx

    from tests.support.servers import (
        GatewayServer,
        MockUpstreamServer,
        create_database,
        drop_database,
        mock_deployment,
    )

    tmp = Path(tempfile.mkdtemp(prefix="cache-bench-"))
    db = create_database("tg_cache_bench")
    mock = MockUpstreamServer(tmp, latency_ms=args.upstream_ms)
    gw = None
    try:
        gw = GatewayServer(
            tmp,
            db,
            [mock_deployment("mock-mini", "gpt-4o-mini", mock)],
            extra_env={"THRIFTGATE_LOG_LEVEL": "warning"},
            workers=args.workers,
        )
        _, key = gw.new_tenant()
        headers = {"Authorization": f"Bearer {key}"}
        url = gw.url + "/chat/completions"

        def body(q: str) -> dict[str, object]:
            return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": q}]}

        hot = questions(50, seed=7)
        for q in hot:  # fill the cache for the hit workload
            httpx.post(url, json=body(q), headers=headers, timeout=30).raise_for_status()
        time.sleep(1.0)

        async def run(name: str, make: list[str]) -> float:
            statuses: dict[str, int] = {}
            async with httpx.AsyncClient(
                timeout=60, limits=httpx.Limits(max_connections=args.concurrency)
            ) as client:
                queue = list(make)

                async def worker() -> None:
                    while queue:
                        q = queue.pop()
                        r = await client.post(url, json=body(q), headers=headers)
                        r.raise_for_status()
                        s = r.headers.get("x-thriftgate-cache", "?")
                        statuses[s] = statuses.get(s, 0) + 1

                t0 = time.perf_counter()
                await asyncio.gather(*(worker() for _ in range(args.concurrency)))
                wall = time.perf_counter() - t0
            rps = len(make) / wall
            print(f"{name:12s}: {len(make)} requests in {wall:.1f}s = {rps:.0f} req/s  {statuses}")
            return rps

        rng = random.Random(3)
        hit_load = [rng.choice(hot) for _ in range(args.requests)]
        miss_load = [f"{q} #{uuid.uuid4().hex[:8]}" for q in questions(args.requests, seed=11)]
        asyncio.run(run("warm", [rng.choice(hot) for _ in range(100)]))
        hit = asyncio.run(run("hit", hit_load))
        sem_load = [rng.choice(hot).lower().rstrip("?") for _ in range(args.requests)]
        sem = asyncio.run(run("semantic hit", sem_load))
        miss = asyncio.run(run("miss", miss_load))
        print(
            f"hit/miss throughput ratio: {hit / miss:.1f}x exact, {sem / miss:.1f}x semantic"
            f" (upstream latency {args.upstream_ms} ms, concurrency {args.concurrency},"
            f" {args.workers} worker(s))"
        )
    finally:
        if gw is not None:
            gw.stop()
        mock.stop()
        drop_database(db)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="what", required=True)
    lk = sub.add_parser("lookup")
    lk.add_argument("--entries", type=int, default=100_000)
    lk.add_argument("--real", type=int, default=2000, help="entries that are embedded questions")
    lk.add_argument("--queries", type=int, default=500, help="per phase (needs 1.5x <= --real)")
    lk.add_argument("--threads", type=int, default=2)
    gw = sub.add_parser("gateway")
    gw.add_argument("--requests", type=int, default=2000)
    gw.add_argument("--concurrency", type=int, default=16)
    gw.add_argument("--upstream-ms", type=float, default=50.0)
    gw.add_argument("--workers", type=int, default=1)
    args = ap.parse_args()
    if args.what == "lookup":
        asyncio.run(bench_lookup(args))
    else:
        bench_gateway(args)


if __name__ == "__main__":
    main()
