"""Async engine and session factory; built in the app lifespan, never at import time."""

from __future__ import annotations

import logging
import sys
import time
from typing import Any
from urllib.parse import urlencode, urlsplit

from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

DRIVERS = ("postgresql+asyncpg", "sqlite+aiosqlite")


class UnsupportedDatabase(ValueError):
    """THRIFTGATE_DATABASE_URL names a database the gateway cannot use (mysql://...): said in
    one line, instead of the traceback of a missing driver module."""


class FailureLog:
    """The log of something retried while the database is down (a poller, a writer).

    Logging every failure flooded the log with a traceback a second (2,485 lines in 8 s of an
    outage). The first failure is logged with its traceback; while it lasts, at most one line
    every `every_s` (the count and the last error's type); once it works again, one line."""

    def __init__(
        self, logger: logging.Logger, what: str, *, level: int = logging.WARNING,
        every_s: float = 60.0,
    ) -> None:  # fmt: skip
        self.logger, self.what, self.level, self.every_s = logger, what, level, every_s
        self._since: float | None = None  # monotonic time of the outage's first failure
        self._last_line = 0.0
        self._failures = 0

    def failed(self) -> None:
        """Call from the `except` block that caught the failure."""
        now = time.monotonic()
        self._failures += 1
        if self._since is None:
            self._since = self._last_line = now
            self.logger.log(self.level, "%s failed", self.what, exc_info=True)
        elif now - self._last_line >= self.every_s:
            self._last_line = now
            exc = sys.exc_info()[1]
            self.logger.log(
                self.level,
                "%s still failing: %d failures in %.0f s, the last %s",
                self.what,
                self._failures,
                now - self._since,
                type(exc).__name__ if exc is not None else "unknown",
            )

    def succeeded(self) -> None:
        if self._since is None:
            return
        self.logger.warning(
            "%s works again after %.0f s (%d failures)",
            self.what,
            time.monotonic() - self._since,
            self._failures,
        )
        self._since, self._failures = None, 0


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def normalise_url(url: str) -> str:
    """Accept plain `postgresql://` / `postgres://` and `sqlite:///` URLs and pick async drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://") :]
    if url.startswith("postgresql://"):
        url = "postgresql+asyncpg://" + url[len("postgresql://") :]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    if url.startswith("postgresql+asyncpg://"):
        url = _multihost_as_query(url)
    if url.startswith("postgresql+asyncpg://") and "sslmode=" in url:
        # Cloud providers hand out libpq URLs (`?sslmode=require`); asyncpg calls it `ssl`
        # and takes the same modes. Passed on as is, connect() fails with a TypeError.
        parsed = make_url(url)
        if "ssl" not in parsed.query:
            mode = parsed.query["sslmode"]
            parsed = parsed.difference_update_query(["sslmode"]).update_query_dict({"ssl": mode})
            url = parsed.render_as_string(hide_password=False)
    return url


def _multihost_as_query(url: str) -> str:
    """libpq's several hosts (`postgresql://u@db1:5432,db2:5432/app?target_session_attrs=
    read-write`, how a Patroni or multi-AZ primary is named for failover) in SQLAlchemy's form
    (`postgresql://u@/app?host=db1:5432&host=db2:5432`); the port `5432,db2:5432` was an
    unparsable URL."""
    parts = urlsplit(url)
    userinfo, at, hostlist = parts.netloc.rpartition("@")
    if "," not in hostlist:
        return url
    hosts = urlencode([("host", host) for host in hostlist.split(",")])
    query = f"{hosts}&{parts.query}" if parts.query else hosts
    return f"{parts.scheme}://{userinfo}{at}{parts.path}?{query}"


def upsert_insert(dialect_name: str, target: Any) -> Any:
    """`INSERT` with `ON CONFLICT` support for the engine's dialect (Postgres or SQLite)."""
    if dialect_name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(target)
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    return pg_insert(target)


def check_supported(url: str) -> None:
    """Refuse a URL of another database before SQLAlchemy looks for its driver, and a URL
    parameter or port the driver would fail on with a long traceback. Only the scheme and
    the parameter's name are named: the rest may hold a password."""
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
        parsed.port  # noqa: B018 - parses the port: `:abc` raises ValueError here
    except ArgumentError:
        return  # unparsable: SQLAlchemy's own error says so
    except ValueError:
        raise UnsupportedDatabase("the port in the URL is not a number") from None
    driver = parsed.drivername
    if driver not in DRIVERS:
        raise UnsupportedDatabase(
            f"only postgresql:// (postgresql+asyncpg://) and sqlite:/// (sqlite+aiosqlite:///) "
            f"databases are supported, not {driver}://"
        )
    if driver == "postgresql+asyncpg":
        postgres_connect_args(parsed)


# libpq URL parameters (`?connect_timeout=10&application_name=x`) that asyncpg takes under
# another name or shape, and those asyncpg takes as they are; any other one is refused.
# libpq's TLS files (`?sslmode=verify-full&sslrootcert=/etc/ssl/rds-ca.pem`, as managed
# Postgres documents): asyncpg reads them only from a DSN, so they reach it in one.
SSL_FILE_PARAMETERS = ("sslrootcert", "sslcert", "sslkey", "sslcrl", "sslpassword")
POSTGRES_URL_PARAMETERS = (
    "ssl", "sslmode", "connect_timeout", "application_name", "target_session_attrs",
    "passfile", "prepared_statement_cache_size", "options", "host", "port",
    *SSL_FILE_PARAMETERS,
)  # fmt: skip


def postgres_connect_args(url: URL) -> tuple[URL, dict[str, Any]]:
    """The URL without the parameters asyncpg cannot take from it, and the connect arguments
    they become: `connect_timeout` (libpq: seconds to connect) is asyncpg's `timeout`, and
    `application_name` goes in `server_settings`. `prepared_statement_cache_size` (SQLAlchemy's)
    leaves the URL too: the gateway's raw asyncpg connections (budget reservations, the
    key-event listener) are made from the engine's URL, and asyncpg sends a parameter it does
    not know to the server as a setting, which refused it: budgets were skipped (fail-open)
    and revocations waited for the key-cache TTL. libpq's `options` (`-csearch_path=tg`) stays
    in the URL, which asyncpg's own DSN parsing sends as the startup packet's `options`;
    `create_engine` hands it to SQLAlchemy's connections the same way."""
    unknown = sorted(set(url.query) - set(POSTGRES_URL_PARAMETERS))
    if "statement_cache_size" in unknown:  # asyncpg's advice for PgBouncer's transaction mode
        raise UnsupportedDatabase(
            "URL parameter 'statement_cache_size' is not supported: it would not make a pooler "
            "in transaction mode work (LISTEN cannot); point the URL at a pool in session mode "
            "(PgBouncer pool_mode=session) or at Postgres itself"
        )
    if unknown:
        raise UnsupportedDatabase(
            f"URL parameter {unknown[0]!r} is not supported "
            f"(supported: {', '.join(POSTGRES_URL_PARAMETERS)})"
        )
    args: dict[str, Any] = {}
    if "connect_timeout" in url.query:
        raw = url.query["connect_timeout"]
        try:
            seconds = float(raw if isinstance(raw, str) else raw[-1])
        except ValueError:
            seconds = -1.0
        if not 0 < seconds < 1e6:
            raise UnsupportedDatabase("URL parameter connect_timeout must be a positive number")
        args["timeout"] = seconds
    if "application_name" in url.query:
        name = url.query["application_name"]
        args["server_settings"] = {"application_name": name if isinstance(name, str) else name[-1]}
    if "prepared_statement_cache_size" in url.query:
        raw = _last(url.query["prepared_statement_cache_size"])
        if not raw.isdigit():
            raise UnsupportedDatabase(
                "URL parameter prepared_statement_cache_size must be a whole number"
            )
        args["prepared_statement_cache_size"] = int(raw)
    # application_name stays in the URL for the raw connections (asyncpg's DSN sends it as
    # the setting it is); without it, their rows in pg_stat_activity were anonymous
    moved = ["connect_timeout", "prepared_statement_cache_size"]
    return url.difference_update_query(moved), args


def _last(value: str | tuple[str, ...]) -> str:
    return value if isinstance(value, str) else value[-1]


def asyncpg_dsn(url: URL) -> tuple[str, dict[str, Any]]:
    """A plain asyncpg DSN for a raw connection made from the engine's URL, and the connect
    arguments it needs: `?ssl=` (what `sslmode` became) is an argument, since asyncpg sends
    an unknown DSN parameter to the server as a setting, and Postgres refuses `ssl`."""
    args: dict[str, Any] = {}
    if "ssl" in url.query:
        args["ssl"] = _last(url.query["ssl"])
        url = url.difference_update_query(["ssl"])
    return url.set(drivername="postgresql").render_as_string(hide_password=False), args


async def backend_pid(conn: Any) -> int:
    """The server process behind an asyncpg connection, asked in a transaction (through a
    transaction pooler, the statement's Parse and Bind could reach different servers)."""
    async with conn.transaction():
        return int(await conn.fetchval("SELECT pg_backend_pid()"))


async def transaction_pooled(first: Any, second: Any, rounds: int = 3) -> bool:
    """Whether two asyncpg connections (statement_cache_size=0) reach Postgres through a pooler
    in transaction mode (PgBouncer `pool_mode=transaction`): a connection's backend changes
    under it. Each holding a transaction, `first` then `second` give theirs back; a pooler
    hands `first` the server `second` released last. Directly or in session mode, a
    connection keeps its backend, so the answer is never yes there."""
    for _ in range(rounds):  # on an error, the caller closes both connections
        held_first, held_second = first.transaction(), second.transaction()
        await held_first.start()
        pid = int(await first.fetchval("SELECT pg_backend_pid()"))
        await held_second.start()
        await second.fetchval("SELECT pg_backend_pid()")
        await held_first.rollback()
        await held_second.rollback()
        if await backend_pid(first) != pid:
            return True
    return False


POOL_SIZE = 20  # a worker's SQLAlchemy pool, and as many again in overflow
BUDGET_POOL_MAX = 16  # the raw budget-reservation pool's max_size (budgets.py)
# what one worker may hold at once: its pool at full overflow, the budget pool, the key-event
# listener and the second connection its pooler check opens
CONNECTIONS_PER_WORKER = 2 * POOL_SIZE + BUDGET_POOL_MAX + 2


WAL_LIMIT_BYTES = 64 * 1024 * 1024  # SQLite's write-ahead log, truncated back to this


def create_engine(url: str, *, pool_size: int = POOL_SIZE) -> AsyncEngine:
    url = normalise_url(url)
    check_supported(url)
    # A statement's error text would carry its parameters ("[parameters: (...)]"): prompts and
    # answers (cache entries, Responses items), key hashes. Tracebacks of a database outage are
    # logged at WARNING; they must not copy tenants' data into the log.
    kwargs: dict[str, Any] = {"hide_parameters": True}
    target: str | URL = url
    if is_sqlite(url):
        kwargs["connect_args"] = {"timeout": 30}
    else:
        target, kwargs["connect_args"] = postgres_connect_args(make_url(url))
        kwargs.update(
            pool_size=pool_size, max_overflow=pool_size, pool_pre_ping=True, pool_recycle=1800
        )
    engine = create_async_engine(target, **kwargs)
    if not is_sqlite(url):

        @event.listens_for(engine.sync_engine, "do_connect")
        def _startup_options(
            _dialect: Any, _rec: Any, _cargs: Any, cparams: dict[str, Any]
        ) -> None:
            # libpq's `options` (`-csearch_path=tg`): asyncpg.connect() has no such argument,
            # but sends any server setting in the startup packet, where `options` means this.
            cparams.pop("application_name", None)  # in server_settings already
            options = cparams.pop("options", None)
            if options is not None:
                settings = dict(cparams.get("server_settings") or {})
                settings["options"] = _last(options)
                cparams["server_settings"] = settings
            files = {k: _last(cparams.pop(k)) for k in SSL_FILE_PARAMETERS if k in cparams}
            if files:  # host, port, user and `ssl` given as arguments take precedence
                cparams["dsn"] = "postgresql://?" + urlencode(files)

    if is_sqlite(url):

        @event.listens_for(engine.sync_engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            # A new file hands pages freed by pruning back to the file system (retention.py);
            # an existing one keeps its mode until `thriftgate db prune --vacuum`.
            cur.execute("PRAGMA auto_vacuum=INCREMENTAL")
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")  # after a checkpoint
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

    return engine


def session_factory(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)
