"""A block dropped as a repeat leaves a marker in its place. An agent that reads a file, edits
it and reads it again got the second read with its unchanged paragraphs silently gone, so the
file looked like it held only the changed one, in lossless mode (found by hunter h4,
session 8)."""

from __future__ import annotations

import json

from gateway.compression import CompressionOptions, PromptCompressor
from gateway.compression.lossless import DUPLICATE_MARKER
from gateway.compression.tokens import TiktokenCounter

LOSSLESS = CompressionOptions(mode="lossless", min_prompt_tokens=0, min_saved_tokens=0)
A = (
    "The service level agreement guarantees 99.9% uptime for all paid plans, measured "
    "monthly, excluding scheduled maintenance windows announced a week ahead."
)
B1 = (
    "Refunds are issued as account credit only, within thirty days of the outage, on "
    "request through the support portal by the account owner."
)
B2 = (
    "Refunds are issued in cash, within ninety days of the outage, on request through the "
    "support portal by any account administrator."
)
C = (
    "This policy is governed by the laws of Ireland and replaces every earlier version of "
    "the service terms published on our website."
)


def _reads(first: str, second: str) -> list[dict[str, str]]:
    return [
        {"role": "user", "content": "Read policy.md, fix the refund terms, read it again."},
        {"role": "tool", "tool_call_id": "1", "content": first},
        {"role": "tool", "tool_call_id": "2", "content": second},
        {"role": "user", "content": "Quote the full current text of policy.md."},
    ]


def test_a_repeated_paragraph_leaves_a_marker_where_it_was(counter: TiktokenCounter) -> None:
    msgs = _reads("\n\n".join([A, B1, C]), "\n\n".join([A, B2, C]))
    res = PromptCompressor(counter).compress(msgs, LOSSLESS)
    assert res.messages[1]["content"] == msgs[1]["content"]
    assert res.messages[2]["content"] == "\n\n".join([DUPLICATE_MARKER, B2, DUPLICATE_MARKER])
    assert res.tokens_after < res.tokens_before


def test_repeated_paragraphs_in_a_row_leave_one_marker(counter: TiktokenCounter) -> None:
    msgs = _reads("\n\n".join([A, C, B1]), "\n\n".join([A, C, B2]))
    res = PromptCompressor(counter).compress(msgs, LOSSLESS)
    assert res.messages[2]["content"] == "\n\n".join([DUPLICATE_MARKER, B2])


def test_a_repeated_json_value_leaves_a_marker(counter: TiktokenCounter) -> None:
    value = json.dumps({"rows": [{"id": i, "city": f"Town {i}"} for i in range(12)]})
    msgs = _reads("Result:\n" + value, "Again:\n" + value + "\nDone: the refund terms changed.")
    res = PromptCompressor(counter).compress(msgs, LOSSLESS)
    second = res.messages[2]["content"]
    assert value not in second and DUPLICATE_MARKER in second
    assert second.startswith("Again:\n") and second.endswith("Done: the refund terms changed.")
