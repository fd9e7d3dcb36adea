"""The re-drive of accepted webhook deliveries whose queued event was lost (redrive.redrive_events)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from orchestrator.coordination import redrive
from orchestrator.settings import Settings
from orchestrator.store import TaskStore
from orchestrator.store.keys import event_pending_key
from orchestrator.steps import Step
from tests.support.runs import Sent


@pytest.fixture
def sent() -> list[tuple[str, tuple[Any, ...]]]:
    return Sent().install().calls


def test_an_event_not_handled_in_time_is_queued_again_from_the_store(store: TaskStore, settings: Settings,
                                                                     sent: list) -> None:
    settings = settings.replace(stuck_after_seconds=5)
    body = json.dumps({"action": "labeled", "issue": {"number": 3}})
    store.keep_pending_event("d-1", "issues", body, ttl=60, now=1000.0)
    store.keep_pending_event("d-2", "issues", body, ttl=60, now=1004.0)
    assert redrive.redrive_events(store, settings, now=1004.0) == []  # not stuck yet
    assert redrive.redrive_events(store, settings, now=1006.0) == [f"{Step.HANDLE_EVENT}:d-1"]
    assert sent == [(Step.HANDLE_EVENT, ("d-1", "issues"))]  # the worker reads the body from the store
    assert redrive.redrive_events(store, settings, now=1010.0) == [f"{Step.HANDLE_EVENT}:d-2"]  # d-1 waits again
    store.mark_event_handled("d-1", ttl=60)
    store.mark_event_handled("d-2", ttl=60)
    assert store.pending_events(queued_before=10**10) == []


def test_an_event_never_handled_is_given_up_after_the_limit(store: TaskStore, settings: Settings,
                                                            sent: list) -> None:
    settings = settings.replace(stuck_after_seconds=1)
    store.keep_pending_event("d-9", "issues", "{}", ttl=600, now=0.0)
    for i in range(redrive.MAX_EVENT_RESENDS + 1):
        redrive.redrive_events(store, settings, now=10.0 * (i + 1))
    assert len(sent) == redrive.MAX_EVENT_RESENDS
    assert store.pending_events(queued_before=10**10) == []


def test_a_dropped_or_expired_event_is_not_resent(store: TaskStore, settings: Settings, sent: list) -> None:
    store.keep_pending_event("d-5", "issues", "{}", ttl=600, now=0.0)
    store.drop_pending_event("d-5")
    store.keep_pending_event("d-6", "issues", "{}", ttl=600, now=0.0)
    store.redis.delete(event_pending_key("d-6"))  # its copy expired (delivery TTL)
    assert redrive.redrive_events(store, settings.replace(stuck_after_seconds=1), now=100.0) == []
    assert sent == [] and store.pending_events(queued_before=10**10) == []
