"""Retry-After parsing and the one backoff formula every retry loop uses (pure)."""

from __future__ import annotations

import email.utils

import pytest

from orchestrator.backoff import delay, retry_after_seconds

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
            wait = delay(attempt, base=0.5, cap=10.0)
            full = min(10.0, 0.5 * 2 ** attempt)
            assert full * 0.5 <= wait <= full


def test_retry_after_is_a_floor_within_the_cap() -> None:
    for _ in range(50):
        assert delay(0, base=0.5, retry_after=3.0) == 3.0  # more than the backoff: what the server asked
        assert 0.5 <= delay(2, base=0.5, retry_after=0.1) <= 2.0  # less: the backoff
        assert delay(0, base=0.5, cap=10.0, retry_after=120.0) == 10.0  # never past the cap


def test_without_jitter_it_doubles_exactly() -> None:
    # ORCHESTRATOR_RETRY_BACKOFF_SECONDS: documented as doubled for each further retry.
    assert [delay(n, base=30.0, jitter=False) for n in range(4)] == [30.0, 60.0, 120.0, 240.0]
