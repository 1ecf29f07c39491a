"""The order of a schema's properties is part of what is asked: a structured answer is written
in that order (OpenAI's Structured Outputs follow the schema's order), so `{reasoning, answer}`
reasons before it answers and `{answer, reasoning}` answers first. The keys were hashed with
sorted object keys, and the second request got the first one's answer as `hit-exact`."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.cache.keys import request_keys

MSGS = [{"role": "user", "content": "Is 1001 prime?"}]


def props(*names: str) -> dict[str, Any]:
    return {name: {"type": "string"} for name in names}


def schema_format(*names: str) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": props(*names),
        "required": ["answer", "reasoning"],  # the same list: only the order of properties differs
        "additionalProperties": False,
    }
    return {"type": "json_schema", "json_schema": {"name": "qa", "strict": True, "schema": schema}}


def tool(*names: str) -> list[dict[str, Any]]:
    params = {"type": "object", "properties": props(*names)}
    return [{"type": "function", "function": {"name": "report", "parameters": params}}]


def keys(**fields: Any) -> tuple[str, str]:
    k = request_keys("t1", "chat", "m", {"model": "m", "messages": MSGS, **fields})
    return k.exact, k.scope


def test_a_schema_with_its_properties_in_another_order_is_another_request() -> None:
    first = keys(response_format=schema_format("answer", "reasoning"))
    other = keys(response_format=schema_format("reasoning", "answer"))
    assert first[0] != other[0] and first[1] != other[1]
    assert first == keys(response_format=schema_format("answer", "reasoning"))


def test_tool_parameters_in_another_order_are_another_request() -> None:
    assert keys(tools=tool("answer", "reasoning")) != keys(tools=tool("reasoning", "answer"))


def test_other_parameters_are_keyed_whatever_order_they_come_in() -> None:
    a = {"model": "m", "messages": MSGS, "temperature": 0, "max_tokens": 5, "seed": 1}
    b = {"seed": 1, "max_tokens": 5, "temperature": 0, "messages": MSGS, "model": "m"}
    assert request_keys("t1", "chat", "m", a) == request_keys("t1", "chat", "m", b)


@pytest.mark.parametrize("fmt", [schema_format("answer", "reasoning"), {"type": "json_object"}])
def test_structured_output_is_cached_exactly_only(fmt: dict[str, Any]) -> None:
    """Structured output is an app's template filled with data ("Classify the sentiment of this
    review: the battery life is great"); a request worded otherwise is other data, and "...is
    terrible" (cosine 0.978) was served the cached {"label": "positive"} as hit-semantic."""
    review = [{"role": "user", "content": "Classify this review: the battery life is great"}]
    body = {"model": "m", "messages": review}
    assert request_keys("t1", "chat", "m", body).query is not None
    assert request_keys("t1", "chat", "m", {**body, "response_format": fmt}).query is None
    plain = {**body, "response_format": {"type": "text"}}
    assert request_keys("t1", "chat", "m", plain).query is not None
