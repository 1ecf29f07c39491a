from datetime import UTC, datetime

import pytest

from gateway.accounting.reports import parse_time
from gateway.errors import InvalidRequest


@pytest.mark.parametrize(
    "value",
    ["2026-11-24T13:00:00+05:00", "2026-11-24T03:00:00-05:00", "2026-11-24T08:00:00Z",
     "2026-11-24T08:00:00"],
)  # fmt: skip
def test_every_offset_means_the_same_instant_in_utc(value: str) -> None:
    ts = parse_time(value, "since")
    assert ts == datetime(2026, 11, 24, 8, tzinfo=UTC) and ts.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_a_bad_time_is_a_400() -> None:
    with pytest.raises(InvalidRequest):
        parse_time("yesterday", "since")


@pytest.mark.parametrize(
    ("value", "name"),
    [("9999-12-31T23:00:00-05:00", "since"), ("0001-01-01T00:30:00+01:00", "until")],
)
def test_a_time_that_leaves_the_calendar_in_utc_is_a_400_naming_the_parameter(
    value: str, name: str
) -> None:
    with pytest.raises(InvalidRequest) as caught:
        parse_time(value, name)
    assert caught.value.param == name and f"'{name}'" in caught.value.message
