"""Gemini and Azure OpenAI deployments (translated by litellm) as their teams configure them,
through a real gateway, Postgres and the official SDK, against local fakes of the two APIs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.support.provider_fakes import ProviderFakes
from tests.support.servers import GatewayServer, ledger_row, sdk_client

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fakes() -> Iterator[ProviderFakes]:
    f = ProviderFakes()
    yield f
    f.stop()


@pytest.fixture(scope="module")
def gw(session_tmp: Path, pg_url: str, fakes: ProviderFakes) -> Iterator[GatewayServer]:
    prices = {"input_cost_per_mtok": 1, "output_cost_per_mtok": 2}
    deps = [
        {"name": "gemini-flash", "model": "gemini", "provider": "gemini",
         "upstream_model": "gemini-2.5-flash", "api_base": fakes.gemini_base,
         "api_key_env": "MOCK_PROVIDER_KEY", **prices},
        # an Azure resource pinned to an api-version from before stream_options
        {"name": "azure-4o", "model": "azure-4o", "provider": "azure",
         "upstream_model": "prod-4o", "api_base": fakes.azure_base,
         "api_key_env": "MOCK_PROVIDER_KEY", "options": {"api_version": "2024-06-01"}, **prices},
    ]  # fmt: skip
    server = GatewayServer(session_tmp, pg_url, deps)
    yield server
    server.stop()


def ask(c: openai.OpenAI, model: str, text: str, rid: str) -> list[str]:
    """A stream's text pieces; raises what the SDK raises for an in-band error."""
    stream = c.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": text}],
        stream=True,
        extra_headers={"x-request-id": rid},
    )
    return [ch.choices[0].delta.content or "" for ch in stream if ch.choices]


def test_a_gemini_stream_cut_mid_answer_is_neither_billed_whole_nor_cached(
    gw: GatewayServer,
) -> None:
    _, key = gw.new_tenant()
    c = sdk_client(gw, key)
    text = f"CUT what is the capital of France? {uuid.uuid4().hex}"
    rid = f"cut-{uuid.uuid4().hex[:8]}"
    with pytest.raises(openai.APIError, match="ended the stream early"):
        ask(c, "gemini", text, rid)
    row = ledger_row(gw, rid)
    assert row["status_code"] != 200 and row["cache_status"] == "miss"
    # not cached: the same question goes to the upstream again (and is cut again)
    again = f"cut-{uuid.uuid4().hex[:8]}"
    with pytest.raises(openai.APIError, match="ended the stream early"):
        ask(c, "gemini", text, again)
    assert ledger_row(gw, again)["cache_status"] == "miss"


def test_a_whole_gemini_stream_is_served(gw: GatewayServer) -> None:
    _, key = gw.new_tenant()
    rid = f"whole-{uuid.uuid4().hex[:8]}"
    pieces = ask(sdk_client(gw, key), "gemini", f"capital? {uuid.uuid4().hex}", rid)
    assert "".join(pieces) == "Paris is the capital."
    row = ledger_row(gw, rid)
    assert (row["status_code"], row["prompt_tokens"], row["completion_tokens"]) == (200, 8, 4)


def test_an_azure_api_version_without_stream_options_still_streams(
    gw: GatewayServer, fakes: ProviderFakes
) -> None:
    _, key = gw.new_tenant()
    c = sdk_client(gw, key)
    for _ in range(2):
        rid = f"az-{uuid.uuid4().hex[:8]}"
        assert "".join(ask(c, "azure-4o", f"hello {uuid.uuid4().hex}", rid)) == "Hi there"
        assert ledger_row(gw, rid)["status_code"] == 200
    # the deployment's own api-version; refused once with stream_options, then sent without
    assert {v for v, _ in fakes.requests} == {"2024-06-01"}
    assert [s for _, s in fakes.requests] == [True, False, False]


def test_an_old_azure_api_version_streams_when_the_client_asks_for_usage(
    gw: GatewayServer,
) -> None:
    """The client's own include_usage is dropped on the retry too: the gateway ends the stream
    with its own priced usage chunk (the counts it billed) whatever the upstream sends."""
    _, key = gw.new_tenant()
    stream = sdk_client(gw, key).chat.completions.create(
        model="azure-4o",
        messages=[{"role": "user", "content": f"hello {uuid.uuid4().hex}"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hi there"
    usage = [c.usage for c in chunks if c.usage is not None]
    assert len(usage) == 1 and usage[0].prompt_tokens > 0
