"""Local engine pricing: hardware $/hour over throughput measured at the current load."""

from __future__ import annotations

from decimal import Decimal

from gateway.routing.local_load import EngineLoad, LocalThroughput, bucket


def test_buckets() -> None:
    assert [bucket(n) for n in (0, 1, 2, 3, 4, 5, 8, 9, 1000)] == [0, 0, 1, 2, 2, 3, 3, 4, 7]


def test_price_follows_measured_throughput_at_load() -> None:
    # speculative decoding: 100 tok/s alone, 30 tok/s per sequence at 8 concurrent
    engine = LocalThroughput(Decimal("3.60"), cold_tokens_per_s=100, max_concurrency=8)
    engine.observe(8, 30.0)
    idle = engine.quote(EngineLoad(queue_depth=0, running=0), 100)
    busy = engine.quote(EngineLoad(queue_depth=0, running=7), 100)
    # $3.60/h = $0.001/s; alone 100 tok/s -> $10/Mtok; 8 x 30 = 240 tok/s -> ~$4.17/Mtok
    assert idle.price.output_per_mtok == Decimal("10.0")
    assert abs(float(busy.price.output_per_mtok) - 1e6 * 0.001 / 240) < 0.01
    assert busy.ms_per_token > idle.ms_per_token
    assert idle.queue_wait_ms == 0


def test_engine_report_feeds_the_model_and_queue_adds_wait() -> None:
    engine = LocalThroughput(Decimal(1), cold_tokens_per_s=50, max_concurrency=2)
    engine.observe_load(EngineLoad(queue_depth=0, running=2, decode_tokens_per_s=60.0))
    assert engine.per_sequence_tokens_per_s(2) == 30.0
    full = engine.quote(EngineLoad(queue_depth=3, running=2), 100)
    assert full.concurrency == 2
    assert full.queue_wait_ms > 0


def test_unmeasured_level_is_a_cold_guess_below_the_measured_one() -> None:
    engine = LocalThroughput(Decimal(1), cold_tokens_per_s=100)
    assert engine.per_sequence_tokens_per_s(4) < 100
    restored = LocalThroughput(Decimal(1), cold_tokens_per_s=1)
    engine.observe(4, 42.0)
    restored.load_state(engine.to_state())
    assert restored.per_sequence_tokens_per_s(4) == 42.0
    restored.load_state({"v": 1, "tps": [None] * 8})  # invalid: level 0 must be known
    assert restored.per_sequence_tokens_per_s(4) == 42.0
