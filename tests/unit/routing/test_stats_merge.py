"""Merging several processes' learned statistics (`stats_merge`): pure, no database."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from gateway.routing.completion import CompletionLengths
from gateway.routing.latency import LatencyModel
from gateway.routing.local_load import LocalThroughput
from gateway.routing.stats_merge import interleave, merge_states


def _latency(ttft_ms: float, times: int) -> LatencyModel:
    model = LatencyModel(100.0, 10.0)
    for _ in range(times):
        model.observe_ttft(200, ttft_ms)
        model.observe(200, 50, ttft_ms + 500.0, ttft_ms, ttft_learned=True)
    return model


def _dep(model: LatencyModel, at: float) -> tuple[dict[str, Any], float]:
    """A saved row: its state and when its figures are from."""
    return {"latency": model.to_state(), "observed_at": at}, at


def _restored(state: dict[str, Any]) -> LatencyModel:
    model = LatencyModel(100.0, 10.0)
    model.load_state(state["latency"])
    return model


def test_interleave_takes_places_by_weight_newest_first() -> None:
    old, new = [1, 2, 3, 4], [10, 20, 30, 40]
    assert interleave([old, new], [1.0, 1.0], 4) == [30, 3, 40, 4]  # oldest first
    assert sorted(interleave([old, new], [3.0, 1.0], 4)) == [2, 3, 4, 40]
    # a window that runs out leaves its places to the others; nothing is made up
    assert sorted(interleave([[7], new], [10.0, 1.0], 8)) == [7, 10, 20, 30, 40]
    assert interleave([[], []], [0.0, 0.0], 4) == []


def test_two_equally_recent_replicas_count_by_what_they_learned() -> None:
    busy, light = _latency(400.0, 30), _latency(100.0, 2)
    merged = _restored(merge_states("dep:x", [_dep(busy, 50.0), _dep(light, 50.0)], half_life_s=60))
    ttft = merged.predict(200, 50).ttft_ms
    assert busy.predict(200, 50).ttft_ms > ttft > 300.0  # mostly the busy one's 400 ms
    assert merged.samples == 32
    assert len(merged.ttft_ratios) == 32  # both windows fit: every ratio is kept


def test_the_newer_replica_outweighs_an_older_one() -> None:
    """One saw the deployment slow five minutes ago, the other fast just now (fewer times):
    the merge follows the recent one, as a single router's own figures would."""
    old_slow, new_fast = _latency(900.0, 30), _latency(150.0, 10)
    merged = _restored(
        merge_states("dep:x", [_dep(old_slow, 0.0), _dep(new_fast, 300.0)], half_life_s=60)
    )
    assert merged.predict(200, 50).ttft_ms < 200.0
    state = merge_states("dep:x", [_dep(old_slow, 0.0), _dep(new_fast, 300.0)], half_life_s=60)
    assert state["observed_at"] == 300.0


def test_a_single_row_is_taken_as_it_is() -> None:
    row = _dep(_latency(300.0, 3), 5.0)
    assert merge_states("dep:x", [row], half_life_s=60) is row[0]


def test_answer_lengths_of_two_replicas_add_up_to_a_band_that_answers_for_itself() -> None:
    """20 answers in a prompt band on each replica: neither band reaches the 32 a band needs
    to answer for itself, the merged one does (a newest-row-wins load kept 20)."""
    one, two = CompletionLengths(), CompletionLengths()
    for lengths in (one, two):
        for _ in range(20):
            lengths.observe(40, prompt_tokens=300)
        for _ in range(40):  # long answers to long prompts: the overall figure
            lengths.observe(400, prompt_tokens=5000)
    rows = [({"lengths": one.to_state()}, 10.0), ({"lengths": two.to_state()}, 12.0)]
    merged = CompletionLengths()
    merged.load_state(merge_states("model:m", rows, half_life_s=60)["lengths"])
    assert merged.count == 120
    assert merged.estimate(prompt_tokens=300).high == 40  # the band's own figure
    lone = CompletionLengths()
    lone.load_state(one.to_state())
    assert lone.estimate(prompt_tokens=300).high == 400  # one replica's band: not enough yet


def test_local_throughput_levels_are_averaged_over_those_that_measured_them() -> None:
    one, two = _latency(100.0, 10), _latency(100.0, 10)
    fast, busy = LocalThroughput(Decimal(1), 50.0), LocalThroughput(Decimal(1), 50.0)
    fast.observe(1, 80.0)
    busy.observe(4, 20.0)
    rows = [
        ({**_dep(one, 1.0)[0], "local": fast.to_state()}, 1.0),
        ({**_dep(two, 1.0)[0], "local": busy.to_state()}, 1.0),
    ]
    merged = LocalThroughput(Decimal(1), 50.0)
    merged.load_state(merge_states("dep:gpu", rows, half_life_s=60)["local"])
    assert 50.0 < merged.per_sequence_tokens_per_s(1) < 80.0  # level 1: both rows
    assert merged.per_sequence_tokens_per_s(4) == 20.0  # only one row measured level 4


def test_malformed_rows_are_left_out() -> None:
    good, _ = _dep(_latency(300.0, 10), 5.0)
    rows = [(good, 5.0), ({"latency": {"v": 1, "ttft_line": "x"}, "local": 3}, 6.0), ({}, 7.0)]
    merged = _restored(merge_states("dep:x", rows, half_life_s=60))
    assert merged.samples == 10
    assert abs(merged.predict(200, 50).ttft_ms - _restored(good).predict(200, 50).ttft_ms) < 1e-6


def test_counts_do_not_grow_with_every_restart() -> None:
    """Four workers start from one merged row, each learns one answer and saves its own row;
    the next start merges the four. Adding their counts up would count the row they all
    started from four times, and sixteen after the restart after that."""
    state = CompletionLengths()
    for _ in range(1000):
        state.observe(40)
    counts = []
    for _restart in range(3):
        rows = []
        for worker in range(4):
            lengths = CompletionLengths()
            lengths.load_state(state.to_state())
            lengths.observe(50 + worker)
            rows.append(({"lengths": lengths.to_state()}, 10.0 + worker))
        state = CompletionLengths()
        state.load_state(merge_states("model:m", rows, half_life_s=60)["lengths"])
        counts.append(state.count)
    assert counts[0] <= 1024 + 4  # not 4 x 1001
    assert counts[2] - counts[0] <= 2 * 4  # what the workers learned since, not x4 a restart
