"""The handle_event step never acts on a payload carried inside its message (finding 10 of issue #16).

Anyone who can put a message on the broker (Flower's API, a local process on
Redis) could otherwise make the worker act on a body GitHub never signed.
"""

from __future__ import annotations

import dataclasses
import json

import pytest

from orchestrator.settings import Settings
from orchestrator.store import TaskStore
from tests.support.github import ISSUE_TASK, SERVICE, load


@pytest.fixture
def step(github_settings: Settings, store: TaskStore, monkeypatch: pytest.MonkeyPatch):  # noqa: F811
    from workers import steps

    monkeypatch.setattr(steps, "get_store", lambda: store)
    monkeypatch.setattr(steps, "get_settings", lambda: github_settings)
    return steps.handle_event


def test_an_inline_payload_without_a_kept_copy_does_nothing(step, store: TaskStore) -> None:
    # A labelled issue would create a task, were the inline body believed.
    result = step.run("d-inline", "issues", load("issues/labeled.payload.json"))
    assert result["status"] == "expired"
    assert store.get_task(SERVICE, ISSUE_TASK) is None


def test_the_kept_copy_wins_over_an_inline_payload(step, store: TaskStore) -> None:
    kept = load("issues/labeled.payload.json")
    store.keep_pending_event("d-kept", "issues", json.dumps(kept), ttl=60)
    forged = load("issues/labeled.payload.json")
    forged["issue"]["title"] = "forged title"
    assert step.run("d-kept", "issues", forged)["status"] != "expired"
    task = store.get_task(SERVICE, ISSUE_TASK)
    assert task is not None and "forged" not in json.dumps(dataclasses.asdict(task))
