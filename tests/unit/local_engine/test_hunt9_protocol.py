"""Hunt 9 (h4): the local engine's request parsing, as clients really send it."""

import pytest

from local_engine.errors import BadEngineRequest
from local_engine.protocol import parse_request


def chat(**kw: object) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": "user", "content": "hi"}], **kw}


def test_a_null_max_completion_tokens_leaves_max_tokens_in_force() -> None:
    # Clients that write every field send `"max_completion_tokens": null` beside `max_tokens`.
    # The gateway reserved budget for 5 tokens; the engine answered its 256-token default.
    req = parse_request("chat/completions", chat(max_tokens=5, max_completion_tokens=None))
    assert req.max_tokens == 5
    req = parse_request("chat/completions", chat(max_tokens=None, max_completion_tokens=7))
    assert req.max_tokens == 7


def test_a_bad_max_completion_tokens_is_named() -> None:
    with pytest.raises(BadEngineRequest) as info:
        parse_request("chat/completions", chat(max_completion_tokens=0))
    assert info.value.param == "max_completion_tokens"


@pytest.mark.parametrize(
    "part",
    [
        {"type": "text", "text": None},
        {"type": "text", "text": {"a": 1}},
        {"type": "text", "text": 5},
        {"type": "text"},
    ],
)
def test_a_text_part_without_a_string_is_refused_not_prompted_as_its_repr(
    part: dict[str, object],
) -> None:
    # It reached the model as "None" / "{'a': 1}" and was answered 200.
    body = chat(messages=[{"role": "user", "content": [{"type": "text", "text": "a"}, part]}])
    with pytest.raises(BadEngineRequest) as info:
        parse_request("chat/completions", body)
    assert info.value.param == "messages[0].content[1].text"
    assert info.value.code == "invalid_request"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        (chat(modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"}), "audio"),
        (chat(modalities=["audio"]), "modalities"),
        (chat(web_search_options={}), "web_search_options"),
    ],
)
def test_audio_output_and_web_search_are_refused_not_answered_in_plain_text(
    body: dict[str, object], param: str
) -> None:
    # Answered 200 with text only: a client that asked for speech or for a searched answer got
    # neither, and a gateway group never tried a deployment that can.
    with pytest.raises(BadEngineRequest) as info:
        parse_request("chat/completions", body)
    assert info.value.param == param and info.value.code == "unsupported_parameter"


def test_text_only_modalities_pass() -> None:
    assert parse_request("chat/completions", chat(modalities=["text"], audio=None)).messages


def test_a_max_completion_tokens_past_the_context_is_named_as_sent() -> None:
    from local_engine.backends.transformers_backend import TransformersBackend
    from local_engine.config import EngineConfig

    backend = TransformersBackend(EngineConfig(max_model_len=100))
    req = parse_request("chat/completions", chat(max_completion_tokens=500))
    with pytest.raises(BadEngineRequest) as info:
        backend._max_tokens(req, prompt_n=40)
    assert info.value.param == "max_completion_tokens"
    assert "max_completion_tokens is 500" in info.value.message
