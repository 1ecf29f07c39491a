"""Merge what several gateway processes learned into one snapshot (pure, no I/O).

Every process (a replica, or a worker of one) saves its own rows of `deployment_stats`; a
process that starts merges them, so no replica's learning is written over by another's. Each
row counts for how much it has learned times how recent it is:

- the **information** of a row: for a deployment, `1 - (1 - alpha)^n` for its n responses (0
  for a row that saw nothing, near 1 once it has seen a dozen), for answer lengths the same
  of its answers;
- its **recency**: halved for every `half_life_s` its figures are older than the newest row's,
  so a replica that saw a deployment slow down a minute ago outweighs one that saw it fast
  before, and two busy replicas count alike.

Levels (EWMA sums, inter-token time, throughput per load level) are averaged with those
weights. Sample windows (latency ratios, answer lengths, answer/max_tokens shares) are
interleaved newest first, each row taking places in proportion to its weight: the window a
router loads (its size of the newest) holds the rows' samples by weight. A count (samples,
answers) is the largest row's, or the merged window's length if that is more. Counts are not
added up: what several processes loaded at one start sits in each of their rows, and a sum would
count it once per process, and again at every restart (four workers: x4 each time).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

LENGTHS_HALF_LIFE_S = 3600.0  # answer lengths follow the apps' prompts, not a minute's weather
# A merged window holds every row's samples up to this; a loader keeps its own size of the
# newest, which the interleaving has drawn from the rows by weight.
MAX_WINDOW = 1024
_LENGTH_ALPHA = 0.05  # `LengthStats`' EWMA rate: what a row's answer count is worth
_LATENCY_ALPHA = 0.15  # `RouterTuning.latency_alpha`

# one saved row: its state, and the wall-clock time (s) its figures are from
Entry = tuple[dict[str, Any], float]


def merge_states(key: str, entries: Sequence[Entry], *, half_life_s: float) -> dict[str, Any]:
    """One state for `key` (`dep:<name>` or `model:<group>`) from several processes' rows."""
    if len(entries) == 1:
        return entries[0][0]
    kind = key.partition(":")[0]
    if kind == "dep":
        return _merge_deployment(entries, half_life_s)
    if kind == "model":
        return _merge_model(entries, LENGTHS_HALF_LIFE_S)
    return max(entries, key=lambda e: e[1])[0]  # unknown: the newest


def _recencies(times: Sequence[float], half_life_s: float) -> list[float]:
    newest = max(times)
    return [0.5 ** ((newest - t) / half_life_s) if half_life_s > 0 else 1.0 for t in times]


def _normalised(weights: Sequence[float]) -> list[float]:
    total = sum(weights)
    if total <= 0 or not math.isfinite(total):
        return [1.0 / len(weights)] * len(weights)
    return [w / total for w in weights]


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _numbers(value: Any, length: int | None = None) -> list[float] | None:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        return None
    out = [_number(v) for v in value]
    return None if any(v is None for v in out) else [v for v in out if v is not None]


def interleave(windows: Sequence[list[Any]], weights: Sequence[float], size: int) -> list[Any]:
    """Up to `size` samples of several oldest-first windows, oldest first, newest taken first
    from each, a window taking places in proportion to its weight while it has samples left
    (a smooth weighted round robin)."""
    left = [len(w) for w in windows]
    credit = [0.0] * len(windows)
    weight = [max(0.0, w) for w in weights]
    if not any(weight[i] > 0 for i in range(len(windows)) if left[i]):
        weight = [1.0] * len(windows)
    newest_first: list[Any] = []
    while len(newest_first) < size:
        active = [i for i in range(len(windows)) if left[i] and weight[i] > 0]
        if not active:
            active = [i for i in range(len(windows)) if left[i]]  # only weightless ones left
            if not active:
                break
            for i in active:
                weight[i] = 1.0
        total = sum(weight[i] for i in active)
        for i in active:
            credit[i] += weight[i]
        pick = max(active, key=lambda i: credit[i])
        credit[pick] -= total
        left[pick] -= 1
        newest_first.append(windows[pick][left[pick]])
    newest_first.reverse()
    return newest_first


def _merge_windows(windows: Sequence[Any], weights: Sequence[float]) -> list[float] | None:
    """Ratio windows (lists of numbers) with the weights of their rows; None if none is valid."""
    valid = [(nums, w) for raw, w in zip(windows, weights, strict=True) if (nums := _numbers(raw))]
    if not valid:
        return None
    size = min(MAX_WINDOW, sum(len(nums) for nums, _ in valid))
    return interleave([n for n, _ in valid], [w for _, w in valid], size)


# -- a deployment's row ---------------------------------------------------------------------


def _merge_deployment(entries: Sequence[Entry], half_life_s: float) -> dict[str, Any]:
    states = [state for state, _ in entries]
    recency = _recencies([t for _, t in entries], half_life_s)
    out: dict[str, Any] = {}
    latency = _merge_latency([s.get("latency") for s in states], recency)
    if latency is not None:
        out["latency"] = latency
    observed = [t for s in states if (t := _number(s.get("observed_at"))) is not None]
    if observed:
        out["observed_at"] = max(observed)
    # a row's information is its latency model's; one without a valid model counts as none
    info = [_line_information(s.get("latency")) for s in states]
    local = _merge_local(
        [s.get("local") for s in states], [r * i for r, i in zip(recency, info, strict=True)]
    )
    if local is not None:
        out["local"] = local
    return out


def _line_information(latency: Any) -> float:
    if not isinstance(latency, dict) or latency.get("v") != 1:
        return 0.0
    if _numbers(latency.get("ttft_line"), 6) is None:
        return 0.0
    return _information(latency.get("samples"))


def _information(samples: Any) -> float:
    """What a row's responses are worth: `1 - (1 - alpha)^n` at the default latency rate, the
    weight a fixed-rate EWMA gives them (the model's own weights follow its adaptive rate, and
    one level shift takes them to 1)."""
    n = _number(samples)
    return 0.0 if n is None or n <= 0 else 1.0 - (1.0 - _LATENCY_ALPHA) ** n


def _merge_latency(latencies: Sequence[Any], recency: Sequence[float]) -> dict[str, Any] | None:
    rows = [
        (lat, line, r)
        for lat, r in zip(latencies, recency, strict=True)
        if isinstance(lat, dict)
        and lat.get("v") == 1
        and (line := _numbers(lat.get("ttft_line"), 6)) is not None
    ]
    if not rows:
        return None
    weights = _normalised([r * _information(lat.get("samples")) for lat, _, r in rows])
    merged_line = [
        sum(w * line[k] for w, (_, line, _) in zip(weights, rows, strict=True)) for k in range(6)
    ]
    itls = [
        (w, itl)
        for w, (lat, _, _) in zip(weights, rows, strict=True)
        if (itl := _number(lat.get("itl_ms"))) is not None and itl >= 0
    ]
    out: dict[str, Any] = {"v": 1, "ttft_line": merged_line}
    if itls:
        out["itl_ms"] = sum(w * itl for w, itl in itls) / (sum(w for w, _ in itls) or 1.0)
    for name in ("ttft_ratios", "total_ratios"):
        window = _merge_windows([lat.get(name) for lat, _, _ in rows], weights)
        if window is not None:
            out[name] = window
    counts = [int(n) for lat, _, _ in rows if (n := _number(lat.get("samples"))) is not None]
    out["samples"] = max([*counts, len(out.get("total_ratios", ()))])
    return out


def _merge_local(locals_: Sequence[Any], weights: Sequence[float]) -> dict[str, Any] | None:
    """Throughput per load level: each level averaged over the rows that measured it."""
    rows = [
        (tps, w)
        for state, w in zip(locals_, weights, strict=True)
        if isinstance(state, dict)
        and state.get("v") == 1
        and isinstance(tps := state.get("tps"), list)
    ]
    if not rows or len({len(tps) for tps, _ in rows}) != 1:
        return None
    merged: list[float | None] = []
    for level in range(len(rows[0][0])):
        known = [(v, w) for tps, w in rows if (v := _number(tps[level])) is not None]
        if not known:
            merged.append(None)
            continue
        norm = _normalised([w for _, w in known])
        merged.append(sum(v * w for (v, _), w in zip(known, norm, strict=True)))
    return {"v": 1, "tps": merged}


# -- a model's row (answer lengths) -------------------------------------------------------------


def _merge_model(entries: Sequence[Entry], half_life_s: float) -> dict[str, Any]:
    states = [state for state, _ in entries]
    recency = _recencies([t for _, t in entries], half_life_s)
    lengths = [s.get("lengths") for s in states]
    valid = [(ls, r) for ls, r in zip(lengths, recency, strict=True) if isinstance(ls, dict)]
    if not valid:
        return max(entries, key=lambda e: e[1])[0]
    return {"lengths": _merge_lengths([ls for ls, _ in valid], [r for _, r in valid])}


def _merge_length_stats(states: Sequence[Any], recency: Sequence[float]) -> dict[str, Any] | None:
    """`LengthStats` states: EWMA by weight, recent answers interleaved, counts added."""
    rows: list[tuple[float, float, list[float], float]] = []  # ewma, count, recent, recency
    for state, r in zip(states, recency, strict=True):
        if not isinstance(state, dict) or state.get("v") != 1:
            continue
        ewma, recent = _number(state.get("ewma")), _numbers(state.get("recent"))
        if ewma is None or recent is None:
            continue
        count = _number(state.get("count", len(recent)))
        rows.append((ewma, max(0.0, count or 0.0), recent, r))
    if not rows:
        return None
    weights = _normalised([r * (1.0 - (1.0 - _LENGTH_ALPHA) ** c) for _, c, _, r in rows])
    size = min(MAX_WINDOW, sum(len(recent) for _, _, recent, _ in rows))
    recent = interleave([rec for _, _, rec, _ in rows], weights, size)
    return {
        "v": 1,
        "ewma": sum(w * ewma for w, (ewma, _, _, _) in zip(weights, rows, strict=True)),
        "recent": [int(x) for x in recent],
        "count": max(int(max(c for _, c, _, _ in rows)), len(recent)),
    }


def _merge_lengths(states: Sequence[dict[str, Any]], recency: Sequence[float]) -> dict[str, Any]:
    """`CompletionLengths` states: the overall and every band's stats, the share windows."""
    out = _merge_length_stats(states, recency) or {}
    for name in ("bands", "fine_bands"):
        tables = _tables(states, recency, name)
        if tables:
            out[name] = {
                band: stats
                for band in sorted({str(k) for t, _ in tables for k in t})
                if (stats := _merge_length_stats(*_column(tables, band))) is not None
            }
    shares = _merge_share_windows([s.get("ratios") for s in states], recency)
    if shares is not None:
        out["ratios"] = shares
    caps = _tables(states, recency, "cap_ratios")
    if caps:
        out["cap_ratios"] = {
            band: window
            for band in sorted({str(k) for c, _ in caps for k in c})
            if (window := _merge_share_windows(*_column(caps, band))) is not None
        }
    return out


def _tables(
    states: Sequence[dict[str, Any]], recency: Sequence[float], name: str
) -> list[tuple[dict[str, Any], float]]:
    """The rows' `name` tables (by band), with their rows' recency."""
    return [
        (table, r)
        for state, r in zip(states, recency, strict=True)
        if isinstance(table := state.get(name), dict)
    ]


def _column(
    tables: Sequence[tuple[dict[str, Any], float]], band: str
) -> tuple[list[Any], list[float]]:
    """One band's entry of each table (None where a row has none), and the rows' recency."""
    return [t.get(band) for t, _ in tables], [r for _, r in tables]


def _merge_share_windows(windows: Sequence[Any], recency: Sequence[float]) -> list[float] | None:
    """Answer/max_tokens shares: a window counts for its recency times its samples."""
    weights = [
        r * (len(w) if isinstance(w, list) else 0) for w, r in zip(windows, recency, strict=True)
    ]
    return _merge_windows(windows, weights)
