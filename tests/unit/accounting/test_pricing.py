from decimal import Decimal

from gateway.accounting.pricing import Price, resolve_price
from gateway.settings import DeploymentConfig


def test_cost_is_exact_decimal_per_million():
    p = Price(Decimal("0.15"), Decimal("0.60"))
    assert p.cost_usd(1_000_000, 0) == Decimal("0.15")
    assert p.cost_usd(13, 6) == Decimal("0.00000555")
    assert isinstance(p.cost_usd(1, 1), Decimal)


def test_cached_tokens_use_the_discounted_price_and_are_capped():
    p = Price(Decimal("2"), Decimal("8"), cached_input_per_mtok=Decimal("0.5"))
    assert p.cost_usd(1000, 0, cached_tokens=400) == (600 * 2 + 400 * Decimal("0.5")) / 10**6
    assert p.cost_usd(100, 0, cached_tokens=1000) == 100 * Decimal("0.5") / 10**6


def test_config_price_wins_over_litellm():
    cfg = DeploymentConfig(
        name="a",
        model="gpt-4o",
        provider="openai",
        input_cost_per_mtok=Decimal("1"),
        output_cost_per_mtok=Decimal("2"),
    )
    price, source = resolve_price(cfg)
    assert source == "config" and price.input_per_mtok == 1 and price.output_per_mtok == 2


def test_litellm_price_map_is_used_offline():
    price, source = resolve_price(
        DeploymentConfig(name="a", model="m", provider="openai", upstream_model="gpt-4o-mini")
    )
    assert source == "litellm"
    assert price.input_per_mtok == Decimal("0.15") and price.output_per_mtok == Decimal("0.6")
    price, source = resolve_price(
        DeploymentConfig(
            name="b", model="m", provider="anthropic", upstream_model="claude-haiku-4-5"
        )
    )
    assert source == "litellm" and price.input_per_mtok > 0


def test_providers_named_as_people_write_them_find_their_prices():
    """The README's own examples: an OpenAI-compatible endpoint is priced by its host, and
    `together` / `fireworks` are litellm's `together_ai` / `fireworks_ai`."""
    llama = "meta-llama/Llama-3.3-70B-Instruct-Turbo"
    by_host = DeploymentConfig(
        name="a", model="m", upstream_model=llama, api_base="https://api.together.xyz/v1"
    )
    by_name = DeploymentConfig(name="b", model="m", provider="together", upstream_model=llama)
    groq = DeploymentConfig(
        name="c",
        model="m",
        upstream_model="llama-3.3-70b-versatile",
        api_base="https://api.groq.com/openai/v1",
    )
    for cfg in (by_host, by_name, groq):
        price, source = resolve_price(cfg)
        assert source == "litellm" and price.input_per_mtok > 0 and price.output_per_mtok > 0


def test_unknown_model_is_priced_zero_and_says_so():
    price, source = resolve_price(
        DeploymentConfig(name="a", model="m", upstream_model="my-private-model-xyz")
    )
    assert source == "unknown" and price.cost_usd(100, 100) == 0


def test_dollars_are_written_without_exponents() -> None:
    from decimal import Decimal

    from gateway.accounting.pricing import usd_text

    assert usd_text(Decimal("0E-10")) == "0"
    assert usd_text(Decimal("100.0000000000")) == "100"
    assert usd_text(Decimal("0.0000123000")) == "0.0000123"
    assert usd_text(None) == "0"


def test_a_cloud_deployment_with_no_price_is_named_at_start(caplog):
    from gateway.routing.catalog import Catalog

    with caplog.at_level("WARNING", logger="gateway.routing.catalog"):
        Catalog.build(
            [
                DeploymentConfig(name="mystery", model="m", upstream_model="my-private-model-xyz"),
                DeploymentConfig(name="priced", model="m", upstream_model="gpt-4o-mini"),
            ]
        )
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 1 and "mystery" in warned[0] and "input_cost_per_mtok" in warned[0]
