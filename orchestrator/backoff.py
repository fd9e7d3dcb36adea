"""Waiting between retries of an HTTP API: exponential backoff with jitter, and Retry-After.

Shared by the GitHub and Kubernetes clients, so both read Retry-After the same
way (seconds or an HTTP date, as RFC 9110 allows) and spread their retries.
"""

from __future__ import annotations

import email.utils
import random


def retry_after_seconds(value: str | None, now: float) -> float | None:
    """Seconds a Retry-After header asks for (a number of seconds or an HTTP date); None when absent or unreadable."""
    if value is None:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - now)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def jittered(base: float, attempt: int, cap: float = float("inf")) -> float:
    """`base` x 2^attempt, at most `cap`, times a random factor in [0.5, 1): retries of many callers spread out."""
    return min(cap, base * (2 ** attempt)) * random.uniform(0.5, 1.0)
