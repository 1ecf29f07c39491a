"""Local engine throughput: speculation on vs off, copy-heavy vs open-ended, batch 1 vs 8.

    nice .venv/bin/python benchmarks/local_engine_bench.py [--dtype float32] [--repeats 3]
    # or any running OpenAI-compatible engine (e.g. vLLM started with/without speculation):
    .venv/bin/python benchmarks/local_engine_bench.py --base-url http://127.0.0.1:8000/v1 \
        --label vllm-ngram

In-process mode loads the bundled SmolLM2 twice (speculation off / ngram) and runs the two
engines alternately, so background load on a shared machine hits both alike; figures are
medians over `--repeats`. Batch 1 reports decode tokens/s (after the first token); 8 concurrent
reports aggregate tokens/s over the wall time. Greedy (temperature 0) throughout; "identical"
counts the prompts for which the ngram engine produced exactly the plain engine's text.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

TEXTS = [
    "Our team met on Tuesday to review the launch plan for the new mobile app. Maria presented "
    "the marketing timeline: the beta opens on March 3, the press release goes out on March 10, "
    "and the public launch is planned for March 17. Tom raised concerns about the payment "
    "integration, which still fails for about two percent of card transactions, and asked for "
    "one more week of testing. The group agreed to keep the beta date, move the press release "
    "to March 12, and decide on the public launch date after the next review on Friday.",
    "The city council approved a plan to plant four thousand trees along the river over the "
    "next three years. The first phase covers the old harbour district, where summer "
    "temperatures are the highest in the city. Residents can request a tree in front of their "
    "home through the council website, and local schools will help care for the young trees. "
    "The project is funded by a regional climate grant and a small increase in parking fees, "
    "and the council will publish a progress report every spring.",
]
COPY_PROMPTS = [
    [
        {
            "role": "user",
            "content": "Rewrite the following text exactly, but replace every date "
            "with 'TBD'. Keep everything else the same.\n\n" + TEXTS[0],
        }
    ],
    [
        {
            "role": "user",
            "content": "Correct the text below and return it in full, changing "
            "'trees' to 'oak trees':\n\n" + TEXTS[1],
        }
    ],
]
OPEN_PROMPTS = [
    [
        {
            "role": "user",
            "content": "Write a short story about a lighthouse keeper who finds a "
            "message in a bottle.",
        }
    ],
    [{"role": "user", "content": "Explain why the sky is blue, for a ten-year-old."}],
]


@dataclass
class Run:
    texts: list[str] = field(default_factory=list)
    decode_tps: list[float] = field(default_factory=list)  # per batch-1 request
    aggregate_tps: list[float] = field(default_factory=list)  # per 8-concurrent round
    drafted: int = 0
    accepted: int = 0


Stream = Callable[[list[dict[str, str]], int], AsyncIterator[dict[str, Any]]]


async def one(
    stream: Stream, messages: list[dict[str, str]], max_tokens: int
) -> tuple[str, int, float, float]:
    """(text, completion tokens, seconds to first token, seconds total)."""
    start = time.perf_counter()
    first = None
    parts: list[str] = []
    tokens = 0
    async for chunk in stream(messages, max_tokens):
        if chunk.get("usage"):
            tokens = chunk["usage"]["completion_tokens"]
        for choice in chunk.get("choices", []):
            piece = choice.get("delta", {}).get("content")
            if piece:
                parts.append(piece)
                if first is None:
                    first = time.perf_counter()
    end = time.perf_counter()
    return "".join(parts), tokens, (first or end) - start, end - start


async def batch1(stream: Stream, prompts: list[Any], max_tokens: int, run: Run) -> None:
    texts = []
    for messages in prompts:
        text, tokens, ttft, total = await one(stream, messages, max_tokens)
        texts.append(text)
        if tokens > 1 and total > ttft:
            run.decode_tps.append((tokens - 1) / (total - ttft))
    run.texts = texts


async def concurrent8(stream: Stream, prompts: list[Any], max_tokens: int, run: Run) -> None:
    jobs = [prompts[i % len(prompts)] for i in range(8)]
    start = time.perf_counter()
    results = await asyncio.gather(*[one(stream, m, max_tokens) for m in jobs])
    wall = time.perf_counter() - start
    run.aggregate_tps.append(sum(r[1] for r in results) / wall)


def backend_stream(backend: Any) -> Stream:
    async def stream(
        messages: list[dict[str, str]], max_tokens: int
    ) -> AsyncIterator[dict[str, Any]]:
        body = {
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": 0,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        async for chunk in backend.stream("chat/completions", body):
            yield chunk

    return stream


def http_stream(base_url: str, model: str) -> Stream:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=0, timeout=600)

    async def stream(
        messages: list[dict[str, str]], max_tokens: int
    ) -> AsyncIterator[dict[str, Any]]:
        resp = await client.chat.completions.create(
            model=model,
            messages=messages,
            max_tokens=max_tokens,
            temperature=0,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in resp:
            yield chunk.model_dump()

    return stream


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


async def measure(
    engines: dict[str, tuple[Stream, Callable[[], tuple[int, int]]]],
    repeats: int,
    max_tokens: int,
    skip_concurrent: bool,
) -> dict[tuple[str, str], Run]:
    runs = {(e, w): Run() for e in engines for w in ("copy", "open")}
    workloads = {"copy": COPY_PROMPTS, "open": OPEN_PROMPTS}
    names = list(engines)
    for rep in range(repeats):
        order = names if rep % 2 == 0 else names[::-1]  # alternate to spread background load
        for workload, prompts in workloads.items():
            for name in order:
                stream, counters = engines[name]
                run = runs[(name, workload)]
                d0, a0 = counters()
                await batch1(stream, prompts, max_tokens, run)
                d1, a1 = counters()
                run.drafted += d1 - d0
                run.accepted += a1 - a0
                if not skip_concurrent:
                    await concurrent8(stream, prompts, max_tokens, run)
    return runs


def report(runs: dict[tuple[str, str], Run], baseline: str, title: str) -> None:
    print(f"\n{title}")
    header = (
        f"{'engine':<14}{'workload':<10}{'b1 tok/s':>10}{'x':>7}{'b8 tok/s':>10}{'x':>7}"
        f"{'accept':>8}{'identical':>11}"
    )
    print(header)
    print("-" * len(header))
    for (name, workload), run in sorted(
        runs.items(), key=lambda kv: (kv[0][1], kv[0][0] != baseline)
    ):
        base = runs[(baseline, workload)]
        b1, b8 = median(run.decode_tps), median(run.aggregate_tps)
        x1 = b1 / median(base.decode_tps) if base.decode_tps else float("nan")
        x8 = b8 / median(base.aggregate_tps) if base.aggregate_tps else float("nan")
        acc = f"{run.accepted / run.drafted:.0%}" if run.drafted else "-"
        same = (
            f"{sum(a == b for a, b in zip(run.texts, base.texts, strict=True))}/{len(base.texts)}"
        )
        print(
            f"{name:<14}{workload:<10}{b1:>10.1f}{x1:>7.2f}{b8:>10.1f}{x8:>7.2f}{acc:>8}"
            f"{same if name != baseline else '-':>11}"
        )


async def in_process(args: argparse.Namespace) -> None:
    from local_engine.backends.transformers_backend import TransformersBackend
    from local_engine.config import EngineConfig, SpeculativeConfig

    engines: dict[str, tuple[Stream, Callable[[], tuple[int, int]]]] = {}
    backends = []
    for method in ("off", "ngram"):
        cfg = EngineConfig(dtype=args.dtype, speculative=SpeculativeConfig(method=method))
        backend = TransformersBackend(cfg)
        await backend.start()
        backends.append(backend)

        def counters(b: Any = backend) -> tuple[int, int]:
            s = b.stats().spec
            return s.num_draft_tokens, s.num_accepted_tokens

        engines[f"spec-{method}"] = (backend_stream(backend), counters)
    # Warm-up: first calls pay one-off allocation and kernel selection costs.
    for stream, _ in engines.values():
        await one(stream, OPEN_PROMPTS[0], 8)
    try:
        runs = await measure(engines, args.repeats, args.max_tokens, args.skip_concurrent)
    finally:
        for backend in backends:
            await backend.aclose()
    report(
        runs,
        "spec-off",
        f"transformers backend, {args.dtype}, {args.max_tokens} tokens, medians of {args.repeats}",
    )


async def over_http(args: argparse.Namespace) -> None:
    engines = {args.label: (http_stream(args.base_url, args.model), lambda: (0, 0))}
    runs = await measure(engines, args.repeats, args.max_tokens, args.skip_concurrent)
    report(runs, args.label, f"{args.label} at {args.base_url}, {args.max_tokens} tokens")
    for (_, workload), run in runs.items():
        print(f"{workload}: {run.texts[0][:80]!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "auto"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--skip-concurrent", action="store_true")
    parser.add_argument("--base-url", help="bench a running OpenAI-compatible server instead")
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--label", default="http")
    args = parser.parse_args()
    from local_engine.model_store import runtime_env

    runtime_env()  # before torch loads, as `thriftgate engine serve` does
    asyncio.run(over_http(args) if args.base_url else in_process(args))


if __name__ == "__main__":
    main()
