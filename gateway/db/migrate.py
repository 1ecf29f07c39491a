"""Run Alembic migrations programmatically (`thriftgate migrate`, and `serve` on start)."""

from __future__ import annotations

import asyncio
import functools
import logging
from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection

from gateway.db.session import (
    BUDGET_POOL_MAX,
    CONNECTIONS_PER_WORKER,
    POOL_SIZE,
    UnsupportedDatabase,
    asyncpg_dsn,
    create_engine,
    is_sqlite,
    normalise_url,
    postgres_connect_args,
    transaction_pooled,
)

ROOT = Path(__file__).resolve().parents[2]

log = logging.getLogger("thriftgate.db")

NEWER_SCHEMA = (
    "the database is at migration %s, which this gateway does not know (its newest is %s): "
    "a newer gateway migrated it, so this one serves on it without migrating (during a "
    "rolling upgrade, an older replica that restarts); upgrade this gateway to match"
)


def alembic_config(database_url: str) -> Config:
    cfg = Config(str(ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(ROOT / "migrations"))
    cfg.attributes["database_url"] = database_url
    return cfg


async def upgrade_head(database_url: str) -> None:
    """Apply this code's migrations; a database already past them (migrated by a newer
    gateway) is left as it is, said in one line. An older replica restarting mid-upgrade (a
    crash, an autoscaler) stopped on Alembic's "Can't locate revision" traceback, exit 1,
    again at each restart, while the replicas beside it served on the same schema."""
    await _run(database_url, _upgrade_unless_newer)


def _upgrade_unless_newer(cfg: Config) -> None:
    from alembic.runtime.migration import MigrationContext

    current = MigrationContext.configure(cfg.attributes["connection"]).get_current_revision()
    head, known = known_revisions()
    if current is not None and current not in known:
        log.warning(NEWER_SCHEMA, current, head)
        return
    command.upgrade(cfg, "head")


async def upgrade_to(database_url: str, revision: str) -> None:
    """Upgrade to one revision (tests of a later migration upgrading a populated database)."""
    await _run(database_url, lambda cfg: command.upgrade(cfg, revision))


async def downgrade_base(database_url: str) -> None:
    await _run(database_url, lambda cfg: command.downgrade(cfg, "base"))


TRANSACTION_POOLED = (
    "it reaches Postgres through a pooler in transaction mode (PgBouncer "
    "pool_mode=transaction?), which breaks the gateway's prepared statements and LISTEN (key "
    "revocation); point THRIFTGATE_DATABASE_URL at a pool in session mode (pool_mode=session) "
    "or at Postgres itself: the gateway pools its own connections"
)


async def check_session_pooling(database_url: str) -> None:
    """Raise UnsupportedDatabase if the URL reaches Postgres through a transaction-mode pooler.

    (`session.transaction_pooled`: a connection's backend changes under it.) Without this
    check, such a URL started, and the first statements failed on prepared statements another
    client had left there ("__asyncpg_stmt_1__ already exists")."""
    import asyncpg

    url = make_url(normalise_url(database_url))
    if is_sqlite(str(url.drivername)):
        return
    url, args = postgres_connect_args(url)
    args.pop("prepared_statement_cache_size", None)  # SQLAlchemy's, not asyncpg's
    dsn, more = asyncpg_dsn(url)
    args.update(more, statement_cache_size=0)  # no named statements to collide with
    try:
        first = await asyncpg.connect(dsn, **args)
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError, TimeoutError):
        # no such database or role, a refused startup parameter...: the engine's connection
        # says so next, in the one line the CLI gives database errors (here, a traceback)
        return
    try:
        second = await asyncpg.connect(dsn, **args)
        try:
            pooled = await transaction_pooled(first, second)
        finally:
            await second.close()
    finally:
        await first.close()
    if pooled:
        raise UnsupportedDatabase(TRANSACTION_POOLED)


def check_serving_sync(database_url: str) -> None:
    """`serve` without migrations: refuse a transaction-mode pooler, and a database that lacks
    migrations this code needs (every request was a 500). A database it cannot reach is no
    reason to refuse to start: the gateway serves and spools through an outage."""
    try:
        asyncio.run(asyncio.wait_for(_check_serving(database_url), timeout=15))
    except UnsupportedDatabase:
        raise
    except Exception:  # unreachable now: the workers retry and say so
        return


async def _check_serving(database_url: str) -> None:
    await check_session_pooling(database_url)
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            revision = await database_revision(conn)
    finally:
        await engine.dispose()
    if schema_behind(revision):
        raise UnsupportedDatabase(
            f"it is at migration {revision or '(none)'}, this gateway needs "
            f"{known_revisions()[0]}: run `thriftgate migrate` (with a role that may create "
            "tables), or let the gateway migrate on start (THRIFTGATE_MIGRATE_ON_START=true)"
        )


def connection_shortfall_sync(database_url: str, workers: int) -> str | None:
    """A line saying that `workers` workers may need more connections than Postgres (or the
    role's CONNECTION LIMIT) has free, or None. Short of them, requests are still served, but
    budgets fail open and ledger rows wait in the spool: said at start, not found under load."""
    try:
        return asyncio.run(asyncio.wait_for(_shortfall(database_url, workers), timeout=15))
    except Exception:  # unreachable or not Postgres: nothing to say now
        return None


CAPACITY = text(
    "SELECT current_setting('max_connections')::int AS max,"
    " current_setting('max_connections')::int"
    "  - current_setting('superuser_reserved_connections')::int"
    "  - (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend') AS free,"
    " r.rolconnlimit AS role_limit,"
    " (SELECT count(*) FROM pg_stat_activity WHERE usename = current_user) AS role_used"
    " FROM pg_roles r WHERE r.rolname = current_user"
)


async def _shortfall(database_url: str, workers: int) -> str | None:
    engine = create_engine(database_url, pool_size=1)
    try:
        if engine.dialect.name != "postgresql":
            return None
        async with engine.connect() as conn:
            row = (await conn.execute(CAPACITY)).mappings().one()
    finally:
        await engine.dispose()
    need = workers * CONNECTIONS_PER_WORKER
    # this check's own connection is gone once the workers start
    free = int(row["free"]) + 1
    where = f"max_connections is {row['max']}, {max(free, 0)} free"
    if row["role_limit"] >= 0:
        role_free = int(row["role_limit"]) - int(row["role_used"]) + 1
        if role_free < free:
            free, where = role_free, f"the role's CONNECTION LIMIT is {row['role_limit']}, "
            where += f"{max(free, 0)} free"
    if need <= free:
        return None
    return (
        f"{workers} worker(s) may hold up to {need} connections ({CONNECTIONS_PER_WORKER} each: "
        f"{2 * POOL_SIZE} pooled, {BUDGET_POOL_MAX} for budget checks, 2 for key events) and "
        f"{where}; short of connections, budgets fail open and ledger rows wait in the spool: "
        "raise it, or run fewer workers"
    )


async def _run(database_url: str, fn) -> None:  # type: ignore[no-untyped-def]
    await check_session_pooling(database_url)
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:

            def run(sync_conn) -> None:  # type: ignore[no-untyped-def]
                cfg = alembic_config(database_url)
                cfg.attributes["connection"] = sync_conn
                fn(cfg)

            await conn.run_sync(run)
            await conn.commit()
    finally:
        await engine.dispose()


@functools.cache
def known_revisions() -> tuple[str, frozenset[str]]:
    """This code's head revision, and every revision it knows (a database at one it does not
    know was migrated by a newer gateway, whose migrations this one's code tolerates)."""
    from alembic.script import ScriptDirectory

    scripts = ScriptDirectory.from_config(alembic_config(""))
    head = scripts.get_current_head()
    assert head is not None
    return head, frozenset(rev.revision for rev in scripts.walk_revisions())


def schema_behind(revision: str | None) -> bool:
    """Whether a database at `revision` (None: never migrated) lacks migrations this code needs.
    With THRIFTGATE_MIGRATE_ON_START=false, such a database served: every request a 500 and
    hundreds of traceback lines, with /readyz ok."""
    head, known = known_revisions()
    return revision is None or (revision != head and revision in known)


async def database_revision(conn: AsyncConnection) -> str | None:
    """The database's Alembic revision; None if it was never migrated. As cheap as `SELECT 1`
    on a migrated database (`/readyz` asks it); after None, `conn`'s transaction is aborted."""
    try:
        row = (await conn.execute(text("SELECT version_num FROM alembic_version"))).first()
    except DBAPIError as exc:
        if not missing_table(exc):
            raise
        return None
    return str(row[0]) if row is not None else None


def missing_table(exc: DBAPIError) -> bool:
    return _sqlstate(exc) == "42P01" or "no such table" in str(exc.orig)


def upgrade_head_sync(database_url: str) -> None:
    asyncio.run(upgrade_head(database_url))


async def check_writable(database_url: str) -> None:
    """Raise the database's own error if it cannot be written (a SQLite file the user cannot
    write, a read-only replica or transaction): one write, rolled back."""
    engine = create_engine(database_url, pool_size=1)
    try:
        async with engine.connect() as conn:
            try:
                await conn.execute(text("UPDATE alembic_version SET version_num = version_num"))
            except DBAPIError as exc:
                if _sqlstate(exc) != INSUFFICIENT_PRIVILEGE:
                    raise
                # A role that may not write alembic_version (an owner migrates, the gateway
                # runs with least privilege) was refused at start. What it must write are
                # its own tables.
                await conn.rollback()
                if not await conn.scalar(text(MAY_WRITE_LEDGER)):
                    raise UnsupportedDatabase(CANNOT_WRITE) from None
            await conn.rollback()
    finally:
        await engine.dispose()


INSUFFICIENT_PRIVILEGE = "42501"
MAY_WRITE_LEDGER = (  # several privileges in one call: true if any is held
    "SELECT has_table_privilege('usage_ledger', 'INSERT')"
    " AND has_table_privilege('usage_ledger', 'UPDATE')"
)
CANNOT_WRITE = (
    "its role may not write the gateway's tables (INSERT, UPDATE on usage_ledger): grant it "
    "SELECT, INSERT, UPDATE, DELETE on them (README: Production Postgres)"
)


def _sqlstate(exc: DBAPIError) -> str | None:
    state = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return state if isinstance(state, str) else None


def check_writable_sync(database_url: str) -> None:
    asyncio.run(check_writable(database_url))
