"""Helpers for API tests: a valid submission and an authenticated test client."""

from __future__ import annotations

import copy
from typing import Any

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}

VALID_TASK: dict[str, Any] = {
    "id": 7,
    "title": "Add invoice export",
    "description": "Export invoices as CSV",
    "details": "Use the existing report module.",
    "test_strategy": "Unit tests for the CSV writer.",
    "priority": "high",
    "status": "pending",
    "dependencies": [3],
    "subtasks": [{"id": 1, "title": "Writer", "description": "", "dependencies": [], "details": "",
                  "status": "pending", "test_strategy": ""}],
    "service_name": "billing",
    "agent_name": "claude",
    "markdown_files": [{"filename": "task.md", "content": "# Export\n", "file_type": "task"}],
    "repository": {"url": "https://github.com/acme/billing.git", "branch": "main"},
    "model": "claude-sonnet-4-5",
    "working_directory": "services/billing",
    "timeout_seconds": 1800,
    "env": {"LOG_LEVEL": "debug"},
}


def valid_task(**changes: Any) -> dict[str, Any]:
    """A submission the API accepts, with some fields changed (None removes one)."""
    task = copy.deepcopy(VALID_TASK)
    for key, value in changes.items():
        if value is None:
            task.pop(key, None)
        else:
            task[key] = value
    return task


def route_steps_to(settings: Any, monkeypatch: Any) -> Any:
    """Send this test's steps to its Redis: the process-wide Celery app was built from
    whatever environment the first import saw. Installs a Celery-backed dispatcher on an
    app built from `settings` (and makes that app `workers.app.app`); returns the app."""
    import workers.app
    from orchestrator import dispatch
    from orchestrator.celery_dispatch import CeleryDispatcher
    from workers.app import create_celery

    celery = create_celery(settings)
    monkeypatch.setattr(workers.app, "app", celery)
    dispatch.install(CeleryDispatcher(celery))  # uninstalled after the test (tests/conftest.py)
    return celery
