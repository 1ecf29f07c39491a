"""The dashboard in a real headless Chromium against a real gateway and a seeded Postgres ledger.

Every figure the page shows is checked against SQL over `usage_ledger` itself (not the rollup
the page reads), so a wrong trigger, query or template fails here.
"""

from __future__ import annotations

import asyncio
import csv
import io
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from gateway.api.dashboard import CHART_JS
from gateway.dashboard.seed import SeedPlan, seed_ledger
from tests.e2e.browser import chromium_missing, launch, sign_in
from tests.support import servers
from tests.support.servers import (
    ADMIN_KEY,
    GatewayServer,
    MockUpstreamServer,
    create_database,
    drop_database,
    mock_deployment,
    wait_for,
)

REASON = chromium_missing()
pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(REASON is not None, reason=REASON or ""),
]

MODELS = ["gpt-4o-mini", "gpt-4o"]
DEPLOYMENTS = ["dash-mini", "dash-4o"]
SEED_ROWS = 20_000
XSS_MODEL = "<img src=x onerror=window.pwned=1>"
XSS_ROW = f"""
INSERT INTO usage_ledger (id, request_id, tenant_id, endpoint, model, status_code, stream,
    prompt_tokens, completion_tokens, cached_tokens, usage_source, cost_usd,
    counterfactual_cost_usd, saved_cache_usd, saved_compression_usd, saved_routing_usd,
    latency_ms, cache_status, created_at)
VALUES ('xss-row', 'xss', $1, 'chat', '{XSS_MODEL}', 404, false, 0, 0, 0, 'upstream', 0, 0, 0,
        0, 0, 1, 'miss', now())
"""

# A local engine on a GPU (energy measured) and one request it served unmeasured; the mock
# deployments above never report energy.
ENERGY_DEPLOYMENT = "dash-gpu"
ENERGY_ROWS = f"""
INSERT INTO usage_ledger (id, request_id, tenant_id, endpoint, model, deployment, status_code,
    stream, prompt_tokens, completion_tokens, cached_tokens, usage_source, cost_usd,
    counterfactual_cost_usd, saved_cache_usd, saved_compression_usd, saved_routing_usd,
    latency_ms, cache_status, energy_joules, created_at)
SELECT 'energy-' || n, 'energy-' || n, $1, 'chat', 'smollm2-135m', '{ENERGY_DEPLOYMENT}', 200,
       false, 20, 30 + 20 * n, 0, 'upstream', 0, 0, 0, 0, 0, 40,
       'miss', CASE WHEN n = 4 THEN NULL ELSE 7.5 + 5 * n END, now()
FROM generate_series(1, 4) AS n
"""


def sql(url: str, query: str, *args: Any) -> list[Any]:
    """servers.sql on a worker thread: Playwright's sync API keeps an event loop running here."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(servers.sql, url, query, *args).result()


class Env:
    def __init__(self, gw: GatewayServer, db: str, tenants: dict[str, str], keys: dict[str, str]):
        self.gw = gw
        self.db = db
        self.tenants = tenants  # name -> id
        self.keys = keys  # name -> a working API key


@pytest.fixture(scope="module")
def env(session_tmp: Path, mock_upstream: MockUpstreamServer) -> Iterator[Env]:
    db = create_database("tg_e2e")
    gw = GatewayServer(
        session_tmp,
        db,
        [mock_deployment(d, m, mock_upstream) for d, m in zip(DEPLOYMENTS, MODELS, strict=True)],
    )
    try:
        tenants, keys = {}, {}
        for name in ("alpha", "beta", "gamma"):
            tid, key = gw.new_tenant(f"e2e-{name}")
            tenants[name], keys[name] = tid, key
        plan = SeedPlan(
            SEED_ROWS,
            datetime.now(UTC),
            20 * 86400,
            list(tenants.values()),
            MODELS,
            DEPLOYMENTS,
            id_prefix="e2e",
        )
        asyncio.run(seed_ledger(db.replace("postgresql+asyncpg://", "postgresql://"), plan))
        # A few real requests too: their rows come through the gateway's own ledger writer.
        client = openai.OpenAI(base_url=gw.url, api_key=keys["alpha"], max_retries=0)
        for _ in range(3):
            client.chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": "hello dashboard"}]
            )
        assert wait_for(
            lambda: (
                sql(db, "SELECT count(*) FROM usage_ledger WHERE id NOT LIKE 'e2e%'")[0][0] >= 3
            ),
            timeout_s=30,
        ), "the gateway's ledger rows never landed"
        # A client picks the model string; the pages must show it as text, never run it.
        servers.sql(db, XSS_ROW, tenants["gamma"])
        servers.sql(db, ENERGY_ROWS, tenants["alpha"])
        yield Env(gw, db, tenants, keys)
    finally:
        gw.stop()
        drop_database(db)


@pytest.fixture(scope="module")
def browser(env: Env) -> Iterator[Any]:  # after env: its set-up runs asyncio.run()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, env: Env) -> Iterator[Any]:
    context = browser.new_context(accept_downloads=True)
    pg = context.new_page()
    sign_in(pg, env.gw.base, ADMIN_KEY)
    yield pg
    context.close()


def _since(page: Any) -> datetime:
    return datetime.fromisoformat(page.get_attribute("#window-since", "data-since"))


def _value(page: Any, selector: str) -> Decimal:
    return Decimal(page.get_attribute(selector, "data-value"))


# -- sign-in ---------------------------------------------------------------------------------


def test_wrong_key_is_refused_and_pages_need_a_session(browser: Any, env: Env) -> None:
    context = browser.new_context()
    pg = context.new_page()
    pg.goto(env.gw.base + "/dashboard/")
    assert pg.url.endswith("/dashboard/login"), "an anonymous visitor must land on sign-in"
    pg.fill("#admin-key", ADMIN_KEY + "-wrong")
    pg.click("#sign-in")
    assert pg.inner_text("#login-error") == "Incorrect admin key."
    assert not [c for c in context.cookies() if c["name"] == "thriftgate_dashboard"]
    pg.goto(env.gw.base + "/dashboard/tenants")
    assert pg.url.endswith("/dashboard/login")
    context.close()
    # The key never rides in a URL: a GET with it as a parameter signs nobody in.
    r = httpx.get(env.gw.base + "/dashboard/", params={"admin_key": ADMIN_KEY})
    assert r.status_code == 303 and r.headers["location"] == "/dashboard/login"


def test_session_cookie_is_locked_down_and_logout_ends_it(page: Any, env: Env) -> None:
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "thriftgate_dashboard"]
    assert cookie["httpOnly"] is True
    assert cookie["sameSite"] == "Strict"
    assert ADMIN_KEY not in cookie["value"]
    assert sql(env.db, "SELECT count(*) FROM dashboard_sessions")[0][0] >= 1
    jar = {"thriftgate_dashboard": cookie["value"]}
    assert httpx.get(env.gw.base + "/dashboard/", cookies=jar).status_code == 200
    page.click("text=Sign out")
    page.wait_for_url(re.compile(r".*/dashboard/login$"))
    # The server forgot the session: replaying the old cookie gets the sign-in form.
    r = httpx.get(env.gw.base + "/dashboard/", cookies=jar)
    assert r.status_code == 303


def test_mutations_need_the_csrf_token_and_same_origin(page: Any, env: Env) -> None:
    (cookie,) = [c for c in page.context.cookies() if c["name"] == "thriftgate_dashboard"]
    jar = {"thriftgate_dashboard": cookie["value"]}
    url = f"{env.gw.base}/dashboard/tenants/{env.tenants['gamma']}/settings"
    r = httpx.post(url, cookies=jar, data={"budget_usd": "1"})
    assert r.status_code == 403
    page.goto(env.gw.base + f"/dashboard/tenants/{env.tenants['gamma']}")
    token = page.get_attribute("#settings-form input[name=csrf_token]", "value")
    r = httpx.post(
        url,
        cookies=jar,
        data={"budget_usd": "1", "csrf_token": token},
        headers={"Origin": "https://evil.example"},
    )
    assert r.status_code == 403
    assert (
        sql(env.db, "SELECT budget_usd FROM tenants WHERE id = $1", env.tenants["gamma"])[0][0]
        is None
    )


# -- overview --------------------------------------------------------------------------------


def test_overview_totals_and_charts_match_the_ledger(page: Any, env: Env) -> None:
    if not CHART_JS.is_file():
        pytest.fail(f"{CHART_JS} is missing: run `cd dashboard && npm ci` (the README step)")
    page.goto(env.gw.base + "/dashboard/?range=30d")
    page.wait_for_function("window.thriftgateCharts && window.thriftgateCharts.spend")
    since = _since(page)
    (row,) = sql(
        env.db,
        """SELECT count(*) AS requests, count(*) FILTER (WHERE status_code >= 400) AS errors,
                  sum(prompt_tokens + completion_tokens) AS tokens, sum(cost_usd) AS cost,
                  sum(counterfactual_cost_usd) AS cf, sum(saved_cache_usd) AS cache,
                  sum(saved_compression_usd) AS compression, sum(saved_routing_usd) AS routing,
                  count(*) FILTER (WHERE cache_status IN ('hit-exact', 'hit-semantic')) AS hits,
                  count(*) FILTER (WHERE slo_met) AS slo_met
           FROM usage_ledger WHERE created_at >= $1""",
        since,
    )
    assert row["requests"] >= SEED_ROWS
    assert _value(page, "#kpi-requests") == row["requests"]
    assert _value(page, "#kpi-errors") == row["errors"]
    assert _value(page, "#kpi-tokens") == row["tokens"]
    assert _value(page, "#kpi-spend") == row["cost"]
    assert _value(page, "#kpi-counterfactual") == row["cf"]
    assert _value(page, "#saved-cache") == row["cache"]
    assert _value(page, "#saved-compression") == row["compression"]
    assert _value(page, "#saved-routing") == row["routing"]
    assert _value(page, "#kpi-saved") == row["cache"] + row["compression"] + row["routing"]
    assert _value(page, "#kpi-cache") == row["hits"]
    assert _value(page, "#kpi-slo") == row["slo_met"]
    # What a person reads: the rounded dollar figure.
    assert page.inner_text("#kpi-spend") == f"${row['cost']:,.2f}"

    # The charts drew what the ledger holds: the stacked bars add up to the total spend,
    # one series per tenant, and the per-model bars match SQL per model.
    charts = page.evaluate(
        """() => Object.fromEntries(Object.entries(window.thriftgateCharts).map(([k, c]) => [k, {
              labels: c.data.labels,
              series: c.data.datasets.map(d => ({label: d.label, data: d.data})),
              width: c.width, height: c.height}]))"""
    )
    spend = charts["spend"]
    assert sum(sum(s["data"]) for s in spend["series"]) == pytest.approx(float(row["cost"]))
    assert {s["label"] for s in spend["series"]} == {f"e2e-{n}" for n in env.tenants}
    per_model = dict(
        sql(
            env.db,
            """SELECT model, sum(cost_usd) FROM usage_ledger
                                     WHERE created_at >= $1 GROUP BY model""",
            since,
        )
    )
    model_chart = dict(
        zip(charts["byModel"]["labels"], charts["byModel"]["series"][0]["data"], strict=True)
    )
    assert model_chart == pytest.approx({m: float(v) for m, v in per_model.items()})
    savings = charts["savings"]["series"]
    assert [s["label"] for s in savings] == [
        "Paid",
        "Saved by cache",
        "Saved by compression",
        "Saved by routing",
    ]
    assert sum(s["data"][0] for s in savings) == pytest.approx(float(row["cf"]))
    for name, chart in charts.items():
        assert chart["width"] > 100 and chart["height"] > 100, name
    # Something was painted on the canvas (not a blank box).
    painted = page.evaluate(
        """() => { const c = document.getElementById('chart-spend');
                   const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
                   let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i]) n++; return n; }"""
    )
    assert painted > 1000


def test_hourly_view_keeps_the_totals(page: Any, env: Env) -> None:
    page.goto(env.gw.base + "/dashboard/?range=7d&unit=day")
    daily = _value(page, "#kpi-spend")
    page.select_option("select[name=unit]", "hour")
    page.wait_for_url(re.compile(r".*unit=hour.*"))
    page.wait_for_function("window.thriftgateCharts && window.thriftgateCharts.spend")
    assert _value(page, "#kpi-spend") == daily
    labels = page.evaluate("window.thriftgateCharts.spend.data.labels")
    assert len(labels) >= 6 * 24 and re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:00", labels[-1])


# -- tenants ---------------------------------------------------------------------------------


def test_tenant_page_figures_and_budget_warning(page: Any, env: Env) -> None:
    tid = env.tenants["beta"]
    # 9 dollars of 10 spent this month: the page must warn.
    sql(
        env.db,
        """INSERT INTO budget_counters (tenant_id, period_start, spent_usd, reserved_usd,
                                                updated_at)
                   VALUES ($1, date_trunc('month', now(), 'UTC'), 9, 0, now())
                   ON CONFLICT (tenant_id, period_start) DO UPDATE SET spent_usd = 9""",
        tid,
    )
    page.goto(env.gw.base + f"/dashboard/tenants/{tid}?range=30d")
    page.fill("#budget-usd", "10")
    page.click("#save-settings")
    page.wait_for_selector("#saved-note")
    assert sql(env.db, "SELECT budget_usd FROM tenants WHERE id = $1", tid)[0][0] == Decimal(10)
    assert page.locator("#tenant-budget .budget.level-warn").count() == 1
    assert "90%" in page.inner_text("#tenant-budget")
    since = _since(page)
    (row,) = sql(
        env.db,
        """SELECT count(*) AS n, sum(cost_usd) AS cost FROM usage_ledger
                            WHERE tenant_id = $1 AND created_at >= $2""",
        tid,
        since,
    )
    assert _value(page, "#kpi-requests") == row["n"]
    assert _value(page, "#kpi-spend") == row["cost"]
    top = sql(
        env.db,
        """SELECT model, sum(cost_usd) AS c FROM usage_ledger
                         WHERE tenant_id = $1 AND created_at >= $2
                         GROUP BY model ORDER BY c DESC LIMIT 1""",
        tid,
        since,
    )[0]
    assert page.inner_text("#top-models tr:first-child th") == top["model"]
    # A bad value is refused with a message, and nothing changes.
    page.fill("#budget-usd", "-3")
    page.click("#save-settings")
    assert "non-negative" in page.inner_text("#form-error")
    assert sql(env.db, "SELECT budget_usd FROM tenants WHERE id = $1", tid)[0][0] == Decimal(10)


def test_create_and_revoke_a_key(page: Any, env: Env) -> None:
    tid = env.tenants["gamma"]
    page.goto(env.gw.base + f"/dashboard/tenants/{tid}")
    page.fill("#create-key-form input[name=name]", "browser-made")
    page.click("#create-key")
    key = page.inner_text("#new-key-value").strip()
    assert key.startswith("tg-") and key not in page.url
    client = openai.OpenAI(base_url=env.gw.url, api_key=key, max_retries=0)
    ok = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
    )
    assert ok.choices[0].message.content
    # Shown once: a reload lists the key by prefix only.
    page.goto(env.gw.base + f"/dashboard/tenants/{tid}")
    assert key not in page.content()
    row = page.locator("#keys-table tr", has_text="browser-made")
    page.once("dialog", lambda d: d.accept())
    row.locator("button", has_text="Revoke").click()
    page.wait_for_load_state()
    assert page.locator("#keys-table tr.revoked", has_text="browser-made").count() == 1
    assert (
        sql(env.db, "SELECT revoked_at IS NOT NULL FROM api_keys WHERE name = 'browser-made'")[0][0]
        is True
    )
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}]
        )


def test_delete_a_tenant(page: Any, env: Env) -> None:
    tid, key = env.gw.new_tenant("e2e-doomed")
    client = openai.OpenAI(base_url=env.gw.url, api_key=key, max_retries=0)
    ask = [{"role": "user", "content": "hi"}]
    client.chat.completions.create(model="gpt-4o-mini", messages=ask)
    page.goto(env.gw.base + f"/dashboard/tenants/{tid}")
    page.once("dialog", lambda d: d.dismiss())  # a second thought: nothing happens
    page.click("#delete-tenant")
    assert sql(env.db, "SELECT deleted_at FROM tenants WHERE id = $1", tid)[0][0] is None
    page.once("dialog", lambda d: d.accept())
    page.click("#delete-tenant")
    page.wait_for_url("**/dashboard/tenants?deleted=1")
    assert page.locator("#deleted-note").is_visible()
    assert page.locator("a", has_text="e2e-doomed").count() == 0
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o-mini", messages=ask)
    # Its page still shows what it spent, says it is deleted, and offers no changes.
    page.goto(env.gw.base + f"/dashboard/tenants/{tid}")
    assert "Deleted" in page.inner_text("#deleted-note")
    for form in ("#settings-form", "#create-key-form", "#delete-tenant-form"):
        assert page.locator(form).count() == 0


# -- requests --------------------------------------------------------------------------------


def test_request_log_filters_and_csv_export(page: Any, env: Env) -> None:
    tid = env.tenants["alpha"]
    page.goto(env.gw.base + "/dashboard/requests?range=30d")
    page.fill("input[name=tenant]", "e2e-alpha")  # typed: a name (or an id)
    page.select_option("select[name=cache_status]", "hit-exact")
    page.select_option("select[name=model]", "gpt-4o")
    page.click("#apply-filters")
    page.wait_for_url(re.compile(r".*cache_status=hit-exact.*"))
    cells = page.locator("#requests-table tbody tr td:nth-child(6)").all_inner_texts()
    assert cells and set(cells) == {"hit-exact"}
    assert set(page.locator("#requests-table tbody tr td:nth-child(3)").all_inner_texts()) == {
        "gpt-4o"
    }
    since = _since(page)
    with page.expect_download() as info:
        page.click("#export-csv")
    text = Path(info.value.path()).read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    expected = sql(
        env.db,
        """SELECT id, request_id, cost_usd FROM usage_ledger
                              WHERE tenant_id = $1 AND cache_status = 'hit-exact'
                                AND model = 'gpt-4o' AND created_at >= $2""",
        tid,
        since,
    )
    assert len(rows) == len(expected) > 50  # more than one page: the export is not paginated
    assert {r["request_id"] for r in rows} == {e["request_id"] for e in expected}
    assert sum(Decimal(r["cost_usd"]) for r in rows) == sum(e["cost_usd"] for e in expected)
    assert len(cells) == 50 and page.locator("#next-page").count() == 1


def test_deployments_show_price_share_and_latency(page: Any, env: Env) -> None:
    page.goto(env.gw.base + "/dashboard/deployments?range=30d")
    since = _since(page)
    shares = dict(
        sql(
            env.db,
            """SELECT deployment, count(*) FROM usage_ledger
                                 WHERE created_at >= $1 AND deployment IS NOT NULL
                                 GROUP BY deployment""",
            since,
        )
    )
    total = sum(shares.values())
    for dep in DEPLOYMENTS:
        row = page.locator(f"#deployments-table tr[data-deployment='{dep}']")
        text = row.inner_text()
        assert "0.15 / 0.6" in text  # the configured price per million tokens
        assert f"{shares[dep] / total * 100:.1f}%" in text
        assert re.search(r"\d ms", text)


def test_tokens_per_watt_hour_where_measured_and_not_measured_elsewhere(
    page: Any, env: Env
) -> None:
    page.goto(env.gw.base + "/dashboard/deployments?range=30d")
    since = _since(page)
    (row,) = sql(
        env.db,
        """SELECT sum(completion_tokens) FILTER (WHERE energy_joules IS NOT NULL) AS tokens,
                  sum(energy_joules) AS joules, count(energy_joules) AS measured
           FROM usage_ledger WHERE deployment = $1 AND created_at >= $2""",
        ENERGY_DEPLOYMENT,
        since,
    )
    assert row["measured"] == 3  # the unmeasured row counts for neither tokens nor joules
    expected = f"{row['tokens'] / (row['joules'] / 3600):,.0f} tok/Wh"
    gpu = page.locator(f"#deployments-table tr[data-deployment='{ENERGY_DEPLOYMENT}'] td.energy")
    assert gpu.inner_text() == expected
    for dep in DEPLOYMENTS:  # cloud deployments: said, not invented
        cell = page.locator(f"#deployments-table tr[data-deployment='{dep}'] td.energy")
        assert cell.inner_text() == "not measured"

    page.goto(env.gw.base + "/dashboard/?range=30d")
    by_dep = page.locator(
        "#deployment-table tr", has=page.locator(f"th:text-is('{ENERGY_DEPLOYMENT}')")
    )
    assert by_dep.locator("td.energy").inner_text() == expected
    assert "3 of 4 requests" in by_dep.locator("td.energy").get_attribute("title")
    by_model = page.locator("#model-table tr", has=page.locator("th:text-is('gpt-4o')"))
    assert by_model.locator("td.energy").inner_text() == "not measured"


def test_client_chosen_strings_are_shown_not_run(page: Any, env: Env) -> None:
    for path in ("/dashboard/?range=24h", "/dashboard/requests?range=24h&status=404"):
        page.goto(env.gw.base + path)
        page.wait_for_load_state("networkidle")
        assert page.evaluate("window.pwned") is None
        assert page.locator("img[src=x]").count() == 0
    assert page.locator("#requests-table td", has_text=XSS_MODEL).count() == 1
