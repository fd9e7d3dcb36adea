"""Retry-After parsing and jittered backoff shared by the GitHub and Kubernetes clients (pure)."""

from __future__ import annotations

import email.utils

import pytest

from orchestrator.backoff import jittered, retry_after_seconds

NOW = 1_700_000_000.0


@pytest.mark.parametrize("value,expected", [
    ("5", 5.0), (" 2.5 ", 2.5), ("0", 0.0), ("-3", 0.0),
    (email.utils.formatdate(NOW + 30, usegmt=True), 30.0),
    (email.utils.formatdate(NOW - 30, usegmt=True), 0.0),  # a date already past: no wait
    (None, None), ("", None), ("soon", None), ("Mon, 99 Foo 2023", None),
])
def test_retry_after_is_seconds_or_an_http_date(value: str | None, expected: float | None) -> None:
    assert retry_after_seconds(value, NOW) == expected


def test_backoff_doubles_within_its_jitter_and_stops_at_the_cap() -> None:
    for attempt in range(8):
        for _ in range(50):
            delay = jittered(0.5, attempt, cap=10.0)
            full = min(10.0, 0.5 * 2 ** attempt)
            assert full * 0.5 <= delay <= full
