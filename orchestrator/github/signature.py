"""Webhook signatures: HMAC-SHA256 of the raw body (`X-Hub-Signature-256`).

Pure functions. Several secrets may be configured at once so a secret can be
rotated without downtime: a body signed with any of them is accepted.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

PREFIX = "sha256="


def sign(body: bytes, secret: str) -> str:
    """The `X-Hub-Signature-256` header value GitHub would send for this body."""
    return PREFIX + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def verify(body: bytes, header: str | None, secrets: Iterable[str]) -> bool:
    """True when `header` is a valid signature of `body` under one of `secrets`.

    Every secret is compared (no early exit), each in constant time, so the
    answer's timing says nothing about which secret or how many bytes matched.
    """
    if not header or not header.startswith(PREFIX):
        return False
    given = header[len(PREFIX) :].strip().lower().encode("ascii", "replace")
    if len(given) != 64:
        return False
    matched = False
    for secret in secrets:
        if not secret:
            continue
        expected = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest().encode("ascii")
        matched |= hmac.compare_digest(expected, given)
    return matched
