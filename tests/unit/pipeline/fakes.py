"""Stand-ins the dispatch tests share."""

from __future__ import annotations

from typing import Any

from gateway.routing.catalog import Deployment


class Providers:
    """The registry's `for_deployment`, answering from a name -> provider map."""

    def __init__(self, by_name: dict[str, Any]) -> None:
        self.by_name = by_name

    def for_deployment(self, dep: Deployment) -> Any:
        return self.by_name[dep.name]
