import pytest

from gateway.errors import InvalidRequest
from gateway.pipeline.stream import StreamAssembler, carries_output
from gateway.pipeline.validate import validate_chat, validate_completion, validate_embedding


@pytest.mark.parametrize(
    ("chunk", "output"),
    [
        ({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}]}, False),
        ({"choices": [{"index": 0, "delta": {"role": "assistant"}}]}, False),
        ({"choices": [], "prompt_filter_results": [{"prompt_index": 0}]}, False),  # Azure
        ({"choices": [{"index": 0, "delta": {"content": "Hi"}}]}, True),
        ({"choices": [{"index": 0, "delta": {"refusal": "No"}}]}, True),
        ({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c"}]}}]}, True),
        ({"choices": [{"index": 0, "delta": {"reasoning_content": "hmm"}}]}, True),
        ({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}, True),
        ({"choices": [{"index": 0, "text": "legacy"}]}, True),
        ({"choices": [{"index": 0, "text": ""}]}, False),
        ({"choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 0}}, True),
    ],
)
def test_first_token_is_the_first_chunk_with_output(chunk, output):
    assert carries_output(chunk) is output


def test_assembler_rebuilds_content_tool_calls_and_usage():
    a = StreamAssembler()
    base = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    a.add({**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hel"}}]})
    a.add({**base, "choices": [{"index": 0, "delta": {"content": "lo"}}]})
    a.add(
        {
            **base,
            "choices": [
                {
                    "index": 0,
                    "delta": {
                        "tool_calls": [
                            {
                                "index": 0,
                                "id": "call1",
                                "function": {"name": "f", "arguments": '{"a"'},
                            }
                        ]
                    },
                }
            ],
        }
    )
    a.add(
        {
            **base,
            "choices": [
                {
                    "index": 0,
                    "delta": {"tool_calls": [{"index": 0, "function": {"arguments": ": 1}"}}]},
                    "finish_reason": "tool_calls",
                }
            ],
        }
    )
    a.add({**base, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 4}})
    out = a.result(chat=True)
    msg = out["choices"][0]["message"]
    assert msg["content"] == "Hello"
    assert msg["tool_calls"][0]["function"] == {"name": "f", "arguments": '{"a": 1}'}
    assert out["choices"][0]["finish_reason"] == "tool_calls"
    assert out["usage"]["completion_tokens"] == 4 and out["id"] == "c1"


def test_assembler_completions_text():
    a = StreamAssembler()
    a.add({"choices": [{"index": 0, "text": "ab"}]})
    a.add({"choices": [{"index": 0, "text": "c", "finish_reason": "stop"}]})
    assert a.result(chat=False)["choices"][0]["text"] == "abc"


@pytest.mark.parametrize(
    "body",
    [
        [],
        "x",
        {"model": ""},
        {"model": "m"},
        {"model": "m", "messages": "hi"},
        {"model": "m", "messages": [{"role": "user"}]},
        {"model": "m", "messages": [{"role": "user", "content": 5}]},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "n": 0},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "stream": "yes"},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "stop": ["a"] * 5},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "max_tokens": True},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "top_p": 3},
        {"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": [1]},
    ],
)
def test_bad_chat_bodies_are_refused(body):
    with pytest.raises(InvalidRequest) as exc:
        validate_chat(body)
    assert exc.value.status_code == 400 and exc.value.message


def test_valid_bodies_pass_through_unknown_fields():
    body = {
        "model": "m",
        "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}],
        "vendor_knob": {"a": 1},
        "stop": "\n",
        "seed": 3,
    }
    assert validate_chat(body) is body
    assert validate_completion({"model": "m", "prompt": ["a", "b"]})
    assert validate_embedding({"model": "m", "input": [[1, 2], [3]]})
    with pytest.raises(InvalidRequest):
        validate_embedding({"model": "m", "input": []})
