"""Following a task as it runs: the live view of `task watch` and `task logs -f`."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from rich.console import Group, RenderableType
from rich.live import Live
from rich.spinner import Spinner
from rich.table import Table
from rich.text import Text

from orchestrator.cli.context import Context
from orchestrator.cli.errors import EXIT_FAILED, EXIT_OK, NotFound
from orchestrator.cli.output import (
    TERMINAL_STATUSES,
    dumps,
    log_lines,
    status_text,
    task_detail,
    task_ref,
)


def exit_code(status: str) -> int:
    """`task watch` exits 0 for Succeeded, 1 for Failed or Cancelled."""
    return EXIT_OK if status == "Succeeded" else EXIT_FAILED


def watch_task(app: Context, service: str, task_id: int, *, interval: float, lines: int) -> int:
    """Follow a task until it ends: redrawn in place on a terminal, one line per status change otherwise."""
    if app.live:
        return _watch_live(app, service, task_id, interval=interval, lines=lines)
    last_status = None
    while True:
        task = app.client.get_task(service, task_id)
        status = str(task.get("status", ""))
        if status != last_status:
            reason = task.get("status_reason") or ""
            if app.json:
                app.print(dumps({"task": task_ref(task), "status": status, "status_reason": reason}))
            else:
                app.print(
                    f"{time.strftime('%H:%M:%S')}  {service}/{task_id}  {status}" + (f"  ({reason})" if reason else "")
                )
        last_status = status
        if status in TERMINAL_STATUSES:
            return exit_code(status)
        time.sleep(interval)


def _watch_live(app: Context, service: str, task_id: int, *, interval: float, lines: int) -> int:
    # rich.live redraws the same lines in place (cursor up, rewrite), never clearing the screen,
    # and crops the view to the terminal's height: no flicker, no scrolling.
    url = app.client.task_url(service, task_id)
    with Live(
        console=app.out, refresh_per_second=4, transient=False, redirect_stderr=False, vertical_overflow="crop"
    ) as live:
        while True:
            task = app.client.get_task(service, task_id)
            status = str(task.get("status", ""))
            ended = status in TERMINAL_STATUSES
            updated = time.strftime("%H:%M:%S")
            # As many log lines as the terminal has room for: a view taller than the terminal is cut at the bottom.
            room = app.out.height - _height(app, watch_view(task, url=url, logs=[], updated=updated, ended=ended)) - 2
            logs = _recent_logs(app, service, task_id, lines)[-room:] if room > 0 else []
            live.update(watch_view(task, url=url, logs=logs, updated=updated, ended=ended), refresh=True)
            if ended:
                return exit_code(status)
            time.sleep(interval)


def _height(app: Context, view: RenderableType) -> int:
    return len(app.out.render_lines(view, app.out.options, pad=False))


def watch_view(task: Mapping[str, Any], *, url: str, logs: list[str], updated: str, ended: bool) -> RenderableType:
    """One frame of `task watch`: a header with the live indicator and time, the task, its last log lines."""
    header = Table.grid(expand=True)
    header.add_column(ratio=1)
    header.add_column(justify="right", no_wrap=True)
    status = str(task.get("status", ""))
    if ended:
        indicator: RenderableType = Text.assemble(("● ", "dim"), "ended ", status_text(status))
    else:
        indicator = Spinner("dots", text=Text("live", style="bold green"), style="green")
    header.add_row(indicator, Text(f"updated {updated}", style="dim"))
    parts: list[RenderableType] = [header, task_detail(task, url=url, history=5)]
    if logs:
        parts += [Text(""), Text("last log lines", style="bold"), *log_lines(logs)]
    return Group(*parts)


def _recent_logs(app: Context, service: str, task_id: int, count: int) -> list[str]:
    if count <= 0:
        return []
    try:
        return list(app.client.logs(service, task_id, tail=count))[-count:]
    except NotFound:
        return []  # no run yet


def follow_logs(app: Context, service: str, task_id: int, *, tail: int | None, raw: bool = False) -> int:
    """Print the run's output until it ends, waiting for the run to start first."""
    while True:
        _wait_for_run(app, service, task_id)
        printed = 0
        try:
            for line in app.client.logs(service, task_id, tail=tail, follow=True, raw=raw):
                app.print(line)
                printed += 1
        except NotFound as exc:  # no output yet (preparing, a Pending pod): wait as for a first run
            if exc.code != "no_logs" or str(app.client.get_task(service, task_id).get("status")) in TERMINAL_STATUSES:
                raise
        # A stream that ended before the run wrote anything may have started too early
        # (the run was still being prepared): ask again until the task ends.
        if printed or str(app.client.get_task(service, task_id).get("status")) in TERMINAL_STATUSES:
            return EXIT_OK
        time.sleep(0.5)


def _wait_for_run(app: Context, service: str, task_id: int, interval: float = 0.5) -> None:
    """With -f on a task that has no run yet, wait for its first run instead of failing."""
    told = False
    while True:
        task = app.client.get_task(service, task_id)
        if task.get("runs") or str(task.get("status")) in TERMINAL_STATUSES:
            return
        if not told:
            app.note(f"waiting for {service}/{task_id} to start (it is {task.get('status')})…")
            told = True
        time.sleep(interval)
