"""A chat completion chunk stream translated into the Responses API's stream events.

`response.created` and `response.in_progress` open the stream; text arrives as a message item
(`output_item.added`, `content_part.added`, `output_text.delta`..., then the matching `.done`
events; a refusal as a `refusal` part with `refusal.delta`s), each tool call as a
`function_call` item with `function_call_arguments.delta`s, each item closed (its `.done`
events) before the next one opens, as OpenAI streams them; the stream ends with
`response.completed` (or `response.incomplete` when cut by
`max_output_tokens`) carrying the whole response and its usage, and what the request cost and
saved (`response.x_thriftgate`, as a chat stream's usage chunk has it). An in-band error from the
pipeline (the upstream failed after the first byte) ends it with `error` and `response.failed`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from gateway.pipeline.responses_reply import (
    as_object,
    finish_status,
    function_call_item,
    item_ids,
    message_item,
    output_text,
    response_shell,
    token_logprobs,
    usage_from_chat,
)
from gateway.pipeline.stream import PRICED, Pieces

Json = dict[str, Any]


def content_part(kind: str, text: str, logprobs: list[Json] | None = None) -> Json:
    """A message's content part: `output_text`, or a `refusal` (as the JSON reply has it)."""
    if kind != "output_text":
        return {"type": "refusal", "refusal": text}
    part = output_text(text)
    part["logprobs"] = logprobs or []
    return part


def event_logprobs(logprobs: list[Json] | None) -> list[Json]:
    """Token log probabilities as the text delta and done events carry them: without the
    `bytes` that the output_text part's entries have (OpenAI's and the SDK's event shape)."""
    return [
        {
            "token": entry["token"],
            "logprob": entry["logprob"],
            "top_logprobs": [
                {"token": top["token"], "logprob": top["logprob"]} for top in entry["top_logprobs"]
            ],
        }
        for entry in logprobs or ()
    ]


@dataclass(slots=True)
class _Call:
    output_index: int
    item_id: str
    call_id: str
    name: str = ""
    arguments: list[str] = field(default_factory=list)
    done: bool = False  # its `.done` events were sent


class ResponsesStream:
    """Stateful translator: feed chat chunks in order, send the events it returns in order."""

    def __init__(
        self,
        response_id: str,
        created_at: int,
        model: str,
        echo: Json,
        *,
        fallback_usage: Callable[[], Json | None] = lambda: None,
    ) -> None:
        self.response_id = response_id
        self.created_at = created_at
        self.model = model
        self.echo = echo
        self.fallback_usage = fallback_usage
        self.msg_id, self.fc_prefix = item_ids(response_id)
        self.seq = 0
        self.output: list[tuple[int, Json]] = []  # finished items with their output_index
        self.announced = 0  # items announced so far: the next item's output_index
        # The open message item's content parts as (kind, texts), or None when none is open;
        # kind is "output_text" or "refusal", and a new part opens when the kind changes.
        self.parts: list[tuple[str, Pieces]] | None = None
        self.text_index = -1
        self.logprobs: list[list[Json]] = []  # each part's token log probabilities, as parts
        self.calls: dict[int, _Call] = {}  # the open function call by chat tool-call index
        self.closed: dict[int, _Call] = {}  # the finished ones
        self.finish_reason: str | None = None
        self.usage: Json | None = None
        self.service_tier: str | None = None
        # what the request cost and saved, from the pipeline's usage chunk (pipeline.priced)
        self.priced: Json | None = None

    def _event(self, kind: str, **fields: Any) -> Json:
        event = {"type": kind, "sequence_number": self.seq, **fields}
        self.seq += 1
        return event

    def _shell(self, status: str) -> Json:
        shell = response_shell(
            self.response_id, self.created_at, self.model, self.echo, status=status
        )
        if self.service_tier is not None:  # the tier that served it, once the upstream said
            shell["service_tier"] = self.service_tier
        return shell

    def start(self) -> list[Json]:
        return [
            self._event("response.created", response=self._shell("in_progress")),
            self._event("response.in_progress", response=self._shell("in_progress")),
        ]

    def feed(self, chunk: Json) -> list[Json]:
        events: list[Json] = []
        if isinstance(chunk.get("service_tier"), str):
            self.service_tier = chunk["service_tier"]
        if isinstance(chunk.get("usage"), dict):
            self.usage = usage_from_chat(chunk["usage"])
        if isinstance(chunk.get(PRICED), dict):
            self.priced = chunk[PRICED]
        choices = chunk.get("choices")
        choice = choices[0] if isinstance(choices, list) and choices else None
        if not isinstance(choice, dict) or choice.get("index", 0) != 0:
            return events  # Responses has one answer; other choices (n > 1) are not shown
        if isinstance(choice.get("finish_reason"), str):
            self.finish_reason = choice["finish_reason"]
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            return events
        for kind, key in (("output_text", "content"), ("refusal", "refusal")):
            text = delta.get(key)
            if isinstance(text, str) and text:
                logprobs = token_logprobs(choice.get("logprobs")) if kind == "output_text" else []
                events.extend(self._text_delta(text, kind, logprobs))
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                events.extend(self._call_delta(call))
        return events

    def _text_delta(
        self, content: str, kind: str = "output_text", logprobs: list[Json] | None = None
    ) -> list[Json]:
        events = self._open_part(kind)
        assert self.parts is not None
        self.parts[-1][1].append(content)
        self.logprobs[-1].extend(logprobs or ())
        extra: Json = {"logprobs": event_logprobs(logprobs)} if kind == "output_text" else {}
        events.append(
            self._event(
                f"response.{kind}.delta",
                item_id=self.msg_id,
                output_index=self.text_index,
                content_index=len(self.parts) - 1,
                delta=content,
                **extra,
            )
        )
        return events

    def _open_part(self, kind: str) -> list[Json]:
        """Open the message item if none is open, and a `kind` part unless that is open."""
        events: list[Json] = []
        if self.parts is None:
            events.extend(self._close_calls())  # one item at a time, as OpenAI streams them
            if any(item["type"] == "message" for _, item in self.output):
                # text again after a tool call: a second message item, with its own id
                self.msg_id = f"{item_ids(self.response_id)[0]}_{self.announced}"
            self.parts, self.text_index = [], self._next_index()
            item = message_item(self.msg_id, "", status="in_progress")
            events.append(
                self._event("response.output_item.added", output_index=self.text_index, item=item)
            )
        if self.parts and self.parts[-1][0] == kind:
            return events
        events.extend(self._close_part())
        self.parts.append((kind, Pieces()))
        self.logprobs = [*self.logprobs[: len(self.parts) - 1], []]
        events.append(
            self._event(
                "response.content_part.added",
                item_id=self.msg_id,
                output_index=self.text_index,
                content_index=len(self.parts) - 1,
                part=content_part(kind, ""),
            )
        )
        return events

    def _close_part(self) -> list[Json]:
        """The `.done` events of the open content part (none when no part is open)."""
        if not self.parts:
            return []
        kind, texts = self.parts[-1]
        text, index = texts.text(), len(self.parts) - 1
        where = {"item_id": self.msg_id, "output_index": self.text_index, "content_index": index}
        logprobs = self.logprobs[-1]
        done: Json = (
            {"text": text, "logprobs": event_logprobs(logprobs)}
            if kind == "output_text"
            else {"refusal": text}
        )
        part = content_part(kind, text, logprobs)
        return [
            self._event(f"response.{kind}.done", **where, **done),
            self._event("response.content_part.done", **where, part=part),
        ]

    def _call_delta(self, call: Json) -> list[Json]:
        events: list[Json] = []
        index = call.get("index", 0)
        fn = as_object(call.get("function"))
        open_call = self.calls.get(index) or self.closed.get(index)
        if open_call is None:
            # OpenAI closes each item before it opens the next: the text, and an earlier call
            # (chat streams a call whole before the next index appears)
            events.extend(self._close_text())
            events.extend(self._close_calls())
            output_index = self._next_index()
            number = len(self.calls) + len(self.closed)
            open_call = _Call(
                output_index, f"{self.fc_prefix}{number}", str(call.get("id") or f"call_{number}")
            )
            self.calls[index] = open_call
            open_call.name = str(fn.get("name") or "")
            item = function_call_item(
                open_call.item_id, open_call.call_id, open_call.name, "", status="in_progress"
            )
            events.append(
                self._event("response.output_item.added", output_index=output_index, item=item)
            )
        elif fn.get("name"):
            open_call.name += str(fn["name"])
        args = fn.get("arguments")
        if isinstance(args, str) and args:
            open_call.arguments.append(args)
            if open_call.done:  # an upstream that interleaves calls: only the final object
                self._amend(open_call)  # gets what came after the call's `.done` events
                return events
            events.append(
                self._event(
                    "response.function_call_arguments.delta",
                    item_id=open_call.item_id,
                    output_index=open_call.output_index,
                    delta=args,
                )
            )
        return events

    def _next_index(self) -> int:
        self.announced += 1
        return self.announced - 1

    def _items(self) -> list[Json]:
        return [item for _, item in sorted(self.output, key=lambda pair: pair[0])]

    def _close_text(self, status: str = "completed") -> list[Json]:
        if self.parts is None:
            return []
        events = self._close_part()
        item = message_item(self.msg_id, "", status=status)
        item["content"] = [
            content_part(kind, texts.text(), logprobs)
            for (kind, texts), logprobs in zip(self.parts, self.logprobs, strict=False)
        ]
        index, self.parts = self.text_index, None
        self.output.append((index, item))
        events.append(self._event("response.output_item.done", output_index=index, item=item))
        return events

    def _amend(self, call: _Call) -> None:
        item = function_call_item(call.item_id, call.call_id, call.name, "".join(call.arguments))
        self.output = [(i, item if i == call.output_index else it) for i, it in self.output]

    def _close_calls(self) -> list[Json]:
        """The `.done` events of the open function calls; they stay known by their chat index
        (in `closed`) so a late argument delta still reaches the final object."""
        events: list[Json] = []
        for index, call in sorted(self.calls.items(), key=lambda pair: pair[1].output_index):
            call.done = True
            self.closed[index] = call
            args = "".join(call.arguments)
            item = function_call_item(call.item_id, call.call_id, call.name, args)
            self.output.append((call.output_index, item))
            events.append(
                self._event(
                    "response.function_call_arguments.done",
                    item_id=call.item_id,
                    output_index=call.output_index,
                    name=call.name,
                    arguments=args,
                )
            )
            events.append(
                self._event("response.output_item.done", output_index=call.output_index, item=item)
            )
        self.calls = {}
        return events

    def finish(self) -> list[Json]:
        status, incomplete = finish_status(self.finish_reason)
        events = self._close_text(status) + self._close_calls()
        if not self.output:  # nothing was generated: still one (empty) message, as the JSON reply
            events += self._open_part("output_text") + self._close_text(status)
        body = self._shell(status)
        body.update(
            incomplete_details=incomplete,
            output=self._items(),
            usage=self.usage or self.fallback_usage(),
        )
        self._add_priced(body)
        kind = "response.completed" if status == "completed" else "response.incomplete"
        events.append(self._event(kind, response=body))
        return events

    def fail(self, error: Any) -> list[Json]:
        err = error if isinstance(error, dict) else {}
        message = str(err.get("message") or "The upstream failed while streaming the answer.")
        events = self._close_text("incomplete") + self._close_calls()
        events.append(
            self._event("error", code=err.get("code"), message=message, param=err.get("param"))
        )
        body = self._shell("failed")
        body.update(
            error={"code": "server_error", "message": message},
            output=self._items(),
            usage=self.usage or self.fallback_usage(),
        )
        self._add_priced(body)
        events.append(self._event("response.failed", response=body))
        return events

    def _add_priced(self, body: Json) -> None:
        """The terminal event's response says what the request cost and saved, as a chat
        stream's usage chunk does: a stream's headers leave before it is priced."""
        if self.priced is not None:
            body[PRICED] = self.priced


async def response_events(
    chunks: AsyncIterator[Json], translator: ResponsesStream
) -> AsyncIterator[Json]:
    """Drive the translator over the pipeline's chunk stream (closing it however this ends)."""
    try:
        for event in translator.start():
            yield event
        async for chunk in chunks:
            if "error" in chunk and not chunk.get("choices"):
                for event in translator.fail(chunk["error"]):
                    yield event
                return
            for event in translator.feed(chunk):
                yield event
        for event in translator.finish():
            yield event
    finally:
        closer = getattr(chunks, "aclose", None)
        if closer is not None:
            await closer()
