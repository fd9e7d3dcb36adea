"""Label values stay few: reasons fold into classes, outside names are checked and capped."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator.metrics import labels
from orchestrator.metrics.labels import OTHER, REASON_CLASSES, bounded, kube_error_kind, reason_class


@pytest.fixture(autouse=True)
def _fresh() -> Iterator[None]:
    labels.reset()
    yield
    labels.reset()


@pytest.mark.parametrize(
    ("reason", "retryable", "expected"),
    [
        ("", False, "none"),
        ("cancelled by pm@example.com", False, "cancelled"),
        ("model rate limit; resumes at 2026-12-01 10:00 UTC", False, "rate_limit"),
        ("stalled: no output for 901 s", True, "stalled"),
        ("budget: the run's cost limit was reached (1.0000 USD spent)", False, "budget"),
        ("max_turns: stopped after 30 turns", False, "max_turns"),
        ("permission denied: Bash(rm -rf /)", False, "permission_denied"),
        ("model API error 500: boom", False, "api_error"),
        ("agent reported an error: nope", False, "agent_error"),
        ("the agent's output ended without a result (it stopped mid-stream)", False, "agent_crash"),
        ("DeadlineExceeded: the run exceeded its timeout", False, "timeout"),
        ("delivery failed: push refused (after 5 retries)", False, "delivery"),
        ("workspace preparation failed: clone", False, "workspace"),
        ("ImagePullBackOff: not found", True, "image_pull"),
        ("Error: exit code 3", False, "agent_exit"),
        ("agent exited with code 2", False, "agent_exit"),
        ("the run's Job disappeared before its end was seen", True, "lost"),
        ("Evicted: the node ran low on memory", True, "platform"),
        ("something new entirely", False, OTHER),
    ],
)
def test_reasons_fold_into_a_fixed_set_of_classes(reason: str, retryable: bool, expected: str) -> None:
    assert reason_class(reason, retryable=retryable) == expected
    assert expected in REASON_CLASSES


def test_a_name_from_outside_is_checked_and_capped(monkeypatch: pytest.MonkeyPatch) -> None:
    assert bounded("model", "claude-sonnet-4-5-20250929") == "claude-sonnet-4-5-20250929"
    assert bounded("model", "") == "none"
    assert bounded("model", "a b") == OTHER  # not a name
    assert bounded("model", "x" * 200) == OTHER  # too long to be one
    assert bounded("model", '"} evil{') == OTHER
    monkeypatch.setattr(labels, "MAX_VALUES", 3)
    assert [bounded("service", f"s{i}") for i in range(5)] == ["s0", "s1", "s2", OTHER, OTHER]
    assert bounded("service", "s1") == "s1"  # one already counted keeps its own series
    assert bounded("agent", "claude") == "claude"  # each label has its own cap


@pytest.mark.parametrize(
    ("status", "exc", "kind"),
    [
        (429, None, "throttled"),
        (503, None, "server_error"),
        (403, None, "forbidden"),
        (409, None, "conflict"),
        (410, None, "gone"),
        (418, None, "client_error"),
        (None, TimeoutError(), "timeout"),
        (None, ConnectionRefusedError(), "connection"),
    ],
)
def test_kubernetes_errors_by_kind(status: int | None, exc: BaseException | None, kind: str) -> None:
    assert kube_error_kind(status, exc) == kind
