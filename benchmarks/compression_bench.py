"""Compressor throughput on this CPU: tokens per second and milliseconds per 1k tokens.

    PYTHONPATH=. .venv/bin/python benchmarks/compression_bench.py [--squad-dir DIR]

Prompts: a chat with a system prompt, a long pasted document (prose with stray whitespace), a
pretty-printed JSON tool result, a code block and a question; sizes 1k-16k tokens. The prose is
real text when `--squad-dir` points at SQuAD-format JSON files (e.g. bigbench's squad_shifts),
else generated. Reports medians over repeats. `lossless (full)` is what the stage adds: counting
the prompt with tiktoken, normalising, and counting what changed; `lossless (transform)` is the
rewriting alone. The target is under 1 ms per 1k tokens for lossless.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
from pathlib import Path
from typing import Any

from gateway.compression import CompressionOptions, PromptCompressor, TiktokenCounter
from gateway.compression.lossless import lossless_text

_WORD_LIST = (
    "the of and to in a is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when "
    "market river policy engine protein harbor violin glacier senator tariff orbit lantern"
)
WORDS = _WORD_LIST.split()


def prose_source(squad_dir: Path | None, rng: random.Random) -> list[str]:
    if squad_dir is None:
        return [
            " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 30))).capitalize() + "."
            for _ in range(4000)
        ]
    paras: list[str] = []
    for file in sorted(squad_dir.glob("*.json")):
        for article in json.loads(file.read_text()).get("data", []):
            paras.extend(p["context"] for p in article.get("paragraphs", []))
    return paras


def make_prompt(
    target_tokens: int, source: list[str], counter: TiktokenCounter, rng: random.Random
) -> list[dict[str, Any]]:
    rows = [{"id": i, "name": f"item {i}", "tags": ["a", "b"]} for i in range(target_tokens // 60)]
    tool = json.dumps({"rows": rows}, indent=2)
    code = "```python\ndef f(x):\n    return   x * 2   \n```"
    doc: list[str] = []
    budget = target_tokens - counter.count(tool)
    while budget > 0:
        para = rng.choice(source).replace(". ", ".  ")
        doc.append("   " + para + "   ")
        budget -= counter.count(para)
    return [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Here is the report:\n\n\n" + "\n\n\n".join(doc) + "\n" + code},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "t1", "type": "function"}]},
        {"role": "tool", "tool_call_id": "t1", "content": tool},
        {"role": "user", "content": "What does the report say about the market and policy?"},
    ]


def median_ms(fn: Any, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--squad-dir", type=Path, default=None)
    ap.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 16000])
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    rng = random.Random(1)
    counter = TiktokenCounter()
    compressor = PromptCompressor(counter)
    source = prose_source(args.squad_dir, rng)
    print(f"cpu cores: {os.cpu_count()}, load average: {os.getloadavg()[0]:.2f}")
    head = ("mode", "tokens", "ms(median)", "ms/1k tok", "tok/s", "ratio")
    print("{:22} {:>7} {:>10} {:>9} {:>10} {:>6}".format(*head))
    for size in args.sizes:
        msgs = make_prompt(size, source, counter, rng)
        tokens = sum(counter.count(m["content"] or "") for m in msgs)
        texts = [m["content"] for m in msgs if m["content"]]
        rows: list[tuple[str, float, float]] = []
        ms = median_ms(lambda t=texts: [lossless_text(x) for x in t], args.repeats)
        rows.append(("lossless (transform)", ms, 0.0))
        for mode in ("lossless", "balanced"):
            opts = CompressionOptions(mode=mode, min_prompt_tokens=0)  # type: ignore[arg-type]
            res = compressor.compress(msgs, opts)
            ms = median_ms(lambda o=opts, m=msgs: compressor.compress(m, o), args.repeats)
            ratio = res.tokens_before / max(res.tokens_after, 1)
            rows.append((f"{mode} (full)", ms, ratio))
        ms = median_ms(lambda t=texts: [counter.count(x) for x in t], args.repeats)
        rows.append(("tiktoken count only", ms, 0.0))
        for name, ms, ratio in rows:
            per_k = ms / (tokens / 1000)
            r = f"{ratio:6.2f}" if ratio else "     -"
            print(f"{name:22} {tokens:7d} {ms:10.2f} {per_k:9.3f} {tokens / ms * 1000:10.0f} {r}")


if __name__ == "__main__":
    main()
