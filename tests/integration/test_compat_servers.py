"""The OpenAI-compatible servers teams run themselves (llama.cpp, vLLM, TGI, LM Studio, Ollama)
or rent (OpenRouter, Groq) behind a real gateway process, driven by the official openai SDK.
The servers are faithful fakes (`tests/support/compat_upstreams.py`), each answering with the
quirks of the real one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.compat_upstreams import CALL_ARGUMENTS, CompatUpstreams
from tests.support.servers import GatewayServer, create_database, drop_database, ledger_row

pytestmark = pytest.mark.integration

TOOLS: Any = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
# Servers whose own refusal of a prompt too long for their context has no OpenAI code.
SMALL_CONTEXT = ["llamacpp", "vllm", "tgi", "lmstudio"]


class Rig:
    def __init__(self, tmp: Path) -> None:
        self.db = create_database("tg_compat")
        self.up = CompatUpstreams()

        def dep(name: str, model: str, server: str, cost: float = 0.1) -> dict[str, Any]:
            # as a user writes them: model names with slashes and colons, no api_key_env
            return {
                "name": name,
                "model": model,
                "provider": "openai_compatible",
                "upstream_model": model,
                "api_base": self.up.base(server),
                "input_cost_per_mtok": cost,
                "output_cost_per_mtok": cost * 4,
            }

        deps = [dep(s, f"small-{s}", s, 0.01) for s in SMALL_CONTEXT]
        deps += [dep(f"{s}-big", f"small-{s}", "groq", 0.5) for s in SMALL_CONTEXT]
        deps += [
            dep("lmstudio-alone", "lmstudio-community/qwen2.5-7b", "lmstudio"),
            dep("tgi-alone", "tgi/Llama-3.1-8B-Instruct", "tgi"),
            dep("openrouter", "deepseek/deepseek-r1", "openrouter"),
            dep("minimal", "minimal:latest", "minimal"),
            dep("proxied", "proxied", "proxy"),
            dep("openrouter-cheap", "credit-group", "openrouter", 0.01),
            dep("groq-dear", "credit-group", "groq", 0.5),
            dep("tgi-cheap", "tgi-group", "tgi", 0.01),
            dep("groq-tgi-backup", "tgi-group", "groq", 0.5),
            dep("lmstudio-cheap", "lmstudio-group", "lmstudio", 0.01),
            dep("groq-lmstudio-backup", "lmstudio-group", "groq", 0.5),
            {
                **dep("ollama-no-v1", "llama3.1:8b", "ollama"),
                "api_base": self.up.root().replace("//", "//ops:hunter2-secret@"),
            },
            dep("openrouter-first", "broken-group", "openrouter", 0.01),
            dep("groq-second", "broken-group", "groq", 0.5),
            dep("always-sse", "unsloth/gemma-3-12b-it", "always-sse"),
            dep("framed", "framed", "framed"),
            dep("mislabelled", "mislabelled", "mislabelled"),
            dep("never-sse", "never-sse", "never-sse"),
            dep("llamacpp-alone", "qwen2.5:7b-instruct", "llamacpp"),
            # both refuse a long prompt: the client gets the last refusal, as the headers say
            dep("llamacpp-first", "two-small", "llamacpp", 0.01),
            dep("vllm-second", "two-small", "vllm", 0.5),
        ]
        try:
            self.gw = GatewayServer(tmp, self.db, deps)
        except BaseException:  # a gateway that does not start leaves no database behind
            self.up.close()
            drop_database(self.db)
            raise
        _, key = self.gw.new_tenant()
        self.client = openai.OpenAI(
            base_url=self.gw.url,
            api_key=key,
            max_retries=0,
            timeout=30,
            default_headers={"Cache-Control": "no-cache, no-store"},
        )

    def close(self) -> None:
        self.client.close()
        self.gw.stop()
        self.up.close()
        drop_database(self.db)


@pytest.fixture(scope="module")
def rig(session_tmp: Path) -> Iterator[Rig]:
    tmp = session_tmp / "compat-servers"
    tmp.mkdir(exist_ok=True)
    r = Rig(tmp)
    yield r
    r.close()


def ask(text: str) -> Any:
    return [{"role": "user", "content": f"{text} {uuid.uuid4().hex}"}]


def rid() -> str:
    return "req-compat-" + uuid.uuid4().hex


# -- a prompt too long for a small context -----------------------------------------------------


@pytest.mark.parametrize("server", SMALL_CONTEXT)
@pytest.mark.parametrize("stream", [False, True])
def test_a_context_refused_in_words_goes_to_the_larger_deployment(
    rig: Rig, server: str, stream: bool
) -> None:
    # llama.cpp, vLLM, TGI and LM Studio say it in words (llama.cpp's and vLLM's `code` is the
    # number 400): it is the group's next deployment's request, as OpenAI's code would be
    r = rid()
    raw = rig.client.chat.completions.with_raw_response.create(
        model=f"small-{server}",
        messages=ask("a long document [long]"),
        stream=stream,
        extra_headers={"x-request-id": r},
    )
    assert raw.headers["x-thriftgate-deployment"] == f"{server}-big"
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in raw.parse() if c.choices)
    else:
        text = raw.parse().choices[0].message.content
    assert text == "The weather is fine."
    row = ledger_row(rig.gw, r)
    assert (row["deployment"], row["status_code"]) == (f"{server}-big", 200)


def test_a_context_refusal_with_nowhere_to_go_says_context_length_exceeded(rig: Rig) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        rig.client.chat.completions.create(
            model="lmstudio-community/qwen2.5-7b", messages=ask("[long]")
        )
    body: Any = info.value.body
    assert (body["code"], body["param"]) == ("context_length_exceeded", "messages")
    assert "context length of only 4096 tokens" in body["message"]


def test_when_every_deployment_refuses_the_length_the_last_refusal_is_answered(rig: Rig) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        rig.client.chat.completions.create(model="two-small", messages=ask("[long]"))
    body: Any = info.value.body
    assert body["code"] == "context_length_exceeded"
    assert "maximum context length is 4096" in body["message"]  # vLLM's, the second tried
    headers = info.value.response.headers
    assert headers["x-thriftgate-deployment"] == "vllm-second"
    assert headers["x-thriftgate-route-reason"] == "fallback-after-context_length_exceeded"


# -- TGI's Messages API ----------------------------------------------------------------------


def test_tgi_tool_call_arguments_reach_the_client_as_json_text(rig: Rig) -> None:
    # TGI answers them as an object: the SDK's users (LangChain, agents) json.loads a string
    out = rig.client.chat.completions.create(
        model="tgi/Llama-3.1-8B-Instruct", messages=ask("weather?"), tools=TOOLS
    )
    call = out.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert isinstance(call.function.arguments, str)  # type: ignore[union-attr]
    assert json.loads(call.function.arguments) == CALL_ARGUMENTS  # type: ignore[union-attr]
    assert out.id  # TGI's id is ""
    response: Any = rig.client.responses.create(
        model="tgi/Llama-3.1-8B-Instruct",
        input="weather?",
        tools=[
            {
                "type": "function",
                "name": "get_weather",
                "parameters": TOOLS[0]["function"]["parameters"],
            }
        ],
    )
    item = next(i for i in response.output if i.type == "function_call")
    assert json.loads(item.arguments) == CALL_ARGUMENTS


def test_tgi_stop_sequence_is_openais_stop(rig: Rig) -> None:
    out = rig.client.chat.completions.create(
        model="tgi/Llama-3.1-8B-Instruct", messages=ask("hi"), stop=["\n\n"]
    )
    assert out.choices[0].finish_reason == "stop"


# -- OpenRouter's mid-stream failure ----------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_openrouters_cost_to_the_operator_does_not_reach_the_tenant(
    rig: Rig, stream: bool
) -> None:
    raw = rig.client.chat.completions.with_raw_response.create(
        model="deepseek/deepseek-r1", messages=ask("hi"), stream=stream,
        stream_options={"include_usage": True} if stream else openai.NOT_GIVEN,
    )  # fmt: skip
    if stream:
        usage = [c.usage for c in raw.parse() if c.usage is not None][-1]
    else:
        usage = raw.parse().usage
    assert usage is not None and usage.prompt_tokens > 0
    dumped = usage.model_dump()
    assert not {"cost", "is_byok", "cost_details"} & dumped.keys()
    assert not {"cost", "is_byok", "cost_details"} & (usage.model_extra or {}).keys()


def test_an_openrouter_stream_failing_mid_way_is_an_error_not_a_success(rig: Rig) -> None:
    # OpenRouter keeps the chunk's shape: a top-level `error` and finish_reason "error"
    r = rid()
    stream = rig.client.chat.completions.create(
        model="deepseek/deepseek-r1",
        messages=ask("[broken]"),
        stream=True,
        extra_headers={"x-request-id": r},
    )
    with pytest.raises(openai.APIError) as info:
        for _ in stream:
            pass
    assert "Provider disconnected unexpectedly" in info.value.message
    row = ledger_row(rig.gw, r)
    assert (row["status_code"], row["error_code"]) == (502, "upstream_error")
    assert row["completion_tokens"] >= 1  # the word that reached the client is billed


def test_an_openrouter_answer_ending_in_error_falls_back(rig: Rig) -> None:
    # the same failure in a non-stream 200: nothing has reached the client yet
    raw = rig.client.chat.completions.with_raw_response.create(
        model="broken-group", messages=ask("[broken]")
    )
    assert raw.headers["x-thriftgate-deployment"] == "groq-second"
    assert raw.headers["x-thriftgate-route-reason"] == "fallback-after-502"
    assert raw.parse().choices[0].message.content == "The weather is fine."


# -- a bare server ------------------------------------------------------------------------------


def test_answers_without_id_created_or_model_get_them(rig: Rig) -> None:
    out = rig.client.chat.completions.create(model="minimal:latest", messages=ask("hi"))
    assert out.id.startswith("chatcmpl-") and out.created > 0
    assert (out.object, out.model) == ("chat.completion", "minimal:latest")
    chunks = list(
        rig.client.chat.completions.create(model="minimal:latest", messages=ask("hi"), stream=True)
    )
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("chatcmpl-")
    assert {(c.object, c.model) for c in chunks} == {("chat.completion.chunk", "minimal:latest")}
    assert all(isinstance(c.created, int) for c in chunks)


# -- a server that streams unasked --------------------------------------------------------------


@pytest.mark.parametrize("model", ["unsloth/gemma-3-12b-it", "framed", "mislabelled"])
def test_a_whole_answer_from_a_server_that_streamed_it_unasked(rig: Rig, model: str) -> None:
    r = rid()
    out = rig.client.chat.completions.create(
        model=model, messages=ask("hi"), extra_headers={"x-request-id": r}
    )
    assert out.choices[0].message.content == "The weather is fine."
    assert out.choices[0].finish_reason == "stop"
    row = ledger_row(rig.gw, r)
    assert (row["status_code"], row["completion_tokens"]) == (200, 5)


def test_a_stream_answered_with_one_json_body_is_streamed_to_the_client(rig: Rig) -> None:
    r = rid()
    chunks = list(
        rig.client.chat.completions.create(
            model="never-sse",
            messages=ask("hi [think]"),
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-request-id": r},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "The weather is fine."
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    row = ledger_row(rig.gw, r)
    assert (row["status_code"], row["usage_source"]) == (200, "upstream")


def test_an_error_in_a_200_to_a_stream_request_keeps_its_message(rig: Rig) -> None:
    r = rid()
    with pytest.raises(openai.APIStatusError) as info:
        rig.client.chat.completions.create(
            model="never-sse",
            messages=ask("[broken]"),
            stream=True,
            extra_headers={"x-request-id": r},
        )
    assert "CUDA error: out of memory" in info.value.body["message"]  # type: ignore[index]
    assert ledger_row(rig.gw, r)["status_code"] == 502


# -- errors in other shapes ---------------------------------------------------------------------


def test_an_account_out_of_credit_is_quota_exhausted_and_not_worth_a_retry(rig: Rig) -> None:
    # OpenRouter's 402: the operator's account, not the request
    r = rid()
    with pytest.raises(openai.APIStatusError) as info:
        rig.client.chat.completions.create(
            model="deepseek/deepseek-r1",
            messages=ask("[no-credit]"),
            extra_headers={"x-request-id": r},
        )
    assert info.value.status_code == 502
    assert info.value.response.headers["x-should-retry"] == "false"
    body: Any = info.value.body
    assert body["code"] == "upstream_quota_exhausted" and "more credits" in body["message"]
    assert ledger_row(rig.gw, r)["error_code"] == "upstream_quota_exhausted"


def test_a_server_with_no_model_loaded_is_the_deployments_fault(rig: Rig) -> None:
    # LM Studio answers a 400 with no model loaded: not the client's mistake
    raw = rig.client.chat.completions.with_raw_response.create(
        model="lmstudio-group", messages=ask("[unloaded]")
    )
    assert raw.headers["x-thriftgate-deployment"] == "groq-lmstudio-backup"
    with pytest.raises(openai.APIStatusError) as info:
        rig.client.chat.completions.create(
            model="lmstudio-community/qwen2.5-7b", messages=ask("[unloaded]")
        )
    body: Any = info.value.body
    assert (info.value.status_code, body["code"]) == (502, "upstream_not_found")
    assert "has no model loaded" in body["message"] and "lms load" in body["message"]


@pytest.mark.parametrize(
    ("model", "marker", "status"),
    [
        ("credit-group", "[no-credit]", 402),  # OpenRouter: the account is out of credits
        ("credit-group", "[upstream-timeout]", 408),  # OpenRouter: the request timed out
        ("tgi-group", "[gen-fail]", 424),  # TGI: the generation failed (CUDA out of memory)
    ],
)
def test_an_upstreams_own_4xx_failure_falls_back_to_the_next_deployment(
    rig: Rig, model: str, marker: str, status: int
) -> None:
    raw = rig.client.chat.completions.with_raw_response.create(model=model, messages=ask(marker))
    assert raw.headers["x-thriftgate-route-reason"] == f"fallback-after-{status}"
    assert raw.headers["x-thriftgate-deployment"] in ("groq-dear", "groq-tgi-backup")
    assert raw.parse().choices[0].message.content == "The weather is fine."


def test_a_reverse_proxys_html_error_page_is_read_as_text(rig: Rig) -> None:
    with pytest.raises(openai.APIStatusError) as info:
        rig.client.chat.completions.create(model="proxied", messages=ask("hi"))
    message: str = info.value.body["message"]  # type: ignore[index]
    assert message.endswith("HTTP 502: 502 Bad Gateway 502 Bad Gateway nginx/1.25.3")


def test_a_numeric_code_that_repeats_the_status_is_no_code(rig: Rig) -> None:
    # llama.cpp's {"error": {"code": 400, ...}}: clients branch on codes like OpenAI's
    with pytest.raises(openai.BadRequestError) as info:
        rig.client.chat.completions.create(
            model="qwen2.5:7b-instruct", messages=ask("[bad-grammar]")
        )
    body: Any = info.value.body
    assert body["code"] == "upstream_rejected_request"
    assert body["message"].endswith("Failed to parse grammar")


def test_a_404_from_an_api_base_without_v1_says_so(rig: Rig) -> None:
    # Ollama at http://localhost:11434 (its OpenAI routes are under /v1): Go's "404 page not found"
    with pytest.raises(openai.APIStatusError) as info:
        rig.client.chat.completions.create(model="llama3.1:8b", messages=ask("hi"))
    body: Any = info.value.body
    assert info.value.status_code == 502 and body["code"] == "upstream_not_found"
    assert "has no path: OpenAI-compatible servers serve under /v1" in body["message"]
    assert "hunter2" not in str(body)
