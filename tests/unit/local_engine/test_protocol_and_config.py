from decimal import Decimal

import pytest
from pydantic import ValidationError

from local_engine.config import EngineConfig, SpeculativeConfig
from local_engine.errors import BadEngineRequest
from local_engine.protocol import Endpoint, parse_request
from local_engine.spec_decode.metrics import SpecDecodeSnapshot
from local_engine.stats import EngineStats


def chat(**kw: object) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **kw}


def test_chat_request_is_parsed() -> None:
    req = parse_request(
        "chat/completions",
        chat(
            temperature=0,
            max_tokens=5,
            stop="x",
            stream=True,
            stream_options={"include_usage": True},
        ),
    )
    assert req.messages == [{"role": "user", "content": "hi"}]
    assert req.sampling.greedy and req.max_tokens == 5 and req.stop == ["x"]
    assert req.include_usage


def test_content_parts_and_developer_role() -> None:
    req = parse_request(
        "chat/completions",
        {
            "messages": [
                {
                    "role": "developer",
                    "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                }
            ]
        },
    )
    assert req.messages == [{"role": "system", "content": "ab"}]


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat(n=2), "n"),
        (chat(max_tokens=0), "max_tokens"),
        (chat(temperature=3), "temperature"),
        (chat(stop=["a"] * 5), "stop"),
        ({"messages": []}, "messages"),
        ({"messages": [{"role": "wizard", "content": "x"}]}, "messages[0]"),
        (chat(messages=[{"role": "user", "content": [{"type": "image_url"}]}]), "messages[0]"),
    ],
)
def test_bad_requests_name_the_parameter(body: dict[str, object], param: str) -> None:
    with pytest.raises(BadEngineRequest) as err:
        parse_request("chat/completions", body)
    assert err.value.param == param
    assert err.value.body()["error"]["type"] == "invalid_request_error"


TOOLS = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]


@pytest.mark.parametrize(
    ("endpoint", "body", "param"),
    [
        ("chat/completions", chat(tools=TOOLS), "tools"),
        ("chat/completions", chat(tools=TOOLS, tool_choice="required"), "tool_choice"),
        ("chat/completions", chat(response_format={"type": "json_object"}), "response_format"),
        ("chat/completions", chat(logprobs=True, top_logprobs=2), "logprobs"),
        ("chat/completions", chat(top_logprobs=2), "top_logprobs"),
        ("completions", {"prompt": "hi", "logprobs": 0}, "logprobs"),
        ("completions", {"prompt": "hi", "echo": True}, "echo"),
        ("completions", {"prompt": "hi", "suffix": "end"}, "suffix"),
        ("completions", {"prompt": "hi", "best_of": 2}, "best_of"),
    ],
)
def test_what_the_engine_cannot_honour_is_refused_not_ignored(
    endpoint: Endpoint, body: dict[str, object], param: str
) -> None:
    with pytest.raises(BadEngineRequest) as err:
        parse_request(endpoint, body)
    assert err.value.param == param
    assert err.value.body()["error"]["code"] == "unsupported_parameter"


def test_unused_tools_and_default_formats_are_accepted() -> None:
    for body in (
        chat(tools=[]),
        chat(tools=TOOLS, tool_choice="none"),
        chat(response_format={"type": "text"}, logprobs=False, top_logprobs=0),
    ):
        parse_request("chat/completions", body)


def test_completion_prompt_forms() -> None:
    assert parse_request("completions", {"prompt": "hi"}).prompt == "hi"
    assert parse_request("completions", {"prompt": ["hi"]}).prompt == "hi"
    assert parse_request("completions", {"prompt": [1, 2]}).prompt == [1, 2]
    with pytest.raises(BadEngineRequest):
        parse_request("completions", {"prompt": ["a", "b"]})


def test_config_validation() -> None:
    with pytest.raises(ValidationError):
        SpeculativeConfig(method="draft")
    with pytest.raises(ValidationError):
        SpeculativeConfig(prompt_lookup_min=5, prompt_lookup_max=2)
    with pytest.raises(ValidationError):  # EAGLE/MTP heads exist only in vLLM
        EngineConfig(speculative=SpeculativeConfig(method="mtp"))
    assert EngineConfig(backend="vllm", speculative=SpeculativeConfig(method="mtp"))


def test_cost_per_mtok_is_hardware_price_over_throughput() -> None:
    spec = SpecDecodeSnapshot(0, 0, 0, ())
    stats = EngineStats(0, 0, 0, 0, 0, None, 100.0, None, None, Decimal("0.36"), spec)
    # 100 tok/s = 360,000 tok/h; $0.36/h -> $1 per million tokens.
    assert stats.cost_per_mtok_usd == Decimal("1.000000")
    idle = EngineStats(0, 0, 0, 0, 0, None, None, None, None, Decimal("0.36"), spec)
    assert idle.cost_per_mtok_usd is None
