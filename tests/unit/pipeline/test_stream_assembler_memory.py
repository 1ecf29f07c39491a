"""A long stream's copy for the ledger and the cache is about the size of its text. Each piece
was kept as its own small string: 100,000 tokens of five characters held 6.2 MB for 0.5 MB of
text, per stream, for as long as the stream lasted (50 slow readers: 300 MB). A Responses API
stream kept a second such copy for its closing events."""

from __future__ import annotations

import tracemalloc
from collections.abc import Iterator
from typing import Any

import orjson

from gateway.pipeline.responses_reply import echo_fields
from gateway.pipeline.responses_stream import ResponsesStream
from gateway.pipeline.stream import StreamAssembler

BASE = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m"}
N = 20_000


def events(delta_of: Any, n: int = N) -> Iterator[dict[str, Any]]:
    """Chunks as they come off the wire: each parsed from its own bytes, then dropped."""
    raw = [
        orjson.dumps({**BASE, "choices": [{"index": i % 2, "delta": delta_of(i)}]})
        for i in range(n)
    ]
    for data in raw:
        yield orjson.loads(data)


def test_a_long_stream_is_held_at_about_its_texts_size() -> None:
    text_bytes = sum(len(f"w{i % 10}rd ") for i in range(N))
    tracemalloc.start()
    try:
        a = StreamAssembler()
        before = tracemalloc.get_traced_memory()[0]
        for c in events(lambda i: {"content": f"w{i % 10}rd "}):
            a.add(c)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 2 * text_bytes, (held, text_bytes)  # it was 12x


def test_a_long_responses_stream_is_held_at_about_its_texts_size() -> None:
    text_bytes = sum(len(f"w{i % 10}rd ") for i in range(N))
    translator = ResponsesStream("resp_mem", 1, "m", echo_fields({}))
    translator.start()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for c in events(lambda i: {"content": f"w{i % 10}rd "}):
            c["choices"][0]["index"] = 0
            translator.feed(c)  # the events it returns go out and are dropped
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert held < 2 * text_bytes, (held, text_bytes)
    done = translator.finish()[-1]["response"]
    assert done["output"][0]["content"][0]["text"] == "".join(f"w{i % 10}rd " for i in range(N))


def test_every_text_survives_the_joins_in_order() -> None:
    def delta(i: int) -> dict[str, Any]:
        if i % 3 == 0:
            return {"content": f"c{i} "}
        if i % 3 == 1:
            return {"reasoning_content": f"r{i} "}
        return {"refusal": f"x{i} "}

    a = StreamAssembler()
    for c in events(delta, 1000):
        a.add(c)
    a.add({**BASE, "choices": [{"index": 0, "delta": {"refusal": ""}}]})
    choices = a.result(chat=True)["choices"]
    for choice in choices:
        i0 = choice["index"]
        mine = [i for i in range(1000) if i % 2 == i0]
        message = choice["message"]
        assert message["content"] == "".join(f"c{i} " for i in mine if i % 3 == 0)
        assert message["reasoning_content"] == "".join(f"r{i} " for i in mine if i % 3 == 1)
        assert message["refusal"] == "".join(f"x{i} " for i in mine if i % 3 == 2)


def test_legacy_completion_text_survives_the_joins() -> None:
    a = StreamAssembler()
    for i in range(1000):
        a.add({"id": "t", "object": "text_completion", "choices": [{"index": 0, "text": f"{i},"}]})
    assert a.result(chat=False)["choices"][0]["text"] == "".join(f"{i}," for i in range(1000))
