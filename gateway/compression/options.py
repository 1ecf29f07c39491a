"""Which compression a request gets: the header, else the tenant's flags, else the default.

    x-thriftgate-compress: off | lossless | balanced | aggressive
    x-thriftgate-compress-ratio: 2.5        (balanced/aggressive: keep about 1/ratio of context)

Tenant flags (all optional): `compression` (a mode), `compression_ratio`,
`compression_min_prompt_tokens`, `compression_min_saved_usd`, `compression_allow` (a list of
"system", "last_user", "code" that may then be compressed too).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, TypeGuard

from gateway.errors import InvalidRequest

Mode = Literal["off", "lossless", "balanced", "aggressive"]
MODES: tuple[Mode, ...] = ("off", "lossless", "balanced", "aggressive")
MODE_HEADER = "x-thriftgate-compress"
RATIO_HEADER = "x-thriftgate-compress-ratio"
MAX_RATIO = 20.0
DEFAULT_RATIO = 2.5  # eval: ~97% answers kept (BM25 only); see docs/notes/issue-7.md


@dataclass(frozen=True, slots=True)
class CompressionOptions:
    mode: Mode = "off"
    # balanced/aggressive keep about 1/target_ratio of the compressible prose.
    target_ratio: float = DEFAULT_RATIO
    # Prompts shorter than this are sent as they are (nothing worth the bytes).
    min_prompt_tokens: int = 500
    # Only messages at least this long are cut extractively (short turns carry little).
    min_message_tokens: int = 150
    # Below these savings the original prompt goes out untouched.
    min_saved_tokens: int = 32
    min_saved_usd: Decimal = Decimal(0)
    # Aggressive only: extra fraction of the kept words pruned by surprisal.
    prune_fraction: float = 0.25
    compress_system: bool = False
    compress_last_user: bool = False
    compress_code: bool = False


def resolve_options(
    headers: Mapping[str, str], flags: Mapping[str, Any], default_mode: str = "off"
) -> CompressionOptions:
    """Header over tenant flag over default. A bad header is the client's error (400)."""
    raw_mode = headers.get(MODE_HEADER)
    if raw_mode is not None:
        mode = _parse_mode(raw_mode.strip().lower(), param=MODE_HEADER)
    else:
        mode = _parse_mode(str(flags.get("compression", default_mode)).lower(), param="compression")
    ratio = DEFAULT_RATIO
    if flags.get("compression_ratio") is not None:
        ratio = _parse_ratio(str(flags["compression_ratio"]), param="compression_ratio")
    if headers.get(RATIO_HEADER) is not None:
        ratio = _parse_ratio(headers[RATIO_HEADER], param=RATIO_HEADER)
    allow = flags.get("compression_allow") or ()
    allowed = {str(a) for a in allow} if isinstance(allow, list | tuple) else set()
    return CompressionOptions(
        mode=mode,
        target_ratio=ratio,
        min_prompt_tokens=int(flags.get("compression_min_prompt_tokens", 500)),
        min_saved_usd=_decimal(flags.get("compression_min_saved_usd", 0)),
        compress_system="system" in allowed,
        compress_last_user="last_user" in allowed,
        compress_code="code" in allowed,
    )


def check_headers(headers: Mapping[str, str]) -> None:
    """Refuse a bad compression header up front (400), on every endpoint and before the cache
    can answer: the same request gets the same verdict whatever the cache holds."""
    if headers.get(MODE_HEADER) is not None:
        _parse_mode(headers[MODE_HEADER].strip().lower(), param=MODE_HEADER)
    if headers.get(RATIO_HEADER) is not None:
        _parse_ratio(headers[RATIO_HEADER], param=RATIO_HEADER)


def _is_mode(value: str) -> TypeGuard[Mode]:
    return value in MODES


def _parse_mode(value: str, *, param: str) -> Mode:
    if not _is_mode(value):
        raise InvalidRequest(
            f"{param} must be one of {', '.join(MODES)}; got {value!r}",
            param=param,
            code="invalid_compression_mode",
        )
    return value


def _parse_ratio(value: str, *, param: str) -> float:
    try:
        ratio = float(value)
    except ValueError:
        ratio = float("nan")
    if not (1.0 <= ratio <= MAX_RATIO):
        raise InvalidRequest(
            f"{param} must be a number between 1 and {MAX_RATIO:g}; got {value!r}",
            param=param,
            code="invalid_compression_ratio",
        )
    return ratio


def _decimal(value: Any) -> Decimal:
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return Decimal(0)
