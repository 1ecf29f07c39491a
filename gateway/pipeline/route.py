"""Route stage: which deployments may serve this request, in the order to try them.

Resolution (model -> candidate group, `thriftgate/auto` -> the tenant's acceptable models)
happens in `resolve_candidates`, before limits, so an unknown model costs no budget. The
ordering policy lives in gateway/routing/; this first version orders by predicted cost.
"""

from __future__ import annotations

from gateway.errors import NotFound
from gateway.pipeline.context import Reply, RequestContext, TenantInfo
from gateway.routing.catalog import AUTO_MODEL, Catalog, Deployment
from gateway.settings import FileConfig


def auto_models(tenant: TenantInfo, file_config: FileConfig) -> list[str]:
    models = tenant.flags.get("auto_models") or list(file_config.auto.models)
    return [m for m in models if isinstance(m, str)]


def resolve_candidates(
    model: str, tenant: TenantInfo, catalog: Catalog, file_config: FileConfig
) -> list[Deployment]:
    if model == AUTO_MODEL:
        models = [m for m in auto_models(tenant, file_config) if tenant.allows_model(m)]
        candidates = [d for m in models for d in catalog.group(m)]
        if not candidates:
            raise NotFound(
                f"The model '{AUTO_MODEL}' has no acceptable models configured for this tenant.",
                code="model_not_found",
                param="model",
            )
        return candidates
    group = catalog.group(model)
    if not group or not tenant.allows_model(model):
        raise NotFound(
            f"The model '{model}' does not exist or you do not have access to it.",
            code="model_not_found",
            param="model",
        )
    return list(group)


class RouteStage:
    async def before(self, ctx: RequestContext) -> Reply | None:
        expected = _expected_completion_tokens(ctx)
        prompt = ctx.prompt_tokens_estimate
        ranked = sorted(ctx.candidates, key=lambda d: d.cost_usd(prompt, expected))
        ctx.candidates = ranked
        ctx.route_reason = "only-candidate" if len(ranked) == 1 else "cheapest"
        return None

    async def after(self, ctx: RequestContext, reply: Reply) -> None:
        return None


def _expected_completion_tokens(ctx: RequestContext) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = ctx.body.get(key)
        if isinstance(value, int) and value > 0:
            return value
    return 256
