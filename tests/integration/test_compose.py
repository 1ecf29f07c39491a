"""Self-hosting files: docker-compose.yml against the Compose Specification, plus the checks a
schema cannot make (scaling, health, migrations, the GPU profile, files it refers to).

No Docker engine runs in CI, so this is static: the Compose file is validated with
`compose-pydantic` (models generated from the compose-spec JSON schema, unknown keys
forbidden), and everything it points at (Dockerfile targets, nginx config, gateway config,
CLI flags, settings names) is checked against the real thing.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml
from compose_pydantic import ComposeSpecification

from gateway.routing.catalog import Catalog
from gateway.settings import Settings, load_file_config
from tests.support.servers import (
    ADMIN_KEY,
    GatewayServer,
    MockUpstreamServer,
    create_database,
    drop_database,
)

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def test_compose_file_matches_the_compose_specification(compose: dict[str, Any]) -> None:
    # Top-level `x-*` keys are extension fields the specification allows (patternProperties);
    # YAML has already merged the anchors defined there into the services.
    spec = {k: v for k, v in compose.items() if not k.startswith("x-")}
    model = ComposeSpecification.model_validate(spec)
    assert set(model.services) == {"postgres", "gateway", "proxy", "local-engine"}


def test_compose_specification_check_rejects_mistakes(compose: dict[str, Any]) -> None:
    """The validator is not a rubber stamp: typical mistakes are refused."""
    import pydantic

    spec = {k: v for k, v in compose.items() if not k.startswith("x-")}
    for broken in (
        {
            **spec,
            "services": {
                **spec["services"],
                "gateway": {**spec["services"]["gateway"], "imagee": "x"},
            },
        },
        {
            **spec,
            "services": {
                **spec["services"],
                "gateway": {
                    **spec["services"]["gateway"],
                    "depends_on": {"postgres": {"condition": "up"}},
                },
            },
        },
        {**spec, "volumez": {}},
    ):
        with pytest.raises(pydantic.ValidationError):
            ComposeSpecification.model_validate(broken)


def test_gateway_scales_behind_the_proxy(compose: dict[str, Any]) -> None:
    gw = compose["services"]["gateway"]
    # `--scale gateway=3` needs no fixed host port and no fixed container name.
    assert "ports" not in gw and "container_name" not in gw
    assert gw["expose"] == ["8000"]
    proxy = compose["services"]["proxy"]
    assert proxy["depends_on"]["gateway"]["condition"] == "service_healthy"
    _host, container = proxy["ports"][0].rsplit(":", 1)
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    assert f"listen {container};" in nginx
    assert "http://gateway:8000" in nginx and "resolver 127.0.0.11" in nginx
    assert "proxy_buffering off;" in nginx  # SSE streams pass through
    # /metrics names every tenant with its spend: the public port does not serve it
    assert re.search(r"location = /metrics \{\s*return 404;\s*\}", nginx)
    mounted = {v.split(":")[0] for v in proxy["volumes"]}
    assert "./deploy/nginx.conf" in mounted


def test_postgres_has_a_volume_and_a_health_check(compose: dict[str, Any]) -> None:
    pg = compose["services"]["postgres"]
    assert any(
        v.endswith(":/var/lib/postgresql/data") and not v.startswith(("/", "."))
        for v in pg["volumes"]
    ), "Postgres data must live in a named volume"
    assert "pgdata" in compose["volumes"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    gw = compose["services"]["gateway"]
    assert gw["depends_on"]["postgres"]["condition"] == "service_healthy"


def test_gateway_migrates_on_start_and_settings_exist(compose: dict[str, Any]) -> None:
    gw = compose["services"]["gateway"]
    assert gw["command"] == ["thriftgate", "serve"]
    env = gw["environment"]
    known = {f"THRIFTGATE_{name.upper()}" for name in Settings.model_fields}
    for name in env:
        if name.startswith("THRIFTGATE_"):
            assert name in known, f"{name} is not a setting"
    assert "THRIFTGATE_MIGRATE_ON_START" not in env or env["THRIFTGATE_MIGRATE_ON_START"] != "false"
    assert env["THRIFTGATE_DATABASE_URL"].startswith("postgresql://")
    assert "@postgres:5432/" in env["THRIFTGATE_DATABASE_URL"]
    assert "${THRIFTGATE_ADMIN_KEY:?" in env["THRIFTGATE_ADMIN_KEY"]  # no default admin key
    assert any(v.endswith(":/var/lib/thriftgate/spool") for v in gw["volumes"])
    migrations_env = (ROOT / "migrations" / "env.py").read_text()
    assert "pg_advisory_xact_lock" in migrations_env  # replicas starting together take turns


def test_gateway_configs_are_valid() -> None:
    for name in ("thriftgate.yaml", "thriftgate.gpu.yaml"):
        config = load_file_config(ROOT / "deploy" / name)
        catalog = Catalog.build(config.deployments)
        assert "gpt-4o-mini" in catalog.models()
        for dep in config.deployments:
            assert dep.api_key_env is None or re.fullmatch(r"[A-Z_]+", dep.api_key_env)
    gpu = load_file_config(ROOT / "deploy" / "thriftgate.gpu.yaml")
    local = [d for d in gpu.deployments if d.api_base == "http://local-engine:8100/v1"]
    assert local and local[0].hardware_usd_per_hour is not None


def test_local_engine_runs_vllm_under_the_gpu_profile(compose: dict[str, Any]) -> None:
    engine = compose["services"]["local-engine"]
    assert engine["profiles"] == ["gpu"]
    devices = engine["deploy"]["resources"]["reservations"]["devices"]
    assert devices[0]["capabilities"] == ["gpu"]
    assert engine["build"]["target"] == "engine"
    dockerfile = (ROOT / "Dockerfile").read_text()
    entry = re.search(r"FROM \S+ AS engine(.*)", dockerfile, re.S)
    assert entry is not None
    assert '"engine", "serve", "--backend", "vllm"' in entry.group(1)
    # Every flag the image and the compose file pass exists on `thriftgate engine serve`.
    flags = set(re.findall(r'"(--[a-z-]+)"', entry.group(1))) | {
        a for a in engine["command"] if a.startswith("--")
    }
    help_text = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "engine", "serve", "--help"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "TERM": "dumb", "NO_COLOR": "1"},
    ).stdout
    for flag in flags:
        assert flag in help_text, f"`thriftgate engine serve` has no {flag}"


def test_dockerfile_copies_what_exists_and_installs_from_the_lock() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    targets = re.findall(r"^FROM \S+ AS (\S+)", dockerfile, re.M)
    assert {"gateway", "engine"} <= set(targets)
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", dockerfile, re.M):
        for path in src.split():
            assert (ROOT / path).exists(), f"Dockerfile copies missing {path}"
    assert "--require-hashes" in dockerfile and "requirements-runtime.lock" in dockerfile
    ignored = (ROOT / ".dockerignore").read_text().split()
    for must in (".git", ".venv", ".env", "dashboard/node_modules"):
        assert must in ignored


@pytest.mark.slow
def test_readme_steps_on_a_gateway_configured_like_compose(
    session_tmp: Path, mock_upstream: MockUpstreamServer
) -> None:
    """The README's steps 4-6 against `thriftgate serve` with compose's environment.

    No Docker here, so the gateway runs as a process with the variables compose sets
    (plain `postgresql://` URL, 2 workers, the deploy config), its OpenAI deployments pointed
    at the mock upstream (the only change: there is no internet).
    """
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    env = compose["x-gateway-env"]
    config = load_file_config(ROOT / "deploy" / "thriftgate.yaml")
    deployments = [
        {
            **d.model_dump(mode="json", exclude_none=True),
            "provider": "openai_compatible",
            "api_base": mock_upstream.url,
            "api_key_env": "MOCK_PROVIDER_KEY",
        }
        for d in config.deployments
    ]
    db = create_database("tg_readme")
    tmp = session_tmp / "readme"
    tmp.mkdir(exist_ok=True)
    gw = None
    try:
        gw = GatewayServer(
            tmp,
            db.replace("postgresql+asyncpg://", "postgresql://"),
            deployments,
            workers=int(env["THRIFTGATE_WORKERS"].split(":-")[1].rstrip("}")),
        )
        admin = ["-H", f"Authorization: Bearer {ADMIN_KEY}"]
        out = subprocess.run(
            [
                "curl",
                "-s",
                f"{gw.base}/admin/tenants",
                *admin,
                "-H",
                "Content-Type: application/json",
                "-d",
                '{"name": "acme", "budget_usd": 50}',
            ],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        tenant_id = json.loads(out)["id"]
        out = subprocess.run(
            ["curl", "-s", f"{gw.base}/admin/tenants/{tenant_id}/keys", "-X", "POST", *admin],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        ).stdout
        key = json.loads(out)["key"]
        client = openai.OpenAI(base_url=gw.url, api_key=key, max_retries=0)
        answer = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": "Hello"}]
        )
        assert answer.choices[0].message.content == "Echo: Hello"
        assert httpx.get(gw.base + "/dashboard/login", timeout=10).status_code == 200
    finally:
        if gw is not None:
            gw.stop()
        drop_database(db)


def _gateway_stage() -> str:
    dockerfile = (ROOT / "Dockerfile").read_text()
    stage = re.search(r"^FROM \S+ AS gateway\n(.*?)(?=^FROM |\Z)", dockerfile, re.S | re.M)
    assert stage is not None
    return stage.group(1).replace("\\\n", " ")


def _image_env(stage: str) -> dict[str, str]:
    env: dict[str, str] = {}
    for line in re.findall(r"^ENV (.+)$", stage, re.M):
        env.update(re.findall(r"(\w+)=(\S+)", line))
    return env


def test_the_image_user_can_write_where_serve_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    """`serve` runs as the image's USER: every directory it writes (the ledger spool, the
    semantic cache's embedding model, the bundled model's conversion) must be one the image
    hands to that user. Its home was /app, owned by root, so `serve` stopped at start on
    "THRIFTGATE_CACHE_MODEL_DIR '/app/.cache/thriftgate': Permission denied" and every
    gateway container restarted for ever."""
    from gateway.cache.embedder import default_cache_dir as embedder_dir
    from local_engine.model_store import default_cache_dir as model_dir

    stage = _gateway_stage()
    user = re.search(r"^USER (\S+)", stage, re.M)
    assert user is not None and user.group(1) not in ("root", "0"), "the gateway runs as root"
    home = re.search(rf"useradd [^&;]*--home(?:-dir)? (\S+)[^&;]* {user.group(1)}\b", stage)
    assert home is not None, "the image's user has no home directory named"
    owned = [
        Path(p)
        for paths in re.findall(rf"chown -R {user.group(1)}(?::\S+)? ([^&;\n]+)", stage)
        for p in paths.split()
    ]
    for name in [n for n in os.environ if n.startswith("THRIFTGATE_")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    for name, value in _image_env(stage).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("HOME", home.group(1))
    settings = Settings()
    written = {
        "THRIFTGATE_SPOOL_DIR": settings.spool_dir,
        "the semantic cache's model": settings.cache_model_dir or embedder_dir(),
        "the bundled model's conversion": model_dir(),
    }
    for what, directory in written.items():
        assert directory.is_absolute(), f"{what}: {directory} depends on the working directory"
        assert any(directory.is_relative_to(o) for o in owned), (
            f"{what}: {directory} is not under a directory the image gives "
            f"{user.group(1)} ({', '.join(map(str, owned))})"
        )


def test_postgres_has_connections_for_the_documented_replicas(compose: dict[str, Any]) -> None:
    """`docker compose up --scale gateway=3` (the README's) with 2 workers each may open
    3 x 2 x 58 connections; Postgres's image allows 100, so every replica warned at start and,
    under load, budgets failed open and the ledger waited in the spool."""
    from gateway.db.session import CONNECTIONS_PER_WORKER

    readme = (ROOT / "README.md").read_text()
    replicas = max(int(n) for n in re.findall(r"--scale gateway=(\d+)", readme))
    workers = re.fullmatch(
        r"\$\{THRIFTGATE_WORKERS:-(\d+)\}", compose["x-gateway-env"]["THRIFTGATE_WORKERS"]
    )
    assert workers is not None
    command = " ".join(compose["services"]["postgres"].get("command", []))
    given = re.search(r"max_connections=(\d+)", command)
    max_connections = int(given.group(1)) if given else 100  # the postgres image's default
    reserved, admin = 3, 5  # superuser_reserved_connections; `thriftgate` CLI runs, psql
    need = replicas * int(workers.group(1)) * CONNECTIONS_PER_WORKER
    assert max_connections - reserved - admin >= need, (
        f"{replicas} replicas x {workers.group(1)} workers need {need} connections; "
        f"Postgres allows {max_connections}"
    )


def test_the_proxy_leaves_errors_and_the_body_limit_to_the_gateway() -> None:
    """nginx's `client_max_body_size 4m` answered a 5 MB body with its own HTML page (the
    gateway's 413 is OpenAI's JSON error), and kept 4 MiB however far an operator raised
    THRIFTGATE_MAX_BODY_BYTES. What nginx itself still answers (no replica up, a head it
    cannot read) is in OpenAI's error shape too."""
    nginx = (ROOT / "deploy" / "nginx.conf").read_text()
    sizes = re.findall(r"^\s*client_max_body_size\s+(\S+);", nginx, re.M)
    assert sizes == ["0"], f"the proxy caps bodies at {sizes} (the gateway has its own limit)"
    pages = dict(re.findall(r"^\s*error_page\s+([\d ]+?)\s+=?\d*\s*(@\w+);", nginx, re.M))
    covered = {int(code) for codes in pages for code in codes.split()}
    assert {400, 494, 502, 503, 504} <= covered
    for name in set(pages.values()):
        body = re.search(rf"location {name} \{{(.*?)\n\s*\}}", nginx, re.S)
        assert body is not None, f"no location {name}"
        assert "default_type application/json;" in body.group(1)
        answer = re.search(r"return \d{3} '(.*)';", body.group(1))
        assert answer is not None
        error = json.loads(answer.group(1))["error"]
        assert {"message", "type", "code"} <= set(error)


def test_a_stopped_gateway_may_drain_before_docker_kills_it(compose: dict[str, Any]) -> None:
    """On SIGTERM `serve` finishes what is in flight for up to GRACEFUL_SHUTDOWN_S; Docker's
    default stop_grace_period is 10 s. A 20 s stream with SIGTERM at 3 s (as `docker compose
    up -d` replacing a replica, or `docker compose stop`, sends it) completed and was billed
    when the gateway was left 23 s; killed 10 s after the SIGTERM, the client's stream broke
    at 11 s and no ledger row was written for what it had streamed."""
    from gateway.cli import GRACEFUL_SHUTDOWN_S

    grace = str(compose["services"]["gateway"].get("stop_grace_period", "10s"))
    given = re.fullmatch(r"(?:(\d+)m)?(?:(\d+)s)?", grace)
    assert given is not None and grace, grace
    seconds = int(given.group(1) or 0) * 60 + int(given.group(2) or 0)
    assert seconds >= GRACEFUL_SHUTDOWN_S + 10, f"stop_grace_period {grace}"


def test_every_provider_key_the_configs_name_reaches_the_gateway(compose: dict[str, Any]) -> None:
    """A deployment's key is read from the variable its `api_key_env` names, in the gateway's
    container: one exported on the host but not passed by compose is unset there (the request
    goes out without a key and the provider refuses it)."""
    passed = set(compose["services"]["gateway"]["environment"])
    for name in ("thriftgate.yaml", "thriftgate.gpu.yaml"):
        for dep in load_file_config(ROOT / "deploy" / name).deployments:
            assert dep.api_key_env is None or dep.api_key_env in passed, (name, dep.name)
    readme = (ROOT / "README.md").read_text()
    steps = readme.split("## Self-hosting with Docker Compose")[1].split("\n## ")[0]
    assert "x-gateway-env" in steps, "the README does not say where another provider's key goes"


def test_the_database_password_has_no_default(compose: dict[str, Any]) -> None:
    """Postgres keeps the password its volume was created with. `${POSTGRES_PASSWORD:-...}`
    let a later `docker compose up` from a shell without the README's exports (a new terminal,
    to scale) hand every gateway a password Postgres no longer accepts, in silence, and they
    restarted for ever; like the admin key, compose now refuses to run without it."""
    pg_env = compose["services"]["postgres"]["environment"]
    url = compose["services"]["gateway"]["environment"]["THRIFTGATE_DATABASE_URL"]
    for value in (pg_env["POSTGRES_PASSWORD"], url):
        assert "${POSTGRES_PASSWORD:?" in value, value
    ignored = (ROOT / ".gitignore").read_text().split()
    assert ".env" in ignored  # where the README suggests keeping the three secrets
