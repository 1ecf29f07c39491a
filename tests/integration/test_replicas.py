"""Three gateway processes on one Postgres database (and one spool directory) under load.

- budgets hold across replicas: overspend is at most one request per replica;
- ledger totals equal what the clients were told (cost headers, usage blocks) and the budget
  counters settle to exactly the ledger's sum;
- a cache entry stored by one replica is a hit on the others;
- revoking a key takes effect on every replica at once (LISTEN/NOTIFY), even with a key-cache
  TTL of minutes, through the admin API or `thriftgate key revoke` run beside them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.servers import (
    GatewayServer,
    MockUpstreamServer,
    create_database,
    drop_database,
    mock_deployment,
    sql,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPLICAS = 3
REPLY = " ".join(f"w{i}" for i in range(40))  # 40 completion tokens per answer (mock counts words)
MAX_TOKENS = 40
PRICE_IN, PRICE_OUT = Decimal("10"), Decimal("30")  # per million tokens


class Cluster:
    def __init__(self, tmp: Path) -> None:
        try:
            self._start(tmp)
        except BaseException:
            self.close()  # nothing the failed start already launched may outlive the test
            raise

    def _start(self, tmp: Path) -> None:
        self.db = create_database("tg_replicas")
        self.mock = MockUpstreamServer(tmp, reply=REPLY, latency_ms=20)
        spool = tmp / "shared-spool"
        dep = mock_deployment(
            "mock",
            "gpt-4o-mini",
            self.mock,
            input_cost_per_mtok=str(PRICE_IN),
            output_cost_per_mtok=str(PRICE_OUT),
        )
        env = {"THRIFTGATE_KEY_CACHE_TTL_S": "300"}  # only NOTIFY can make revocation fast
        self.replicas: list[GatewayServer] = []
        for _ in range(REPLICAS):  # the first migrates the database; the others find it done
            self.replicas.append(GatewayServer(tmp, self.db, [dep], extra_env=env, spool_dir=spool))

    def close(self) -> None:
        for gw in getattr(self, "replicas", []):
            gw.stop()
        if hasattr(self, "mock"):
            self.mock.stop()
        if hasattr(self, "db"):
            drop_database(self.db)


@pytest.fixture(scope="module")
def cluster(session_tmp: Path) -> Iterator[Cluster]:
    tmp = session_tmp / "replicas"
    tmp.mkdir(exist_ok=True)
    c = Cluster(tmp)
    yield c
    c.close()


def client(gw: GatewayServer, key: str, **headers: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=gw.url, api_key=key, max_retries=0, timeout=30, default_headers=headers or None
    )


def request_cost(prompt_tokens: int, completion_tokens: int) -> Decimal:
    return (prompt_tokens * PRICE_IN + completion_tokens * PRICE_OUT) / Decimal(1_000_000)


def test_budget_holds_across_replicas_and_ledger_matches_clients(cluster: Cluster) -> None:
    prompt = "count the words in this prompt please"
    one = request_cost(len(prompt.split()) + 3, len(REPLY.split()))
    budget = one * 30  # room for ~30 requests; 3 replicas x 8 threads try to send 120
    tid, key = cluster.replicas[0].new_tenant(budget_usd=str(budget))
    clients = [client(gw, key, **{"Cache-Control": "no-store"}) for gw in cluster.replicas]
    received: list[tuple[Decimal, int, int]] = []
    refused = 0

    def worker(i: int) -> None:
        nonlocal refused
        c = clients[i % REPLICAS]
        for _ in range(5):
            try:
                raw = c.chat.completions.with_raw_response.create(
                    model="gpt-4o-mini",
                    max_tokens=MAX_TOKENS,
                    messages=[{"role": "user", "content": prompt}],
                )
            except openai.RateLimitError as exc:
                assert exc.body["code"] == "insufficient_quota"  # type: ignore[index]
                refused += 1
                continue
            out = raw.parse()
            assert out.usage is not None
            received.append(
                (
                    Decimal(raw.headers["x-thriftgate-cost-usd"]),
                    out.usage.prompt_tokens,
                    out.usage.completion_tokens,
                )
            )

    with ThreadPoolExecutor(REPLICAS * 8) as pool:
        list(pool.map(worker, range(REPLICAS * 8)))

    assert refused > 0, "the budget never bit: the test proves nothing"
    spent_by_clients = sum((c for c, _, _ in received), Decimal(0))
    assert spent_by_clients == len(received) * one
    overspend = spent_by_clients - budget
    print(
        f"budget ${budget}, served {len(received)}, refused {refused}, "
        f"overspend {overspend / one:.2f} requests"
    )
    assert overspend <= REPLICAS * one, f"overspent by {overspend / one} requests"

    def ledger() -> list[Any]:
        rows = sql(
            cluster.db,
            "SELECT count(*) AS n, coalesce(sum(cost_usd), 0) AS cost, "
            "coalesce(sum(prompt_tokens), 0) AS p, "
            "coalesce(sum(completion_tokens), 0) AS c FROM usage_ledger "
            "WHERE tenant_id = $1 AND status_code = 200",
            tid,
        )
        return rows if rows[0]["n"] == len(received) else []

    rows = wait_for(ledger, 15)
    assert rows, "ledger rows missing"
    assert rows[0]["cost"] == spent_by_clients
    assert rows[0]["p"] == sum(p for _, p, _ in received)
    assert rows[0]["c"] == sum(c for _, _, c in received)

    def settled() -> list[Any]:
        got = sql(
            cluster.db,
            "SELECT spent_usd, reserved_usd FROM budget_counters WHERE tenant_id = $1",
            tid,
        )
        return got if got and got[0]["reserved_usd"] == 0 else []

    counters = wait_for(settled, 15)
    assert counters, "reservations never settled"
    assert counters[0]["spent_usd"] == spent_by_clients


def test_cache_entry_from_one_replica_hits_on_the_others(cluster: Cluster) -> None:
    _, key = cluster.replicas[0].new_tenant()
    messages: Any = [{"role": "user", "content": f"what is the capital of {uuid.uuid4().hex}?"}]
    first = client(cluster.replicas[0], key).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=messages, temperature=0
    )
    assert first.headers["x-thriftgate-cache"] == "miss"
    answer = first.parse().choices[0].message.content
    for gw in cluster.replicas[1:]:
        c = client(gw, key)

        def hit(c: openai.OpenAI = c) -> Any:
            raw = c.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=messages, temperature=0
            )
            return raw if raw.headers["x-thriftgate-cache"] == "hit-exact" else None

        raw = wait_for(hit, 10, 0.3)
        assert raw is not None, f"replica {gw.port} never saw the entry"
        assert raw.parse().choices[0].message.content == answer
        assert Decimal(raw.headers["x-thriftgate-cost-usd"]) == 0


def test_revocation_takes_effect_on_every_replica_at_once(cluster: Cluster) -> None:
    admin = cluster.replicas[0]
    tid, key = admin.new_tenant()
    headers = {"Authorization": f"Bearer {key}"}
    for gw in cluster.replicas:  # every replica now holds the key in its cache (TTL 300 s)
        assert httpx.get(gw.url + "/models", headers=headers, timeout=10).status_code == 200
    key_id = admin.admin("GET", f"/admin/tenants/{tid}/keys").json()["data"][0]["id"]
    assert admin.admin("DELETE", f"/admin/keys/{key_id}").status_code == 200
    revoked_at = time.monotonic()
    lag = {}
    for gw in cluster.replicas:

        def refused(gw: GatewayServer = gw) -> bool:
            return httpx.get(gw.url + "/models", headers=headers, timeout=10).status_code == 401

        assert wait_for(refused, 2.0, 0.01), f"replica {gw.port} still accepts a revoked key"
        lag[gw.port] = time.monotonic() - revoked_at
    print("revocation lag per replica (s):", {p: round(v, 3) for p, v in lag.items()})
    assert max(lag.values()) < 1.0
    # And it stays revoked (a racing load must not re-cache the key as valid).
    for gw in cluster.replicas:
        assert httpx.get(gw.url + "/models", headers=headers, timeout=10).status_code == 401


def test_a_key_revoked_with_the_cli_is_refused_by_every_running_replica(
    cluster: Cluster,
) -> None:
    """`thriftgate key revoke` (README: "by the leaked tg-... itself") writes to the database
    directly, with no gateway in the loop: running replicas kept accepting the key until their
    key cache expired (here 300 s, 5 s by default). Its revocation now notifies them, as the
    admin API's does."""
    admin = cluster.replicas[0]
    _, key = admin.new_tenant()
    headers = {"Authorization": f"Bearer {key}"}
    for gw in cluster.replicas:  # every replica holds the key in its cache
        assert httpx.get(gw.url + "/models", headers=headers, timeout=10).status_code == 200
    out = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "key", "revoke", key],
        env={**os.environ, "THRIFTGATE_DATABASE_URL": cluster.db},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    assert key not in out.stdout + out.stderr
    for gw in cluster.replicas:

        def refused(gw: GatewayServer = gw) -> bool:
            return httpx.get(gw.url + "/models", headers=headers, timeout=10).status_code == 401

        assert wait_for(refused, 10.0, 0.05), f"replica {gw.port} still accepts the key"


def test_tenant_change_reaches_every_replica(cluster: Cluster) -> None:
    admin = cluster.replicas[0]
    tid, key = admin.new_tenant()
    for gw in cluster.replicas:
        assert client(gw, key).models.list().data
    # Restrict the tenant to a model that does not exist: every replica must see it at once.
    r = admin.admin("PATCH", f"/admin/tenants/{tid}", json={"budget_usd": "0"})
    assert r.status_code == 200, r.text
    for gw in cluster.replicas:

        def blocked(gw: GatewayServer = gw) -> bool:
            try:
                client(gw, key, **{"Cache-Control": "no-store"}).chat.completions.create(
                    model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
                )
            except openai.RateLimitError:
                return True
            return False

        assert wait_for(blocked, 2.0, 0.05), f"replica {gw.port} ignores the new budget"
