"""The OpenAI SDK's surface as client libraries use it (hardening round 8, hunter h3).

Every answer the SDK gets carries an `x-request-id` (the SDK shows it as `_request_id` and on
its errors as `request_id`, what a user quotes in a bug report): the Responses API's side
routes (`input_tokens`, retrieve, delete, cancel) and unknown paths answered without one.
"""

from __future__ import annotations

import openai
import pytest

from tests.support.servers import GatewayServer
from tests.support.servers import sdk_client as client

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sdk(gateway: GatewayServer) -> openai.OpenAI:
    return client(gateway, gateway.new_tenant()[1])


def test_input_tokens_count_carries_a_request_id(sdk: openai.OpenAI) -> None:
    raw = sdk.responses.input_tokens.with_raw_response.count(
        model="gpt-4o-mini", input="hello", extra_headers={"x-request-id": "req-h3-count"}
    )
    assert raw.parse().input_tokens > 0
    assert raw.headers.get("x-request-id") == "req-h3-count"
    made = sdk.responses.input_tokens.with_raw_response.count(model="gpt-4o-mini", input="hi")
    assert made.headers.get("x-request-id", "").startswith("req_")


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.responses.retrieve("resp_x", extra_headers={"x-request-id": "req-h3-404"}),
        lambda c: c.responses.delete("resp_x", extra_headers={"x-request-id": "req-h3-404"}),
        lambda c: c.responses.cancel("resp_x", extra_headers={"x-request-id": "req-h3-404"}),
        lambda c: c.files.list(extra_headers={"x-request-id": "req-h3-404"}),
        lambda c: c.models.delete("gpt-4o-mini", extra_headers={"x-request-id": "req-h3-404"}),
    ],
    ids=["retrieve", "delete", "cancel", "unknown-path", "method-not-allowed"],
)
def test_errors_off_the_main_routes_carry_the_request_id(sdk: openai.OpenAI, call: object) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        call(sdk)  # type: ignore[operator]
    assert info.value.status_code in (404, 405)
    assert info.value.request_id == "req-h3-404"
