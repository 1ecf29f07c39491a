"""SQLAlchemy 2.0 models. Schema changes go through Alembic (`migrations/`), never create_all.

Money is NUMERIC (Decimal in Python); timestamps are timezone-aware UTC.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    String,
    Table,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

MONEY = Numeric(20, 10)

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def as_utc(ts: datetime) -> datetime:
    """A stored time as an aware UTC one: SQLite hands back naive datetimes, and every time
    stored here is UTC."""
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def new_id() -> str:
    return uuid.uuid4().hex


def table(model: type[DeclarativeBase]) -> Table:
    """A model's Core table, typed as a `Table` (mypy sees `__table__` as a FromClause)."""
    return cast(Table, model.__table__)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    budget_usd: Mapped[Decimal | None] = mapped_column(MONEY, nullable=True)
    budget_period: Mapped[str] = mapped_column(String(16), default="monthly")
    rpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    tpm: Mapped[int | None] = mapped_column(Integer, nullable=True)
    default_slo_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # Per-tenant switches: allowed models, cache/compression policy, auto-model tier...
    flags: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # Set by deletion: the tenant's keys are revoked and its cache and items dropped, while its
    # ledger rows (what it was billed) stay; its name is freed for a new tenant.
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    # a time in the future: a revocation with a grace period (rotation), the key works until then
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class UsageLedger(Base):
    """One row per request. `id` is the gateway's idempotency key; `request_id` is the client's."""

    __tablename__ = "usage_ledger"
    __table_args__ = (
        Index("ix_usage_ledger_tenant_created", "tenant_id", "created_at"),
        Index("ix_usage_ledger_created", "created_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    request_id: Mapped[str] = mapped_column(String(128), index=True)
    tenant_id: Mapped[str] = mapped_column(String(32))
    key_id: Mapped[str | None] = mapped_column(String(32), nullable=True)
    endpoint: Mapped[str] = mapped_column(String(32), default="chat")
    model: Mapped[str] = mapped_column(String(200))
    deployment: Mapped[str | None] = mapped_column(String(200), nullable=True)
    provider: Mapped[str | None] = mapped_column(String(64), nullable=True)
    status_code: Mapped[int] = mapped_column(Integer)
    error_code: Mapped[str | None] = mapped_column(String(64), nullable=True)
    stream: Mapped[bool] = mapped_column(Boolean, default=False)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cached_tokens: Mapped[int] = mapped_column(Integer, default=0)
    usage_source: Mapped[str] = mapped_column(String(16), default="upstream")
    cost_usd: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    counterfactual_cost_usd: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    saved_cache_usd: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    saved_compression_usd: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    saved_routing_usd: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    latency_ms: Mapped[float] = mapped_column(Float, default=0.0)
    ttft_ms: Mapped[float | None] = mapped_column(Float, nullable=True)
    slo_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    slo_met: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    cache_status: Mapped[str] = mapped_column(String(16), default="miss")
    route_reason: Mapped[str | None] = mapped_column(String(64), nullable=True)
    compression_method: Mapped[str | None] = mapped_column(String(32), nullable=True)
    prompt_tokens_original: Mapped[int | None] = mapped_column(Integer, nullable=True)
    energy_joules: Mapped[float | None] = mapped_column(Float, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BudgetCounter(Base):
    """Spend and outstanding reservations of one tenant in one budget period."""

    __tablename__ = "budget_counters"

    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    spent_usd: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    # Reservations of requests in flight, in two generations (see budgets.py): those made in
    # reserve_epoch, and those of the epoch before it. Older ones belong to crashed processes.
    reserved_usd: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    reserved_prev_usd: Mapped[Decimal] = mapped_column(
        MONEY, default=Decimal(0), server_default="0"
    )
    reserve_epoch: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class RateLimitUsage(Base):
    """One gateway process's RPM/TPM use and requests in flight for one tenant, as it last
    wrote them (about once a second; pipeline/limits_sync.py): every process admits against
    its own counts plus the others' rows."""

    __tablename__ = "rate_limit_usage"

    process_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    requests: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    tokens: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    in_flight: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class BudgetAlert(Base):
    """A budget threshold a tenant crossed in a period, and whether its webhook call went
    (budget_alerts.py): the row claims the alert, so replicas send it once."""

    __tablename__ = "budget_alerts"
    __table_args__ = (
        Index(
            "ix_budget_alerts_due",
            "next_attempt_at",
            postgresql_where=text("delivered_at IS NULL"),
            sqlite_where=text("delivered_at IS NULL"),
        ),
    )

    tenant_id: Mapped[str] = mapped_column(
        ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
    )
    period_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    threshold_pct: Mapped[int] = mapped_column(Integer, primary_key=True)
    budget_usd: Mapped[Decimal] = mapped_column(MONEY)
    spent_usd: Mapped[Decimal] = mapped_column(MONEY)  # when it was seen crossed
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_error: Mapped[str | None] = mapped_column(String(200), nullable=True)
    # when any replica may send it (again): a claim's lease while its owner delivers, or the
    # pause after a failed delivery; NULL once delivered or given up (budget_alerts.py)
    next_attempt_at: Mapped[datetime | None] = mapped_column(
        DateTime(timezone=True), nullable=True
    )
    failures: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class CacheEntry(Base):
    """A cached response, scoped to one tenant; the embedding rides along for the vector index."""

    __tablename__ = "cache_entries"
    __table_args__ = (
        Index("ix_cache_entries_tenant_key", "tenant_id", "key_hash"),
        Index("ix_cache_entries_created", "created_at"),
        Index("ix_cache_entries_expires", "expires_at"),
    )

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(String(32))
    scope_hash: Mapped[str] = mapped_column(String(64))
    key_hash: Mapped[str] = mapped_column(String(64))
    model: Mapped[str] = mapped_column(String(200))
    query_text: Mapped[str | None] = mapped_column(String, nullable=True)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    prompt_tokens: Mapped[int] = mapped_column(Integer, default=0)
    completion_tokens: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    hits: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class CachePurge(Base):
    """A purge of one tenant's cache; replicas poll this table to drop that tenant's entries."""

    __tablename__ = "cache_purges"
    __table_args__ = (Index("ix_cache_purges_purged", "purged_at"),)

    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    tenant_id: Mapped[str] = mapped_column(String(32))
    purged_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class DeploymentStat(Base):
    """The router's learned latency/throughput model of one deployment, so restarts are warm."""

    __tablename__ = "deployment_stats"

    deployment: Mapped[str] = mapped_column(String(200), primary_key=True)
    stats: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class _UsageRollup:
    """Ledger sums per time bucket x tenant x model x deployment, for the dashboard.

    Kept current by a database trigger on `usage_ledger` inserts (migration 0003), so the
    dashboard sums thousands of rollup rows instead of millions of ledger rows.
    `deployment` is '' when the request was never dispatched; `dispatched` and
    `latency_ms_sum` count only requests that were not cache hits. The `energy_*` columns
    (migration 0004, its own trigger) sum only requests whose GPU energy was measured.
    """

    bucket: Mapped[datetime] = mapped_column(DateTime(timezone=True), primary_key=True)
    tenant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    model: Mapped[str] = mapped_column(String(200), primary_key=True)
    deployment: Mapped[str] = mapped_column(String(200), primary_key=True)
    requests: Mapped[int] = mapped_column(BigInteger, default=0)
    errors: Mapped[int] = mapped_column(BigInteger, default=0)
    cache_hits: Mapped[int] = mapped_column(BigInteger, default=0)
    dispatched: Mapped[int] = mapped_column(BigInteger, default=0)
    prompt_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0)
    cost_usd: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    counterfactual_cost_usd: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    saved_cache_usd: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    saved_compression_usd: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    saved_routing_usd: Mapped[Decimal] = mapped_column(MONEY, default=Decimal(0))
    slo_met: Mapped[int] = mapped_column(BigInteger, default=0)
    slo_known: Mapped[int] = mapped_column(BigInteger, default=0)
    latency_ms_sum: Mapped[float] = mapped_column(Float, default=0.0)
    energy_joules: Mapped[float] = mapped_column(Float, default=0.0, server_default="0")
    energy_completion_tokens: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    energy_requests: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


class UsageRollupHourly(_UsageRollup, Base):
    __tablename__ = "usage_rollup_hourly"
    # One tenant's figures (its dashboard page): the primary key leads with the bucket.
    __table_args__ = (Index("ix_usage_rollup_hourly_tenant_bucket", "tenant_id", "bucket"),)


class UsageRollupDaily(_UsageRollup, Base):
    __tablename__ = "usage_rollup_daily"
    __table_args__ = (Index("ix_usage_rollup_daily_tenant_bucket", "tenant_id", "bucket"),)


class DashboardSession(Base):
    """A signed-in dashboard browser. Only the SHA-256 of the session token is stored."""

    __tablename__ = "dashboard_sessions"

    token_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    csrf_token: Mapped[str] = mapped_column(String(64))
    # HMAC of the token under the admin key that signed in: rotating the key ends every session.
    key_check: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)


class ResponseItem(Base):
    """An output item of a `/v1/responses` reply, kept for a while so that a later request
    from the same tenant can send `{"type": "item_reference", "id": ...}` instead of it."""

    __tablename__ = "response_items"
    __table_args__ = (Index("ix_response_items_expires", "expires_at"),)

    tenant_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    item_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    item: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
