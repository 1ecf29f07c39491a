"""Hunt 9 (h4): a local model that cannot load is the deployment's failure, not a gateway 500."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.errors import UpstreamError
from gateway.providers.local import LocalProvider
from gateway.routing.catalog import Catalog
from gateway.settings import DeploymentConfig


async def test_a_model_folder_that_fails_to_load_is_an_upstream_error(tmp_path: Path) -> None:
    # Passes the folder check (config.json + weights) but transformers cannot load it: the
    # ValueError went up raw, every request was a 500 internal_error, and a group never fell
    # back to its other deployments.
    folder = tmp_path / "broken-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llama"}')
    (folder / "model.safetensors").write_bytes(b"not a safetensors file")
    cfg = DeploymentConfig(name="broken", model="m", provider="local", options={"model": folder})
    dep = Catalog.build([cfg]).deployments["broken"]
    provider = LocalProvider()
    body = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 2}
    try:
        for _ in range(2):  # the next request tries the load again, and fails the same way
            with pytest.raises(UpstreamError) as info:
                await provider.complete(body, dep, endpoint="chat/completions", timeout_s=30)
            assert info.value.upstream_status == 503 and info.value.retryable
            assert "broken" in info.value.message and str(tmp_path) not in info.value.message
        assert provider.loading(dep)
    finally:
        await provider.aclose()
