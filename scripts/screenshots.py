"""Render a PNG of every dashboard page, to look at by eye.

    python scripts/screenshots.py --demo --out build/screenshots
    python scripts/screenshots.py --base-url http://127.0.0.1:8000 --out shots  # key from env

`--demo` makes a throwaway Postgres database, seeds a synthetic ledger (100,000 rows over
30 days), starts a gateway on it and drops everything afterwards. Otherwise the running
gateway at --base-url is used with THRIFTGATE_ADMIN_KEY.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gateway.dashboard.seed import SeedPlan, seed_ledger
from tests.e2e.browser import chromium_missing, launch, sign_in

DEMO_MODELS = ["gpt-4o-mini", "gpt-4o", "llama-3.1-8b", "claude-3-5-haiku"]
DEMO_DEPLOYMENTS = ["openai-mini", "openai-4o", "local-llama", "anthropic-haiku"]
DEMO_PRICES = [("0.15", "0.60"), ("2.50", "10.00"), ("0.05", "0.10"), ("0.80", "4.00")]


@contextlib.contextmanager
def demo_gateway(rows: int) -> Iterator[tuple[str, str]]:
    from tests.support import servers

    tmp = Path(tempfile.mkdtemp(prefix="tg-shots-"))
    url = servers.create_database("tg_shots")
    gw = None
    try:
        deployments = [
            {
                "name": dep,
                "model": model,
                "provider": "openai_compatible",
                "upstream_model": model,
                "api_base": "http://127.0.0.1:9/v1",
                "input_cost_per_mtok": float(price[0]),
                "output_cost_per_mtok": float(price[1]),
            }
            for dep, model, price in zip(
                DEMO_DEPLOYMENTS,
                DEMO_MODELS,
                DEMO_PRICES,
                strict=True,
            )
        ]
        gw = servers.GatewayServer(tmp, url, deployments)
        tenant_ids = []
        for name, budget in [
            ("search", 400),
            ("support-bot", 120),
            ("analytics", 60),
            ("sales", None),
            ("research", 150),
            ("mobile-app", 30),
        ]:
            tid, _ = gw.new_tenant(name, **({"budget_usd": budget} if budget else {}))
            tenant_ids.append(tid)
        dsn = url.replace("postgresql+asyncpg://", "postgresql://")
        plan = SeedPlan(
            rows,
            datetime.now(UTC),
            30 * 86400,
            tenant_ids,
            DEMO_MODELS,
            DEMO_DEPLOYMENTS,
            prices=[(Decimal(i), Decimal(o)) for i, o in DEMO_PRICES],
        )
        asyncio.run(seed_ledger(dsn, plan))
        # Spend this month into the budget counters, so the budget bars show real use.
        servers.sql(
            url,
            """INSERT INTO budget_counters (tenant_id, period_start, spent_usd, reserved_usd,
                                           updated_at)
               SELECT tenant_id, date_trunc('month', now(), 'UTC'), sum(cost_usd), 0, now()
               FROM usage_ledger WHERE created_at >= date_trunc('month', now(), 'UTC')
               GROUP BY tenant_id
               ON CONFLICT (tenant_id, period_start)
               DO UPDATE SET spent_usd = EXCLUDED.spent_usd""",
        )
        # Two tenants close to and past their budget, to show the warning colours.
        for name, share in (("mobile-app", "1.1"), ("analytics", "0.95")):
            servers.sql(
                url,
                f"""UPDATE tenants t SET budget_usd = round(c.spent_usd * {share}, 2)
                    FROM budget_counters c WHERE c.tenant_id = t.id AND t.name = $1""",
                name,
            )
        yield gw.base, servers.ADMIN_KEY
    finally:
        if gw is not None:
            gw.stop()
        servers.drop_database(url)


def shoot(base: str, admin_key: str, out: Path) -> list[Path]:
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written = []
    with sync_playwright() as p:
        browser = launch(p)
        page = browser.new_page(viewport={"width": 1440, "height": 900})
        page.goto(base + "/dashboard/login")
        page.fill("#admin-key", "not-the-key")
        page.click("#sign-in")
        page.wait_for_selector("#login-error")
        written.append(out / "login-refused.png")
        page.screenshot(path=str(written[-1]))
        sign_in(page, base, admin_key)
        first_tenant = None
        for name, path in [
            ("overview", "/dashboard/?range=30d"),
            ("overview-24h", "/dashboard/?range=24h"),
            ("tenants", "/dashboard/tenants?range=30d"),
            ("tenant", None),
            ("requests", "/dashboard/requests?range=7d"),
            ("deployments", "/dashboard/deployments?range=7d"),
        ]:
            if path is None:
                path = f"/dashboard/tenants/{first_tenant}?range=30d"
            page.goto(base + path)
            if name == "tenants":
                first_tenant = page.get_attribute("#tenants-table tbody tr", "data-tenant")
            page.wait_for_load_state("networkidle")
            written.append(out / f"{name}.png")
            page.screenshot(path=str(written[-1]), full_page=True)
        browser.close()
    return written


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base-url", default="http://127.0.0.1:8000")
    ap.add_argument("--out", type=Path, default=Path("build/screenshots"))
    ap.add_argument("--demo", action="store_true", help="seed a throwaway database and gateway")
    ap.add_argument("--rows", type=int, default=100_000, help="ledger rows for --demo")
    args = ap.parse_args()
    reason = chromium_missing()
    if reason:
        sys.stderr.write(reason + "\n")
        return 2
    if args.demo:
        with demo_gateway(args.rows) as (base, key):
            paths = shoot(base, key, args.out)
    else:
        key = os.environ.get("THRIFTGATE_ADMIN_KEY")
        if not key:
            sys.stderr.write("set THRIFTGATE_ADMIN_KEY (or use --demo)\n")
            return 2
        paths = shoot(args.base_url.rstrip("/"), key, args.out)
    for p in paths:
        sys.stdout.write(f"{p}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
