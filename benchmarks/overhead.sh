#!/usr/bin/env bash
# Added latency and throughput of thriftgate vs LiteLLM proxy vs a bare Python passthrough,
# all over one mock upstream, in one run — with auth, the budget reservation and the Postgres
# ledger on (the tenant has a budget, so every request does its reservation round trip).
#
#   BENCH_DIR=../shared/bench LITELLM_BIN=/tmp/ll/bin/litellm benchmarks/overhead.sh
#
# Needs: the project's venv (.venv), Postgres on 127.0.0.1 (trust auth), and the comparison
# harness (compare_overhead.sh + loadgen.py + min_proxy.py + mock_upstream.py) in BENCH_DIR.
# Knobs passed through: CONCURRENCY ("1 16 64"), REQUESTS (1500), ROUNDS (2), STREAM (0/1),
# GATEWAY_WORKERS (1).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
BENCH_DIR=${BENCH_DIR:-$root/../shared/bench}
PY=${PY:-$root/.venv/bin/python}
PG=${PG:-postgresql://postgres@127.0.0.1:5432}
work=$(mktemp -d)
db="tg_bench_$$"
psql "$PG/postgres" -qc "CREATE DATABASE $db" >/dev/null
trap 'psql "$PG/postgres" -qc "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null; rm -rf "$work"' EXIT

export MOCK_URL="http://127.0.0.1:${MOCK_PORT:-9100}/v1"
cat >"$work/config.yaml" <<YAML
deployments:
  - name: mock-gpt-4o-mini
    model: gpt-4o-mini
    provider: openai_compatible
    api_base: $MOCK_URL
    api_key_env: BENCH_UPSTREAM_KEY
    input_cost_per_mtok: 0.15
    output_cost_per_mtok: 0.60
YAML
export THRIFTGATE_DATABASE_URL="postgresql+asyncpg://${PG#postgresql://}/$db"
export THRIFTGATE_CONFIG="$work/config.yaml" THRIFTGATE_SPOOL_DIR="$work/spool"
export THRIFTGATE_LOG_LEVEL=warning BENCH_UPSTREAM_KEY=sk-bench-upstream
"$root/.venv/bin/thriftgate" migrate >/dev/null
# The cache is off for this tenant: loadgen repeats one prompt, and this measures the proxy path.
"$root/.venv/bin/thriftgate" tenant create bench --budget-usd "${BENCH_BUDGET_USD:-1000000}" \
  --flags "${BENCH_TENANT_FLAGS:-{\"cache\": false}}" >/dev/null
key=$("$root/.venv/bin/thriftgate" key create bench)

export GATEWAY_CMD="exec $root/.venv/bin/thriftgate serve --port 8000 --workers ${GATEWAY_WORKERS:-1}"
export GATEWAY_URL=http://127.0.0.1:8000/v1 GATEWAY_KEY="$key" GATEWAY_MODEL=gpt-4o-mini
BENCH_PY=${BENCH_PY:-$PY} bash "$BENCH_DIR/compare_overhead.sh"
rows=$(psql "$PG/$db" -tAc "SELECT count(*) FROM usage_ledger")
echo "ledger rows written during the run: $rows"
