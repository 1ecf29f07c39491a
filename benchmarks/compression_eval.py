"""Does compression keep the answer? RAG-like long contexts from externally authored QA sets.

Data: the source distribution of PyPI `bigbench` 1.0.0 (not committed, not needed by tests):

    pip download --no-deps --no-binary :all: bigbench==1.0.0 -d /tmp/bb
    mkdir -p /tmp/bbcache && tar xzf /tmp/bb/bigbench-1.0.0.tar.gz -C /tmp/bbcache \\
        --strip-components=3 \\
        bigbench-1.0.0/bigbench/benchmark_tasks/coqa_conversational_question_answering \\
        bigbench-1.0.0/bigbench/benchmark_tasks/squad_shifts
    .venv/bin/python benchmarks/compression_eval.py /tmp/bbcache

Each example: the gold passage among distractor passages from the same source (same SQuAD-shifts
file, same CoQA source), 2k-8k tokens in all, as one user message of documents, then the
question as the last user turn (CoQA: the earlier turns of the conversation in between).
Retention: a gold answer (SQuAD: any listed answer; CoQA: the free-form answer when it occurs
verbatim in the story, yes/no/unknown answers skipped) still occurs in the compressed prompt,
compared case- and whitespace-insensitively. Ratio: document tokens before / after.

Any directory holding SQuAD-format JSON files (`data[].paragraphs[].context/qas`) or a CoQA-format
`coqa*.json` can be passed instead (`--squad-dir`, `--coqa-file`).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gateway.compression import CompressionOptions, PromptCompressor, TiktokenCounter
from gateway.compression.surprisal import LocalModelPruner, local_model_available

SYSTEM = "Answer the question using only the documents. Reply with a short span."


@dataclass
class Example:
    source: str
    passages: list[str]
    gold_index: int
    history: list[tuple[str, str]]  # earlier (question, answer) turns
    question: str
    answers: list[str]


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


def load_squad(path: Path) -> dict[str, list[tuple[str, list[tuple[str, list[str]]]]]]:
    """source -> [(context, [(question, answers)])]"""
    out: dict[str, list[tuple[str, list[tuple[str, list[str]]]]]] = {}
    for file in sorted(path.glob("*.json")):
        if file.name.endswith("_removed.json") or file.name.startswith("squaddev"):
            continue  # squaddev is SQuAD 1.1 dev (Wikipedia), not a shift; *_removed are stubs
        data = json.loads(file.read_text())
        paras = []
        for article in data.get("data", []):
            for p in article.get("paragraphs", []):
                qas = [
                    (qa["question"], [a["text"] for a in qa.get("answers", []) if a.get("text")])
                    for qa in p.get("qas", [])
                ]
                qas = [(q, a) for q, a in qas if a]
                if p.get("context") and qas:
                    paras.append((p["context"], qas))
        if paras:
            out[file.stem] = paras
    return out


def load_coqa(path: Path) -> dict[str, list[tuple[str, list[tuple[str, str]]]]]:
    """source -> [(story, [(question, answer)])]"""
    data = json.loads(path.read_text())["data"]
    out: dict[str, list[tuple[str, list[tuple[str, str]]]]] = defaultdict(list)
    for d in data:
        turns = [
            (q["input_text"], a["input_text"])
            for q, a in zip(d["questions"], d["answers"], strict=False)
        ]
        out[f"coqa-{d['source']}"].append((d["story"], turns))
    return out


def build_examples(
    squad: dict[str, list[Any]],
    coqa: dict[str, list[Any]],
    per_source: int,
    counter: TiktokenCounter,
    rng: random.Random,
) -> list[Example]:
    examples: list[Example] = []
    for source, paras in sorted(squad.items()):
        for _ in range(per_source):
            gi = rng.randrange(len(paras))
            context, qas = paras[gi]
            question, answers = rng.choice(qas)
            passages = _with_distractors(context, [p[0] for p in paras], gi, counter, rng)
            examples.append(
                Example(source, passages, passages.index(context), [], question, answers)
            )
    for source, stories in sorted(coqa.items()):
        made = 0
        tries = 0
        while made < per_source and tries < per_source * 20:
            tries += 1
            gi = rng.randrange(len(stories))
            story, turns = stories[gi]
            k = rng.randrange(len(turns))
            question, answer = turns[k]
            a = answer.strip().rstrip(".").strip()
            if norm(a) in ("yes", "no", "unknown", "") or norm(a) not in norm(story):
                continue
            passages = _with_distractors(story, [s[0] for s in stories], gi, counter, rng)
            examples.append(
                Example(source, passages, passages.index(story), turns[:k], question, [a])
            )
            made += 1
    return examples


def _with_distractors(
    gold: str, pool: list[str], gold_index: int, counter: TiktokenCounter, rng: random.Random
) -> list[str]:
    target = rng.randint(2200, 8000)
    chosen = [gold]
    total = counter.count(gold)
    order = list(range(len(pool)))
    rng.shuffle(order)
    for j in order:
        if total >= target:
            break
        if j == gold_index or pool[j] == gold:
            continue
        chosen.append(pool[j])
        total += counter.count(pool[j])
    rng.shuffle(chosen)
    return chosen


def messages_for(ex: Example) -> list[dict[str, Any]]:
    docs = "\n\n".join(f"Document {i + 1}:\n{p}" for i, p in enumerate(ex.passages))
    msgs: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM},
        {"role": "user", "content": "Documents:\n\n" + docs},
    ]
    for q, a in ex.history:
        msgs.append({"role": "user", "content": q})
        msgs.append({"role": "assistant", "content": a})
    msgs.append({"role": "user", "content": ex.question})
    return msgs


def evaluate(args: argparse.Namespace) -> None:
    counter = TiktokenCounter()
    rng = random.Random(args.seed)
    squad = load_squad(args.squad_dir or args.root / "squad_shifts")
    coqa_file = args.coqa_file or (
        args.root / "coqa_conversational_question_answering" / "coqa.test.json"
    )
    coqa = load_coqa(coqa_file) if coqa_file.exists() else {}
    examples = build_examples(squad, coqa, args.per_source, counter, rng)
    pruner = None
    if "aggressive" in args.modes and local_model_available():
        pruner = LocalModelPruner()  # SmolLM2 surprisal, loaded on first use
    compressor = PromptCompressor(counter, embedder=_embedder(args.embedder), pruner=pruner)
    print(f"{len(examples)} examples from {len(squad) + len(coqa)} sources, seed {args.seed}")
    for mode in args.modes:
        opts = CompressionOptions(mode=mode, target_ratio=args.ratio, min_prompt_tokens=0)
        kept: dict[str, list[bool]] = defaultdict(list)
        ratios: dict[str, list[float]] = defaultdict(list)
        ms: list[float] = []
        seen_notes: set[str] = set()
        for ex in examples:
            msgs = messages_for(ex)
            t0 = time.perf_counter()
            res = compressor.compress(msgs, opts)
            seen_notes.update(res.notes)
            ms.append((time.perf_counter() - t0) * 1000)
            before = counter.count(msgs[1]["content"])
            after = counter.count(res.messages[1]["content"])
            prompt = norm("\n".join(str(m.get("content") or "") for m in res.messages[:-1]))
            ok = any(norm(a) in prompt for a in ex.answers)
            for key in (ex.source, "ALL"):
                kept[key].append(ok)
                ratios[key].append(before / max(after, 1))
        notes = sorted({n for n in seen_notes if "threshold" not in n})
        print(f"\nmode={mode} ratio_target={args.ratio} median_ms={statistics.median(ms):.1f}")
        if notes:
            print("notes:", "; ".join(notes))
        print(f"{'source':28} {'n':>4} {'retention':>9} {'ratio(median)':>13} {'ratio(min)':>10}")
        for key in sorted(kept, key=lambda k: (k == "ALL", k)):
            r = ratios[key]
            print(
                f"{key:28} {len(r):4d} {100 * sum(kept[key]) / len(r):8.1f}% "
                f"{statistics.median(r):13.2f} {min(r):10.2f}"
            )


def _embedder(name: str) -> Any:
    if name == "none":
        return None
    from gateway.cache.embedder import OnnxMiniLM  # the semantic cache's MiniLM (ONNX)

    return OnnxMiniLM.load()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("root", type=Path, help="folder holding the extracted bigbench task folders")
    ap.add_argument("--squad-dir", type=Path, default=None)
    ap.add_argument("--coqa-file", type=Path, default=None)
    ap.add_argument("--per-source", type=int, default=60)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--ratio", type=float, default=CompressionOptions().target_ratio)
    ap.add_argument("--modes", nargs="+", default=["lossless", "balanced"])
    ap.add_argument("--embedder", choices=["none", "minilm"], default="none")
    evaluate(ap.parse_args())


if __name__ == "__main__":
    main()
