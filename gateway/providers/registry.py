"""Which Provider instance serves a deployment, by its `provider` kind; one instance per kind."""

from __future__ import annotations

from gateway.providers.base import Provider
from gateway.routing.catalog import Deployment

OPENAI_COMPATIBLE = frozenset(
    {"openai_compatible", "openai", "vllm", "groq", "together", "fireworks"}
)


class ProviderRegistry:
    def __init__(self) -> None:
        self._by_kind: dict[str, Provider] = {}

    def for_deployment(self, dep: Deployment) -> Provider:
        kind = self._kind(dep.provider)
        provider = self._by_kind.get(kind)
        if provider is None:
            provider = self._build(kind)
            self._by_kind[kind] = provider
        return provider

    @staticmethod
    def _kind(provider: str) -> str:
        if provider in OPENAI_COMPATIBLE:
            return "openai_compatible"
        if provider == "local":
            return "local"
        return "litellm"

    @staticmethod
    def _build(kind: str) -> Provider:
        if kind == "openai_compatible":
            from gateway.providers.openai_compatible import OpenAICompatibleProvider

            return OpenAICompatibleProvider()
        if kind == "local":
            from gateway.providers.local import LocalProvider

            return LocalProvider()
        from gateway.providers.litellm_adapter import LiteLLMProvider

        return LiteLLMProvider()

    def warm(self, deps: list[Deployment]) -> None:
        """Build providers up front so the first request pays no import cost."""
        for dep in deps:
            self.for_deployment(dep)

    def loading_models(self) -> bool:
        """Whether a local engine is still loading its model (started at startup)."""
        local = self._by_kind.get("local")
        preloading = getattr(local, "preloading", None)
        return bool(preloading is not None and preloading())

    def failed_models(self) -> set[str]:
        """Local deployments whose model load failed (and has not succeeded since)."""
        local = self._by_kind.get("local")
        failed = getattr(local, "failed", None)
        return set(failed()) if failed is not None else set()

    async def aclose(self) -> None:
        for provider in self._by_kind.values():
            await provider.aclose()
        self._by_kind.clear()
