"""Webhook signatures: HMAC-SHA256 over the raw bytes, several secrets while rotating."""

from __future__ import annotations

import hashlib
import hmac

from orchestrator.github.signature import sign, verify


def test_sign_matches_githubs_documented_example() -> None:
    # The example from GitHub's "Validating webhook deliveries" page.
    assert sign(b"Hello, World!", "It's a Secret to Everybody") == (
        "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17"
    )


def test_verify_accepts_only_the_exact_body_and_secret() -> None:
    body = b'{"action":"opened"}'
    header = sign(body, "s1")
    assert verify(body, header, ["s1"])
    assert not verify(body + b" ", header, ["s1"])
    assert not verify(body, header, ["s2"])
    assert not verify(body, header, [])
    assert not verify(body, header, [""])


def test_any_configured_secret_verifies_during_rotation() -> None:
    body = b"{}"
    assert verify(body, sign(body, "old"), ["new", "old"])
    assert verify(body, sign(body, "new"), ["new", "old"])


def test_malformed_headers_are_refused() -> None:
    body = b"{}"
    digest = hmac.new(b"s", body, hashlib.sha256).hexdigest()
    for header in (None, "", digest, "sha1=" + digest, "sha256=", "sha256=" + digest[:-1], "sha256=zz" + digest[2:],
                   "sha256=" + digest + "00", "sha256=é" + digest[1:]):
        assert not verify(body, header, ["s"]), header
    assert verify(body, "sha256=" + digest.upper(), ["s"])
