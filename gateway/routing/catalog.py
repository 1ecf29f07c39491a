"""The deployment catalog: which deployments serve which model, and at what price."""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

from gateway.accounting.pricing import Price, resolve_price
from gateway.settings import DeploymentConfig

AUTO_MODEL = "thriftgate/auto"

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Deployment:
    """A configured deployment with its resolved price (USD per million tokens)."""

    config: DeploymentConfig
    price: Price
    price_source: str  # "config", "litellm" or "unknown"

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def provider(self) -> str:
        return self.config.provider

    @property
    def served_model(self) -> str:
        return self.config.served_model

    def cost_usd(
        self, prompt_tokens: int, completion_tokens: int, cached_tokens: int = 0
    ) -> Decimal:
        return self.price.cost_usd(prompt_tokens, completion_tokens, cached_tokens)


@dataclass(slots=True)
class Catalog:
    deployments: dict[str, Deployment] = field(default_factory=dict)
    groups: dict[str, list[Deployment]] = field(default_factory=dict)

    @classmethod
    def build(cls, configs: Iterable[DeploymentConfig]) -> Catalog:
        cat = cls()
        for cfg in configs:
            price, source = resolve_price(cfg)
            dep = Deployment(config=cfg, price=price, price_source=source)
            if (
                source == "unknown"
                and cfg.provider != "local"
                and cfg.hardware_usd_per_hour is None  # billed at its effective price instead
                and price.input_per_mtok == 0
            ):
                # Billed at $0, it would also look cheapest to the router: say so at start.
                log.warning(
                    "deployment %s: no price for %r in the config or litellm's price map; "
                    "it is recorded at $0 and routed to as if free. Set input_cost_per_mtok "
                    "and output_cost_per_mtok in its config.",
                    cfg.name,
                    cfg.served_model,
                )
            cat.deployments[cfg.name] = dep
            cat.groups.setdefault(cfg.model, []).append(dep)
        return cat

    def models(self) -> list[str]:
        return sorted(self.groups)

    def group(self, model: str) -> list[Deployment]:
        return self.groups.get(model, [])

    def default_for(self, model: str) -> Deployment | None:
        """The group's default: the one marked `default`, else the first configured."""
        group = self.groups.get(model)
        if not group:
            return None
        for dep in group:
            if dep.config.default:
                return dep
        return group[0]
