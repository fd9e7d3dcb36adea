"""The API client: every error answer becomes one actionable line and the documented exit code."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from orchestrator.cli.client import ApiClient, flatten_errors
from orchestrator.cli.errors import (
    EXIT_AUTH,
    EXIT_CONFLICT,
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    CliError,
)
from tests.cli.fake_api import FakeApi, json_answer

TASKS = "/api/v1/pm/tasks"


@pytest.fixture
def api() -> Iterator[FakeApi]:
    with FakeApi() as fake:
        yield fake


def test_flatten_errors() -> None:
    nested = {"service_name": ["Not a DNS label."], "markdown_files": {"0": {"filename": ["Bad name."]}}}
    assert flatten_errors(nested) == ["service_name: Not a DNS label.", "markdown_files.0.filename: Bad name."]
    assert flatten_errors(None) == [] and flatten_errors(["a"]) == ["a"]


def test_submit_sends_token_idempotency_key_and_returns_location(api: FakeApi) -> None:
    api.routes[("POST", TASKS)] = json_answer(202, {"service_name": "demo", "id": 1, "status": "Pending"},
                                              {"Location": f"{TASKS}/demo/1"})
    task, url = ApiClient(api.url, "tok").submit({"service_name": "demo", "id": 1})
    assert task["status"] == "Pending" and url == f"{api.url}{TASKS}/demo/1"
    sent = api.requests[-1]
    assert sent["headers"]["Authorization"] == "Bearer tok" and sent["headers"]["Idempotency-Key"]
    assert sent["body"] == {"service_name": "demo", "id": 1}


@pytest.mark.parametrize(("status", "body", "code", "message"), [
    (401, {"code": "unauthorized", "message": "Authentication required."}, EXIT_AUTH, "refused the token"),
    (404, {"code": "not_found", "message": "Task demo/9 not found."}, EXIT_NOT_FOUND,
     "Task demo/9 not found; list existing tasks with `orchestrator task list`"),
    (409, {"code": "conflict", "message": "task demo/1 already exists"}, EXIT_CONFLICT, "task demo/1 already exists"),
    (400, {"code": "invalid", "message": "Invalid task.", "errors": {"id": ["Must be >= 1."]}}, EXIT_INVALID,
     "the API refused the request: Invalid task"),
    (413, {"code": "too_large", "message": "Body too large."}, EXIT_INVALID, "attach smaller documents"),
    (415, {"code": "unsupported", "message": "Send JSON."}, EXIT_INVALID, "Send JSON"),
    (503, {"code": "unavailable", "message": "Redis does not answer."}, EXIT_UNREACHABLE, "try again shortly"),
    (500, {"code": "internal_error", "message": "Internal error."}, EXIT_FAILED, "request id abc"),
])
def test_error_envelopes(api: FakeApi, status: int, body: dict, code: int, message: str) -> None:
    api.routes[("GET", f"{TASKS}/demo/9")] = json_answer(status, body, {"X-Request-Id": "abc"})
    with pytest.raises(CliError) as caught:
        ApiClient(api.url, "tok").get_task("demo", 9)
    assert caught.value.exit_code == code
    assert message in caught.value.message
    assert "\n" not in caught.value.message
    if status == 400:
        assert caught.value.details == ["id: Must be >= 1."]


def test_not_the_api(api: FakeApi) -> None:
    api.routes[("GET", f"{TASKS}/demo/1")] = (404, {"Content-Type": "text/html"}, b"<html>")
    with pytest.raises(CliError, match="did not answer like the Orchestrator API") as caught:
        ApiClient(api.url, "tok").get_task("demo", 1)
    assert caught.value.exit_code == EXIT_FAILED


def test_unreachable_and_bad_url() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(CliError, match="cannot reach the API at http://127.0.0.1") as caught:
        ApiClient(f"http://127.0.0.1:{port}", "tok").get_task("demo", 1)
    assert caught.value.exit_code == EXIT_UNREACHABLE
    with pytest.raises(CliError, match="is not an http:// or https:// URL") as caught:
        ApiClient("localhost:8080", "tok").get_task("demo", 1)
    assert caught.value.exit_code == EXIT_USAGE


def test_no_token_is_an_auth_error_before_any_request(api: FakeApi) -> None:
    with pytest.raises(CliError, match="no API token: set ORCHESTRATOR_API_TOKEN") as caught:
        ApiClient(api.url, "").list_tasks()
    assert caught.value.exit_code == EXIT_AUTH and api.requests == []


def test_a_list_without_items_is_not_the_api(api: FakeApi) -> None:
    api.routes[("GET", TASKS)] = json_answer(200, [{"id": 1}])
    with pytest.raises(CliError, match="did not answer like the Orchestrator API") as caught:
        ApiClient(api.url, "tok").list_tasks()
    assert caught.value.exit_code == EXIT_FAILED


def test_list_pages_and_filters(api: FakeApi) -> None:
    api.routes[("GET", TASKS)] = json_answer(200, {"items": [{"id": 1}], "next_cursor": "c2"})
    items, cursor = ApiClient(api.url, "tok").list_tasks(service="demo", status="Running", limit=5)
    assert items == [{"id": 1}] and cursor == "c2"
    assert api.requests[-1]["query"] == {"service": ["demo"], "status": ["Running"], "limit": ["5"]}


def test_logs_stream_and_ready(api: FakeApi) -> None:
    api.routes[("GET", f"{TASKS}/demo/1/logs")] = (200, {"Content-Type": "text/plain"}, b"one\ntwo\n")
    assert list(ApiClient(api.url, "tok").logs("demo", 1, follow=True, tail=5)) == ["one", "two"]
    assert api.requests[-1]["query"] == {"tail": ["5"], "follow": ["true"]}
    api.routes[("GET", "/ready")] = json_answer(503, {"status": "unavailable", "reason": "redis does not answer"})
    assert ApiClient(api.url).ready() == (False, {"status": "unavailable", "reason": "redis does not answer"})
