"""Output: colour only on a terminal, tables that fit the terminal, the runs' OUTCOME, timestamps."""

from __future__ import annotations

import io
from datetime import datetime

import pytest
from rich.text import Text

from orchestrator.cli.output import (
    make_console,
    print_block,
    run_outcome,
    runs_table,
    task_list_table,
    when,
    when_short,
)


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def use_color(stream: io.StringIO, no_color: bool = False) -> bool:
    console = make_console(stream, no_color=no_color)
    return console.color_system is not None and not console.no_color


def render(renderable: object, width: int) -> list[str]:
    out = io.StringIO()
    console = make_console(out)
    console.width = width
    print_block(console, renderable)
    return out.getvalue().splitlines()


def test_colour_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert use_color(Tty()) and not use_color(io.StringIO())
    assert not use_color(Tty(), no_color=True)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(Tty())


def test_colour_codes_on_a_terminal_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    runs = [{"version": 1, "attempt": 1, "job_name": "j", "phase": "Failed", "failure_reason": "boom"}]
    tty = Tty()
    make_console(tty).print(runs_table(runs))
    assert "\x1b[31mFailed" in tty.getvalue()
    plain = io.StringIO()
    make_console(plain).print(runs_table(runs))
    assert "\x1b[" not in plain.getvalue()


RUNS = [
    {"run_id": "r1", "version": 1, "attempt": 1, "job_name": "demo-1-v1-a1", "phase": "Failed",
     "started_at": "2023-11-14T22:10:25+00:00", "finished_at": "2023-11-14T22:12:25+00:00",
     "failure_reason": "the agent exited with code 2 after 3 turns: permission denied", "pull_request_url": None},
    {"run_id": "r2", "version": 1, "attempt": 2, "job_name": "demo-1-v1-a2", "phase": "Succeeded",
     "started_at": "2023-11-14T22:13:25+00:00", "finished_at": "2023-11-14T22:20:00+00:00",
     "failure_reason": "", "outcome": "no_changes", "pull_request_url": None},
    {"run_id": "r3", "version": 2, "attempt": 1, "job_name": "demo-1-v2-a1", "phase": "Succeeded",
     "started_at": "2023-11-14T23:00:00+00:00", "finished_at": "2023-11-14T23:05:00+00:00",
     "failure_reason": "", "outcome": "changes", "pull_request_url": "https://github.com/acme/demo/pull/7"},
]


def test_outcome_column_shows_the_outcome_else_the_failure_reason() -> None:
    assert run_outcome(RUNS[1]) == Text("no_changes", style="yellow")
    assert run_outcome(RUNS[0]).plain == "the agent exited with code 2 after 3 turns: permission denied"
    assert run_outcome({"phase": "Running", "failure_reason": ""}).plain == ""
    lines = render(runs_table(RUNS), 200)
    assert lines[0].split() == ["RUN", "JOB", "PHASE", "STARTED", "FINISHED", "PULL", "REQUEST", "OUTCOME"]
    assert lines[1].endswith("the agent exited with code 2 after 3 turns: permission denied")
    assert lines[2].endswith("no_changes") and lines[3].endswith("changes")
    assert "https://github.com/acme/demo/pull/7" in lines[3]


def test_pull_request_column_only_when_a_run_has_one() -> None:
    assert "PULL REQUEST" not in render(runs_table(RUNS[:2]), 200)[0]


@pytest.mark.parametrize("width", [60, 80, 120])
def test_tables_fit_the_terminal_without_losing_what_matters(width: int) -> None:
    lines = render(runs_table(RUNS), width)
    assert max(len(line) for line in lines) <= width
    text = " ".join(lines)
    for run in RUNS:
        # Job names and reasons wrap, never cut: every character is still there.
        assert run["job_name"][:6] in text and run["phase"] in text
    # OUTCOME is the last column: the reason is whole when its lines are read back to back.
    header = next(index for index, line in enumerate(lines) if "OUTCOME" in line)
    start = lines[header].index("OUTCOME")
    outcome = "".join(line[start:].strip() for line in lines[header + 1:])
    assert "".join(RUNS[0]["failure_reason"].split()) in "".join(outcome.split())

    tasks = [{"service_name": "payments-backend", "id": 123, "status": "Cancelled", "agent_name": "claude",
              "priority": "medium", "title": "A long title that goes on and on about nothing much at all " * 2,
              "updated_at": "2023-11-14T22:13:25+00:00"}]
    lines = render(task_list_table(tasks), width)
    assert max(len(line) for line in lines) <= width
    assert "Cancelled" in lines[1] and "A long" in lines[1]


def test_a_wide_terminal_keeps_rows_on_one_line() -> None:
    lines = render(runs_table(RUNS), 250)
    assert len(lines) == 1 + len(RUNS)
    assert "  " in lines[0]  # two spaces between columns when there is room


def test_when_accepts_epoch_and_iso() -> None:
    assert when(None) == "" and when("not a time") == "not a time"
    assert when(0) == when("1970-01-01T00:00:00+00:00")


def test_when_short_is_the_time_today_the_day_this_year_else_the_date() -> None:
    now = datetime(2026, 11, 30, 12, 0).astimezone()
    assert when_short(now.replace(hour=9, minute=5, second=7).isoformat(), now) == "09:05:07"
    assert when_short(now.replace(month=2, day=3, hour=4, minute=5).isoformat(), now) == "Feb 03 04:05"
    assert when_short("2023-11-14T22:13:25", now) == "2023-11-14"
    assert when_short(None, now) == ""


def test_runs_and_tasks_show_cost_tokens_and_turns() -> None:
    from orchestrator.cli.output import task_detail, usage_text

    usage = {"input_tokens": 1204, "cache_read_input_tokens": 81920, "cache_creation_input_tokens": 10240,
             "output_tokens": 2311, "cost_usd": 0.1234567, "num_turns": 4}
    assert usage_text(usage) == "$0.1235 · 93.4k in / 2.3k out · 4 turns"
    assert usage_text({"output_tokens": 5, "cost_usd": None}) == "$? · 0 in / 5 out"
    assert usage_text(None) == ""
    runs = [{"version": 1, "attempt": 1, "run_id": "r1", "phase": "Succeeded", "usage": usage},
            {"version": 1, "attempt": 2, "run_id": "r2", "phase": "Failed", "usage": None,
             "failure_reason": "max_turns: stopped after 5 turns"}]
    table = "\n".join(render(runs_table(runs), 160))
    assert "USAGE" in table and "$0.1235 · 93.4k in / 2.3k out · 4 turns" in table
    assert "USAGE" not in "\n".join(render(runs_table([runs[1]]), 160))
    task = {"service_name": "web", "id": 1, "title": "t", "status": "Running", "runs": runs,
            "usage": {**usage, "runs": 1}}
    assert any(line.startswith("usage:    $0.1235") and "over 1 run(s)" in line
               for line in render(task_detail(task), 160))
