"""The admin CLI stores what the admin API would, exactly: key names within 200 characters,
budgets as decimals (no float rounding), a key pasted with blanks around it, names in their
own letters; and it never prints a whole tg- key."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def cli(*args: str, db: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli", *args],
        env={**os.environ, "THRIFTGATE_DATABASE_URL": db},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def db(tmp_path: Path) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path / 'cli.db'}"
    assert cli("tenant", "create", "acme", db=url).returncode == 0
    return url


def test_a_key_name_over_the_apis_limit_is_refused(db: str) -> None:
    out = cli("key", "create", "acme", "--name", "n" * 300, db=db)
    assert out.returncode == 2 and out.stderr.startswith("error: name: "), out.stderr
    assert cli("key", "create", "acme", "--name", "n" * 200, db=db).returncode == 0


def test_a_budget_is_stored_to_the_digit(fresh_pg_url: str) -> None:
    db = fresh_pg_url  # Postgres NUMERIC keeps every digit (SQLite stores a REAL)
    for given in ("12345678.123456789", "9999999999.9999999999"):
        out = cli("tenant", "create", f"b{len(given)}", "--budget-usd", given, db=db)
        assert out.returncode == 0, out.stderr
    budgets = {t["name"]: t["budget_usd"] for t in json.loads(cli("tenant", "list", db=db).stdout)}
    assert Decimal(budgets["b18"]) == Decimal("12345678.123456789")
    assert Decimal(budgets["b21"]) == Decimal("9999999999.9999999999")
    for bad in ("-1", "abc", "nan"):
        out = cli("tenant", "create", "bad", "--budget-usd", bad, db=db)
        assert out.returncode == 2 and "budget_usd" in out.stderr, out.stderr


def test_a_pasted_key_with_blanks_is_revoked_and_never_printed(db: str) -> None:
    key = cli("key", "create", "acme", db=db).stdout.strip()
    out = cli("key", "revoke", f" {key} ", db=db)
    assert out.returncode == 0 and json.loads(out.stdout)["revoked_at"], out.stderr
    wrong = cli("key", "revoke", f"x{key}", db=db)
    assert wrong.returncode == 1 and key not in wrong.stderr + wrong.stdout


def test_tenant_names_are_listed_in_their_own_letters(db: str) -> None:
    assert cli("tenant", "create", "Ünïcødé-租户", db=db).returncode == 0
    out = cli("tenant", "list", db=db)
    assert "Ünïcødé-租户" in out.stdout and "\\u" not in out.stdout


def test_a_misspelt_tenant_flag_is_named(tmp_path: Path) -> None:
    """`--flags '{"cach": false}'` created the tenant with exit 0 and said nothing: its cache
    stayed on. Unknown flags are kept (operators tag tenants with them), so a name resembling
    a flag the gateway reads gets a warning naming that flag; a tag far from any does not."""
    url = f"sqlite+aiosqlite:///{tmp_path / 'flags.db'}"
    out = cli("tenant", "create", "a", "--flags", '{"cach": false, "team": "ml"}', db=url)
    assert out.returncode == 0, out.stderr
    warnings = [line for line in out.stderr.splitlines() if line.startswith("warning:")]
    assert warnings == [
        "warning: tenant flag 'cach' is not one the gateway reads (did you mean 'cache'?); "
        "it is kept as a tag and does nothing"
    ], out.stderr
