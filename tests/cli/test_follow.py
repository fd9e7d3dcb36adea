"""`task watch` on a terminal: redrawn in place by rich.live, with a live indicator and the time of the update."""

from __future__ import annotations

import io
import re

import pytest

from orchestrator.cli import main
from orchestrator.cli.errors import EXIT_FAILED, EXIT_OK
from orchestrator.cli.follow import watch_view
from tests.cli.fake_api import FakeApi, json_answer

TASKS = "/api/v1/pm/tasks"
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def terminal(monkeypatch: pytest.MonkeyPatch) -> Tty:
    """stdout is a terminal; set in the test itself, as pytest puts its own stdout back between phases."""
    tty = Tty()
    monkeypatch.setattr("sys.stdout", tty)
    monkeypatch.setenv("TERM", "xterm-256color")
    monkeypatch.setenv("COLUMNS", "100")
    monkeypatch.setenv("LINES", "40")
    monkeypatch.delenv("NO_COLOR", raising=False)
    return tty


def script(api: FakeApi, statuses: list[str], logs: list[tuple]) -> None:
    views = iter(statuses)
    api.routes[("GET", f"{TASKS}/demo/1")] = lambda _r: json_answer(
        200, {"service_name": "demo", "id": 1, "title": "Greet", "status": next(views), "status_reason": "",
              "runs": [{"run_id": "r1", "version": 1, "attempt": 1, "job_name": "demo-1-v1-a1", "phase": "Failed",
                        "failure_reason": "agent exited with code 3"}]})
    answers = iter(logs)
    api.routes[("GET", f"{TASKS}/demo/1/logs")] = lambda _r: next(answers)


def test_watch_redraws_in_place_without_clearing_the_screen(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    screen = terminal(monkeypatch)
    script(api, ["Queued", "Running", "Succeeded"],
           [json_answer(404, {"code": "no_run", "message": "task demo/1 has no run yet"}),
            (200, {"Content-Type": "text/plain"}, b"working\n"),
            (200, {"Content-Type": "text/plain"}, b"working\ndone\n")])
    assert main(["task", "watch", "demo/1", "--interval", "0.01"]) == EXIT_OK
    raw = screen.getvalue()
    # No clear-screen, no jump to the top: rich.live moves the cursor up over its own lines and rewrites them.
    assert "\x1b[2J" not in raw and "\x1b[H" not in raw and "\x1b[J" not in raw
    assert "\x1b[2K" in raw and re.search(r"\x1b\[\d*A", raw)
    assert "\x1b[?25l" in raw and raw.rstrip().endswith("\x1b[?25h")  # cursor hidden while live, shown again
    text = ANSI.sub("", raw)
    assert re.search(r"updated \d\d:\d\d:\d\d", text)
    assert "live" in text and "working" in text
    final = text[text.rindex("ended Succeeded"):]
    assert "last log lines" in final and re.search(r"working *\n *done\s*$", final)
    assert "\x1b[32mSucceeded" in raw  # colour on a terminal


def test_watch_on_a_terminal_exits_1_when_the_task_failed(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    screen = terminal(monkeypatch)
    script(api, ["Running", "Failed"], [(200, {"Content-Type": "text/plain"}, b"")] * 2)
    assert main(["task", "watch", "demo/1", "--interval", "0.01"]) == EXIT_FAILED
    text = ANSI.sub("", screen.getvalue())
    assert "ended Failed" in text and "agent exited with code 3" in text  # the run's OUTCOME column


def test_no_color_keeps_the_live_view_but_drops_colour(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    screen = terminal(monkeypatch)
    script(api, ["Succeeded"], [(200, {"Content-Type": "text/plain"}, b"")])
    assert main(["task", "watch", "demo/1", "--no-color"]) == EXIT_OK
    raw = screen.getvalue()
    assert "ended Succeeded" in ANSI.sub("", raw) and "\x1b[32m" not in raw


def test_json_never_goes_live(api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    screen = terminal(monkeypatch)
    script(api, ["Succeeded"], [])
    assert main(["task", "watch", "demo/1", "-o", "json"]) == EXIT_OK
    assert screen.getvalue() == '{\n  "status": "Succeeded",\n  "status_reason": "",\n  "task": "demo/1"\n}\n'


def test_view_shows_the_indicator_and_the_time() -> None:
    from rich.console import Console

    console = Console(file=io.StringIO(), width=80, color_system=None)
    console.print(watch_view({"service_name": "demo", "id": 1, "status": "Running"}, url="", logs=["a", "b"],
                             updated="12:34:56", ended=False))
    first, *rest = console.file.getvalue().splitlines()
    assert "live" in first and first.rstrip().endswith("updated 12:34:56") and len(first.rstrip()) == 80
    assert rest[-2:] == ["a", "b"]


def test_a_short_terminal_shows_fewer_log_lines_rather_than_losing_the_bottom(
        api: FakeApi, monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.cli import follow

    terminal(monkeypatch)
    monkeypatch.setenv("LINES", "16")
    many = "".join(f"line {i}\n" for i in range(10)).encode()
    script(api, ["Running", "Running", "Succeeded"], [(200, {"Content-Type": "text/plain"}, many)] * 3)
    shown: list[list[str]] = []
    real = follow.watch_view
    monkeypatch.setattr(follow, "watch_view", lambda task, **kw: shown.append(kw["logs"]) or real(task, **kw))
    assert main(["task", "watch", "demo/1", "--interval", "0.01", "--lines", "10"]) == EXIT_OK
    shown = [logs for logs in shown if logs]
    assert shown and all(0 < len(logs) < 10 for logs in shown)
    assert all(logs[-1] == "line 9" for logs in shown)  # the newest lines are the ones kept
