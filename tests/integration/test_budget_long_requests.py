"""A request running longer than the budget's reservation lifetime keeps its reservation
(hunt10 h1). A generation of reservations is dropped two lifetimes after it began (so a crashed
process's reservations lapse); a request still running then lost its own, and the budget
admitted other requests against the room it held."""

from __future__ import annotations

import contextlib
import sqlite3
import threading
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.servers import GatewayServer, MockUpstreamServer, mock_deployment, sql, wait_for

pytestmark = pytest.mark.integration

TTL_S = 1
# $1 per Mtok both ways: max_tokens 100 reserves ~$0.00011 against a budget of $0.00005, so
# while one request runs, another is refused; the mock answers 60 words at 100 ms a word.
PRICED = {"input_cost_per_mtok": 1, "output_cost_per_mtok": 1}
REPLY = " ".join(["word"] * 60)


def ask(gw: GatewayServer, key: str, text: str, *, stream: bool = False) -> httpx.Response:
    body: dict[str, Any] = {
        "model": "m",
        "max_tokens": 100,
        "stream": stream,
        "messages": [{"role": "user", "content": text}],
    }
    headers = {"Authorization": f"Bearer {key}", "Cache-Control": "no-store"}
    return httpx.post(gw.url + "/chat/completions", headers=headers, json=body, timeout=60)


QUERY = "SELECT coalesce(sum(reserved_usd + reserved_prev_usd), 0) FROM budget_counters WHERE "


def reserved(db_url: str, tenant_id: str) -> Decimal:
    if db_url.startswith("sqlite"):
        with contextlib.closing(sqlite3.connect(db_url.split("///", 1)[1])) as conn:
            return Decimal(str(conn.execute(QUERY + "tenant_id = ?", (tenant_id,)).fetchone()[0]))
    return Decimal(sql(db_url, QUERY + "tenant_id = $1", tenant_id)[0][0])


@pytest.mark.parametrize(
    ("stream", "db"), [(False, "postgres"), (True, "postgres"), (False, "sqlite")]
)
def test_a_request_outliving_two_reservation_lifetimes_still_holds_the_budget(
    session_tmp: Path,
    fresh_pg_url: str,
    mock_upstream: MockUpstreamServer,
    stream: bool,
    db: str,
) -> None:
    deps = [mock_deployment("m", "m", mock_upstream, **PRICED)]
    env = {"THRIFTGATE_BUDGET_RESERVATION_TTL_S": str(TTL_S)}
    db_url = fresh_pg_url
    if db == "sqlite":
        db_url = f"sqlite+aiosqlite:///{session_tmp / f'long-{uuid.uuid4().hex[:8]}.db'}"
    gw = GatewayServer(session_tmp, db_url, deps, extra_env=env)
    try:
        tid, key = gw.new_tenant(budget_usd="0.00005", budget_period="daily")
        mock_upstream.control(ms_per_token=100, reply=REPLY)  # ~6 s an answer
        answers: dict[str, httpx.Response] = {}
        began = time.time() // TTL_S
        first = threading.Thread(
            target=lambda: answers.update(first=ask(gw, key, "a", stream=stream))
        )
        first.start()
        # two generation turns later its first generation is dropped
        wait_for(lambda: time.time() // TTL_S >= began + 2.5, timeout_s=10)
        assert first.is_alive(), "the first request must still be running"
        late = ask(gw, key, "b", stream=stream)
        first.join(30)
        assert answers["first"].status_code == 200
        assert late.status_code == 429, late.text[:300]
        assert "reserved by requests in flight" in late.json()["error"]["message"]
        # settled from the generation it was carried into: nothing stays reserved
        assert wait_for(lambda: reserved(db_url, tid) == 0, timeout_s=10), reserved(db_url, tid)
    finally:
        gw.stop()
