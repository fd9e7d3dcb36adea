"""Secrets are masked in their common encodings and across line breaks, in logs, streams and run records."""

from __future__ import annotations

import base64
import binascii
import io
import json
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from orchestrator.coordination import outcome
from orchestrator.logs import (
    bounded_excerpt,
    configure,
    scrub,
    scrub_lines,
    secret_variants,
)

SECRET = "sk-ant-api03-Zx9/Qw+e_rty-0123456789abcdefSECRET"
OTHER = "ghp_TESTtoken0123456789abcdefSECRET"


def leaks(text: str, secret: str = SECRET) -> bool:
    """True when `text` still gives `secret` away, in clear or in any encoding a reader could undo."""
    flat = re.sub(r"\s", "", text)
    if secret in flat or quote(secret, safe="") in flat or secret.encode().hex() in flat.lower():
        return True
    for chunk in re.findall(r"[A-Za-z0-9+/_-]{8,}={0,2}", flat):
        for start in range(4):
            piece = chunk[start:].replace("-", "+").replace("_", "/")
            piece = piece[: len(piece) // 4 * 4]
            try:
                if secret.encode() in base64.b64decode(piece):
                    return True
            except (binascii.Error, ValueError):
                pass
    return False


@pytest.mark.parametrize("before", [b"", b"x", b"xy", b"Authorization: Basic "])
@pytest.mark.parametrize("after", [b"", b":", b"::"])
@pytest.mark.parametrize("alphabet", ["standard", "urlsafe"])
def test_base64_at_every_alignment_is_masked(before: bytes, after: bytes, alphabet: str) -> None:
    encode = base64.b64encode if alphabet == "standard" else base64.urlsafe_b64encode
    text = "token=" + encode(before + SECRET.encode() + after).decode() + " end"
    assert leaks(text)
    masked = scrub(text, [SECRET])
    assert not leaks(masked) and "***" in masked and masked.endswith(" end")


@pytest.mark.parametrize("encoded", [quote(SECRET, safe=""), SECRET.encode().hex(), SECRET.encode().hex().upper()])
def test_url_and_hex_encodings_are_masked(encoded: str) -> None:
    masked = scrub(f"GET /?k={encoded}&x=1", [SECRET])
    assert encoded not in masked and "***" in masked and masked.endswith("&x=1")


@pytest.mark.parametrize("cut", [1, 10, len(SECRET) - 1])
@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_secret_split_across_two_lines_is_masked(cut: int, newline: str) -> None:
    text = f"key: {SECRET[:cut]}{newline}{SECRET[cut:]} done\nnext line"
    masked = scrub(text, [SECRET, OTHER])
    assert not leaks(masked) and masked.count("\n") == text.count("\n") and masked.endswith("done\nnext line")
    # Base64 wrapped at 76 columns, as MIME and `base64` print it.
    wrapped = base64.encodebytes(b"A" * 70 + SECRET.encode()).decode()
    assert "\n" in wrapped.strip() and not leaks(scrub(wrapped, [SECRET]))


def test_line_streams_see_each_line_with_the_next() -> None:
    lines = ["start\n", f"half {SECRET[:20]}\n", f"{SECRET[20:]} rest\n", f"{base64.b64encode(SECRET.encode()).decode()}\n",
             "end"]
    out = list(scrub_lines(iter(lines), [SECRET]))
    assert len(out) == len(lines) and all(line.endswith("\n") for line in out)
    assert not leaks("".join(out)) and out[0] == "start\n" and out[-1] == "end\n"


def test_log_lines_mask_encodings_too() -> None:
    stream = io.StringIO()
    handler = configure("INFO", secrets=[SECRET], stream=stream)
    try:
        logging.getLogger("test.masking").warning("header %s", base64.b64encode(f"u:{SECRET}".encode()).decode())
        logging.getLogger("test.masking").warning("url %s", quote(SECRET, safe=""))
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line)["message"] for line in stream.getvalue().splitlines()]
    assert len(lines) == 2 and not any(leaks(line) for line in lines) and all("***" in line for line in lines)


def test_short_secrets_get_no_encodings_that_match_by_chance() -> None:
    assert secret_variants("abcd") == ["abcd", "61626364"]
    assert scrub("the word abc is fine", ["abcd"]) == "the word abc is fine"


def test_the_run_record_keeps_a_bounded_scrubbed_excerpt() -> None:
    lines = [f"line {i}\n" for i in range(30)] + [f"x {SECRET[:15]}\n", f"{SECRET[15:]} y\n", "z" * 5000 + "\n"]
    text = bounded_excerpt(lines, [SECRET], keep=20, limit=4000)
    assert len(text) <= 4000 and not leaks(text)
    # The first line fetched (one more than kept) may end a secret that began earlier: it is dropped.
    assert bounded_excerpt([f"{SECRET[20:]} tail\n", "a\n", "b\n"], [SECRET], keep=2) == "a\nb"
    assert bounded_excerpt([f"a {SECRET[:9]}\n", f"{SECRET[9:]}\n", "c\n"], [SECRET], keep=2) == "***\nc"


class _Runner:
    def __init__(self, lines: list[str]):
        self.lines = lines

    def logs(self, run_id: str, *, follow: bool = False, tail: int | None = None) -> Iterator[str]:
        yield from self.lines[-tail:] if tail else self.lines


def test_log_tail_of_a_run_holds_no_secret(settings, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    token = settings.api_tokens[0]
    secret = "ghp_" + "Z" * 36
    configured = settings.replace(github_token=secret)
    output = [f"{i}\n" for i in range(40)] + [f"auth {base64.b64encode(f'x:{secret}'.encode()).decode()}\n",
                                              f"split {secret[:12]}\n", f"{secret[12:]} and {token}\n"]
    monkeypatch.setattr(outcome, "get_runner", lambda _settings: _Runner(output))
    tail = outcome._log_tail(configured, "shop-1-v1-a1")
    assert tail.count("\n") == outcome.LOG_TAIL_LINES - 1
    assert not leaks(tail, secret) and token not in tail and tail.endswith("*** and ***")
