"""API keys: generation and hashing. Only the SHA-256 of a key is stored.

Keys are 256-bit random, so a fast hash is as good as a slow one here (no dictionary to
attack); lookups go by hash and the final comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

KEY_PREFIX = "tg-"


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode("utf-8", "surrogatepass")).hexdigest()


def generate_key() -> tuple[str, str, str]:
    """A new key: (the key itself, its display prefix, its hash)."""
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    return raw, raw[:10], hash_key(raw)


def same_hash(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def check_admin_key(given: str | None, expected: str | None) -> bool:
    if not given or not expected:
        return False
    return hmac.compare_digest(hash_key(given).encode(), hash_key(expected).encode())
