from __future__ import annotations

import pytest

from gateway.compression import resolve_options
from gateway.errors import InvalidRequest


def test_header_beats_tenant_flag_beats_default() -> None:
    assert resolve_options({}, {}, "lossless").mode == "lossless"
    assert resolve_options({}, {"compression": "balanced"}, "lossless").mode == "balanced"
    headers = {"x-thriftgate-compress": "OFF"}
    assert resolve_options(headers, {"compression": "balanced"}).mode == "off"


def test_ratio_and_allow_flags() -> None:
    opts = resolve_options(
        {"x-thriftgate-compress-ratio": "4"},
        {"compression_ratio": 2, "compression_allow": ["system", "code"]},
    )
    assert opts.target_ratio == 4.0
    assert opts.compress_system and opts.compress_code and not opts.compress_last_user
    assert resolve_options({}, {"compression_ratio": 2}).target_ratio == 2.0


@pytest.mark.parametrize(
    ("headers", "param"),
    [
        ({"x-thriftgate-compress": "max"}, "x-thriftgate-compress"),
        ({"x-thriftgate-compress-ratio": "0.5"}, "x-thriftgate-compress-ratio"),
        ({"x-thriftgate-compress-ratio": "nan"}, "x-thriftgate-compress-ratio"),
        ({"x-thriftgate-compress-ratio": "lots"}, "x-thriftgate-compress-ratio"),
    ],
)
def test_bad_headers_are_client_errors(headers: dict[str, str], param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        resolve_options(headers, {})
    assert info.value.param == param
    assert info.value.body()["error"]["type"] == "invalid_request_error"
