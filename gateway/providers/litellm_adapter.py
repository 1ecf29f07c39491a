"""Upstreams with other wire formats (Anthropic, Gemini, Bedrock...) through litellm.

litellm translates OpenAI-shaped requests to the provider's API and back; we hand it the
deployment's credentials per call and convert its response objects back to plain dicts.
The import is deferred: litellm takes seconds to import and most gateways never need it.
"""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import math
import os
import re
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

import httpx

from gateway.errors import InvalidRequest, UpstreamError, UpstreamTimeout
from gateway.providers.base import (
    Endpoint,
    Json,
    credentials_refused,
    deployment_not_found,
    masked_text,
    provider_key,
)
from gateway.providers.embeddings import in_requested_format, with_text_input
from gateway.providers.litellm_controls import (
    failed_mapping_the_request,
    refuse_schemaless_json_schema,
    refuse_unforceable_tool_choice,
    refuse_unreadable_tool_choice,
    with_allowed_tools_applied,
)
from gateway.providers.litellm_mends import gemini_finish, mend_litellm, notes_gemini_finishes
from gateway.providers.names import litellm_name
from gateway.providers.openai_compatible import error_message, rate_limited
from gateway.providers.upstream_errors import MAX_CODE_CHARS, out_of_quota
from gateway.routing.catalog import Deployment
from gateway.settings import DeploymentConfig

# litellm's message prefixes before the provider's own (often JSON) error body:
# "litellm.ContextWindowExceededError: litellm.BadRequestError: AnthropicError - ",
# "litellm.BadRequestError: GeminiException BadRequestError - ",
# "litellm.APIError: APIError: OpenrouterException - ".
_PREFIXES = re.compile(
    r"^(?:(?:litellm\.)?\w+(?:Error|Exception): )+"
    r"(?:(?:\w+(?:Error|Exception) )*\w+(?:Error|Exception) - )?"
)
# A Python bytes literal at the start of a text (b'...' or b"...", escapes included)
_BYTES_REPR = re.compile(r"b'(?:[^'\\]|\\.)*'" + r'|b"(?:[^"\\]|\\.)*"')
_SECONDS = re.compile(r"(\d{1,6}(?:\.\d+)?)s")
# How much of litellm's message is read for the provider's body (masked first)
_MAX_ERROR_CHARS = 16_384
# OpenRouter's in-band error as litellm words it: "Message: ..., Metadata: {...}, User ID: ..."
_OPENROUTER_WORDING = re.compile(r"^Message: (.+?), Metadata: .*, User ID: .*$")
# Request fields litellm would reject or that we handle ourselves.
_DROP = ("model", "stream", "stream_options")
# Request fields that change the answer, with the values that ask for nothing. litellm runs with
# `drop_params` (a provider that lacks `user` or `seed` must not fail the request), so one of
# these its provider lacks would vanish on the way: `n: 3` answered with one choice, `logprobs`
# with null, a token bias ignored. Such a request is refused instead (see `_refuse_lacking`).
# Presence / frequency penalties are not here: they are sampling hints like temperature (chat
# UIs send them by default), an answer without them is still an answer, and other gateways
# drop them too; refusing them turned away requests that work everywhere else.
_ANSWER_PARAMS: dict[str, tuple[Any, ...]] = {
    "n": (None, 1),
    "logprobs": (None, False),
    "top_logprobs": (None, 0),
    "logit_bias": (None, {}),
    "modalities": (None, ["text"]),
    "audio": (None,),
    # structured output (Cohere, Replicate): free text instead, which the client cannot parse
    "response_format": (None, {"type": "text"}),
}
# Settings litellm takes per call, written under a deployment's `options`: Azure's api-version,
# Vertex AI's project and region, Bedrock's region. Without them every deployment of a provider
# shared one environment variable (AZURE_API_VERSION, VERTEXAI_LOCATION, AWS_REGION_NAME): two
# Azure resources on different api-versions, or one model in two regions, could not be served.
CALL_OPTIONS = ("api_version", "vertex_project", "vertex_location", "aws_region_name")
# litellm's own loggers: at DEBUG they print every call's arguments, the provider key included.
LITELLM_LOGGERS = ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy")
_T = TypeVar("_T")


def quiet_litellm_logs() -> None:
    """Pin litellm's loggers to WARNING, whatever level the root logger or LITELLM_LOG asks for."""
    for name in LITELLM_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)


class LiteLLMProvider:
    def __init__(self) -> None:
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        os.environ.setdefault("LITELLM_LOG", "ERROR")
        import litellm

        litellm.drop_params = True
        litellm.telemetry = False
        litellm.suppress_debug_info = True
        quiet_litellm_logs()  # after the import: LITELLM_LOG=DEBUG turns debug on there
        mend_litellm()
        self._litellm = litellm
        # deployment name -> the OpenAI parameters litellm maps for it (None: litellm cannot say)
        self._supported: dict[str, list[str] | None] = {}

    def _refuse_lacking(self, body: Json, dep: Deployment) -> None:
        """A 400 `unsupported_parameter` for an answer-changing field litellm would drop for
        this deployment's provider: a 200 without what was asked is a wrong answer, and dispatch
        tries the group's next deployment for this code. Unknown to litellm: nothing refused."""
        refuse_schemaless_json_schema(body, dep)
        refuse_unreadable_tool_choice(body, dep)
        if dep.name not in self._supported:  # litellm takes ~0.5 ms to say: once per deployment
            try:
                self._supported[dep.name] = self._litellm.get_supported_openai_params(
                    model=dep.served_model, custom_llm_provider=litellm_name(dep.provider)
                )
            except Exception:  # litellm cannot say: let it handle the request as before
                self._supported[dep.name] = None
        supported = self._supported[dep.name]
        if supported is None:
            return
        for name, inert in _ANSWER_PARAMS.items():
            if name not in supported and body.get(name) not in inert:
                raise InvalidRequest(
                    f"Deployment {dep.name!r} ({dep.provider}) does not support '{name}': "
                    "its provider cannot honour it; send the request without it or use a "
                    "model that supports it.",
                    param=name,
                    code="unsupported_parameter",
                )
        # Tools where litellm maps none (Bedrock's Llama models, SageMaker, Predibase): dropped,
        # an agent gets prose with a 200. Plain `ollama` lists none but puts them into the
        # prompt itself (litellm's function-to-prompt fallback), which is left alone.
        if (
            body.get("tools")
            and "tools" not in supported
            and "functions" not in supported
            and litellm_name(dep.provider) != "ollama"
        ):
            raise InvalidRequest(
                f"Deployment {dep.name!r} ({dep.provider}) does not support 'tools': its "
                "provider cannot call them; use a model that supports tool calling.",
                param="tools",
                code="unsupported_parameter",
            )
        refuse_unforceable_tool_choice(body, dep, supported)
        # The legacy `functions` list where litellm maps only `tools` (Anthropic, Mistral):
        # dropped, the model answers prose. (Where neither is listed, as for Ollama, litellm
        # has its own fallback for functions, which is left alone.)
        if body.get("functions") and "functions" not in supported and "tools" in supported:
            raise InvalidRequest(
                f"Deployment {dep.name!r} ({dep.provider}) does not support the legacy "
                "'functions' parameter; send them as 'tools' (and 'tool_choice').",
                param="functions",
                code="unsupported_parameter",
            )

    def _args(self, body: Json, dep: Deployment, timeout_s: float) -> dict[str, Any]:
        args = {k: v for k, v in with_allowed_tools_applied(body).items() if k not in _DROP}
        args["model"] = f"{litellm_name(dep.provider)}/{dep.served_model}"
        if dep.config.api_base:
            args["api_base"] = dep.config.api_base
            azure = litellm_name(dep.provider) in ("azure", "azure_ai")
            if azure and (version := _api_version_in(dep.config.api_base)):
                # the Azure portal's "Target URI" pasted whole: litellm keeps the host and
                # dropped the api-version it names for its own default
                args["api_version"] = version
        key = provider_key(dep)
        if key:
            args["api_key"] = key
        for name in CALL_OPTIONS:
            if name in dep.config.options:
                args[name] = dep.config.options[name]
        args["timeout"] = timeout_s
        args["num_retries"] = 0
        return args

    async def complete(
        self, body: Json, dep: Deployment, *, endpoint: Endpoint, timeout_s: float
    ) -> Json:
        if endpoint != "chat/completions":
            raise chat_only(dep)
        self._refuse_lacking(body, dep)
        due = asyncio.get_running_loop().time() + timeout_s
        try:
            call = self._litellm.acompletion(**self._args(body, dep, timeout_s))
            resp = await _by(call, dep, due, timeout_s)
        except UpstreamError:
            raise
        except Exception as exc:
            raise _translate(dep, exc) from exc
        answer = _to_dict(resp)
        if answer.get("choices") == []:
            # Gemini with no candidate (or only one without content: a malformed function
            # call): a 200 with `choices: []` that clients index into and crash on
            raise UpstreamError(f"Deployment {dep.name!r} answered with no choices.")
        if isinstance(answer.get("choices"), list):
            answer["choices"] = [_with_content(_without_blank_extras(c)) for c in answer["choices"]]
        return answer

    async def stream(
        self, body: Json, dep: Deployment, *, endpoint: Endpoint, timeout_s: float
    ) -> AsyncIterator[Json]:
        if endpoint != "chat/completions":
            raise chat_only(dep)
        self._refuse_lacking(body, dep)
        args = self._args(body, dep, timeout_s)
        args["stream"] = True
        if "stream_options" in body:
            # Usage, whatever else the client asked. A body without it is dispatch's retry for
            # an upstream that refuses the parameter (Azure before api-version 2024-09-01):
            # adding it back failed every stream there.
            args["stream_options"] = {"include_usage": True}
        resp: Any = None
        loop = asyncio.get_running_loop()
        due = loop.time() + timeout_s  # the first chunk: counted from the call
        try:
            resp = await _by(self._litellm.acompletion(**args), dep, due, timeout_s)
            said = False  # whether any text, call or reasoning went out
            while True:
                try:
                    chunk = await _by(anext(resp), dep, due, timeout_s)
                except StopAsyncIteration:
                    break
                data = _to_dict(chunk)
                if _invented_finish(resp, data):
                    raise UpstreamError(f"Deployment {dep.name!r} ended the stream early.")
                if not said and (failed := _failed_empty(resp, data)):
                    # litellm maps Gemini's MALFORMED_FUNCTION_CALL to "stop": an empty answer
                    # passed for the model's whole reply; nothing is out, so the group falls back
                    raise UpstreamError(f"Deployment {dep.name!r} answered nothing ({failed}).")
                for out in openai_shaped(data):
                    said = said or _says_something(out)
                    yield out
                due = loop.time() + timeout_s  # the next one: counted from when it is asked for
        except UpstreamError:
            raise
        except Exception as exc:
            raise _translate(dep, exc) from exc
        finally:
            # the upstream's HTTP stream closed now (a stall, a client gone), not when collected
            closer = getattr(resp, "aclose", None)
            if closer is not None:
                await closer()

    async def embed(self, body: Json, dep: Deployment, *, timeout_s: float) -> Json:
        args = self._args(with_text_input(body), dep, timeout_s)
        # Floats, encoded here as the client asked: litellm drops the field for providers
        # without it and maps "base64" to Bedrock's binary (one bit a dimension) embeddings.
        args.pop("encoding_format", None)
        due = asyncio.get_running_loop().time() + timeout_s
        try:
            resp = await _by(self._litellm.aembedding(**args), dep, due, timeout_s)
        except UpstreamError:
            raise
        except Exception as exc:
            raise _translate(dep, exc) from exc
        return in_requested_format(body, _to_dict(resp))

    async def aclose(self) -> None:
        return None


async def _by(call: Awaitable[_T], dep: Deployment, due: float, timeout_s: float) -> _T:
    """`call`'s result by `due` (loop time), as on the OpenAI-shape path: an answer, or a
    stream's first chunk, `timeout_s` after the call; each next chunk `timeout_s` after it is
    asked for (a slow client's pauses do not count). litellm's only timeout is httpx's per
    read, which an upstream's keep-alive resets (Anthropic's `event: ping`, an SSE comment, a
    proxy's spaces before a JSON answer): a stall that kept one up held the request, its
    client and its budget reservation for as long as it lasted."""
    try:
        async with asyncio.timeout_at(due):
            return await call
    except TimeoutError:
        raise UpstreamTimeout(
            f"Deployment {dep.name!r} did not answer within {timeout_s:.3g} s."
        ) from None


def _api_version_in(api_base: str) -> str | None:
    values = parse_qs(urlsplit(api_base).query).get("api-version")
    return values[-1] if values else None


def options_problems(config: DeploymentConfig) -> list[str]:
    """What is wrong with a litellm deployment's `options` (for the start-up checks): a name
    litellm is not given per call would be ignored in silence, and each value is a string."""
    found = [
        f"options.{name}: not a setting of a litellm provider (known: {', '.join(CALL_OPTIONS)})"
        for name in sorted(set(config.options) - set(CALL_OPTIONS))
    ]
    found += [
        f"options.{name}: should be a string"
        for name in CALL_OPTIONS
        if name in config.options and not isinstance(config.options[name], str)
    ]
    return found


def chat_only(dep: Deployment) -> InvalidRequest:
    """Legacy `/v1/completions` asked of a deployment litellm serves chat only: this deployment
    cannot serve it, another of its group may (dispatch tries it for this code)."""
    return InvalidRequest(
        f"Deployment {dep.name!r} ({dep.provider}) serves chat completions only; send the "
        "request to /v1/chat/completions.",
        param="model",
        code="unsupported_parameter",
    )


def _invented_finish(resp: Any, chunk: Json) -> bool:
    """Whether `chunk`'s finish_reason is litellm's own: at the end of the provider's body its
    stream wrapper closes the answer with `finish_reason: "stop"` whether or not the provider
    said why it stopped (Anthropic: a message_delta with stop_reason). Without that, the body
    was cut mid-answer: passing the "stop" on would bill and cache a truncated answer.

    The wrapper records the provider's own finish as `received_finish_reason` (or
    `intermittent_finish_reason`); a response without those attributes is not checked.
    Gemini's chunks all carry "stop" there, whether or not Gemini said why it stopped: its
    stream says so itself (`litellm_mends.mark_gemini_finishes`)."""
    if not any(isinstance(c, dict) and c.get("finish_reason") for c in chunk.get("choices") or ()):
        return False
    source = getattr(resp, "completion_stream", None)
    if notes_gemini_finishes(source):
        return gemini_finish(source) is None
    if not hasattr(resp, "received_finish_reason"):
        return False
    return (
        getattr(resp, "received_finish_reason", None) is None
        and getattr(resp, "intermittent_finish_reason", None) is None
    )


# Gemini's finish reasons for an answer that failed: no text, no usable call
_GEMINI_FAILURES = frozenset({"MALFORMED_FUNCTION_CALL", "MALFORMED_RESPONSE"})


def _failed_empty(resp: Any, chunk: Json) -> str | None:
    """Gemini's own reason, when the finish chunk of an answer is a failure litellm calls
    "stop" (MALFORMED_FUNCTION_CALL); None otherwise."""
    if not any(isinstance(c, dict) and c.get("finish_reason") for c in chunk.get("choices") or ()):
        return None
    reason = gemini_finish(getattr(resp, "completion_stream", None))
    return reason if reason in _GEMINI_FAILURES else None


def _says_something(chunk: Json) -> bool:
    said = ("content", "tool_calls", "reasoning_content")
    return any(
        isinstance(c, dict) and any((c.get("delta") or {}).get(k) for k in said)
        for c in chunk.get("choices") or ()
    )


def _is_empty(choice: Any) -> bool:
    return (
        isinstance(choice, dict)
        and choice.get("finish_reason") is None
        and not any((choice.get("delta") or {}).values())
    )


def openai_shaped(chunk: Json) -> list[Json]:
    """What OpenAI would have sent for one of litellm's translated chunks.

    litellm's translations (Anthropic, Gemini...) can put `choices: [{"delta": {}}]` on the
    usage chunk, put the usage on the finish chunk, or add empty chunks. OpenAI sends usage
    alone, in a last chunk with `choices: []`, and never an empty delta; clients that read
    `choices[0]` of the usage chunk, or count chunks, rely on that.
    """
    choices = [_without_blank_extras(c) for c in chunk.get("choices") or ()]
    choices = [c for c in choices if not _is_empty(c)]
    usage = chunk.get("usage")
    if not choices and not usage:
        return []  # nothing in it
    if not usage:
        return [{**chunk, "choices": choices}]
    out: list[Json] = []
    if choices:
        out.append({k: v for k, v in chunk.items() if k != "usage"} | {"choices": choices})
    out.append({**chunk, "choices": []})
    return out


def _without_blank_extras(choice: Any) -> Any:
    """A choice without litellm's `provider_specific_fields` where it says nothing, in its
    delta or message: every Anthropic stream had a chunk whose delta was only
    `{"provider_specific_fields": {"citations": null, "thinking_blocks": null}}`, an empty
    delta in all but name, and every answer carried it in its message."""
    if not isinstance(choice, dict):
        return choice
    for part in ("delta", "message"):
        inner = choice.get(part)
        if isinstance(inner, dict) and _blank(inner.get("provider_specific_fields", 0)):
            extras = {k: v for k, v in inner.items() if k != "provider_specific_fields"}
            choice = {**choice, part: extras}
    return choice


def _with_content(choice: Any) -> Any:
    """A choice whose message has `content`, null when there is no text, as OpenAI sends it:
    litellm's objects are dumped without their None fields, so a tool-call answer or a
    filtered one (Gemini's SAFETY) had no `content` key and `message["content"]` failed."""
    message = choice.get("message") if isinstance(choice, dict) else None
    if isinstance(message, dict) and "content" not in message:
        choice = {**choice, "message": {"role": "assistant", **message, "content": None}}
    return choice


def _blank(fields: Any) -> bool:
    return isinstance(fields, dict) and all(v is None for v in fields.values())


def _to_dict(obj: Any) -> Json:
    if isinstance(obj, dict):
        return obj
    data: Json = obj.model_dump(exclude_none=True)
    data.pop("_hidden_params", None)
    data.pop("_response_headers", None)
    return data


def _translate(dep: Deployment, exc: Exception) -> UpstreamError | InvalidRequest:
    status = getattr(exc, "status_code", None)
    name = type(exc).__name__
    # litellm's messages can embed the request; keep only the first line of the provider's
    # message, and never the key (masked before the cut, so a key straddling it leaves no
    # prefix behind). The provider's JSON body may span lines (Google's are pretty-printed):
    # its message is read out of the whole text first.
    text = str(getattr(exc, "message", "") or exc)
    shown = masked_text(dep, text, _MAX_ERROR_CHARS)
    body = _error_body(shown)
    cleaned = _clean(shown, body)
    raw = (cleaned.splitlines() or [name])[0][:300] if cleaned.strip() else name
    if any("Timeout" in type(e).__name__ for e in _chain(exc)):
        # a stalled stream comes as MidStreamFallbackError wrapping the read timeout
        return UpstreamTimeout(f"Deployment {dep.name!r} timed out.")
    if status in (401, 403):
        return credentials_refused(dep, status, raw)
    if (setup := _setup_missing(dep, exc)) is not None:
        return setup
    if failed_mapping_the_request(_chain(exc)):  # litellm says 500 for any of its own errors
        return InvalidRequest(
            f"Deployment {dep.name!r} ({dep.provider}) cannot take this request: {raw}",
            code="unsupported_parameter",
        )
    if "LLM Provider NOT provided" in raw:
        # litellm's 400 for a provider it does not know: the deployment's config is wrong,
        # not the client's request, so another deployment may serve it.
        return UpstreamError(
            f"Deployment {dep.name!r} is misconfigured: litellm does not know its provider "
            f"{dep.provider!r}.",
            code="deployment_misconfigured",
        )
    if status == 404:
        return deployment_not_found(dep, status, raw)
    if status == 402:  # the operator's account has no credit left (OpenRouter): no retry helps
        return out_of_quota(dep, status, raw)
    if status == 429:  # as from an OpenAI-compatible upstream: a 429 with its Retry-After
        code = "insufficient_quota" if "insufficient_quota" in text else None
        headers = _response_headers(exc)
        delay = _retry_delay(body)
        if delay and "Retry-After" not in headers:  # Google's wait is in the body only
            headers["Retry-After"] = delay
        return rate_limited(dep, raw, code, headers)
    if status == 400 and "credit balance is too low" in raw:
        # Anthropic's 400 for the operator's account out of credit: not the request's fault,
        # so not a 400 to dispatch (which would try no other deployment)
        spent = out_of_quota(dep, status, raw)
        spent.upstream_status = None
        return spent
    if status == 400 and "OperationNotSupported" in _error_codes(exc, body):
        # Azure: the deployment is a model that does not chat (an embedding deployment)
        return UpstreamError(
            f"Deployment {dep.name!r} does not serve chat completions (Azure "
            f"OperationNotSupported): check its upstream_model. {raw}",
            code="deployment_misconfigured",
        )
    if status == 400 and _google_status(body) == "FAILED_PRECONDITION":
        # Gemini's "User location is not supported for the API use." / "free tier is not
        # available in your country": where the gateway runs or its account, not the request;
        # as a client's 400 no other deployment of the group was tried
        return UpstreamError(
            f"Deployment {dep.name!r} cannot serve from this gateway's account or region "
            f"(HTTP 400 FAILED_PRECONDITION): {raw}",
            code="deployment_misconfigured",
        )
    if status in (400, 422):
        rejected = f"Deployment {dep.name!r} rejected the request: {raw}"
        if name == "ContextWindowExceededError":  # clients branch on OpenAI's code
            return InvalidRequest(rejected, code="context_length_exceeded", param="messages")
        if name == "ContentPolicyViolationError":  # Azure's content filter: its own code
            return InvalidRequest(rejected, code="content_filter", param="prompt")
        # The provider's own code and param, as an OpenAI-compatible upstream's go back: Azure's
        # `unsupported_parameter` (an o-series model and `temperature`...) lets dispatch try the
        # group's next deployment, and clients branch on them.
        code, param = _code_and_param(dep, exc, body)
        return InvalidRequest(rejected, code=code, param=param)
    return UpstreamError(
        f"Deployment {dep.name!r} failed ({name}): {raw}",
        upstream_status=status if isinstance(status, int) else None,
    )


def _setup_missing(dep: Deployment, exc: BaseException) -> UpstreamError | None:
    """What this host lacks for the deployment's provider, said plainly: a Python package
    litellm imports only for it (Vertex AI's google-auth: "No module named 'google.auth'"), or
    AWS credentials for Bedrock ("'NoneType' object has no attribute 'access_key'"). Every
    request fails until the operator fixes it; another deployment of the group may serve."""
    said = str(exc)  # what failed the call, not a missing module litellm got past
    aws = litellm_name(dep.provider).startswith(("bedrock", "sagemaker"))
    for seen in _chain(exc):
        if isinstance(seen, ModuleNotFoundError) and seen.name and seen.name in said:
            package = _PACKAGES.get(seen.name, seen.name.split(".")[0])
            return UpstreamError(
                f"Deployment {dep.name!r} ({dep.provider}) needs the Python package "
                f"{package!r}, which is not installed here (pip install {package}).",
                code="deployment_misconfigured",
            )
        if aws and isinstance(seen, AttributeError) and "'access_key'" in str(seen):
            return UpstreamError(
                f"Deployment {dep.name!r} ({dep.provider}) found no AWS credentials: set "
                "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or an instance "
                "role) for the gateway, or a Bedrock API key in its api_key_env.",
                code="deployment_misconfigured",
            )
    return None


# Import names litellm asks for -> what pip installs them as
_PACKAGES = {"google.auth": "google-auth", "google": "google-auth", "botocore": "boto3"}


def _response_headers(exc: BaseException) -> httpx.Headers:
    """The upstream response's headers that litellm kept on its exception (or what it wraps)."""
    for seen in _chain(exc):
        headers = getattr(seen, "litellm_response_headers", None)
        if headers is None:
            headers = getattr(getattr(seen, "response", None), "headers", None)
        if isinstance(headers, Mapping) and headers:
            return httpx.Headers(dict(headers))  # case-insensitive, whatever litellm kept
    return httpx.Headers()


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """`exc` and what it wraps: litellm's `original_exception`, then Python's cause/context."""
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            return
        yield seen
        seen = getattr(seen, "original_exception", None) or seen.__cause__ or seen.__context__


def _clean(text: str, body: Any) -> str:
    """The provider's own message out of litellm's: the message of the provider's JSON error
    body if that is what follows litellm's prefixes, else the text without the prefixes."""
    text = _PREFIXES.sub("", text, count=1)
    if worded := _OPENROUTER_WORDING.match(text):
        text = worded[1]
    message = error_message(body)
    return text if message is None else message


def _error_body(text: str) -> Any:
    """The provider's JSON error body that follows litellm's prefixes, parsed; None if none.
    It may span lines, be shown as a bytes repr (b'{\\n  "error"...}'), and be followed by
    more of litellm's words ("Original exception: ...")."""
    text = _PREFIXES.sub("", text, count=1)
    if text[:2] in ("b'", 'b"'):
        end = _BYTES_REPR.match(text)
        if end is None:
            return None
        try:
            text = ast.literal_eval(end[0]).decode("utf-8", "replace")
        except (ValueError, SyntaxError):
            return None
    if not text.startswith(("{", "[")):
        return None
    try:
        return json.JSONDecoder().raw_decode(text)[0]
    except ValueError:
        return None


def _error_codes(exc: BaseException, body: Any) -> set[str]:
    """The provider's error codes (Azure's OperationNotSupported...): from the error body, and
    from the openai SDK's error that litellm wraps (Azure's path)."""
    error = body.get("error") if isinstance(body, dict) else None
    found = [error.get("code") if isinstance(error, dict) else None]
    found += [getattr(seen, "code", None) for seen in _chain(exc)]
    return {code for code in found if isinstance(code, str)}


def _code_and_param(dep: Deployment, exc: BaseException, body: Any) -> tuple[Any, Any]:
    """The OpenAI-style `code` and `param` of the provider's error (a word, not a status):
    from its error body, else from the openai SDK's error litellm wraps (Azure's path)."""
    error = body.get("error") if isinstance(body, dict) else None
    pairs = [(error.get("code"), error.get("param"))] if isinstance(error, dict) else []
    pairs += [(getattr(seen, "code", None), getattr(seen, "param", None)) for seen in _chain(exc)]
    for code, param in pairs:
        if isinstance(code, str) and code and not code.isdigit():
            return (
                masked_text(dep, code, MAX_CODE_CHARS),
                masked_text(dep, param, MAX_CODE_CHARS) if isinstance(param, str) else None,
            )
    return None, None


def _google_status(body: Any) -> str | None:
    """A Google API error body's `error.status` (INVALID_ARGUMENT, FAILED_PRECONDITION...)."""
    error = body.get("error") if isinstance(body, dict) else None
    status = error.get("status") if isinstance(error, dict) else None
    return status if isinstance(status, str) else None


def _retry_delay(body: Any) -> str | None:
    """Google's RetryInfo `retryDelay` ("34s", "1.5s") in an error body, as whole seconds."""
    error = body.get("error") if isinstance(body, dict) else None
    details = error.get("details") if isinstance(error, dict) else None
    for detail in details if isinstance(details, list) else ():
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        if isinstance(delay, str) and (found := _SECONDS.fullmatch(delay.strip())):
            return str(math.ceil(float(found[1])))
    return None
