"""Mends for litellm 1.100.5's translations, applied once per process (by LiteLLMProvider).

Each wraps one litellm function where its translation loses what the provider said: Gemini's
finish (every chunk is "stop"), an OpenRouter error sent mid-stream (its message lost to an
`int()`), Anthropic's newer stop reasons (unknown, so "stop"). Each checks that what it wraps is
there and does nothing otherwise, so another litellm version only loses the mend.
"""

from __future__ import annotations

from typing import Any


def mend_litellm() -> None:
    mark_gemini_finishes()
    keep_openrouter_stream_errors()
    map_finish_reasons()


def notes_gemini_finishes(stream: Any) -> bool:
    """Whether `stream` (a litellm stream wrapper's `completion_stream`) is Gemini's, wrapped."""
    return bool(getattr(type(stream), _GEMINI_WRAPPED, False))


def gemini_finish(stream: Any) -> str | None:
    """Why Gemini said its stream stopped (its finishReason, or "BLOCKED"); None until then."""
    reason = getattr(stream, _GEMINI_MARK, None)
    return reason if isinstance(reason, str) else None


# Set on litellm's Gemini stream class once its chunk parser is wrapped; on one of its streams
# once Gemini said why it stopped.
_GEMINI_WRAPPED = "thriftgate_notes_finishes"
_GEMINI_MARK = "thriftgate_finished"


def mark_gemini_finishes() -> None:
    """Make litellm's Gemini (and Vertex Gemini) stream note when Gemini says why it stopped.

    litellm maps every Gemini chunk, finished or not, to `finish_reason: "stop"`, so a stream
    cut mid-answer ended like a whole one and was billed and cached as one. Gemini ends an
    answer with a chunk whose candidate has a `finishReason` (or, for a blocked prompt, with
    `promptFeedback.blockReason`); the wrapped parser marks the stream when it sees one."""
    try:
        from litellm.llms.vertex_ai.gemini import vertex_and_google_ai_studio_gemini as gemini
    except ImportError:  # another litellm: streams are checked as before
        return
    stream_class = getattr(gemini, "ModelResponseIterator", None)
    parse = getattr(stream_class, "chunk_parser", None)
    if stream_class is None or parse is None or getattr(stream_class, _GEMINI_WRAPPED, False):
        return

    def chunk_parser(self: Any, chunk: Any) -> Any:
        if reason := _gemini_says_why(chunk):
            setattr(self, _GEMINI_MARK, reason)
        return parse(self, chunk=chunk)

    stream_class.chunk_parser = chunk_parser
    setattr(stream_class, _GEMINI_WRAPPED, True)


def map_finish_reasons() -> None:
    """Finish reasons litellm does not know, which it reports as "stop": Anthropic's
    `model_context_window_exceeded` (Sonnet 4.5 and later stop there when the answer fills the
    context window) is an answer cut short, OpenAI's "length"; as "stop" it was cached and
    shown as whole."""
    try:
        from litellm.litellm_core_utils import core_helpers
    except ImportError:
        return
    known = getattr(core_helpers, "_FINISH_REASON_MAP", None)
    if isinstance(known, dict):
        known.setdefault("model_context_window_exceeded", "length")


def keep_openrouter_stream_errors() -> None:
    """Keep the message of an error OpenRouter sends mid-stream.

    OpenRouter reports a provider failing mid-answer in-band, as a chunk with
    `{"error": {"code": "server_error", "message": ...}}`; litellm makes its status from that
    code with `int()`, so the client got "invalid literal for int() with base 10:
    'server_error'" instead of the message. Such a code is passed on as a 500."""
    try:
        from litellm.llms.openrouter.chat import transformation as openrouter
    except ImportError:
        return
    handler = getattr(openrouter, "OpenRouterChatCompletionStreamingHandler", None)
    parse = getattr(handler, "chunk_parser", None)
    if handler is None or parse is None or getattr(handler, _OPENROUTER_WRAPPED, False):
        return

    def chunk_parser(self: Any, chunk: Any) -> Any:
        error = chunk.get("error") if isinstance(chunk, dict) else None
        if isinstance(error, dict) and not _status_like(error.get("code")):
            chunk = {**chunk, "error": {**error, "code": 500}}
        return parse(self, chunk=chunk)

    handler.chunk_parser = chunk_parser
    setattr(handler, _OPENROUTER_WRAPPED, True)


_OPENROUTER_WRAPPED = "thriftgate_keeps_errors"


def _status_like(code: Any) -> bool:
    try:
        return 100 <= int(code) <= 599
    except (TypeError, ValueError):
        return False


def _gemini_says_why(chunk: Any) -> str | None:
    """Why Gemini says it stopped, if this raw chunk says so: a candidate's finishReason, or
    "BLOCKED" for a prompt it refused (promptFeedback.blockReason)."""
    if not isinstance(chunk, dict):
        return None
    feedback = chunk.get("promptFeedback")
    if isinstance(feedback, dict) and feedback.get("blockReason"):
        return "BLOCKED"
    candidates = chunk.get("candidates")
    for c in candidates if isinstance(candidates, list) else ():
        reason = c.get("finishReason") if isinstance(c, dict) else None
        if isinstance(reason, str) and reason not in ("", "FINISH_REASON_UNSPECIFIED"):
            return reason
    return None
