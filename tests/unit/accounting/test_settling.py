from decimal import Decimal

from gateway.accounting.settling import Settling

KEY = ("tenant", "2026-11-01T00:00:00+00:00")


def test_credits_add_up_per_tenant_period_and_leave_when_taken() -> None:
    s = Settling()
    s.add("r1", KEY, Decimal("9.5"))
    s.add("r2", KEY, Decimal("-0.5"))  # cost more than it reserved: stricter
    s.add("r2", KEY, Decimal("100"))  # a row is credited once
    s.add("r3", ("other", KEY[1]), Decimal(1))
    assert s.credit(KEY) == Decimal(9)
    taken = s.take(["r1", "unknown"])
    assert s.credit(KEY) == Decimal("-0.5") and len(s) == 2
    s.restore(taken)  # the write failed: the credit is back
    assert s.credit(KEY) == Decimal(9)
    s.take(["r1", "r2", "r3"])
    assert s.credit(KEY) == 0 and s.credit(("other", KEY[1])) == 0 and len(s) == 0


def test_credits_that_sum_to_zero_with_rows_left_are_still_taken() -> None:
    s = Settling()
    s.add("r1", KEY, Decimal("0.001"))
    s.add("r2", KEY, Decimal("-0.001"))  # reserved nothing: the budget store was down
    s.add("r3", KEY, Decimal("0.001"))
    s.take(["r1"])  # what is left (r2, r3) sums to zero
    assert s.credit(KEY) == 0 and len(s) == 2
    s.take(["r2"])
    assert s.credit(KEY) == Decimal("0.001")
    s.take(["r3"])
    assert s.credit(KEY) == 0 and len(s) == 0
