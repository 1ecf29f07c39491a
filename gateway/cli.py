"""`thriftgate serve | migrate | tenant | key | route | config` (and `engine` when installed)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from pydantic import TypeAdapter, ValidationError

from gateway.settings import MAX_WORKERS, ConfigError, Settings

app = typer.Typer(
    pretty_exceptions_enable=False,
    help="thriftgate: a cost-optimizing OpenAI-compatible LLM gateway.",
    no_args_is_help=True,
    add_completion=False,
)
tenant_app = typer.Typer(help="Manage tenants.", no_args_is_help=True)
key_app = typer.Typer(help="Manage API keys.", no_args_is_help=True)
app.add_typer(tenant_app, name="tenant")
app.add_typer(key_app, name="key")
route_app = typer.Typer(help="Inspect routing decisions.", no_args_is_help=True)
app.add_typer(route_app, name="route")
config_app = typer.Typer(help="Work with config files.", no_args_is_help=True)
app.add_typer(config_app, name="config")
db_app = typer.Typer(help="Database upkeep.", no_args_is_help=True)
app.add_typer(db_app, name="db")

T = TypeVar("T")


def _settings(config: Path | None = None, *, serving: bool = False) -> Settings:
    if config is not None:
        os.environ["THRIFTGATE_CONFIG"] = str(config)
    try:
        settings = Settings()
        file_config = settings.file_config()  # validate early: a bad key stops here, named
        if serving:
            # What cannot work stops here in one line; the warnings are logged at start-up.
            from gateway import config_checks

            config_checks.refuse(config_checks.problems(file_config))
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    except ValidationError as exc:
        # A bad THRIFTGATE_* value: name the variable, never echo the value (it may be a key).
        typer.echo(f"error: {_describe_env(exc)}", err=True)
        raise typer.Exit(2) from None
    _check_sqlite_directory(settings.database_url)
    _warn_misspelt_variables()
    _warn_alerts_without_webhook()
    return settings


ALERT_VARIABLES = ("THRIFTGATE_BUDGET_ALERT_THRESHOLDS", "THRIFTGATE_BUDGET_ALERT_SECRET")


def _warn_alerts_without_webhook() -> None:
    """Alert thresholds or a signing secret without the webhook they are for: no alert is
    ever sent, and nothing said so."""
    if os.environ.get("THRIFTGATE_BUDGET_ALERT_WEBHOOK_URL", "").strip():
        return
    given = [name for name in ALERT_VARIABLES if os.environ.get(name, "").strip()]
    if given:
        typer.echo(
            f"warning: {' and '.join(given)} set without THRIFTGATE_BUDGET_ALERT_WEBHOOK_URL: "
            "no budget alert is sent",
            err=True,
        )


# THRIFTGATE_* variables read elsewhere: docker-compose.yml, the local engine's model cache
OTHER_VARIABLES = frozenset({"CONFIG_FILE", "PUBLIC_PORT", "MODEL_CACHE"})


def _warn_misspelt_variables() -> None:
    """A misspelt setting (THRIFTGATE_ADMINKEY, THRIFTGATE_DATABASE) was ignored in silence:
    no dashboard, or a SQLite file instead of the Postgres database meant. Named when it
    resembles a setting; its value is never shown."""
    import difflib

    known = [name.upper() for name in Settings.model_fields]
    for variable in sorted(os.environ):
        name = variable.removeprefix("THRIFTGATE_")
        if name == variable or name in known or name in OTHER_VARIABLES:
            continue
        close = difflib.get_close_matches(name, known, n=1, cutoff=0.7)
        if close:
            typer.echo(
                f"warning: {variable} is not a thriftgate setting "
                f"(did you mean THRIFTGATE_{close[0]}?); it is ignored",
                err=True,
            )


def _check_sqlite_directory(database_url: str) -> None:
    """SQLite creates its file, not the directories above it: `sqlite:///data/thriftgate.db`
    without `data/` was "unable to open database file", at times followed by two tracebacks of
    aiosqlite's thread reporting to an event loop already closed."""
    path = _sqlite_file(database_url)
    if path is None:
        return
    directory = path.parent
    if not directory.is_dir():
        typer.echo(
            f"error: THRIFTGATE_DATABASE_URL: directory {str(directory)!r} does not exist",
            err=True,
        )
        raise typer.Exit(2)


def _check_flag(flag: str, field: str, value: int | None) -> None:
    """A flag that overrides a setting gets the setting's limits and message (`--port 99999`
    listened on 34463; `--workers 2000` forked 2,000 gateways), one line, exit 2."""
    if value is None:
        return
    try:
        TypeAdapter(Annotated[int, *Settings.model_fields[field].metadata]).validate_python(value)
    except ValidationError as exc:
        typer.echo(f"error: {flag}: {exc.errors()[0]['msg']}", err=True)
        raise typer.Exit(2) from None


def _describe_env(exc: ValidationError) -> str:
    return "; ".join(
        f"THRIFTGATE_{'_'.join(str(p) for p in err['loc']).upper()}: {err['msg']}"
        for err in exc.errors()
    )


def _run(fn: Callable[[Any], Awaitable[T]], settings: Settings) -> T:
    from gateway.db.session import create_engine

    new_file = _new_sqlite_file(settings.database_url)

    async def go() -> T:
        if settings.migrate_on_start:
            # Admin commands work on a fresh database too (the embedded default's first run).
            from gateway.db.migrate import upgrade_head

            await upgrade_head(settings.database_url)
        engine = create_engine(settings.database_url, pool_size=1)
        try:
            return await fn(engine)
        finally:
            await engine.dispose()

    result = _run_sync(lambda: asyncio.run(go()), settings)
    # The default is ./thriftgate.db: a "second shell" in another directory than the
    # gateway's made a database of its own in silence, and its keys were refused.
    _say_if_created(new_file, "a gateway started in another directory uses its own")
    return result


def _new_sqlite_file(database_url: str) -> Path | None:
    """The SQLite file a command is about to create; None when it exists or is not a file."""
    new_file = _sqlite_file(database_url)
    return None if new_file is None or new_file.exists() else new_file


def _say_if_created(new_file: Path | None, elsewhere: str) -> None:
    if new_file is not None and new_file.exists():
        typer.echo(
            f"note: created a new database {str(new_file.resolve())!r}; {elsewhere} "
            "(set THRIFTGATE_DATABASE_URL to share one)",
            err=True,
        )


def _sqlite_file(database_url: str) -> Path | None:
    """The file of a SQLite URL; None for another database, memory or a URI filename."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from gateway.db.session import is_sqlite, normalise_url

    if not is_sqlite(database_url):
        return None
    try:
        name = make_url(normalise_url(database_url)).database
    except ArgumentError:
        return None  # the database layer says what is wrong with it
    if not name or name == ":memory:" or name.startswith("file:"):
        return None  # in memory, or a URI filename (`?uri=true`) SQLite parses itself
    return Path(name)


def _run_sync(call: Callable[[], T], settings: Settings) -> T:
    """Run a command's work; a refusal or an unreachable database is one line, not a trace."""
    from sqlalchemy.exc import SQLAlchemyError

    from gateway.db.session import UnsupportedDatabase
    from gateway.errors import GatewayError

    try:
        return call()
    except GatewayError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(1) from None
    except UnsupportedDatabase as exc:
        typer.echo(f"error: database {_where(settings.database_url)!r}: {exc}", err=True)
        raise typer.Exit(1) from None
    except (SQLAlchemyError, OSError, ValueError, TypeError) as exc:  # asyncpg: a bad option
        typer.echo(
            f"error: database {_where(settings.database_url)!r}: "
            f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}",
            err=True,
        )
        raise typer.Exit(1) from None


def _where(database_url: str) -> str:
    """Host, port and database name only: the user, a password and the query string (asyncpg
    accepts `?password=`) never reach the terminal."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(database_url)
        port = url.port  # `:abc` raises ValueError here
    except (ArgumentError, ValueError):
        return "(unparsable URL)"
    host = url.host or ""
    if port:
        host += f":{port}"
    return f"{host}/{url.database or ''}" if host else (url.database or "")


def _json_object(raw: str | None, option: str) -> dict[str, Any] | None:
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        typer.echo(f"error: {option} is not valid JSON: {exc}", err=True)
        raise typer.Exit(2) from None
    if not isinstance(value, dict):
        typer.echo(f"error: {option} must be a JSON object", err=True)
        raise typer.Exit(2)
    return value


def _echo_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


@app.command()
def serve(
    config: Path | None = typer.Option(
        None,
        "--config",
        help="YAML file of deployments (default: THRIFTGATE_CONFIG, else the bundled local model).",
    ),
    host: str | None = typer.Option(
        None, "--host", help="Address to listen on (default: THRIFTGATE_HOST, else 127.0.0.1)."
    ),
    port: int | None = typer.Option(
        None, "--port", help="Port to listen on (default: THRIFTGATE_PORT, else 8000)."
    ),
    workers: int | None = typer.Option(
        None,
        "--workers",
        help=f"Worker processes (default: THRIFTGATE_WORKERS, else 1; at most {MAX_WORKERS}).",
    ),
) -> None:
    """Apply migrations, then serve the gateway (uvicorn, uvloop, httptools)."""
    import uvicorn

    from gateway.api.connections import GuardedHttpProtocol

    _check_flag("--port", "port", port)
    _check_flag("--workers", "workers", workers)
    settings = _settings(config, serving=True)
    if settings.admin_key is not None and len(settings.admin_key.get_secret_value()) < 16:
        typer.echo(
            "warning: THRIFTGATE_ADMIN_KEY is shorter than 16 characters; anyone who guesses "
            "it controls every tenant and budget",
            err=True,
        )
    _check_spool_dir(settings.spool_dir)
    _check_cache_model_dir(settings)
    listen_host = host or settings.host
    listen_port = port if port is not None else settings.port
    _check_address(listen_host, listen_port, from_flag=host is not None)
    from gateway.db.session import check_supported, normalise_url

    # Before any worker starts, even with THRIFTGATE_MIGRATE_ON_START=false.
    _run_sync(lambda: check_supported(normalise_url(settings.database_url)), settings)
    new_file = _new_sqlite_file(settings.database_url)
    if settings.migrate_on_start:
        from gateway.db.migrate import check_writable_sync, upgrade_head_sync

        _run_sync(lambda: upgrade_head_sync(settings.database_url), settings)
        # A database it can read but not write served, with /readyz "ok", and recorded nothing.
        _run_sync(lambda: check_writable_sync(settings.database_url), settings)
    else:
        # Through PgBouncer in transaction mode, or on a database not yet migrated, the workers
        # started and every request was a 500 (hundreds of traceback lines). Said here, in one
        # line naming the fix; an unreachable database still starts (fail-open).
        from gateway.db.migrate import check_serving_sync

        _run_sync(lambda: check_serving_sync(settings.database_url), settings)
    # Started from another directory than `tenant create`'s, it served a new, empty
    # ./thriftgate.db, and every key created there was refused.
    _say_if_created(new_file, "admin commands run in another directory use their own")
    # Workers re-read settings from the environment; migrations already ran once, here.
    os.environ["THRIFTGATE_MIGRATE_ON_START"] = "false"
    n_workers = workers if workers is not None else settings.workers
    from gateway.db.migrate import connection_shortfall_sync

    short = connection_shortfall_sync(settings.database_url, n_workers)
    if short is not None:  # under load, budgets failed open and nothing had said why
        typer.echo(f"warning: database {_where(settings.database_url)!r}: {short}", err=True)
    from gateway.db.session import is_sqlite

    if n_workers > 1 and is_sqlite(settings.database_url):  # limits_sync.py: Postgres only
        typer.echo(
            f"warning: on SQLite each of the {n_workers} workers counts RPM/TPM and "
            "max_concurrent_requests alone (a tenant gets up to "
            f"{n_workers} x its limits); Postgres shares them",
            err=True,
        )
    _stop_on_hangup()
    with _metrics_dir(n_workers):
        uvicorn.run(
            "gateway.app:app_from_env",
            factory=True,
            host=listen_host,
            port=listen_port,
            workers=n_workers if n_workers > 1 else None,
            loop="uvloop" if sys.platform != "win32" else "auto",
            http=GuardedHttpProtocol,  # httptools', with deadlines for slow clients
            log_level=settings.log_level.lower(),
            access_log=False,
            h11_max_incomplete_event_size=settings.max_header_bytes,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
            # SIGHUP with several workers: each is replaced in turn (re-reading the config)
            # once its replacement serves, which takes longer than uvicorn's 5 s here: the
            # replacement was killed mid-start and the restart given up
            timeout_worker_healthcheck=WORKER_START_S,
        )


# On SIGTERM, requests in flight (streams too) get this long to finish; then they are cut and
# billed for what was sent. Whatever stops the gateway must wait longer (docker-compose.yml).
GRACEFUL_SHUTDOWN_S = 30
WORKER_START_S = 120


def _stop_on_hangup() -> None:
    """SIGHUP (`kill -HUP`, or the terminal `serve` runs in closing) stops a one-worker gateway
    as SIGTERM does. Its default killed it on the spot: streams in flight cut, never billed.
    (With several workers uvicorn's supervisor takes SIGHUP over: it restarts the workers.)"""
    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, lambda _sig, _frame: os.kill(os.getpid(), signal.SIGTERM))


def _check_spool_dir(directory: Path) -> None:
    """Every worker spools ledger rows there: a directory it cannot create or write to was a
    traceback from each worker's start-up. Said here, once, in one line."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-"):
            pass
    except OSError as exc:
        typer.echo(
            f"error: THRIFTGATE_SPOOL_DIR {str(directory)!r}: {exc.strerror or exc}", err=True
        )
        raise typer.Exit(2) from None


def _check_cache_model_dir(settings: Settings) -> None:
    """The semantic cache exports its embedding model to this directory once (a directory
    already holding it may be read-only): one it cannot create or write was a 74-line
    traceback from the app's start-up."""
    from gateway.cache import embedder

    if not settings.cache_semantic or not embedder.runtime_installed():
        return  # without the runtime the cache is exact-only (said at start) and writes nothing
    from gateway.cache.embedder import default_cache_dir

    directory = settings.cache_model_dir or default_cache_dir()
    try:
        directory.mkdir(parents=True, exist_ok=True)
        if not any(directory.glob("*.onnx")):
            with tempfile.NamedTemporaryFile(dir=directory, prefix=".write-check-"):
                pass
    except OSError as exc:
        typer.echo(
            f"error: THRIFTGATE_CACHE_MODEL_DIR {str(directory)!r}: {exc.strerror or exc} "
            "(the semantic cache keeps its embedding model there; "
            "THRIFTGATE_CACHE_SEMANTIC=false turns it off)",
            err=True,
        )
        raise typer.Exit(2) from None


def _check_address(host: str, port: int, *, from_flag: bool) -> None:
    """uvicorn binds only once the app has started: a port already taken (a second `serve`)
    or a host that does not resolve was reported after the migrations, the cache, the router's
    statistics and the bundled model had loaded (18 s here), among their logs. Said here, in
    one line. (The port may still be taken in between; uvicorn then says so itself.)"""
    import errno
    import socket

    where = f"--host {host!r}" if from_flag else f"THRIFTGATE_HOST {host!r}"
    try:
        addresses = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except (socket.gaierror, UnicodeError) as exc:
        typer.echo(f"error: {where}: {getattr(exc, 'strerror', None) or exc}", err=True)
        raise typer.Exit(2) from None
    for family, kind, proto, _, address in addresses:
        try:
            with socket.socket(family, kind, proto) as sock:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                reason = "is already in use (another `thriftgate serve`, or another program)"
            else:
                reason = f"cannot be listened on ({where}): {exc.strerror or exc}"
            typer.echo(f"error: {_host_port(host, port)} {reason}", err=True)
            raise typer.Exit(2) from None


def _host_port(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@contextlib.contextmanager
def _metrics_dir(n_workers: int) -> Iterator[None]:
    """Several workers are several processes: their metrics meet in a directory
    (prometheus_client's multiprocess mode) that /metrics merges, or each scrape would show
    one worker's counts. Set here, before uvicorn starts the workers, which inherit it.

    One worker and no PROMETHEUS_MULTIPROC_DIR: nothing changes (in-process metrics). An
    operator's PROMETHEUS_MULTIPROC_DIR is used, its *.db files wiped at start (what is left
    there is a previous run's counts, as prometheus_client's documentation says); otherwise
    a private directory is made and removed at exit."""
    from gateway.metrics import MULTIPROC_ENV

    given = os.environ.get(MULTIPROC_ENV)
    if given:
        try:
            Path(given).mkdir(parents=True, exist_ok=True)
            for stale in Path(given).glob("*.db"):
                stale.unlink()
        except OSError as exc:
            typer.echo(f"error: {MULTIPROC_ENV} {given!r}: {exc.strerror or exc}", err=True)
            raise typer.Exit(2) from None
        yield
        return
    if n_workers <= 1:
        yield
        return
    private = tempfile.mkdtemp(prefix="thriftgate-metrics-")
    os.environ[MULTIPROC_ENV] = private
    try:
        yield
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(private, ignore_errors=True)


@app.command()
def migrate() -> None:
    """Apply Alembic migrations up to head."""
    from gateway.db.migrate import upgrade_head_sync

    settings = _settings()
    _run_sync(lambda: upgrade_head_sync(settings.database_url), settings)
    typer.echo("database is at head")


@db_app.command("prune")
def db_prune(
    ledger_days: int | None = typer.Option(
        None,
        "--ledger-days",
        min=1,
        max=36_500,  # as THRIFTGATE_LEDGER_RETENTION_DAYS: a horizon before year 1 was a traceback
        help="Delete ledger rows older than this many days (default: "
        "THRIFTGATE_LEDGER_RETENTION_DAYS; unset, every row is kept). Totals stay in the rollups.",
    ),
    vacuum: bool = typer.Option(
        False, "--vacuum", help="Then VACUUM: SQLite's file shrinks; Postgres reuses the space."
    ),
    dry_run: bool = typer.Option(
        False, "--dry-run", help="Count what would be deleted; delete nothing."
    ),
) -> None:
    """Delete what retention allows, in batches, beside a running gateway; print it as JSON.

    Old ledger rows (rollups keep totals), budget rows before last month, cache purges > 31 days.
    """
    from gateway.accounting import retention

    settings = _settings()
    days = ledger_days or settings.ledger_retention_days or None

    # never before the ledger's rows: the reports read the hourly sums in between
    hourly = settings.rollup_hourly_retention_days
    hourly_days = max(hourly, days or 0) if hourly else None

    async def go(engine: Any) -> dict[str, Any]:
        if dry_run:
            counted = await retention.prunable(
                engine, ledger_retention_days=days, hourly_rollup_retention_days=hourly_days
            )
            said = counted.as_dict()
            return {"would_delete": said.pop("deleted"), **said}
        result = await retention.prune(
            engine, ledger_retention_days=days, hourly_rollup_retention_days=hourly_days
        )
        if vacuum:
            await retention.vacuum(engine)
        return result.as_dict()

    _echo_json(_run(go, settings))


@tenant_app.command("create")
def tenant_create(
    name: str,
    # a string, parsed as a Decimal by the API's model: a float lost digits (12345678.123456789
    # was stored as 12345678.1234567892) and refused the API's largest budget
    budget_usd: str | None = typer.Option(None, "--budget-usd"),
    budget_period: str = typer.Option("monthly", "--budget-period", help="monthly, daily or total"),
    rpm: int | None = typer.Option(None, "--rpm", min=1),
    tpm: int | None = typer.Option(None, "--tpm", min=1),
    slo_ms: int | None = typer.Option(None, "--slo-ms", min=1),
    flags: str | None = typer.Option(
        None, "--flags", help='Tenant flags as a JSON object, e.g. {"cache": false}.'
    ),
) -> None:
    """Create a tenant; prints its id."""
    from gateway.accounting import tenants
    from gateway.accounting.tenant_flags import misspelt_flags

    settings = _settings()
    flag_map = _json_object(flags, "--flags")
    for line in misspelt_flags(flag_map or {}):
        typer.echo(f"warning: {line}", err=True)
    checked = _check_admin_input(
        name=name, budget_usd=budget_usd, budget_period=budget_period, rpm=rpm, tpm=tpm,
        slo_ms=slo_ms, flags=flag_map or {},
    )  # fmt: skip
    budget = checked.budget_usd
    result = _run(
        lambda e: tenants.create_tenant(
            e,
            name,
            budget_usd=budget,
            budget_period=budget_period,
            rpm=rpm,
            tpm=tpm,
            default_slo_ms=slo_ms,
            flags=flag_map,
        ),
        settings,
    )
    typer.echo(result["id"])


def _check_admin_input(**fields: Any) -> Any:
    """The admin API's limits, so the CLI cannot store what the API would refuse; returns
    the API's model of them (TenantCreate)."""
    from gateway.api.admin import TenantCreate

    return _validated(TenantCreate, fields)


def _validated(model: Any, fields: dict[str, Any], flags: dict[str, str] | None = None) -> Any:
    """`model(**fields)`, or one line naming what was wrong (by its flag, given `flags`)."""
    try:
        return model(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "input"
        where = (flags or {}).get(where, where)
        typer.echo(f"error: {where}: {first['msg']}", err=True)
        raise typer.Exit(2) from None


@tenant_app.command("update")
def tenant_update(
    tenant: str = typer.Argument(..., help="Tenant id or name."),
    rpm: int | None = typer.Option(None, "--rpm", min=0, help="Requests per minute (0: no limit)."),
    tpm: int | None = typer.Option(None, "--tpm", min=0, help="Tokens per minute (0: no limit)."),
    max_concurrent: int | None = typer.Option(
        None,
        "--max-concurrent",
        min=0,
        help="Requests in flight at once, across all workers (0: no cap).",
    ),
) -> None:
    """Change a tenant's rate limits (others are kept); running gateways apply them at once
    (on SQLite within 5 s). Prints the tenant as JSON."""
    from gateway.accounting import tenants
    from gateway.api.admin import TenantPatch
    from gateway.db.session import is_sqlite
    from gateway.pipeline.concurrency import FLAG
    from gateway.pipeline.key_events import notify

    if rpm is None and tpm is None and max_concurrent is None:  # it printed the tenant, exit 0
        typer.echo("error: nothing to change: give --rpm, --tpm or --max-concurrent.", err=True)
        raise typer.Exit(2)
    changes: dict[str, Any] = {}
    for column, value in (("rpm", rpm), ("tpm", tpm)):
        if value is not None:
            changes[column] = value or None
    _validated(TenantPatch, changes, {"rpm": "--rpm", "tpm": "--tpm"})

    async def go(engine: Any) -> dict[str, Any]:
        found = await tenants.find_tenant(engine, tenant)
        capped = None if max_concurrent is None else {FLAG: max_concurrent or None}
        result = await tenants.update_tenant(engine, found["id"], changes, flag_changes=capped)
        if not is_sqlite(str(engine.url)):  # every gateway drops the tenant's cached settings
            async with engine.begin() as conn:
                await notify(conn, found["id"])
        return result

    _echo_json(_run(go, _settings()))


@tenant_app.command("list")
def tenant_list(
    include_deleted: bool = typer.Option(False, "--include-deleted", help="List deleted ones too."),
) -> None:
    """List tenants as JSON."""
    from gateway.accounting import tenants

    _echo_json(_run(lambda e: tenants.list_tenants(e, include_deleted), _settings()))


@tenant_app.command("delete")
def tenant_delete(
    tenant: str = typer.Argument(..., help="Tenant id or name."),
    yes: bool = typer.Option(False, "--yes", help="Do not ask for confirmation."),
) -> None:
    """Delete a tenant: revoke its keys, drop its cache and stored Responses items. Its ledger
    rows (what it was billed) stay, under its name marked deleted. Cannot be undone."""
    from gateway.accounting import tenant_deletion, tenants

    settings = _settings()
    found = _run(lambda e: tenants.find_tenant(e, tenant), settings)
    if found["deleted_at"] is None and not yes:
        typer.confirm(f"Delete tenant {found['name']!r} ({found['id']})?", abort=True)
    _echo_json(_run(lambda e: tenant_deletion.delete_tenant(e, found["id"]), settings))


@key_app.command("create")
def key_create(
    tenant: str = typer.Argument(..., help="Tenant id or name."),
    name: str | None = typer.Option(None, "--name"),
    expires_in: str | None = typer.Option(
        None, "--expires-in", help="Stop working after this long: 90m, 12h, 30d, 3600 (seconds)."
    ),
    expires_at: str | None = typer.Option(
        None, "--expires-at", help="Stop working at this time (ISO 8601, e.g. 2026-12-31T00:00Z)."
    ),
) -> None:
    """Create an API key for a tenant; prints the key once (only its hash is stored)."""
    from gateway.accounting import tenants
    from gateway.api.admin import KeyCreate

    fields: dict[str, Any] = {"name": name, "expires_at": expires_at}
    if expires_in is not None:
        fields["expires_in_s"] = _duration_s(expires_in, "--expires-in")
    flags = {"expires_in_s": "--expires-in", "expires_at": "--expires-at"}
    body = _validated(KeyCreate, fields, flags)  # the API's limits and its expiry checks

    async def go(engine: Any) -> dict[str, Any]:
        found = await tenants.find_tenant(engine, tenant)
        return await tenants.create_key(engine, found["id"], body.name, body.expiry())

    created = _run(go, _settings())
    typer.echo(created["key"])  # stdout: the key alone, for scripts
    until = f", expires {created['expires_at']}" if created["expires_at"] else ""
    typer.echo(f"key id {created['id']} (thriftgate key revoke {created['id']}){until}", err=True)


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


def _duration_s(text: str, option: str) -> float:
    """ "90m", "12h", "30d", "2w", "3600" (seconds) -> seconds; anything else stops the command."""
    value = text.strip().lower()
    unit = DURATION_UNITS.get(value[-1:]) if value else None
    number = value[:-1] if unit is not None else value
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < float("inf"):
        typer.echo(f"error: {option}: {text!r} is not a duration (90m, 12h, 30d, 3600)", err=True)
        raise typer.Exit(2)
    return seconds


@key_app.command("list")
def key_list(tenant: str = typer.Argument(..., help="Tenant id or name.")) -> None:
    """List a tenant's keys: id, prefix, name, created, last used, revoked (never the key)."""
    from gateway.accounting import tenants

    async def go(engine: Any) -> list[dict[str, Any]]:
        found = await tenants.find_tenant(engine, tenant)
        return await tenants.list_keys(engine, found["id"])

    _echo_json(_run(go, _settings()))


@key_app.command("revoke")
def key_revoke(
    key: str = typer.Argument(..., help="The key's id (see `key list`), or the key itself."),
    grace: str | None = typer.Option(
        None, "--grace", help="Keep it working this long first (a rotation): 10m, 1h, 7d."
    ),
) -> None:
    """Revoke a key, by its id or by the key itself (a leaked `tg-...`); now, or after --grace."""
    from gateway.accounting import tenants
    from gateway.accounting.keys import KEY_PREFIX

    given = key.strip()  # pasted with a blank around it, it was not found
    after_s = _duration_s(grace, "--grace") if grace is not None else 0.0

    async def go(engine: Any) -> dict[str, Any]:
        key_id = await tenants.key_id_of(engine, given) if given.startswith(KEY_PREFIX) else given
        return await tenants.revoke_key(engine, key_id, after_s)

    if KEY_PREFIX in given and not given.startswith(KEY_PREFIX):
        # not an id, and an error that names the id would print the key: its prefix only
        typer.echo(f"error: no such key ({given[: given.index(KEY_PREFIX) + 8]}...)", err=True)
        raise typer.Exit(1)
    _echo_json(_run(go, _settings()))


@route_app.command("explain")
def route_explain(
    model: str = typer.Option(..., "--model", help="Model group (or thriftgate/auto)."),
    slo_ms: float | None = typer.Option(None, "--slo-ms", min=1, help="Latency SLO."),
    prompt_tokens: int = typer.Option(1000, "--prompt-tokens", min=0),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1),
    stream: bool = typer.Option(False, "--stream", help="Judge the SLO on time to first token."),
    learned: bool = typer.Option(True, "--learned/--cold", help="Load learned stats from the DB."),
    config: Path | None = typer.Option(
        None, "--config", help="YAML file of deployments (the one `serve` was given)."
    ),
) -> None:
    """Print each candidate's predicted cost and latency, in the order the router ranks them."""
    from gateway.routing.catalog import Catalog
    from gateway.routing.explain import explain
    from gateway.routing.router import Router, RouterTuning
    from gateway.routing.stats_store import RouterStatsStore

    settings = _settings(config)
    file_config = settings.file_config()
    catalog = Catalog.build(file_config.deployments)
    router = Router(
        catalog,
        auto_models=file_config.auto.models,
        tuning=RouterTuning.from_config(file_config.routing),
    )
    if not router.candidates(model):
        source = (
            f"in {settings.config}"
            if settings.config is not None
            else "(no deployments file: give the one `serve` uses with --config, or set "
            "THRIFTGATE_CONFIG)"
        )
        typer.echo(f"error: no deployment serves model {model!r} {source}", err=True)
        raise typer.Exit(1)
    if learned:
        loaded = _run(lambda e: RouterStatsStore(e, router).load(), settings)
        typer.echo(f"learned statistics: {loaded} rows" if loaded else "cold: config hints only")
    for line in explain(
        router,
        model,
        prompt_tokens=prompt_tokens,
        slo_ms=slo_ms,
        max_tokens=max_tokens,
        stream=stream,
    ):
        typer.echo(line)


@config_app.command("import-litellm")
def config_import_litellm(
    path: Path = typer.Argument(..., help="A LiteLLM proxy config.yaml."),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the thriftgate config here (default: stdout)."
    ),
) -> None:
    """Write the thriftgate config equivalent to a LiteLLM proxy config.yaml.

    What has no equivalent is listed on stderr; literal API keys are never copied."""
    from gateway import config_checks
    from gateway.config_import import import_litellm, read_litellm, render
    from gateway.settings import load_file_config

    try:
        if output is not None and output.resolve() == path.resolve():
            raise ConfigError(f"{output} is the LiteLLM file itself: write to another file")
        imported = import_litellm(read_litellm(path))
        text = render(imported.config, path)
        target = (output or Path(tempfile.gettempdir()) / "x").resolve().parent
        with tempfile.NamedTemporaryFile(
            "w", dir=target, prefix=".thriftgate-import-", suffix=".yaml", delete=False
        ) as tmp:
            tmp.write(text)
        try:  # the gateway's own checks, on the very file it will read
            try:
                found = config_checks.problems(load_file_config(Path(tmp.name)))
                config_checks.refuse(found)
            except ConfigError as exc:
                raise ConfigError(str(exc).replace(tmp.name, "(the imported config)")) from None
            if output is not None:
                os.replace(tmp.name, output)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp.name)
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    except OSError as exc:
        typer.echo(f"error: {output}: {exc.strerror or exc}", err=True)
        raise typer.Exit(1) from None
    for note in imported.notes:
        typer.echo(note, err=True)
    for problem in found:
        typer.echo(f"warning: {problem.message}", err=True)
    if output is None:
        sys.stdout.write(text)
    else:
        typer.echo(f"wrote {output} ({len(imported.config['deployments'])} deployments)", err=True)


def _mount_optional() -> None:
    try:
        from local_engine.cli import engine_app
    except ImportError:
        return
    app.add_typer(engine_app, name="engine", help="The local inference engine.")


_mount_optional()


if __name__ == "__main__":
    app()
