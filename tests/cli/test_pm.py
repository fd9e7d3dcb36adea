"""The PM commands end to end against a scripted API: output, progress, exit codes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.cli.errors import EXIT_CONFLICT, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from orchestrator.settings import reset_settings_cache
from tests.cli.fake_api import FakeApi, json_answer

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "tasks.json")
TASKS = "/api/v1/pm/tasks"


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeApi]:
    with FakeApi() as fake:
        for key in [k for k in __import__("os").environ if k.startswith("ORCHESTRATOR_")]:
            monkeypatch.delenv(key)
        monkeypatch.setenv("ORCHESTRATOR_API_URL", fake.url)
        monkeypatch.setenv("ORCHESTRATOR_API_TOKEN", "tok")
        monkeypatch.setenv("ORCHESTRATOR_DATA_DIR", str(tmp_path / "data"))
        reset_settings_cache()
        yield fake
        reset_settings_cache()


def accept_submissions(api: FakeApi, existing: set[int] = frozenset()) -> None:
    def answer(request: dict) -> tuple:
        body = request["body"]
        if body["id"] in existing:
            return json_answer(409, {"code": "conflict", "message": f"task demo/{body['id']} already exists"})
        return json_answer(202, {"service_name": body["service_name"], "id": body["id"], "status": "Pending"},
                           {"Location": f"{TASKS}/{body['service_name']}/{body['id']}"})
    api.routes[("POST", TASKS)] = answer


def test_submit_one(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    accept_submissions(api)
    code = main(["task", "submit", "--task-json", EXAMPLE, "--task-id", "2", "--service", "demo", "--agent", "claude"])
    out, err = capsys.readouterr()
    assert code == EXIT_OK
    assert out == f"submitted demo/2: Pending\n  {api.url}{TASKS}/demo/2\n"
    assert "orchestrator task watch demo/2" in err
    assert "\x1b[" not in out  # not a terminal: no colour
    assert api.requests[-1]["body"]["dependencies"] == [1]


def test_submit_all_in_dependency_order_skips_existing(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    accept_submissions(api, existing={1})
    code = main(["task", "submit", "--all", "--task-json", EXAMPLE, "--service", "demo", "--agent", "claude"])
    out, err = capsys.readouterr()
    assert code == EXIT_OK
    assert [r["body"]["id"] for r in api.requests] == [1, 2, 3]
    assert out.splitlines() == ["[1/3] demo/1  already submitted, skipped", "[2/3] demo/2  Pending",
                                "[3/3] demo/3  Pending"]
    assert "2 submitted, 1 already there" in err


def test_submit_all_json_output(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    accept_submissions(api)
    assert main(["task", "submit", "--all", "--task-json", EXAMPLE, "--service", "demo", "--agent", "claude",
                 "-o", "json"]) == EXIT_OK
    results = json.loads(capsys.readouterr().out)
    assert [(r["id"], r["result"]) for r in results] == [(1, "submitted"), (2, "submitted"), (3, "submitted")]


def test_submit_all_stops_at_the_first_real_error(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    def answer(request: dict) -> tuple:
        if request["body"]["id"] == 2:
            return json_answer(400, {"code": "invalid", "message": "Invalid task", "errors": {"title": ["Too long."]}})
        return json_answer(202, {"service_name": "demo", "id": request["body"]["id"], "status": "Pending"})
    api.routes[("POST", TASKS)] = answer
    code = main(["task", "submit", "--all", "--task-json", EXAMPLE, "--service", "demo", "--agent", "claude"])
    _out, err = capsys.readouterr()
    assert code == 7
    assert "stopped after 1 of 3 tasks" in err
    assert "orchestrator: the API refused the request: Invalid task\n  title: Too long.\n" in err
    assert len(api.requests) == 2


@pytest.mark.parametrize(("argv", "message"), [
    (["task", "submit", "--task-json", EXAMPLE, "--service", "demo", "--agent", "claude"],
     "one of the arguments --task-id --all is required"),
    (["task", "submit", "--task-json", EXAMPLE, "--task-id", "1", "--service", "Demo_1", "--agent", "claude"],
     "--service 'Demo_1': service name must be a DNS-1123 label"),
    (["task", "submit", "--task-json", EXAMPLE, "--task-id", "1", "--service", "demo", "--agent", "claude",
      "--branch", "dev"], "--branch needs --repo"),
    (["task", "submit", "--task-json", EXAMPLE, "--task-id", "9", "--service", "demo", "--agent", "claude"],
     "task 9 is not in"),
    (["task", "submit", "--task-json", "/nonexistent.json", "--task-id", "1", "--service", "demo", "--agent", "c"],
     "does not exist"),
    (["task", "status", "demo"], "'demo' is not a task reference; write SERVICE/ID, e.g. demo/1"),
    (["task", "status", "demo/x"], "is not a task reference"),
    (["task", "list", "--limit", "0"], "--limit must be at least 1"),
    (["task", "frobnicate"], "invalid choice: 'frobnicate'"),
    (["task", "list", "--output", "yaml"], "invalid choice: 'yaml'"),
])
def test_usage_errors(api: FakeApi, capsys: pytest.CaptureFixture[str], argv: list[str], message: str) -> None:
    assert run(argv) == EXIT_USAGE
    assert message in capsys.readouterr().err
    assert api.requests == []


def run(argv: list[str]) -> int:
    """main() as the console script sees it: argparse's own exit becomes the return code."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


def test_status_list_cancel_retry(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    task = {"service_name": "demo", "id": 1, "title": "Add a greeting module", "status": "Running",
            "status_reason": "agent started", "agent_name": "claude", "priority": "high", "context_version": 1,
            "created_at": 1700000000.0, "runs": [{"version": 1, "attempt": 1, "job_name": "demo-1-v1-a1",
                                                   "phase": "Running", "started_at": 1700000005.0}],
            "history": [{"at": 1700000000.0, "from": None, "to": "Pending", "reason": "submitted"}]}
    api.routes[("GET", f"{TASKS}/demo/1")] = json_answer(200, task)
    assert main(["task", "status", "demo/1"]) == EXIT_OK
    out = capsys.readouterr().out
    assert "demo/1  Add a greeting module" in out and "status:   Running  (agent started)" in out
    assert "demo-1-v1-a1" in out and "- -> Pending  submitted" in out

    api.routes[("GET", TASKS)] = json_answer(200, {"items": [task], "next_cursor": "abc"})
    assert main(["task", "list", "--service", "demo"]) == EXIT_OK
    out, err = capsys.readouterr()
    assert out.splitlines()[0].split() == ["TASK", "STATUS", "AGENT", "PRIORITY", "TITLE", "UPDATED"]
    assert "demo/1" in out and "orchestrator task list --cursor abc" in err

    api.routes[("POST", f"{TASKS}/demo/1/cancel")] = json_answer(409, {"code": "conflict",
                                                                       "message": "task demo/1 already ended"})
    assert main(["task", "cancel", "demo/1"]) == EXIT_CONFLICT
    assert "already ended; see `orchestrator task status demo/1`" in capsys.readouterr().err
    api.routes[("POST", f"{TASKS}/demo/1/retry")] = json_answer(202, {**task, "status": "Pending",
                                                                      "status_reason": "retry requested"})
    assert main(["task", "retry", "demo/1"]) == EXIT_OK
    assert capsys.readouterr().out == "retrying demo/1: Pending (retry requested)\n"


def test_watch_prints_changes_and_exits_by_outcome(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    statuses = iter(["Queued", "Running", "Running", "Failed"])
    api.routes[("GET", f"{TASKS}/demo/1")] = lambda _r: json_answer(
        200, {"service_name": "demo", "id": 1, "status": next(statuses), "status_reason": ""})
    assert main(["task", "watch", "demo/1", "--interval", "0.01"]) == EXIT_FAILED
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[-1] for line in lines] == ["Queued", "Running", "Failed"]


def test_context_sends_the_document(api: FakeApi, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "notes.md"
    doc.write_text("Use tabs.\n")
    api.routes[("POST", f"{TASKS}/demo/1/context")] = json_answer(
        202, {"service_name": "demo", "id": 1, "status": "Pending", "context_version": 2})
    assert main(["task", "context", "demo/1", "--file", str(doc)]) == EXIT_OK
    assert capsys.readouterr().out == "added context to demo/1 (now v2): Pending\n"
    assert api.requests[-1]["body"] == {"content": "Use tabs.\n", "title": "notes"}


def test_health(api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    api.routes[("GET", "/health")] = json_answer(200, {"status": "ok", "version": "0.1.0"})
    api.routes[("GET", "/ready")] = json_answer(503, {"status": "unavailable", "reason": "redis does not answer"})
    assert main(["health"]) == 5
    assert "not ready: redis does not answer" in capsys.readouterr().out


def test_watch_on_a_terminal_redraws_with_the_last_log_lines(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Tty()
    monkeypatch.setattr("sys.stdout", screen)
    monkeypatch.setenv("TERM", "xterm")
    monkeypatch.delenv("NO_COLOR", raising=False)
    statuses = iter(["Queued", "Running", "Succeeded"])
    api.routes[("GET", f"{TASKS}/demo/1")] = lambda _r: json_answer(
        200, {"service_name": "demo", "id": 1, "title": "T", "status": next(statuses), "status_reason": ""})
    logs = iter([json_answer(404, {"code": "no_run", "message": "task demo/1 has no run yet"}),
                 (200, {"Content-Type": "text/plain"}, b"working\n"),
                 (200, {"Content-Type": "text/plain"}, b"working\ndone\n")])
    api.routes[("GET", f"{TASKS}/demo/1/logs")] = lambda _r: next(logs)
    assert main(["task", "watch", "demo/1", "--interval", "0.01"]) == EXIT_OK
    frames = screen.getvalue().split("\x1b[H\x1b[J")[1:]
    assert len(frames) == 3
    assert "last log lines" not in frames[0] and "working" in frames[1]
    assert "\x1b[32mSucceeded\x1b[0m" in frames[2] and frames[2].rstrip().endswith("done")


def test_logs_follow_waits_for_the_run_and_asks_again_after_an_early_empty_stream(
        api: FakeApi, capsys: pytest.CaptureFixture[str]) -> None:
    views = iter([{"status": "Queued", "runs": []}, {"status": "Preparing", "runs": [{"run_id": "r"}]},
                  {"status": "Preparing", "runs": [{"run_id": "r"}]}, {"status": "Running", "runs": [{"run_id": "r"}]}])
    api.routes[("GET", f"{TASKS}/demo/1")] = lambda _r: json_answer(200, {"service_name": "demo", "id": 1,
                                                                          **next(views)})
    streams = iter([b"", b"one\ntwo\n"])
    api.routes[("GET", f"{TASKS}/demo/1/logs")] = lambda _r: (200, {"Content-Type": "text/plain"}, next(streams))
    assert main(["task", "logs", "demo/1", "-f"]) == EXIT_OK
    out, err = capsys.readouterr()
    assert out == "one\ntwo\n" and "waiting for demo/1 to start (it is Queued)" in err
