"""The PM commands end to end against a scripted API: output, progress, exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.cli.errors import (
    EXIT_CONFLICT,
    EXIT_FAILED,
    EXIT_INVALID,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from tests.cli.fake_api import FakeApi, json_answer
from tests.cli.invoke import invoke

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "tasks.json")
TASKS = "/api/v1/pm/tasks"


def accept_submissions(api: FakeApi, existing: set[int] = frozenset()) -> None:
    def answer(request: dict) -> tuple:
        body = request["body"]
        if body["id"] in existing:
            return json_answer(409, {"code": "conflict", "message": f"task demo/{body['id']} already exists"})
        return json_answer(202, {"service_name": body["service_name"], "id": body["id"], "status": "Pending"},
                           {"Location": f"{TASKS}/{body['service_name']}/{body['id']}"})
    api.routes[("POST", TASKS)] = answer


def test_submit_one(api: FakeApi) -> None:
    accept_submissions(api)
    result = invoke("task", "submit", "--task-json", EXAMPLE, "--task-id", "2", "--service", "demo",
                    "--agent", "claude")
    assert result.exit_code == EXIT_OK
    assert result.stdout == f"submitted demo/2: Pending\n  {api.url}{TASKS}/demo/2\n"
    assert "orchestrator task watch demo/2" in result.stderr
    assert "\x1b[" not in result.stdout  # not a terminal: no colour
    assert api.requests[-1]["body"]["dependencies"] == [1]


def test_submit_all_in_dependency_order_skips_existing(api: FakeApi) -> None:
    accept_submissions(api, existing={1})
    result = invoke("task", "submit", "--all", "--task-json", EXAMPLE, "--service", "demo", "--agent", "claude")
    assert result.exit_code == EXIT_OK
    assert [r["body"]["id"] for r in api.requests] == [1, 2, 3]
    assert result.stdout.splitlines() == ["[1/3] demo/1  already submitted, skipped", "[2/3] demo/2  Pending",
                                          "[3/3] demo/3  Pending"]
    assert "2 submitted, 1 already there" in result.stderr


def test_submit_all_json_output(api: FakeApi) -> None:
    accept_submissions(api)
    result = invoke("task", "submit", "--all", "--task-json", EXAMPLE, "--service", "demo", "--agent", "claude",
                    "-o", "json")
    assert result.exit_code == EXIT_OK
    results = json.loads(result.stdout)
    assert [(r["id"], r["result"]) for r in results] == [(1, "submitted"), (2, "submitted"), (3, "submitted")]


def test_submit_all_stops_at_the_first_real_error(api: FakeApi) -> None:
    def answer(request: dict) -> tuple:
        if request["body"]["id"] == 2:
            return json_answer(400, {"code": "invalid", "message": "Invalid task", "errors": {"title": ["Too long."]}})
        return json_answer(202, {"service_name": "demo", "id": request["body"]["id"], "status": "Pending"})
    api.routes[("POST", TASKS)] = answer
    result = invoke("task", "submit", "--all", "--task-json", EXAMPLE, "--service", "demo", "--agent", "claude")
    assert result.exit_code == EXIT_INVALID
    assert "stopped after 1 of 3 tasks" in result.stderr
    assert "orchestrator: the API refused the request: Invalid task\n  title: Too long.\n" in result.stderr
    assert len(api.requests) == 2


@pytest.mark.parametrize(("argv", "message"), [
    (["task", "submit", "--task-json", EXAMPLE, "--service", "demo", "--agent", "claude"],
     "give one of --task-id N or --all"),
    (["task", "submit", "--task-json", EXAMPLE, "--task-id", "1", "--all", "--service", "demo", "--agent", "claude"],
     "give one of --task-id N or --all"),
    (["task", "submit", "--task-json", EXAMPLE, "--task-id", "1", "--service", "Demo_1", "--agent", "claude"],
     "--service 'Demo_1': service name must be a DNS-1123 label"),
    (["task", "submit", "--task-json", EXAMPLE, "--task-id", "1", "--service", "demo", "--agent", "claude",
      "--branch", "dev"], "--branch needs --repo"),
    (["task", "submit", "--task-json", EXAMPLE, "--task-id", "9", "--service", "demo", "--agent", "claude"],
     "task 9 is not in"),
    (["task", "submit", "--task-json", "/nonexistent.json", "--task-id", "1", "--service", "demo", "--agent", "c"],
     "does not exist"),
    (["task", "submit", "--task-json", EXAMPLE, "--task-id", "1", "--agent", "claude"],
     "Missing option '--service'"),
    (["task", "status", "demo"], "'demo' is not a task reference; write SERVICE/ID, e.g. demo/1"),
    (["task", "status", "demo/x"], "is not a task reference"),
    (["task", "status"], "Missing argument 'SERVICE/ID'"),
    (["task", "list", "--limit", "0"], "'--limit': 0 is not in the range x>=1"),
    (["task", "list", "--status", "Sleeping"], "'--status': 'Sleeping' is not one of"),
    (["task", "logs", "demo/1", "--tail", "0"], "'--tail': 0 is not in the range x>=1"),
    (["task", "watch", "demo/1", "--interval", "0"], "'--interval': 0.0 is not in the range x>0"),
    (["task", "frobnicate"], "No such command 'frobnicate'"),
    (["task", "list", "--output", "yaml"], "'yaml' is not one of 'table', 'json'"),
    (["task", "list", "--bogus"], "No such option '--bogus'"),
])
def test_usage_errors_are_one_line_and_exit_2(api: FakeApi, argv: list[str], message: str) -> None:
    result = invoke(*argv)
    assert result.exit_code == EXIT_USAGE
    assert message in result.stderr
    assert result.stderr.startswith("orchestrator: ") and result.stderr.count("\n") == 1, result.stderr
    assert result.stdout == ""
    assert api.requests == []


def test_status_is_case_insensitive_and_sent_as_the_api_spells_it(api: FakeApi) -> None:
    api.routes[("GET", TASKS)] = json_answer(200, {"items": [], "next_cursor": None})
    for typed in ("running", "RUNNING", "Running", "rUnNiNg"):
        result = invoke("task", "list", "--status", typed)
        assert result.exit_code == EXIT_OK, result.stderr
        assert api.requests[-1]["query"]["status"] == ["Running"]
        assert result.stdout == "no tasks\n"


TASK = {"service_name": "demo", "id": 1, "title": "Add a greeting module", "status": "Running",
        "status_reason": "agent started", "agent_name": "claude", "priority": "high", "context_version": 1,
        "created_at": "2023-11-14T22:13:20+00:00", "updated_at": "2023-11-14T22:13:25+00:00",
        "runs": [{"run_id": "r1", "version": 1, "attempt": 1, "job_name": "demo-1-v1-a1", "phase": "Running",
                  "started_at": "2023-11-14T22:13:25+00:00", "finished_at": None, "failure_reason": "",
                  "pull_request_url": None}],
        "history": [{"seq": 1, "at": "2023-11-14T22:13:20+00:00", "from": None, "to": "Pending",
                     "reason": "submitted", "actor": "pm"}]}


def test_status_list_cancel_retry(api: FakeApi) -> None:
    api.routes[("GET", f"{TASKS}/demo/1")] = json_answer(200, TASK)
    result = invoke("task", "status", "demo/1")
    assert result.exit_code == EXIT_OK
    assert "demo/1  Add a greeting module" in result.stdout
    assert "status:   Running  (agent started)" in result.stdout
    assert "demo-1-v1-a1" in result.stdout and "- -> Pending  submitted" in result.stdout
    assert all(line == line.rstrip() for line in result.stdout.splitlines())

    api.routes[("GET", TASKS)] = json_answer(200, {"items": [TASK], "next_cursor": "abc"})
    result = invoke("task", "list", "--service", "demo")
    assert result.exit_code == EXIT_OK
    assert result.stdout.splitlines()[0].split() == ["TASK", "STATUS", "AGENT", "PRIORITY", "TITLE", "UPDATED"]
    assert "demo/1" in result.stdout and "orchestrator task list --cursor abc" in result.stderr

    api.routes[("POST", f"{TASKS}/demo/1/cancel")] = json_answer(409, {"code": "conflict",
                                                                       "message": "task demo/1 already ended"})
    result = invoke("task", "cancel", "demo/1")
    assert result.exit_code == EXIT_CONFLICT
    assert result.stderr == "orchestrator: task demo/1 already ended; see `orchestrator task status demo/1`\n"
    api.routes[("POST", f"{TASKS}/demo/1/retry")] = json_answer(202, {**TASK, "status": "Pending",
                                                                      "status_reason": "retry requested"})
    result = invoke("task", "retry", "demo/1")
    assert result.exit_code == EXIT_OK
    assert result.stdout == "retrying demo/1: Pending (retry requested)\n"


def test_json_output_is_the_api_answer_unchanged(api: FakeApi) -> None:
    api.routes[("GET", f"{TASKS}/demo/1")] = json_answer(200, TASK)
    api.routes[("GET", TASKS)] = json_answer(200, {"items": [TASK], "next_cursor": None})
    # -o before or after the sub-command, as before.
    for argv in (["task", "status", "demo/1", "-o", "json"], ["-o", "json", "task", "status", "demo/1"],
                 ["task", "-o", "json", "status", "demo/1"]):
        result = invoke(*argv)
        assert result.exit_code == EXIT_OK
        assert result.stdout == json.dumps(TASK, indent=2, sort_keys=True) + "\n"
    result = invoke("task", "list", "--output", "json")
    assert json.loads(result.stdout) == {"items": [TASK], "next_cursor": None}
    # The last one given wins.
    assert invoke("-o", "json", "task", "list", "-o", "table").stdout.startswith("TASK")


def test_watch_prints_changes_and_exits_by_outcome(api: FakeApi) -> None:
    statuses = iter(["Queued", "Running", "Running", "Failed"])
    api.routes[("GET", f"{TASKS}/demo/1")] = lambda _r: json_answer(
        200, {"service_name": "demo", "id": 1, "status": next(statuses), "status_reason": ""})
    result = invoke("task", "watch", "demo/1", "--interval", "0.01")
    assert result.exit_code == EXIT_FAILED
    assert [line.split()[-1] for line in result.stdout.splitlines()] == ["Queued", "Running", "Failed"]


def test_watch_json_lines(api: FakeApi) -> None:
    statuses = iter(["Running", "Succeeded"])
    api.routes[("GET", f"{TASKS}/demo/1")] = lambda _r: json_answer(
        200, {"service_name": "demo", "id": 1, "status": next(statuses), "status_reason": "x"})
    result = invoke("task", "watch", "demo/1", "--interval", "0.01", "-o", "json")
    assert result.exit_code == EXIT_OK
    decoder = json.JSONDecoder()
    text, seen = result.stdout, []
    while text.strip():
        value, end = decoder.raw_decode(text.lstrip())
        seen.append(value)
        text = text.lstrip()[end:]
    assert seen == [{"task": "demo/1", "status": "Running", "status_reason": "x"},
                    {"task": "demo/1", "status": "Succeeded", "status_reason": "x"}]


def test_context_sends_the_document(api: FakeApi, tmp_path: Path) -> None:
    doc = tmp_path / "notes.md"
    doc.write_text("Use tabs.\n")
    api.routes[("POST", f"{TASKS}/demo/1/context")] = json_answer(
        202, {"service_name": "demo", "id": 1, "status": "Pending", "context_version": 2})
    result = invoke("task", "context", "demo/1", "--file", str(doc))
    assert result.exit_code == EXIT_OK
    assert result.stdout == "added context to demo/1 (now v2): Pending\n"
    assert api.requests[-1]["body"] == {"content": "Use tabs.\n", "title": "notes"}


def test_health(api: FakeApi) -> None:
    api.routes[("GET", "/health")] = json_answer(200, {"status": "ok", "version": "0.1.0"})
    api.routes[("GET", "/ready")] = json_answer(503, {"status": "unavailable", "reason": "redis does not answer"})
    result = invoke("health")
    assert result.exit_code == EXIT_UNREACHABLE
    assert result.stdout == f"API {api.url}: alive (version 0.1.0), not ready: redis does not answer\n"


def test_logs_follow_waits_for_the_run_and_asks_again_after_an_early_empty_stream(api: FakeApi) -> None:
    views = iter([{"status": "Queued", "runs": []}, {"status": "Preparing", "runs": [{"run_id": "r"}]},
                  {"status": "Preparing", "runs": [{"run_id": "r"}]}, {"status": "Running", "runs": [{"run_id": "r"}]}])
    api.routes[("GET", f"{TASKS}/demo/1")] = lambda _r: json_answer(200, {"service_name": "demo", "id": 1,
                                                                          **next(views)})
    streams = iter([b"", b"one\ntwo\n"])
    api.routes[("GET", f"{TASKS}/demo/1/logs")] = lambda _r: (200, {"Content-Type": "text/plain"}, next(streams))
    result = invoke("task", "logs", "demo/1", "-f")
    assert result.exit_code == EXIT_OK
    assert result.stdout == "one\ntwo\n" and "waiting for demo/1 to start (it is Queued)" in result.stderr


def test_logs_follow_waits_while_the_run_has_no_output_yet(api: FakeApi) -> None:
    runs = [{"run_id": "r"}]
    views = iter([{"status": "Launching", "runs": runs}] * 3 + [{"status": "Running", "runs": runs}])
    api.routes[("GET", f"{TASKS}/demo/1")] = lambda _r: json_answer(200, {"service_name": "demo", "id": 1,
                                                                          **next(views)})
    streams = iter([json_answer(404, {"code": "no_logs", "message": "run r has not started yet"}),
                    (200, {"Content-Type": "text/plain"}, b"one\n")])
    api.routes[("GET", f"{TASKS}/demo/1/logs")] = lambda _r: next(streams)
    result = invoke("task", "logs", "demo/1", "-f")
    assert result.exit_code == EXIT_OK and result.stdout == "one\n"


def test_tables_fit_a_narrow_terminal(api: FakeApi) -> None:
    long_task = {**TASK, "title": "A title much longer than sixty columns, which must give way to the rest " * 2,
                 "runs": [{**TASK["runs"][0], "phase": "Failed", "finished_at": "2023-11-14T22:20:00+00:00",
                           "failure_reason": "the agent exited with code 2 after 3 turns: permission denied"}]}
    api.routes[("GET", f"{TASKS}/demo/1")] = json_answer(200, long_task)
    api.routes[("GET", TASKS)] = json_answer(200, {"items": [long_task], "next_cursor": None})
    for argv in (["task", "status", "demo/1"], ["task", "list"]):
        result = invoke(*argv, env={"COLUMNS": "60"})
        assert result.exit_code == EXIT_OK
        assert max(len(line) for line in result.stdout.splitlines()) <= 60, result.stdout
    status = invoke("task", "status", "demo/1", env={"COLUMNS": "60"}).stdout
    assert "permission" in status and "Failed" in status  # the OUTCOME column: the run's failure reason
    # JSON is never fitted to anything.
    assert invoke("task", "status", "demo/1", "-o", "json", env={"COLUMNS": "60"}).stdout == \
        json.dumps(long_task, indent=2, sort_keys=True) + "\n"


def test_ctrl_c_exits_130(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.cli.client import ApiClient

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt
    monkeypatch.setattr(ApiClient, "get_task", interrupted)
    assert invoke("task", "status", "demo/1").exit_code == 130


def test_submit_all_draws_a_progress_bar_on_a_terminal(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from orchestrator.cli import main

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Tty()
    monkeypatch.setattr("sys.stdout", screen)
    monkeypatch.setenv("TERM", "xterm-256color")
    accept_submissions(api, existing={1})
    assert main(["task", "submit", "--all", "--task-json", EXAMPLE, "--service", "demo", "--agent", "claude"]) == 0
    raw = screen.getvalue()
    assert "━" in raw and "3/3" in raw  # rich.progress's bar and count
    assert "demo/1" in raw and "already submitted, skipped" in raw and "[3/3] demo/3" in raw


def test_logs_raw_asks_for_the_agent_s_own_stream(api: FakeApi) -> None:
    api.routes[("GET", f"{TASKS}/demo/1/logs")] = lambda _r: (200, {"Content-Type": "text/plain"}, b'{"type":"x"}\n')
    assert invoke("task", "logs", "demo/1", "--raw").stdout == '{"type":"x"}\n'
    assert api.requests[-1]["query"]["format"] == ["raw"]
    invoke("task", "logs", "demo/1")
    assert "format" not in api.requests[-1]["query"]
