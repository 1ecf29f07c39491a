"""Prompt-cache writes (Anthropic: 1.25x input) are priced at their own rate, counted once."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gateway.accounting.pricing import Price, resolve_price
from gateway.pipeline.account import usage_of
from gateway.settings import DeploymentConfig
from tests.support.context import bare_context


def test_a_configured_cache_write_price_applies_to_the_written_tokens() -> None:
    cfg = DeploymentConfig(
        name="d", model="m", input_cost_per_mtok=Decimal(3), output_cost_per_mtok=Decimal(15),
        cached_input_cost_per_mtok=Decimal("0.3"), cache_write_input_cost_per_mtok=Decimal("3.75"),
    )  # fmt: skip
    price, _ = resolve_price(cfg)
    # 100 fresh at $3, 1000 written at $3.75, 2000 read at $0.30, 20 out at $15
    assert price.cost_usd(3100, 20, 2000, 1000) == Decimal("0.00495")


def test_without_a_write_price_writes_cost_the_input_price() -> None:
    assert Price(Decimal(1), Decimal(2)).cost_usd(1000, 0, 0, 400) == Decimal("0.001")


def test_written_tokens_are_read_from_the_usage_details_too() -> None:
    details = {"cached_tokens": 2000, "cache_write_tokens": 1000}
    body = {
        "usage": {"prompt_tokens": 3100, "completion_tokens": 20, "prompt_tokens_details": details}
    }
    u = usage_of(bare_context(), body)
    assert (u.prompt_tokens, u.cached_tokens, u.cache_write_tokens) == (3100, 2000, 1000)


def test_written_tokens_never_exceed_the_uncached_prompt() -> None:
    body = {"usage": {"prompt_tokens": 100, "completion_tokens": 1,
                      "cache_creation_input_tokens": 500,
                      "prompt_tokens_details": {"cached_tokens": 60}}}  # fmt: skip
    assert usage_of(bare_context(), body).cache_write_tokens == 40


def test_one_hour_writes_are_priced_apart_from_litellms_map() -> None:
    cfg = DeploymentConfig(
        name="d", model="m", provider="anthropic", upstream_model="claude-haiku-4-5"
    )
    price, source = resolve_price(cfg)
    assert source == "litellm"
    assert price.cache_write_1h_input_per_mtok == Decimal(2)
    # 100 fresh at $1, 400 written for 5 minutes at $1.25, 600 for an hour at $2
    assert price.cost_usd(1100, 0, 0, 1000, 600) == Decimal("0.0018")


def test_a_configured_one_hour_price_wins_and_else_hour_writes_cost_the_write_price() -> None:
    cfg = DeploymentConfig(
        name="d", model="m", input_cost_per_mtok=Decimal(3), output_cost_per_mtok=Decimal(15),
        cache_write_input_cost_per_mtok=Decimal("3.75"),
        cache_write_1h_input_cost_per_mtok=Decimal(6),
    )  # fmt: skip
    price, _ = resolve_price(cfg)
    assert price.cost_usd(1000, 0, 0, 1000, 1000) == Decimal("0.006")
    assert Price(Decimal(3), Decimal(15), None, Decimal("3.75")).cost_usd(
        1000, 0, 0, 1000, 1000
    ) == Decimal("0.00375")


@pytest.mark.parametrize(
    "usage",
    [
        # litellm's shape
        {"prompt_tokens_details": {"cache_creation_tokens": 1000,
                                   "cache_creation_token_details": {
                                       "ephemeral_5m_input_tokens": 400,
                                       "ephemeral_1h_input_tokens": 600}}},
        # Anthropic's own, passed on by an upstream
        {"cache_creation_input_tokens": 1000,
         "cache_creation": {"ephemeral_5m_input_tokens": 400, "ephemeral_1h_input_tokens": 600}},
    ],
)  # fmt: skip
def test_one_hour_written_tokens_are_read_from_the_usage(usage: dict[str, object]) -> None:
    body = {"usage": {"prompt_tokens": 1100, "completion_tokens": 1, **usage}}
    u = usage_of(bare_context(), body)
    assert (u.cache_write_tokens, u.cache_write_1h_tokens) == (1000, 600)


def test_audio_tokens_are_priced_from_litellms_map() -> None:
    cfg = DeploymentConfig(
        name="d", model="m", provider="openai", upstream_model="gpt-4o-mini-audio-preview"
    )
    price, _ = resolve_price(cfg)
    assert (price.audio_input_per_mtok, price.audio_output_per_mtok) == (10, 20)
    # 200 text in at $0.15 + 800 audio in at $10; 100 text out at $0.60 + 400 audio out at $20
    cost = price.cost_usd(1000, 500, audio_prompt_tokens=800, audio_completion_tokens=400)
    assert cost == Decimal("0.01609")
    # a text model has no audio price: its audio tokens (if any) cost the text price
    text, _ = resolve_price(DeploymentConfig(name="t", model="m", upstream_model="gpt-4o-mini"))
    assert text.cost_usd(1000, 0, audio_prompt_tokens=800) == text.cost_usd(1000, 0)


def test_audio_tokens_are_read_from_the_usage_details() -> None:
    body = {"usage": {"prompt_tokens": 1000, "completion_tokens": 500,
                      "prompt_tokens_details": {"audio_tokens": 800},
                      "completion_tokens_details": {"audio_tokens": 400}}}  # fmt: skip
    u = usage_of(bare_context(), body)
    assert (u.audio_prompt_tokens, u.audio_completion_tokens) == (800, 400)
