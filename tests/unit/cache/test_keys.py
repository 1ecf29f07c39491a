"""Cache keys and safety rules: what makes two requests the same, and what is never cached."""

from __future__ import annotations

from gateway.cache.keys import request_keys, response_cacheable, safety


def chat(*messages: tuple[str, str], **params: object) -> dict[str, object]:
    return {"model": "m", "messages": [{"role": r, "content": c} for r, c in messages], **params}


def test_exact_key_ignores_transport_fields_and_outer_whitespace() -> None:
    a = request_keys("t1", "chat", "m", chat(("user", "Hello there"), stream=False, user="u1"))
    b = request_keys("t1", "chat", "m", chat(("user", "  Hello there\r\n"), stream=True))
    assert a.exact == b.exact
    assert a.scope == b.scope


def test_exact_key_changes_with_output_params_and_tenant() -> None:
    base = request_keys("t1", "chat", "m", chat(("user", "Hi")))
    assert base.exact != request_keys("t2", "chat", "m", chat(("user", "Hi"))).exact
    assert base.exact != request_keys("t1", "chat", "m2", chat(("user", "Hi"))).exact
    assert base.exact != request_keys("t1", "chat", "m", chat(("user", "Hi"), max_tokens=5)).exact
    assert base.exact != request_keys("t1", "chat", "m", chat(("user", "Hi"), temperature=0)).exact
    assert base.exact != request_keys("t1", "chat", "m", chat(("user", "Hi!"))).exact


def test_scope_pins_everything_but_the_last_user_turn() -> None:
    a = request_keys(
        "t1", "chat", "m", chat(("system", "Be brief."), ("user", "Capital of France?"))
    )
    b = request_keys(
        "t1", "chat", "m", chat(("system", "Be brief."), ("user", "France's capital?"))
    )
    c = request_keys(
        "t1", "chat", "m", chat(("system", "Be verbose."), ("user", "Capital of France?"))
    )
    d = request_keys(
        "t2", "chat", "m", chat(("system", "Be brief."), ("user", "Capital of France?"))
    )
    e = request_keys(
        "t1", "chat", "m", chat(("system", "Be brief."), ("user", "Capital of France?"), seed=3)
    )
    assert a.scope == b.scope and a.exact != b.exact
    assert len({a.scope, c.scope, d.scope, e.scope}) == 4
    assert a.query == "Capital of France?"


def test_earlier_turns_are_part_of_the_scope() -> None:
    one = chat(("user", "Tell me about Rust."), ("assistant", "Rust is..."), ("user", "Why?"))
    two = chat(("user", "Tell me about Go."), ("assistant", "Go is..."), ("user", "Why?"))
    assert request_keys("t", "chat", "m", one).scope != request_keys("t", "chat", "m", two).scope


def test_no_query_when_the_last_turn_is_not_plain_text() -> None:
    image = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
    ]}]}  # fmt: skip
    assert request_keys("t", "chat", "m", image).query is None
    prefill = chat(("user", "Hi"), ("assistant", "Hello"))
    assert request_keys("t", "chat", "m", prefill).query is None


def test_completions_prompt_is_the_query() -> None:
    keys = request_keys("t", "completions", "m", {"model": "m", "prompt": " Say hi "})
    assert keys.query == "Say hi"


def test_safety_defaults() -> None:
    assert safety(chat(("user", "x"))).cacheable
    assert safety(chat(("user", "x"), temperature=0)).cacheable
    assert safety(chat(("user", "x"), temperature=0.7)).reason == "temperature"
    assert safety(chat(("user", "x"), n=2)).reason == "n"
    assert not safety(chat(("user", "x")), unset_temperature_ok=False).cacheable
    with_tool = {"model": "m", "messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function",
         "function": {"name": "w", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
    ]}  # fmt: skip
    assert safety(with_tool).reason == "tool_calls"


def test_tenant_can_widen_safety() -> None:
    assert safety(chat(("user", "x"), temperature=0.7), max_temperature=1.0).cacheable
    assert safety(chat(("user", "x"), n=3), multi_choice_ok=True).cacheable


def test_only_complete_answers_are_stored() -> None:
    ok = {"choices": [{"index": 0, "message": {"content": "hi"}, "finish_reason": "stop"}]}
    assert response_cacheable(ok)
    assert not response_cacheable({"error": {"message": "x"}})
    assert not response_cacheable({"choices": []})
    filtered = {"choices": [{"message": {"content": ""}, "finish_reason": "content_filter"}]}
    assert not response_cacheable(filtered)
    called = {
        "choices": [{"message": {"tool_calls": [{"id": "a"}]}, "finish_reason": "tool_calls"}]
    }
    assert not response_cacheable(called)
    assert response_cacheable(called, tool_calls_ok=True)


def test_a_text_longer_than_the_embedding_sees_is_cached_exactly_only() -> None:
    from gateway.cache.keys import MAX_QUERY_CHARS

    fits = "word " * (MAX_QUERY_CHARS // 5)
    long = fits + "and one more clause that the embedding would never read"
    assert len(fits) <= MAX_QUERY_CHARS < len(long)
    for text in (fits, long):
        chat = {"messages": [{"role": "user", "content": text}]}
        keys = request_keys("t", "chat", "m", chat)
        assert keys.exact and (keys.query is not None) == (text is fits)
        prompt = request_keys("t", "completions", "m", {"prompt": text})
        assert (prompt.query is not None) == (text is fits)


def test_a_question_is_still_compared_by_meaning() -> None:
    # a turn longer than a question too: the verifier asks it for the same content words
    # (test_verifier.py::test_a_long_turn_hits_only_with_the_same_content_words)
    for text in (
        "What do I whisk the eggs with?",
        "We paid with a card last week and the box was sealed. The store opens early on "
        "weekdays. When does it open?",
        "Can you tell me how to reverse a list in Python without using the reverse method?",
    ):
        chat = {"messages": [{"role": "user", "content": text}]}
        assert request_keys("t", "chat", "m", chat).query == text


def test_refusals_and_logprobs_are_never_cached() -> None:
    from gateway.pipeline.stream import StreamAssembler

    refused = {
        "choices": [
            {"message": {"content": None, "refusal": "I can't help."}, "finish_reason": "stop"}
        ]
    }
    assert not response_cacheable(refused)
    # streamed, the refusal arrives in deltas: the assembled answer keeps it, so it is refused too
    asm = StreamAssembler()
    for delta in ({"role": "assistant"}, {"refusal": "I can't "}, {"refusal": "help."}):
        asm.add({"choices": [{"index": 0, "delta": delta}]})
    asm.add({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    body = asm.result(chat=True)
    assert body["choices"][0]["message"]["refusal"] == "I can't help."
    assert not response_cacheable(body)
    for ask in ({"logprobs": True}, {"top_logprobs": 3, "logprobs": True}, {"logprobs": 2}):
        assert safety({"messages": [], **ask}).reason == "logprobs"
    assert safety({"messages": [], "logprobs": False}).cacheable


def test_every_parameter_that_can_change_the_answer_is_in_the_keys() -> None:
    # vLLM's guided decoding, chat-template switches, sampling knobs and provider options the
    # gateway passes through unchanged: the cache must not hand one schema's answer to another
    base = request_keys("t", "chat", "m", chat(("user", "Pick one")))
    seen = {base.exact}
    for name, value in [
        ("guided_choice", ["red", "blue"]),
        ("guided_json", {"type": "object"}),
        ("structured_outputs", {"choice": ["a"]}),
        ("chat_template_kwargs", {"enable_thinking": True}),
        ("thinking", {"type": "enabled", "budget_tokens": 1024}),
        ("reasoning", {"effort": "high"}),
        ("web_search_options", {}),
        ("min_p", 0.1),
        ("some_future_option", 1),
    ]:
        keys = request_keys("t", "chat", "m", chat(("user", "Pick one"), **{name: value}))
        assert keys.exact not in seen, name
        assert keys.scope != base.scope, name
        seen.add(keys.exact)
    prompt = request_keys("t", "completions", "m", {"model": "m", "prompt": "Hi", "min_p": 0.1})
    assert (
        prompt.exact != request_keys("t", "completions", "m", {"model": "m", "prompt": "Hi"}).exact
    )


def test_fields_that_never_change_the_answer_stay_out_of_the_keys() -> None:
    base = request_keys("t", "chat", "m", chat(("user", "Hi")))
    bookkeeping = chat(
        ("user", "Hi"), stream=True, stream_options={"include_usage": True}, user="u1",
        safety_identifier="s1", metadata={"job": "7"}, store=True, service_tier="flex",
        prompt_cache_key="pk", prompt_cache_retention="24h",
    )  # fmt: skip
    keys = request_keys("t", "chat", "m", bookkeeping)
    assert (keys.exact, keys.scope) == (base.exact, base.scope)


def test_the_last_turns_name_is_in_the_scope() -> None:
    def turn(**fields: str) -> dict[str, object]:
        return {
            "model": "m",
            "messages": [
                {"role": "system", "content": "Greet the user by their name."},
                {"role": "user", "content": "Hello, who am I?", **fields},
            ],
        }

    alice = request_keys("t", "chat", "m", turn(name="alice"))
    bob = request_keys("t", "chat", "m", turn(name="bob"))
    nobody = request_keys("t", "chat", "m", turn())
    assert len({alice.scope, bob.scope, nobody.scope}) == 3
    assert alice.query == bob.query == "Hello, who am I?"


def test_a_compression_variant_separates_the_keys() -> None:
    body = chat(("user", "Summarise the document above"))
    plain = request_keys("t", "chat", "m", body)
    squeezed = request_keys("t", "chat", "m", body, variant="balanced")
    assert plain.exact != squeezed.exact and plain.scope != squeezed.scope
    assert request_keys("t", "chat", "m", body, variant="") == plain


def test_legacy_function_calls_are_tool_calls() -> None:
    # A `functions` request answered with a `function_call` is a tool call: stored only when the
    # tenant caches tool calls, like a `tool_calls` answer (it used to be stored by default).
    fc = {"name": "lookup", "arguments": '{"q": "Paris"}'}
    called = {
        "choices": [
            {"message": {"content": None, "function_call": fc}, "finish_reason": "function_call"}
        ]
    }
    assert not response_cacheable(called)
    assert response_cacheable(called, tool_calls_ok=True)


def test_a_call_lost_on_the_way_is_never_stored() -> None:
    # An answer that says it stopped for a call but holds none (a stream assembled without its
    # `function_call` deltas) would be replayed as an empty answer.
    for finish in ("function_call", "tool_calls"):
        empty = {"choices": [{"message": {"content": ""}, "finish_reason": finish}]}
        assert not response_cacheable(empty, tool_calls_ok=True)


def test_audio_answers_are_never_cached() -> None:
    # Audio lives in `message.audio`, with an id the provider forgets at `expires_at`: a replay
    # could hand out a dead id, and a stream assembled without its audio deltas is empty.
    ask = {"messages": [{"role": "user", "content": "Say hi"}]}
    assert safety({**ask, "modalities": ["text", "audio"], "audio": {"voice": "alloy"}}).reason == (
        "audio"
    )
    assert safety({**ask, "audio": {"voice": "alloy", "format": "wav"}}).reason == "audio"
    assert safety({**ask, "modalities": ["text"]}).cacheable
    spoken = {"id": "audio_1", "data": "UklGRg==", "expires_at": 1, "transcript": "hi"}
    answer = {"choices": [{"message": {"content": None, "audio": spoken}, "finish_reason": "stop"}]}
    assert not response_cacheable(answer)
