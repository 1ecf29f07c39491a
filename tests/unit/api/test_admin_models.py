"""The admin API's request models: what they refuse, and that the refusal reads right."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from gateway.api.admin import KeyCreate, TenantCreate, TenantPatch


@pytest.mark.parametrize(
    "make",
    [lambda: KeyCreate(name="k" * 201), lambda: TenantCreate(name="t" * 201),
     lambda: TenantPatch(name="t" * 201)],
)  # fmt: skip
def test_a_name_too_long_is_counted_in_characters(make: object) -> None:
    with pytest.raises(ValidationError) as caught:
        make()  # type: ignore[operator]
    assert "at most 200 characters" in caught.value.errors()[0]["msg"]


@pytest.mark.parametrize("blank", ["", "   ", "\t"])
def test_a_blank_tenant_name_is_refused(blank: str) -> None:
    with pytest.raises(ValidationError):
        TenantCreate(name=blank)
    with pytest.raises(ValidationError):
        TenantPatch(name=blank)


def test_a_tenant_name_is_stripped() -> None:
    assert TenantCreate(name=" dup ").name == "dup"
    assert TenantPatch(name="dup\n").name == "dup"


def test_nul_is_still_refused() -> None:
    with pytest.raises(ValidationError):
        KeyCreate(name="a\x00b")
    with pytest.raises(ValidationError):
        TenantCreate(name="a\x00b")
