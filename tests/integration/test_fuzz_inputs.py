"""Hand-written hostile inputs: each gets a clear 4xx in OpenAI's error shape, never a 5xx.

Malformed JSON, wrong types, huge bodies (declared and chunked), deep nesting, invalid UTF-8,
giant `max_tokens`, oversized headers, NUL characters and absurd header values, against a real
gateway process; afterwards the gateway is still up and its log has no traceback.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_fuzz_schema import assert_openai_error
from tests.support.servers import (
    ADMIN_KEY,
    GatewayServer,
    MockUpstreamServer,
    create_database,
    drop_database,
    mock_deployment,
    sql,
    wait_for,
)

pytestmark = pytest.mark.integration

MAX_BODY = 256 * 1024
MAX_HEADERS = 16 * 1024


@pytest.fixture(scope="module")
def gw(session_tmp: Path, mock_upstream: MockUpstreamServer) -> Iterator[GatewayServer]:
    db = create_database("tg_inputs")
    tmp = session_tmp / "inputs"
    tmp.mkdir(exist_ok=True)
    server = GatewayServer(
        tmp,
        db,
        [mock_deployment("mock-mini", "gpt-4o-mini", mock_upstream, timeout_s=5)],
        extra_env={
            "THRIFTGATE_MAX_BODY_BYTES": str(MAX_BODY),
            "THRIFTGATE_MAX_HEADER_BYTES": str(MAX_HEADERS),
        },
    )
    yield server
    server.stop()
    drop_database(db)


@pytest.fixture(scope="module")
def key(gw: GatewayServer) -> str:
    return gw.new_tenant()[1]


def post_raw(
    gw: GatewayServer,
    key: str,
    content: Any,
    path: str = "/chat/completions",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    h = {"Authorization": f"Bearer {key}", "Content-Type": "application/json", **(headers or {})}
    return httpx.post(gw.url + path, headers=h, content=content, timeout=30)


def expect(
    r: httpx.Response, status: int, code: str | None = None, param: str | None = None
) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert_openai_error(r, r.request.url.path)
    err: dict[str, Any] = r.json()["error"]
    if code is not None:
        assert err["code"] == code, err
    if param is not None:
        assert err["param"] == param, err
    return err


def chat(**fields: Any) -> dict[str, Any]:
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}], **fields}


def called(calls: Any) -> dict[str, Any]:
    """A chat request whose assistant turn made `calls`, answered by a tool."""
    messages = [
        {"role": "user", "content": "what is f?"},
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "c", "content": "42"},
    ]
    return {"model": "gpt-4o-mini", "messages": messages}


def parts(second: Any) -> dict[str, Any]:
    """A chat request whose user turn is a text part and then `second`."""
    content = [{"type": "text", "text": "look"}, second]
    return {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}


@pytest.mark.parametrize(
    "raw",
    [
        b"{bad",
        b"",
        b"null",
        b"[1,2]",
        b'"a string"',
        b'{"model": "gpt-4o-mini",}',
        b'{"model":"gpt-4o-mini","temperature":NaN,"messages":[]}',
        b"\x00\x01\x02",
    ],
)
def test_malformed_json_is_400(gw: GatewayServer, key: str, raw: bytes) -> None:
    err = expect(post_raw(gw, key, raw), 400)
    assert err["code"] in ("invalid_json", "invalid_body")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "gpt-4o-mini", "messages": "hello"}, "messages"),
        (
            {"model": "gpt-4o-mini", "messages": [{"role": "robot", "content": "x"}]},
            "messages[0].role",
        ),
        (
            {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": 7}]},
            "messages[0].content",
        ),
        (chat(temperature="hot"), "temperature"),
        (chat(temperature=9), "temperature"),
        (chat(stream="yes"), "stream"),
        (chat(n=0), "n"),
        (chat(max_tokens=True), "max_tokens"),
        (chat(max_tokens=-1), "max_tokens"),
        (chat(max_tokens=10**9), "max_tokens"),
        (chat(max_tokens=10**40), "max_tokens"),
        (chat(max_completion_tokens=2**63), "max_completion_tokens"),
        (chat(stop=[1, 2]), "stop"),
        (chat(stream_options=[]), "stream_options"),
        (chat(tools="none"), "tools"),
        # fields a cache hit answers without: the same 400 on a hit as on a miss
        (chat(metadata="tag"), "metadata"),
        (chat(service_tier=1), "service_tier"),
        (chat(store="yes"), "store"),
        (chat(safety_identifier=5), "safety_identifier"),
        (chat(tools=[{"type": "function", "function": {"name": 5}}]), "tools[0].function"),
        (chat(tools=[{"type": "function"}]), "tools[0].function"),
        (
            chat(tools=[{"type": "function", "function": {"name": "f", "parameters": "{}"}}]),
            "tools[0].function",
        ),
        (chat(tool_choice=5), "tool_choice"),
        (chat(response_format="json"), "response_format"),
        (chat(response_format={"json": True}), "response_format"),
        # an assistant turn's tool calls, as OpenAI checks them
        (called("f()"), "messages[1].tool_calls"),
        (called([5]), "messages[1].tool_calls[0]"),
        (called([{"id": "c", "type": "function"}]), "messages[1].tool_calls[0].function"),
        (
            called([{"id": "c", "type": "function", "function": {"name": "f", "arguments": {}}}]),
            "messages[1].tool_calls[0].function.arguments",
        ),
        # content parts: refused here, not sent to an upstream that may 500 on them (a
        # breaker count) or read as an empty text by the cache and the compressor
        (parts("just a string"), "messages[0].content[1]"),
        (parts({"text": "no type"}), "messages[0].content[1].type"),
        (parts({"type": "text", "text": None}), "messages[0].content[1].text"),
        (parts({"type": "text", "text": 5}), "messages[0].content[1].text"),
        (parts({"type": "text"}), "messages[0].content[1].text"),
        (parts({"type": "image_url", "image_url": {}}), "messages[0].content[1].image_url"),
        (parts({"type": "image_url", "image_url": None}), "messages[0].content[1].image_url"),
        (parts({"type": "input_audio", "input_audio": "x"}), "messages[0].content[1].input_audio"),
        (parts({"type": "file", "file": "a.pdf"}), "messages[0].content[1].file"),
    ],
)
def test_wrong_types_and_giant_values_are_400(
    gw: GatewayServer, key: str, body: dict[str, Any], param: str
) -> None:
    r = httpx.post(
        gw.url + "/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    expect(r, 400, param=param)


def test_embeddings_and_completions_validate_input(gw: GatewayServer, key: str) -> None:
    h = {"Authorization": f"Bearer {key}"}
    r = httpx.post(
        gw.url + "/embeddings",
        json={"model": "gpt-4o-mini", "input": {"a": 1}},
        headers=h,
        timeout=30,
    )
    expect(r, 400, param="input")
    for field, value in [("dimensions", 0), ("dimensions", "5"), ("encoding_format", "hex")]:
        r = httpx.post(
            gw.url + "/embeddings",
            json={"model": "gpt-4o-mini", "input": "x", field: value},
            headers=h,
            timeout=30,
        )
        expect(r, 400, param=field)
    r = httpx.post(
        gw.url + "/completions",
        json={"model": "gpt-4o-mini", "prompt": None},
        headers=h,
        timeout=30,
    )
    expect(r, 400, param="prompt")


def test_invalid_utf8_is_400(gw: GatewayServer, key: str) -> None:
    raw = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\xff\xfe\xc3"}]}'
    expect(post_raw(gw, key, raw), 400, code="invalid_json")
    lone_surrogate = b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"\\ud800"}]}'
    r = post_raw(gw, key, lone_surrogate)
    assert r.status_code < 500, r.text
    assert_openai_error(r, "lone surrogate")


@pytest.mark.parametrize("depth", [100, 200, 300, 1_000, 5_000, 100_000])
@pytest.mark.parametrize("shape", ["list", "object"])
def test_deep_nesting_is_400(gw: GatewayServer, key: str, depth: int, shape: str) -> None:
    """Up to 128 levels pass; deeper is refused before anything is reserved or forwarded (at
    254 levels the body could no longer be serialised for the upstream: that was a 500)."""
    opening, closing = (b"[", b"]") if shape == "list" else (b'{"a":', b"}")
    nested = opening * depth + b"1" + closing * depth
    raw = (
        b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"x"}],"metadata_x":'
        + nested
        + b"}"
    )
    r = post_raw(gw, key, raw)
    if len(raw) > MAX_BODY:
        expect(r, 413, code="request_too_large")
    elif depth + 1 > 128:
        expect(r, 400, code="invalid_json")
    else:
        assert r.status_code == 200, r.text


def test_huge_declared_body_is_413(gw: GatewayServer, key: str) -> None:
    raw = b'{"model":"gpt-4o-mini","pad":"' + b"x" * (MAX_BODY + 10) + b'"}'
    expect(post_raw(gw, key, raw), 413, code="request_too_large")


def test_huge_chunked_body_is_413(gw: GatewayServer, key: str) -> None:
    def gen() -> Iterator[bytes]:
        yield b'{"model":"gpt-4o-mini","pad":"'
        for _ in range(2 * MAX_BODY // 8192):
            yield b"x" * 8192
        yield b'"}'

    expect(post_raw(gw, key, gen()), 413, code="request_too_large")


def test_huge_admin_body_is_413_even_unauthenticated(gw: GatewayServer) -> None:
    raw = b'{"name":"' + b"x" * (MAX_BODY + 10) + b'"}'
    r = httpx.post(
        gw.base + "/admin/tenants",
        content=raw,
        headers={"Content-Type": "application/json"},
        timeout=30,
    )
    expect(r, 413, code="request_too_large")

    def gen() -> Iterator[bytes]:
        yield b'{"name":"'
        for _ in range(2 * MAX_BODY // 8192):
            yield b"x" * 8192
        yield b'"}'

    r = httpx.post(
        gw.base + "/admin/tenants",
        content=gen(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=30,
    )
    expect(r, 413, code="request_too_large")


def test_oversized_headers_are_431(gw: GatewayServer, key: str) -> None:
    r = post_raw(gw, key, b"{}", headers={"x-big": "a" * (MAX_HEADERS + 1)})
    expect(r, 431, code="headers_too_large")
    many = {f"x-h{i}": "a" * 500 for i in range(MAX_HEADERS // 500 + 1)}
    expect(post_raw(gw, key, b"{}", headers=many), 431, code="headers_too_large")
    r = httpx.get(
        gw.base + "/admin/tenants",
        params={"q": "a" * (MAX_HEADERS + 1)},
        headers={"Authorization": f"Bearer {ADMIN_KEY}"},
        timeout=30,
    )
    expect(r, 431, code="headers_too_large")


@pytest.mark.parametrize("value", ["inf", "-inf", "nan", "1e308", "1e12", "abc", "0", "-5"])
def test_absurd_slo_header_is_400(gw: GatewayServer, key: str, value: str) -> None:
    r = httpx.post(
        gw.url + "/chat/completions",
        json=chat(),
        headers={"Authorization": f"Bearer {key}", "x-thriftgate-slo-ms": value},
        timeout=30,
    )
    expect(r, 400, code="invalid_header")


def test_nul_characters_in_admin_input_are_400(gw: GatewayServer) -> None:
    h = {"Authorization": f"Bearer {ADMIN_KEY}"}
    r = httpx.post(gw.base + "/admin/tenants", json={"name": "a\u0000b"}, headers=h, timeout=30)
    expect(r, 400, param="name")
    r = httpx.get(gw.base + "/admin/tenants/abc%00def", headers=h, timeout=30)
    expect(r, 400)
    r = httpx.get(gw.base + "/admin/requests", params={"model": "a\u0000"}, headers=h, timeout=30)
    expect(r, 400)


@pytest.mark.parametrize(
    "fields",
    [
        {"tpm": 2**31},
        {"rpm": 10**12},
        {"budget_usd": "1e30"},
        {"budget_usd": -1},
        {"budget_period": "weekly"},
        {"slo_ms": 0},
        {"name": ""},
        {"name": 5},
        {"bogus": 1},
    ],
)
def test_admin_out_of_range_values_are_400(gw: GatewayServer, fields: dict[str, Any]) -> None:
    h = {"Authorization": f"Bearer {ADMIN_KEY}"}
    body = {"name": "range-check", **fields}
    r = httpx.post(gw.base + "/admin/tenants", json=body, headers=h, timeout=30)
    expect(r, 400)


@pytest.mark.parametrize(
    ("flags", "param"),
    [
        ({"compression_min_prompt_tokens": "abc"}, "flags.compression_min_prompt_tokens"),
        ({"models": 5}, "flags.models"),
        ({"models": "gpt-4o-mini"}, "flags.models"),
        ({"compression": "ultra"}, "flags.compression"),
        ({"cache_ttl_s": 0}, "flags.cache_ttl_s"),
        ({"cache_threshold": "high"}, "flags.cache_threshold"),
        ({"cache": "yes"}, "flags.cache"),
        ({"compression_allow": ["everything"]}, "flags.compression_allow"),
        ("not an object", "flags"),
    ],
)
def test_bad_tenant_flags_are_400_on_create_and_patch(
    gw: GatewayServer, key: str, flags: Any, param: str
) -> None:
    """A flag the request path could not read (it made every request of the tenant a 500, or
    a 400 about a parameter the client never sent) is refused when an admin sets it."""
    h = {"Authorization": f"Bearer {ADMIN_KEY}"}
    body = {"name": f"flags-{uuid.uuid4().hex[:8]}", "flags": flags}
    expect(
        httpx.post(gw.base + "/admin/tenants", json=body, headers=h, timeout=30), 400, param=param
    )
    ok = httpx.post(gw.base + "/admin/tenants", json={"name": body["name"]}, headers=h, timeout=30)
    tid = ok.json()["id"]
    r = httpx.patch(gw.base + f"/admin/tenants/{tid}", json={"flags": flags}, headers=h, timeout=30)
    expect(r, 400, param=param)
    good = {"models": ["gpt-4o-mini"], "compression": "lossless", "cache_ttl_s": 60, "tag": "x"}
    r = httpx.patch(gw.base + f"/admin/tenants/{tid}", json={"flags": good}, headers=h, timeout=30)
    assert r.status_code == 200 and r.json()["flags"] == good


@pytest.mark.parametrize("raw", [b"{not json", b'{"name": "x",}', b"\xff\xfe"])
def test_malformed_admin_json_is_an_invalid_json_400(gw: GatewayServer, raw: bytes) -> None:
    h = {"Authorization": f"Bearer {ADMIN_KEY}", "content-type": "application/json"}
    r = httpx.post(gw.base + "/admin/tenants", content=raw, headers=h, timeout=30)
    err = expect(r, 400, code="invalid_json")
    assert err["param"] is None and "not valid JSON" in err["message"]


def test_gateway_survives_and_ledgered_nothing_bogus(gw: GatewayServer, key: str) -> None:
    r = httpx.post(
        gw.url + "/chat/completions",
        json=chat(),
        headers={"Authorization": f"Bearer {key}"},
        timeout=30,
    )
    assert r.status_code == 200, r.text
    assert gw.proc.poll() is None
    rid = r.headers["x-request-id"]
    rows = wait_for(
        lambda: sql(gw.db_url, "SELECT status_code FROM usage_ledger WHERE request_id = $1", rid),
        10,
    )
    assert [row["status_code"] for row in rows] == [200]
    assert (
        not list((gw.spool_dir / "quarantine").glob("*"))
        if (gw.spool_dir / "quarantine").exists()
        else True
    )
    assert "Traceback" not in gw.log(), gw.log()[-3000:]
