"""Every validation rule of a submission, each with a failing example, through the API."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from orchestrator import validation
from orchestrator.settings import Settings
from tests.support.api import AUTH, valid_task

FILE = {"filename": "task.md", "content": "x", "file_type": "task"}
SUB = {"id": 1, "title": "s"}

# (changes to a valid task, the path of the field the answer must name)
INVALID: list[tuple[str, dict[str, Any], tuple[Any, ...]]] = [
    ("id missing", {"id": None}, ("id",)),
    ("id zero", {"id": 0}, ("id",)),
    ("id negative", {"id": -3}, ("id",)),
    ("id float", {"id": 1.5}, ("id",)),
    ("id string", {"id": "7"}, ("id",)),
    ("id boolean", {"id": True}, ("id",)),
    ("id too big", {"id": 2**31}, ("id",)),
    ("title missing", {"title": None}, ("title",)),
    ("title empty", {"title": ""}, ("title",)),
    ("title too long", {"title": "t" * 501}, ("title",)),
    ("description not text", {"description": 5}, ("description",)),
    ("details too long", {"details": "d" * 100_001}, ("details",)),
    ("priority unknown", {"priority": "urgent"}, ("priority",)),
    ("status unknown", {"status": "Running"}, ("status",)),
    ("dependency not int", {"dependencies": ["3"]}, ("dependencies", 0)),
    ("dependency zero", {"dependencies": [0]}, ("dependencies", 0)),
    ("dependency on itself", {"dependencies": [7]}, ("dependencies",)),
    ("dependencies not a list", {"dependencies": 3}, ("dependencies",)),
    ("too many dependencies", {"dependencies": list(range(1, 102))}, ("dependencies",)),
    ("subtask without title", {"subtasks": [{"id": 1}]}, ("subtasks", 0, "title")),
    ("subtask bad id", {"subtasks": [{"id": 0, "title": "s"}]}, ("subtasks", 0, "id")),
    ("subtask bad status", {"subtasks": [{**SUB, "status": "x"}]}, ("subtasks", 0, "status")),
    ("subtask bad dependency", {"subtasks": [{**SUB, "dependencies": [-1]}]}, ("subtasks", 0, "dependencies", 0)),
    ("subtask unknown field", {"subtasks": [{**SUB, "owner": "me"}]}, ("subtasks", 0, "owner")),
    ("subtask ids repeat", {"subtasks": [SUB, SUB]}, ("subtasks",)),
    ("service missing", {"service_name": None}, ("service_name",)),
    ("service upper case", {"service_name": "Billing"}, ("service_name",)),
    ("service underscore", {"service_name": "bill_ing"}, ("service_name",)),
    ("service ends with dash", {"service_name": "billing-"}, ("service_name",)),
    ("service too long", {"service_name": "s" * (validation.MAX_SERVICE_LENGTH + 1)}, ("service_name",)),
    ("agent with dot", {"agent_name": "claude.code"}, ("agent_name",)),
    ("agent too long", {"agent_name": "a" * (validation.MAX_AGENT_LENGTH + 1)}, ("agent_name",)),
    ("no markdown files", {"markdown_files": []}, ("markdown_files",)),
    ("markdown files missing", {"markdown_files": None}, ("markdown_files",)),
    ("filename not .md", {"markdown_files": [{**FILE, "filename": "task.txt"}]}, ("markdown_files", 0, "filename")),
    ("filename with dir", {"markdown_files": [{**FILE, "filename": "../task.md"}]}, ("markdown_files", 0, "filename")),
    ("filename hidden", {"markdown_files": [{**FILE, "filename": ".task.md"}]}, ("markdown_files", 0, "filename")),
    ("filename with space", {"markdown_files": [{**FILE, "filename": "my task.md"}]}, ("markdown_files", 0, "filename")),
    ("content empty", {"markdown_files": [{**FILE, "content": ""}]}, ("markdown_files", 0, "content")),
    ("file type unknown", {"markdown_files": [{**FILE, "file_type": "notes"}]}, ("markdown_files", 0, "file_type")),
    ("filenames repeat", {"markdown_files": [FILE, FILE]}, ("markdown_files",)),
    ("repository without url", {"repository": {"branch": "main"}}, ("repository", "url")),
    ("repository file url", {"repository": {"url": "file:///etc/passwd"}}, ("repository", "url")),
    ("repository plain http", {"repository": {"url": "http://github.com/a/b.git"}}, ("repository", "url")),
    ("repository other host", {"repository": {"url": "https://evil.example/a/b.git"}}, ("repository", "url")),
    ("repository with credentials", {"repository": {"url": "https://x:y@github.com/a/b.git"}}, ("repository", "url")),
    ("repository option", {"repository": {"url": "--upload-pack=x"}}, ("repository", "url")),
    ("repository ssh other host", {"repository": {"url": "git@evil.example:a/b.git"}}, ("repository", "url")),
    ("branch option", {"repository": {"url": "https://github.com/a/b.git", "branch": "-x"}}, ("repository", "branch")),
    ("branch with ..", {"repository": {"url": "https://github.com/a/b.git", "branch": "a..b"}},
     ("repository", "branch")),
    ("model with space", {"model": "claude sonnet"}, ("model",)),
    ("working directory absolute", {"working_directory": "/etc"}, ("working_directory",)),
    ("working directory escapes", {"working_directory": "a/../../b"}, ("working_directory",)),
    ("timeout zero", {"timeout_seconds": 0}, ("timeout_seconds",)),
    ("timeout over the maximum", {"timeout_seconds": 21601}, ("timeout_seconds",)),
    ("env bad name", {"env": {"1X": "a"}}, ("env", "1X", "key")),
    ("env secret name", {"env": {"GITHUB_TOKEN": "a"}}, ("env", "GITHUB_TOKEN", "key")),
    ("env key name", {"env": {"AWS_SECRET_ACCESS_KEY": "a"}}, ("env", "AWS_SECRET_ACCESS_KEY", "key")),
    ("env api key", {"env": {"OPENAI_API_KEY": "a"}}, ("env", "OPENAI_API_KEY", "key")),
    ("env password", {"env": {"DB_PASSWORD": "a"}}, ("env", "DB_PASSWORD", "key")),
    ("env reserved", {"env": {"PATH": "/tmp"}}, ("env", "PATH", "key")),
    ("env loader", {"env": {"LD_PRELOAD": "x.so"}}, ("env", "LD_PRELOAD", "key")),
    ("env ours", {"env": {"ORCHESTRATOR_REDIS_URL": "x"}}, ("env", "ORCHESTRATOR_REDIS_URL", "key")),
    ("env value not text", {"env": {"MODE": 1}}, ("env", "MODE", "value")),
    ("env value credential", {"env": {"MODE": "ghp_abcdef"}}, ("env", "MODE", "value")),
    ("env too many", {"env": {f"V{i}": "x" for i in range(51)}}, ("env",)),
    ("agent override not allowed", {"agent": {"image": "evil:latest"}}, ("agent", "image")),
    ("unknown field", {"colour": "red"}, ("colour",)),
]


@pytest.fixture
def client(settings: Settings) -> FlaskClient:
    return create_app(settings).test_client()


@pytest.mark.parametrize(("changes", "path"), [case[1:] for case in INVALID], ids=[case[0] for case in INVALID])
def test_invalid_submission_names_the_field(client: FlaskClient, changes: dict[str, Any],
                                            path: tuple[Any, ...]) -> None:
    response = client.post("/api/v1/pm/tasks", json=valid_task(**changes), headers=AUTH)
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["code"] == "validation_error"
    node: Any = body["errors"]
    for part in path:
        node = node[str(part)] if isinstance(node, dict) and str(part) in node else node[part]
    assert node


@pytest.mark.parametrize("url", ["https://github.com/acme/billing.git", "https://github.com/acme/billing",
                                 "git@github.com:acme/billing.git"])
def test_accepted_repository_urls(client: FlaskClient, url: str) -> None:
    response = client.post("/api/v1/pm/tasks", json=valid_task(repository={"url": url}), headers=AUTH)
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["repository"] == {"url": url, "branch": "main"}


def test_allowed_hosts_and_agent_overrides_come_from_settings(settings: Settings) -> None:
    app: Flask = create_app(settings.replace(allowed_git_hosts=("git.internal",),
                                             allowed_agent_overrides=("max_turns",), max_timeout_seconds=600,
                                             default_timeout_seconds=300))
    client = app.test_client()
    refused = client.post("/api/v1/pm/tasks", json=valid_task(), headers=AUTH)
    assert "url" in refused.get_json()["errors"]["repository"]
    assert "timeout_seconds" in refused.get_json()["errors"]
    nested = client.post("/api/v1/pm/tasks", json=valid_task(
        repository={"url": "https://git.internal/a/b.git"}, timeout_seconds=None, agent={"max_turns": {"a": 1}}),
        headers=AUTH)
    assert nested.status_code == 400 and "max_turns" in nested.get_json()["errors"]["agent"]
    accepted = client.post("/api/v1/pm/tasks", json=valid_task(
        repository={"url": "https://git.internal/a/b.git"}, timeout_seconds=None, agent={"max_turns": 5}),
        headers=AUTH)
    assert accepted.status_code == 202, accepted.get_json()
    assert accepted.get_json()["agent"] == {"max_turns": 5} and accepted.get_json()["timeout_seconds"] == 300


def test_a_valid_env_is_kept(client: FlaskClient) -> None:
    env = {"LOG_LEVEL": "debug", "FEATURE_FLAGS": "a,b", "APP_KEYBOARD": "us", "APP_MONKEY_MODE": "on"}
    response = client.post("/api/v1/pm/tasks", json=valid_task(env=env), headers=AUTH)
    assert response.status_code == 202, response.get_json()
    assert response.get_json()["env"] == env


def test_a_submitted_task_id_stays_below_the_issues_id_space(settings: Settings) -> None:
    from marshmallow import ValidationError

    from api.schemas import TaskSubmissionSchema
    from orchestrator.validation import ISSUE_TASK_ID_OFFSET, issue_of_task_id, issue_task_id

    schema = TaskSubmissionSchema(settings=settings)
    field = schema.fields["id"]
    field.deserialize(ISSUE_TASK_ID_OFFSET - 1)
    with pytest.raises(ValidationError, match="GitHub issues' tasks"):
        field.deserialize(ISSUE_TASK_ID_OFFSET + 3)
    # A dependency may name an issue's task.
    schema.fields["dependencies"].deserialize([issue_task_id(3)])
    assert issue_of_task_id(issue_task_id(3)) == 3 and issue_of_task_id(3) is None
