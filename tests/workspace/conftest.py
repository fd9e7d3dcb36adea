"""Fixtures for workspace tests: a token-protected git remote over HTTP, runs in a real store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.store import TaskStore
from tests.support.git_server import PUBLIC_BASE, GitHttpServer

TOKEN = "ghp_TESTtoken0123456789abcdefSECRET"
REPO_URL = PUBLIC_BASE + "acme/shop.git"


@pytest.fixture
def git_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[GitHttpServer]:
    """A git remote that demands the token; https://git.example.test/ URLs are sent to it."""
    server = GitHttpServer(tmp_path / "remotes", TOKEN)
    server.start()
    for key, value in server.git_env().items():
        monkeypatch.setenv(key, value)
    yield server
    server.stop()


@pytest.fixture
def remote(git_server: GitHttpServer, tmp_path: Path) -> Path:
    """acme/shop with `main` (README, services/api) and `develop` (one more file)."""
    return git_server.create_repository("acme/shop", tmp_path / "seed", branches={
        "main": {"README.md": "# shop\n", "services/api/app.py": "print('api')\n"},
        "develop": {"DEVELOP.md": "develop only\n"},
    })


@pytest.fixture
def ws_settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.replace(github_token=TOKEN, workspace_root=tmp_path / "ws", git_timeout_seconds=30)


def task_spec(task_id: int = 7, **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "id": task_id,
        "title": "Add login",
        "description": "Users log in with email and password.",
        "details": "Use the existing session middleware.",
        "test_strategy": "Unit tests for the login view.",
        "priority": "high",
        "status": "pending",
        "dependencies": [3, 4],
        "subtasks": [{"id": 1, "title": "Form", "description": "The login form", "dependencies": [],
                      "details": "HTML form", "status": "pending", "test_strategy": "render it"}],
        "service_name": "shop",
        "agent_name": "claude",
        "markdown_files": [
            {"filename": "prompt.md", "content": "Implement the login.", "file_type": "prompt"},
            {"filename": "acceptance.md", "content": "- a user can log in", "file_type": "acceptance-criteria"},
            {"filename": "design.md", "content": "Sessions in Redis.", "file_type": "design-spec"},
        ],
        "repository": {"url": REPO_URL, "branch": "develop"},
    }
    spec.update(overrides)
    return {k: v for k, v in spec.items() if v is not None}


def start_run(store: TaskStore, spec: dict[str, Any], *, version: int = 1, attempt: int = 1,
              create: bool = True) -> str:
    """Store the task (when `create`), bring it to Preparing and record its run, as admission does."""
    service, task_id = spec["service_name"], int(spec["id"])
    if create:
        store.create_task(service=service, task_id=task_id, agent=spec["agent_name"], spec=spec)
    for target in (Status.QUEUED, Status.PREPARING):
        store.transition(service, task_id, target, reason="test", actor="test")
    run = store.create_run(service, task_id, version=version, attempt=attempt)
    store.update_task(service, task_id, current_run=run.run_id)
    return run.run_id


def files_containing(root: Path, needle: str) -> list[Path]:
    """Every file under `root` (including .git) whose bytes contain `needle`."""
    found = []
    data = needle.encode()
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink() and data in path.read_bytes():
            found.append(path)
    return found
