"""Stand-ins the dispatch and budget tests share."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from gateway.routing.catalog import Deployment


class Providers:
    """The registry's `for_deployment`, answering from a name -> provider map."""

    def __init__(self, by_name: dict[str, Any]) -> None:
        self.by_name = by_name

    def for_deployment(self, dep: Deployment) -> Any:
        return self.by_name[dep.name]


class Book:
    """A budget book that admits everything and records the amounts reserved."""

    def __init__(self) -> None:
        self.amounts: list[Decimal] = []

    async def reserve(self, tenant: str, budget: Decimal, period: str, amount: Decimal) -> Any:
        self.amounts.append(amount)
        return None, 0

    def hold(self, *args: Any, **kwargs: Any) -> None:  # a running request's reservation kept alive
        return None

    def release_hold(self, request: str) -> None:
        return None
