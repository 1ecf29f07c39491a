"""A Responses request's `text.format` is checked under its own names: the chat checks behind
it (validate_controls) named a non-boolean `strict` as `response_format.json_schema.strict`, a
field the Responses API does not have."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidRequest
from gateway.pipeline.responses_request import chat_body_from_responses


def test_a_non_boolean_strict_is_named_as_the_responses_api_names_it() -> None:
    fmt = {"type": "json_schema", "name": "p", "schema": {"type": "object"}, "strict": "yes"}
    with pytest.raises(InvalidRequest) as caught:
        chat_body_from_responses({"model": "m", "input": "hi", "text": {"format": fmt}})
    assert caught.value.param == "text.format.strict"
    assert "text.format.strict" in caught.value.message


def test_a_boolean_strict_goes_on_to_chat() -> None:
    fmt = {"type": "json_schema", "name": "p", "schema": {"type": "object"}, "strict": True}
    body = chat_body_from_responses({"model": "m", "input": "hi", "text": {"format": fmt}})
    assert body["response_format"]["json_schema"]["strict"] is True
