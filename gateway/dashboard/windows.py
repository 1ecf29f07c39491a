"""The time window a dashboard page shows: a named range, aligned to whole hours or days (UTC)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

Unit = Literal["hour", "day"]

# name -> (number of buckets, default bucket unit)
RANGES: dict[str, tuple[int, Unit]] = {
    "24h": (24, "hour"),
    "7d": (7, "day"),
    "30d": (30, "day"),
    "90d": (90, "day"),
}
DEFAULT_RANGE = "7d"
# Hourly buckets only up to a week: 720 bars a month are unreadable, and slow to sum.
HOURLY_UP_TO = {"24h", "7d"}


@dataclass(frozen=True, slots=True)
class Window:
    """Rows with `since <= created_at` (no upper bound: the newest rows always count)."""

    name: str
    unit: Unit
    since: datetime
    now: datetime

    @property
    def units(self) -> list[Unit]:
        """The bucket units this window can be shown in."""
        if RANGES[self.name][1] == "hour":
            return ["hour"]
        return ["day", "hour"] if self.name in HOURLY_UP_TO else ["day"]

    def buckets(self) -> list[datetime]:
        """Every bucket start from `since` to `now`, so a chart has no gaps on quiet days."""
        step = timedelta(hours=1) if self.unit == "hour" else timedelta(days=1)
        out = []
        t = self.since
        while t <= self.now:
            out.append(t)
            t += step
        return out


def floor(ts: datetime, unit: Unit) -> datetime:
    ts = ts.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    return ts.replace(hour=0) if unit == "day" else ts


def label(ts: datetime, unit: Unit) -> str:
    ts = ts.astimezone(UTC)
    return ts.strftime("%Y-%m-%d") if unit == "day" else ts.strftime("%Y-%m-%d %H:00")


def window(name: str | None, unit: str | None = None, now: datetime | None = None) -> Window:
    """The window for a `range` query parameter; unknown values fall back to the default.

    With hourly buckets over a range counted in days, the window still starts at midnight,
    so switching the unit never changes the totals.
    """
    now = now or datetime.now(UTC)
    if name not in RANGES:
        name = DEFAULT_RANGE
    count, default_unit = RANGES[name]
    chosen: Unit = "hour" if unit == "hour" else "day" if unit == "day" else default_unit
    if default_unit == "hour":
        since = floor(now, "hour") - timedelta(hours=count - 1)
        chosen = "hour"  # a day bucket would start before the window
    else:
        if name not in HOURLY_UP_TO:
            chosen = "day"
        since = floor(now, "day") - timedelta(days=count - 1)
    return Window(name=name, unit=chosen, since=since, now=now)
