"""What the engine cannot honour is a 400 `unsupported_parameter` naming the parameter (so a
gateway group falls back to a deployment that can), never silently ignored; defaults pass."""

from __future__ import annotations

import pytest

from local_engine.errors import BadEngineRequest
from local_engine.protocol import Endpoint, parse_request


def chat(**kw: object) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **kw}


IMAGE = {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}
CALL = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("endpoint", "body", "param"),
    [
        ("chat/completions", chat(messages=[{"role": "user", "content": [IMAGE]}]), "messages[0]"),
        (
            "chat/completions",
            chat(messages=[{"role": "function", "name": "f", "content": "1"}]),
            "messages[0]",
        ),
        (
            "chat/completions",
            chat(
                messages=[
                    {"role": "user", "content": "x"},
                    {"role": "assistant", "content": None, "tool_calls": [CALL]},
                    {"role": "tool", "tool_call_id": "c1", "content": "1"},
                ]
            ),
            "messages[1].tool_calls",
        ),
        ("completions", {"prompt": ["a", "b"]}, "prompt"),
        ("chat/completions", chat(logit_bias={"50256": -100}), "logit_bias"),
        ("chat/completions", chat(presence_penalty=0.5), "presence_penalty"),
        ("completions", {"prompt": "hi", "frequency_penalty": -1}, "frequency_penalty"),
    ],
)
def test_capability_gaps_are_unsupported_parameter(
    endpoint: Endpoint, body: dict[str, object], param: str
) -> None:
    with pytest.raises(BadEngineRequest) as err:
        parse_request(endpoint, body)
    assert err.value.param == param
    assert err.value.code == "unsupported_parameter"
    assert err.value.status_code == 400


def test_default_values_of_unsupported_parameters_are_accepted() -> None:
    parse_request(
        "chat/completions",
        chat(logit_bias={}, presence_penalty=0, frequency_penalty=0.0),
    )
    parse_request("chat/completions", chat(logit_bias=None, presence_penalty=None))


def test_top_p_zero_is_the_smallest_nucleus() -> None:
    req = parse_request("chat/completions", chat(top_p=0, temperature=1))
    assert 0 < req.sampling.top_p <= 1e-6


def test_malformed_requests_stay_invalid_request() -> None:
    for body in (
        chat(messages=[{"role": "wizard", "content": "x"}]),
        chat(messages=[{"role": "user", "content": ["not a part"]}]),
        chat(top_p=1.5),
    ):
        with pytest.raises(BadEngineRequest) as err:
            parse_request("chat/completions", body)
        assert err.value.code == "invalid_request"
