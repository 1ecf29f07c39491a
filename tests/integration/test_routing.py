"""The router end to end: several real mock upstreams of different speed, price and failure
behaviour behind a real gateway process, driven by the official openai SDK."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    mock_deployment,
    sql,
    wait_for,
)

pytestmark = pytest.mark.integration

MODEL = "llama-test"
MESSAGES = [{"role": "user", "content": "Tell me about routing please"}]


@pytest.fixture(scope="module")
def cheap_mock(session_tmp: Path) -> Iterator[MockUpstreamServer]:
    server = MockUpstreamServer(session_tmp)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def fast_mock(session_tmp: Path) -> Iterator[MockUpstreamServer]:
    server = MockUpstreamServer(session_tmp)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
def _reset(cheap_mock: MockUpstreamServer, fast_mock: MockUpstreamServer) -> Iterator[None]:
    yield
    cheap_mock.reset()
    fast_mock.reset()


class Group:
    """A gateway whose model `llama-test` is served by a cheap and a fast (expensive) mock."""

    def __init__(
        self,
        tmp: Path,
        db_url: str,
        cheap: MockUpstreamServer,
        fast: MockUpstreamServer,
        *,
        cheap_hint_ms: float,
        routing: dict[str, Any] | None = None,
        suffix: str | None = None,
    ) -> None:
        # unique names: the session database keeps every earlier gateway's learned stats
        self.suffix = suffix or uuid.uuid4().hex[:6]
        self.cheap = f"cheap-{self.suffix}"
        self.fast = f"fast-{self.suffix}"
        self.deployments = [
            mock_deployment(
                self.cheap,
                MODEL,
                cheap,
                input_cost_per_mtok=0.2,
                output_cost_per_mtok=0.4,
                ttft_ms=cheap_hint_ms,
                ms_per_token=1,
            ),
            mock_deployment(
                self.fast,
                MODEL,
                fast,
                input_cost_per_mtok=3,
                output_cost_per_mtok=9,
                ttft_ms=5,
                ms_per_token=0.5,
                default=True,
            ),
        ]
        self.file_config = {"routing": routing} if routing else None
        self.tmp, self.db_url = tmp, db_url
        self.gw = self.start()
        _, self.key = self.gw.new_tenant()
        self.client = openai.OpenAI(
            base_url=self.gw.url, api_key=self.key, max_retries=0, timeout=30
        )

    def start(self, port: int | None = None) -> GatewayServer:
        return GatewayServer(
            self.tmp, self.db_url, self.deployments, file_config=self.file_config, port=port
        )

    def restart(self) -> None:
        self.gw.stop()
        self.gw = self.start(port=self.gw.port)

    def ask(self, slo_ms: int | None = None, **kw: Any) -> Any:
        headers = {"x-thriftgate-slo-ms": str(slo_ms)} if slo_ms is not None else {}
        headers["x-request-id"] = "req-" + uuid.uuid4().hex
        headers["cache-control"] = "no-store"  # every request must reach an upstream
        return self.client.chat.completions.with_raw_response.create(
            model=MODEL, messages=MESSAGES, extra_headers=headers, **kw
        )

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "THRIFTGATE_DATABASE_URL": self.db_url,
            "THRIFTGATE_CONFIG": str(self.gw.config_path),
        }

    def metrics(self) -> str:
        return httpx.get(self.gw.base + "/metrics", timeout=10).text


def ledger(db_url: str, request_id: str) -> dict[str, Any]:
    rows = wait_for(
        lambda: sql(db_url, "SELECT * FROM usage_ledger WHERE request_id = $1", request_id)
    )
    assert rows, f"no ledger row for {request_id}"
    return dict(rows[0])


@pytest.fixture
def group(session_tmp, pg_url, cheap_mock, fast_mock, request) -> Iterator[Group]:
    params = getattr(request, "param", {})
    g = Group(session_tmp, pg_url, cheap_mock, fast_mock, **params)
    yield g
    g.gw.stop()


@pytest.mark.parametrize("group", [{"cheap_hint_ms": 300}], indirect=True)
def test_cheapest_within_slo_else_fastest(group: Group, cheap_mock, fast_mock) -> None:
    cheap_mock.control(latency_ms=300)
    # no SLO: the cheap one, and the ledger records what routing saved against the default
    raw = group.ask()
    assert raw.headers["x-thriftgate-deployment"] == group.cheap
    assert raw.headers["x-thriftgate-route-reason"] == "cheapest-no-slo"
    row = ledger(group.gw.db_url, raw.headers["x-request-id"])
    assert row["saved_routing_usd"] > 0 and row["route_reason"] == "cheapest-no-slo"
    # 2 s on total time: the cheap one (~300 ms) meets it and is cheaper
    raw = group.ask(slo_ms=2000)
    assert raw.headers["x-thriftgate-deployment"] == group.cheap
    assert raw.headers["x-thriftgate-route-reason"] == "cheapest-within-slo"
    # 100 ms: only the fast one is predicted to make it
    raw = group.ask(slo_ms=100)
    assert raw.headers["x-thriftgate-deployment"] == group.fast
    assert raw.headers["x-thriftgate-route-reason"] == "cheapest-within-slo"
    row = ledger(group.gw.db_url, raw.headers["x-request-id"])
    assert row["slo_ms"] == 100 and row["slo_met"] is True
    # 1 ms: nobody can; the fastest serves and the ledger says the SLO was not met
    raw = group.ask(slo_ms=1)
    assert raw.headers["x-thriftgate-deployment"] == group.fast
    assert raw.headers["x-thriftgate-route-reason"] == "fastest-slo-unmet"
    row = ledger(group.gw.db_url, raw.headers["x-request-id"])
    assert row["slo_met"] is False
    assert float(raw.headers["x-thriftgate-predicted-latency-ms"]) > 0


@pytest.mark.parametrize("group", [{"cheap_hint_ms": 20}], indirect=True)
def test_switches_over_when_the_cheap_one_slows_down(group: Group, cheap_mock) -> None:
    # streamed requests with a 250 ms TTFT SLO; the cheap one is fast at first
    def serve() -> str:
        stream = group.ask(slo_ms=250, stream=True)
        for _ in stream.parse():
            pass
        return str(stream.headers["x-thriftgate-deployment"])

    assert serve() == group.cheap
    cheap_mock.control(latency_ms=600)
    served = [serve() for _ in range(4)]
    # Once the slow-down has been observed it switches (which request first sees it depends on
    # the machine's load: a loaded CI box can make even the fast phase look slow).
    assert served[-2:] == [group.fast, group.fast], served
    observed = group.metrics()
    count = f'thriftgate_route_observed_latency_seconds_count{{deployment="{group.cheap}"'
    assert count in observed
    assert "thriftgate_route_slo_total{" in observed


@pytest.mark.parametrize("group", [{"cheap_hint_ms": 20}], indirect=True)
def test_falls_back_on_5xx_but_not_on_400(group: Group, cheap_mock, fast_mock) -> None:
    cheap_mock.control(fail_next=1, fail_status=503)
    before = len(fast_mock.received())
    raw = group.ask()
    assert raw.headers["x-thriftgate-deployment"] == group.fast
    assert raw.headers["x-thriftgate-route-reason"] == "fallback-after-503"
    assert len(fast_mock.received()) == before + 1
    row = ledger(group.gw.db_url, raw.headers["x-request-id"])
    assert row["deployment"] == group.fast and row["route_reason"] == "fallback-after-503"
    # a request the upstream rejects as bad is not retried elsewhere
    cheap_mock.control(fail_next=1, fail_status=400)
    with pytest.raises(openai.APIStatusError):
        group.ask()
    assert len(fast_mock.received()) == before + 1


def test_fallback_is_re_ranked_for_the_time_left(
    session_tmp: Path, pg_url: str, cheap_mock: MockUpstreamServer, fast_mock: MockUpstreamServer
) -> None:
    """The cheap one fails late: the next-cheapest (mid) would now miss the SLO, so the
    fallback goes to the fast one, and mid never sees the request."""
    mid_mock = MockUpstreamServer(session_tmp, latency_ms=500)
    s = uuid.uuid4().hex[:6]
    deps = [
        mock_deployment(
            f"cheap-{s}", MODEL, cheap_mock, input_cost_per_mtok=0.2, output_cost_per_mtok=0.4,
            ttft_ms=20, ms_per_token=1,
        ),
        mock_deployment(
            f"mid-{s}", MODEL, mid_mock, input_cost_per_mtok=1, output_cost_per_mtok=2,
            ttft_ms=500, ms_per_token=1,
        ),
        mock_deployment(
            f"fast-{s}", MODEL, fast_mock, input_cost_per_mtok=3, output_cost_per_mtok=9,
            ttft_ms=5, ms_per_token=0.5, default=True,
        ),
    ]  # fmt: skip
    gw = GatewayServer(session_tmp, pg_url, deps)
    try:
        _, key = gw.new_tenant()
        c = openai.OpenAI(base_url=gw.url, api_key=key, max_retries=0, timeout=30)

        def ask() -> Any:
            return c.chat.completions.with_raw_response.create(
                model=MODEL,
                messages=MESSAGES,
                max_tokens=5,
                extra_headers={"x-thriftgate-slo-ms": "1500", "cache-control": "no-store"},
            )

        # ranked cheapest-first: cheap (~20 ms), then mid (~500 ms fits 1.5 s), then fast
        cheap_mock.control(fail_next=1, fail_status=503, fail_after_ms=1100)
        before_mid, before_fast = len(mid_mock.received()), len(fast_mock.received())
        raw = ask()
        assert raw.headers["x-thriftgate-deployment"] == f"fast-{s}"
        assert raw.headers["x-thriftgate-route-reason"] == "fallback-after-503"
        assert len(mid_mock.received()) == before_mid  # skipped: ~500 ms no longer fits
        assert len(fast_mock.received()) == before_fast + 1
        # with the whole SLO ahead, mid is still the choice after a quick failure
        cheap_mock.control(fail_next=1, fail_status=503, fail_after_ms=0)
        raw = ask()
        assert raw.headers["x-thriftgate-deployment"] == f"mid-{s}"
    finally:
        gw.stop()
        mid_mock.stop()


@pytest.mark.parametrize(
    "group",
    [{"cheap_hint_ms": 20, "routing": {"failure_threshold": 2, "cooldown_s": 1.0}}],
    indirect=True,
)
def test_breaker_opens_probes_half_open_and_closes(group: Group, cheap_mock) -> None:
    def breaker() -> str:
        for line in group.metrics().splitlines():
            if line.startswith(f'thriftgate_route_breaker_state{{deployment="{group.cheap}"'):
                return line.rsplit(" ", 1)[1]
        raise AssertionError("no breaker metric")

    cheap_mock.control(fail_next=2, fail_status=502)
    for _ in range(2):
        assert group.ask().headers["x-thriftgate-route-reason"] == "fallback-after-502"
    assert breaker() == "2.0"  # open
    seen = len(cheap_mock.received())
    raw = group.ask()
    assert raw.headers["x-thriftgate-deployment"] == group.fast
    assert len(cheap_mock.received()) == seen  # not even tried
    time.sleep(1.1)
    assert breaker() == "1.0"  # half-open
    cheap_mock.control(fail_next=1, fail_status=500)  # the probe fails: open again
    assert group.ask().headers["x-thriftgate-route-reason"] == "fallback-after-500"
    assert len(cheap_mock.received()) == seen + 1
    assert breaker() == "2.0"
    time.sleep(2.1)  # the cool-down doubled
    raw = group.ask()  # this probe succeeds
    assert raw.headers["x-thriftgate-deployment"] == group.cheap
    assert breaker() == "0.0"


@pytest.mark.parametrize("group", [{"cheap_hint_ms": 20}], indirect=True)
def test_never_retries_after_the_first_chunk(group: Group, cheap_mock, fast_mock) -> None:
    cheap_mock.control(truncate_stream=True)
    before = len(fast_mock.received())
    raw = group.ask(stream=True)
    assert raw.headers["x-thriftgate-deployment"] == group.cheap
    with pytest.raises(openai.APIError):
        for _ in raw.parse():
            pass
    assert len(fast_mock.received()) == before  # the fast one was never asked
    row = ledger(group.gw.db_url, raw.headers["x-request-id"])
    assert row["deployment"] == group.cheap and row["status_code"] >= 500


def test_auto_model_picks_the_cheapest_acceptable(session_tmp, pg_url, cheap_mock, fast_mock):
    s = uuid.uuid4().hex[:6]
    deps = [
        mock_deployment(
            f"big-{s}",
            "big-model",
            fast_mock,
            input_cost_per_mtok=3,
            output_cost_per_mtok=9,
            ttft_ms=5,
            default=True,
        ),
        mock_deployment(
            f"small-{s}",
            "small-model",
            cheap_mock,
            input_cost_per_mtok=0.1,
            output_cost_per_mtok=0.2,
            ttft_ms=5,
        ),
    ]
    gw = GatewayServer(session_tmp, pg_url, deps, file_config={"auto": {"models": ["big-model"]}})
    try:
        _, key_default = gw.new_tenant()
        _, key_tier = gw.new_tenant(flags={"auto_models": ["big-model", "small-model"]})
        for key, expected in ((key_default, f"big-{s}"), (key_tier, f"small-{s}")):
            c = openai.OpenAI(base_url=gw.url, api_key=key, max_retries=0)
            raw = c.chat.completions.with_raw_response.create(
                model="thriftgate/auto",
                messages=MESSAGES,
                extra_headers={"cache-control": "no-store"},
            )
            assert raw.headers["x-thriftgate-deployment"] == expected
        # what /v1/models lists is what can be retrieved and sent, and nothing else
        _, key_allowed = gw.new_tenant(flags={"models": ["big-model"]})
        _, key_none = gw.new_tenant(flags={"auto_models": ["no-such-model"]})
        for key, usable in ((key_tier, True), (key_allowed, True), (key_none, False)):
            c = openai.OpenAI(base_url=gw.url, api_key=key, max_retries=0)
            assert ("thriftgate/auto" in [m.id for m in c.models.list()]) is usable
            if usable:
                assert c.models.retrieve("thriftgate/auto").id == "thriftgate/auto"
                c.chat.completions.create(model="thriftgate/auto", messages=MESSAGES)
            else:
                with pytest.raises(openai.NotFoundError):
                    c.models.retrieve("thriftgate/auto")
                with pytest.raises(openai.NotFoundError):
                    c.chat.completions.create(model="thriftgate/auto", messages=MESSAGES)
    finally:
        gw.stop()


@pytest.mark.slow
@pytest.mark.parametrize(
    "group", [{"cheap_hint_ms": 20, "routing": {"stats_flush_interval_s": 60}}], indirect=True
)
def test_learned_stats_survive_a_restart(group: Group, cheap_mock, pg_url) -> None:
    cheap_mock.control(latency_ms=500)
    for _ in range(3):  # no SLO: the cheap one serves, and shows it is slow
        assert group.ask().headers["x-thriftgate-deployment"] == group.cheap
    group.restart()  # SIGTERM: the store saves on shutdown
    rows = _stats_rows(pg_url, f"dep:{group.cheap}")
    assert len(rows) == 1 and json.loads(rows[0]["stats"])["latency"]["samples"] == 3
    # a cold router would trust the 20 ms hint; the restarted one remembers 500 ms
    raw = group.ask(slo_ms=200)
    assert raw.headers["x-thriftgate-deployment"] == group.fast
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "gateway.cli",
            "route",
            "explain",
            "--model",
            MODEL,
            "--slo-ms",
            "200",
            "--prompt-tokens",
            "50",
        ],
        env=group.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    assert "learned statistics" in out and group.cheap in out and group.fast in out


def _stats_rows(pg_url: str, key: str) -> list[Any]:
    """The saved rows of one key: one per gateway process that learned it (`<key>#<replica>`)."""
    rows = sql(pg_url, "SELECT deployment, stats FROM deployment_stats")
    return [r for r in rows if r["deployment"].rpartition("#")[0] == key]


@pytest.mark.slow
@pytest.mark.parametrize(
    "group", [{"cheap_hint_ms": 20, "routing": {"stats_flush_interval_s": 3600}}], indirect=True
)
def test_two_replicas_learned_stats_are_merged_on_restart(group: Group, cheap_mock, pg_url) -> None:
    """Two gateway processes on one database. The second sees the cheap deployment fast, once;
    then the cheap one slows to 500 ms and the first sees it six times. Both save on shutdown,
    the second last. With one shared row the last writer won: the restarted gateway knew only
    the second's one fast answer and sent a 200 ms request to the cheap one (500 ms). Each
    process now keeps its own row and a starting one merges them by what each learned and how
    recently, so the restart knows the cheap one is slow."""
    second = group.start()  # another replica: its own port, the same database
    try:
        client = openai.OpenAI(base_url=second.url, api_key=group.key, max_retries=0, timeout=30)
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=MESSAGES, extra_headers={"cache-control": "no-store"}
        )
        assert raw.headers["x-thriftgate-deployment"] == group.cheap
        cheap_mock.control(latency_ms=500)
        for _ in range(6):  # no SLO: the cheap one serves, and shows the first it is slow
            assert group.ask().headers["x-thriftgate-deployment"] == group.cheap
        group.gw.stop()  # SIGTERM: saves what it learned
    finally:
        second.stop()  # saves last
    assert len(_stats_rows(pg_url, f"dep:{group.cheap}")) == 2  # one row per replica
    group.gw = group.start(port=group.gw.port)
    raw = group.ask(slo_ms=200)
    assert raw.headers["x-thriftgate-deployment"] == group.fast
    group.gw.stop()  # it learned the model's answer lengths: its row stands for those it merged
    assert len(_stats_rows(pg_url, f"model:{MODEL}")) == 1
