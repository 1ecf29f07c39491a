"""A LiteLLM proxy config imported with `thriftgate config import-litellm` serves: the gateway
starts on the written file and answers the official SDK through the OpenAI-compatible server
the LiteLLM entry pointed at."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from decimal import Decimal
from pathlib import Path

import pytest
import yaml

from tests.support.servers import GatewayServer, MockUpstreamServer, ledger_row, sdk_client

pytestmark = pytest.mark.integration


def test_an_imported_litellm_config_serves_through_the_sdk(
    tmp_path: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer
) -> None:
    litellm_config = tmp_path / "config.yaml"
    litellm_config.write_text(f"""
model_list:
  - model_name: team-llm
    litellm_params:
      model: openai/mock-model
      api_base: {mock_upstream.url}
      api_key: os.environ/MOCK_PROVIDER_KEY
      input_cost_per_token: 0.00000015
      output_cost_per_token: 6e-7
      rpm: 100
router_settings:
  routing_strategy: simple-shuffle
general_settings:
  master_key: sk-litellm-master-key
""")
    out = tmp_path / "thriftgate.yaml"
    env = {**os.environ, "MOCK_PROVIDER_KEY": "sk-mock-provider-secret-0123456789"}
    done = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "config", "import-litellm", str(litellm_config),
         "-o", str(out)],
        env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "not imported: router_settings.routing_strategy" in done.stderr
    assert "sk-litellm-master-key" not in done.stderr + out.read_text()
    imported = yaml.safe_load(out.read_text())
    gateway = GatewayServer(tmp_path, fresh_pg_url, imported["deployments"])
    try:
        _, key = gateway.new_tenant()
        request_id = uuid.uuid4().hex
        answer = sdk_client(gateway, key).chat.completions.create(
            model="team-llm",
            messages=[{"role": "user", "content": "hello"}],
            extra_headers={"x-request-id": request_id},
        )
        assert answer.choices[0].message.content
        row = ledger_row(gateway, request_id)  # billed at the imported prices, exactly
        usage = answer.usage
        assert usage is not None and row["deployment"] == "team-llm"
        expected = (
            usage.prompt_tokens * Decimal("0.15") + usage.completion_tokens * Decimal("0.6")
        ) / 1_000_000
        assert row["cost_usd"] == expected
        sent = mock_upstream.received()[-1]
        assert sent["body"]["model"] == "mock-model"
        assert sent["authorization"] == "Bearer sk-mock-provider-secret-0123456789"
    finally:
        gateway.stop()
