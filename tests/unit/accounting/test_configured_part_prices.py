"""A deployment with configured prices can price the parts litellm's map prices apart:
reasoning tokens, citation tokens and image tokens. Configured input and output prices leave
litellm's entry out altogether, so such a deployment (every one `config import-litellm`
writes from an entry with its own prices) billed Qwen's thinking at its answer price ($1.20
per 1M where Alibaba bills $4), Perplexity's citations at nothing and a picture as text."""

from __future__ import annotations

from decimal import Decimal

from gateway.accounting.pricing import resolve_price
from gateway.config_import import import_litellm
from gateway.settings import DeploymentConfig

MILLION = Decimal(1_000_000)


def test_configured_reasoning_citation_and_image_prices_are_billed() -> None:
    cfg = DeploymentConfig.model_validate(
        {
            "name": "d", "model": "m", "provider": "openai_compatible",
            "api_base": "http://127.0.0.1:1/v1",
            "input_cost_per_mtok": "0.4", "output_cost_per_mtok": "1.2",
            "reasoning_output_cost_per_mtok": 4, "citation_input_cost_per_mtok": 2,
            "image_input_cost_per_mtok": "0.3", "image_output_cost_per_mtok": 30,
        }
    )  # fmt: skip
    price, source = resolve_price(cfg)
    assert source == "config"
    # 20 answer tokens, 15 of them reasoning
    assert price.cost_usd(0, 20, reasoning_tokens=15) == (5 * Decimal("1.2") + 15 * 4) / MILLION
    assert price.cost_usd(100, 0, citation_tokens=500) == (100 * Decimal("0.4") + 1000) / MILLION
    assert (
        price.cost_usd(0, 1300, image_completion_tokens=1290)
        == (10 * Decimal("1.2") + 1290 * 30) / MILLION
    )
    assert price.cost_usd(1000, 0, image_prompt_tokens=1000) == 1000 * Decimal("0.3") / MILLION


def test_the_litellm_import_carries_reasoning_citation_and_image_prices() -> None:
    raw = {
        "model_list": [
            {
                "model_name": "qwen",
                "litellm_params": {
                    "model": "openai/qwen-plus",
                    "api_key": "os.environ/DASHSCOPE_API_KEY",
                    "input_cost_per_token": 4.0e-07,
                    "output_cost_per_token": 1.2e-06,
                    "citation_cost_per_token": 2.0e-06,
                    "input_cost_per_image_token": 3.0e-07,
                    "output_cost_per_image_token": 3.0e-05,
                },
                "model_info": {"output_cost_per_reasoning_token": 4.0e-06},
            }
        ]
    }
    imported = import_litellm(raw)
    [dep] = imported.config["deployments"]
    assert Decimal(str(dep["reasoning_output_cost_per_mtok"])) == 4
    assert Decimal(str(dep["citation_input_cost_per_mtok"])) == 2
    assert Decimal(str(dep["image_input_cost_per_mtok"])) == Decimal("0.3")
    assert Decimal(str(dep["image_output_cost_per_mtok"])) == 30
    assert not [n for n in imported.notes if "reasoning" in n or "citation" in n], imported.notes
    DeploymentConfig.model_validate(dep)  # what it wrote is a valid deployment
