"""Stored responses: the conversation kept with a response and its `input_items` pages."""

from __future__ import annotations

import pytest

from gateway.errors import InvalidRequest
from gateway.pipeline.responses_store import input_items, input_items_page, record, turns


def stored(n: int) -> list[dict]:
    return [{"id": f"i{k}", "type": "message", "role": "user"} for k in range(n)]


def ids(page: dict) -> list[str]:
    return [item["id"] for item in page["data"]]


def test_pages_in_both_orders_and_both_cursors():
    s = stored(5)
    assert ids(input_items_page(s, {})) == ["i4", "i3", "i2", "i1", "i0"]
    first = input_items_page(s, {"order": "asc", "limit": "2"})
    assert ids(first) == ["i0", "i1"] and first["has_more"] and first["last_id"] == "i1"
    last = input_items_page(s, {"order": "asc", "limit": "2", "after": "i3"})
    assert ids(last) == ["i4"] and not last["has_more"]
    # `before` alone: the page right before the cursor
    back = input_items_page(s, {"order": "asc", "limit": "2", "before": "i3"})
    assert ids(back) == ["i1", "i2"] and back["has_more"]
    assert ids(input_items_page(s, {"after": "i3", "before": "i0"})) == ["i2", "i1"]
    assert input_items_page(s, {"after": "i0"}) == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


@pytest.mark.parametrize(
    ("query", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"order": "up"}, "order"),
        ({"after": "nope"}, "after"),
    ],
)
def test_bad_page_queries_name_the_parameter(query, param):
    with pytest.raises(InvalidRequest) as err:
        input_items_page(stored(2), query)
    assert err.value.param == param and err.value.code == "invalid_value"


def test_input_items_get_ids_and_listed_shapes():
    inp = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"type": "item_reference", "id": "fc_9"},
        {"type": "function_call_output", "call_id": "c", "output": "ok"},
        {"type": "message", "id": "msg_old", "role": "user", "content": "seen"},
    ]
    fc = {"id": "fc_9", "type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"}
    items = input_items(inp, {"fc_9": fc}, "abc", seen={"msg_old"})
    assert items == [
        {
            "id": "msg_abc_0",
            "type": "message",
            "role": "user",
            "content": [{"type": "input_text", "text": "hi"}],
            "status": "completed",
        },
        {
            "id": "msg_abc_1",
            "type": "message",
            "role": "assistant",
            "content": [
                {"type": "output_text", "text": "hello", "annotations": [], "logprobs": []}
            ],
            "status": "completed",
        },
        fc,
        {
            "id": "fco_abc_3",
            "type": "function_call_output",
            "call_id": "c",
            "output": "ok",
            "status": "completed",
        },
    ]
    first = record({"id": "r1", "output": [fc]}, items[:1])
    second = record({"id": "r2", "output": []}, items[1:2], chain=["r1"])
    assert second["chain"] == ["r1"] and first["chain"] == []
    assert turns([first, second]) == [items[0], fc, items[1]]


def test_an_image_part_is_listed_with_the_fields_the_sdk_requires():
    image = {"type": "input_image", "image_url": "data:image/png;base64,AAAA"}
    [item] = input_items([{"role": "user", "content": [image]}], {}, "abc")
    assert item["content"] == [{**image, "detail": "auto", "file_id": None}]
