"""Route stage: which deployments may serve this request, in the order to try them.

Resolution (model -> candidate group, `thriftgate/auto` -> the tenant's acceptable models)
happens in `resolve_candidates`, before limits, so an unknown model costs no budget. The
stage asks the `Router` (gateway/routing/) to price and predict each candidate and records the
decision on the context: deployment, reason, predicted latency, predicted routing savings.
"""

from __future__ import annotations

from gateway.errors import NoHealthyDeployment, NotFound
from gateway.pipeline.context import Json, Reply, RequestContext, TenantInfo
from gateway.routing.catalog import AUTO_MODEL, Catalog, Deployment
from gateway.routing.route_metrics import RouterMetrics
from gateway.routing.router import Router
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


def servable_models(tenant: TenantInfo, catalog: Catalog, file_config: FileConfig) -> list[str]:
    """The model names this tenant can send (what `GET /v1/models` lists): exactly those
    `resolve_candidates` accepts."""
    names = [m for m in catalog.models() if tenant.allows_model(m)]
    if any(tenant.allows_model(m) and catalog.group(m) for m in auto_models(tenant, file_config)):
        names.append(AUTO_MODEL)
    return names


class RouteStage:
    """Rank the candidates: cheapest predicted to meet the SLO, else the fastest (routing/)."""

    def __init__(self, router: Router, metrics: RouterMetrics | None = None) -> None:
        self.router = router
        self.metrics = metrics

    async def before(self, ctx: RequestContext) -> Reply | None:
        plan = self.router.plan(
            ctx.model,
            prompt_tokens=ctx.prompt_tokens_estimate,
            max_tokens=max_tokens_of(ctx.body),
            slo_ms=ctx.slo_ms,
            stream=ctx.stream,
            deployments=ctx.candidates,
        )
        chosen = plan.chosen
        if chosen is None:
            raise NoHealthyDeployment(
                f"Every deployment of '{ctx.model}' is failing; retry in a few seconds.",
                headers={"Retry-After": str(self.router.retry_after_s(ctx.candidates))},
            )
        ctx.route_plan = plan
        ctx.candidates = [c.deployment for c in plan.ranked]
        ctx.deployment = chosen.deployment
        ctx.route_reason = plan.reason
        ctx.predicted_latency_ms = round(chosen.latency.expected_ms(ctx.stream), 1)
        if chosen.meets_slo is False:
            ctx.slo_met = False  # none was predicted to meet it: said so, whatever happens
        default_cost = plan.default_cost_usd(plan.prompt_tokens, plan.completion.expected)
        if default_cost is not None:
            ctx.savings.routing_usd = default_cost - chosen.cost_usd  # refined by `account`
        ctx.extra_headers["x-thriftgate-route-reason"] = plan.reason
        ctx.extra_headers["x-thriftgate-predicted-latency-ms"] = f"{ctx.predicted_latency_ms:g}"
        if self.metrics is not None:
            self.metrics.decisions.labels(ctx.model, plan.reason).inc()
        return None

    async def after(self, ctx: RequestContext, reply: Reply) -> None:
        if self.metrics is None or ctx.slo_ms is None or ctx.status_code >= 400:
            return
        observed = ctx.ttft_ms if ctx.stream and ctx.ttft_ms is not None else ctx.elapsed_ms()
        met = observed <= ctx.slo_ms
        dep = ctx.deployment.name if ctx.deployment else "none"
        self.metrics.slo.labels(ctx.model, dep, "met" if met else "missed").inc()


def max_tokens_of(body: Json) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return None
