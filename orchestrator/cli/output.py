"""How the command line shows things: tables, a task's detail, colour only on a terminal."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

STATUS_COLORS = {
    "Succeeded": "32",  # green
    "Failed": "31",  # red
    "Cancelled": "33",  # yellow
    "Running": "36",  # cyan
    "Preparing": "36",
    "Launching": "36",
    "Blocked": "35",  # magenta
}
TERMINAL_STATUSES = ("Succeeded", "Failed", "Cancelled")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def use_color(stream: TextIO, no_color: bool = False) -> bool:
    """Colour only on a terminal, and never with --no-color or NO_COLOR set."""
    if no_color or os.environ.get("NO_COLOR"):
        return False
    isatty = getattr(stream, "isatty", None)
    return bool(isatty and isatty()) and os.environ.get("TERM") != "dumb"


class Style:
    """ANSI styling that disappears when colour is off."""

    def __init__(self, enabled: bool):
        self.enabled = enabled

    def _wrap(self, code: str, text: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.enabled and text else text

    def bold(self, text: str) -> str:
        return self._wrap("1", text)

    def dim(self, text: str) -> str:
        return self._wrap("2", text)

    def red(self, text: str) -> str:
        return self._wrap("31", text)

    def green(self, text: str) -> str:
        return self._wrap("32", text)

    def yellow(self, text: str) -> str:
        return self._wrap("33", text)

    def status(self, status: str) -> str:
        code = STATUS_COLORS.get(status)
        return self._wrap(code, status) if code else status


def visible_len(text: str) -> int:
    return len(ANSI.sub("", text))


def table(headers: Sequence[str], rows: Sequence[Sequence[str]], style: Style | None = None) -> str:
    """Left-aligned columns sized to their widest cell (colour codes not counted)."""
    style = style or Style(False)
    widths = [visible_len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], visible_len(cell))

    def line(cells: Sequence[str]) -> str:
        padded = [cell + " " * (widths[i] - visible_len(cell)) for i, cell in enumerate(cells)]
        return "  ".join(padded).rstrip()

    out = [style.bold(line(list(headers)))]
    out += [line(list(row)) for row in rows]
    return "\n".join(out)


def dumps(value: Any) -> str:
    """JSON output: stable, indented, for scripts and `jq`."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def field(mapping: Mapping[str, Any], *names: str, default: Any = "") -> Any:
    """The first present field among the names the API may use."""
    for name in names:
        value = mapping.get(name)
        if value not in (None, ""):
            return value
    return default


def task_ref(task: Mapping[str, Any]) -> str:
    return f"{field(task, 'service_name', 'service')}/{field(task, 'id', 'task_id')}"


def when(value: Any) -> str:
    """A timestamp (epoch seconds or ISO 8601) in local time, to the second."""
    if value in (None, ""):
        return ""
    try:
        if isinstance(value, (int, float)) or (isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value)):
            moment = datetime.fromtimestamp(float(value)).astimezone()
        else:
            moment = datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone()
    except (ValueError, OverflowError, OSError):
        return str(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def format_task_list(tasks: Sequence[Mapping[str, Any]], style: Style) -> str:
    """One row per task, newest first as the API sends them."""
    if not tasks:
        return "no tasks"
    rows = [[task_ref(t), style.status(str(field(t, "status"))), str(field(t, "agent_name", "agent")),
             str(field(t, "priority")), _short(str(field(t, "title", default=field(t.get("spec") or {}, "title"))), 40),
             when(field(t, "updated_at", "created_at"))] for t in tasks]
    return table(["TASK", "STATUS", "AGENT", "PRIORITY", "TITLE", "UPDATED"], rows, style)


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def format_runs(runs: Sequence[Mapping[str, Any]], style: Style) -> str:
    rows = []
    for run in runs:
        rows.append([
            str(field(run, "version")), str(field(run, "attempt")),
            str(field(run, "job_name", "name", "run_id", "id")),
            style.status(str(field(run, "phase", "status"))),
            when(field(run, "started_at")), when(field(run, "finished_at")),
            str(field(run, "outcome", "reason")), str(field(run, "pull_request_url", "pr_url")),
        ])
    return table(["VERSION", "ATTEMPT", "JOB", "PHASE", "STARTED", "FINISHED", "OUTCOME", "PULL REQUEST"], rows, style)


def format_task_detail(task: Mapping[str, Any], style: Style, *, url: str = "", history: int = 8) -> str:
    """A task's status, its runs and its recent history."""
    title = str(field(task, "title", default=field(task.get("spec") or {}, "title")))
    status = str(field(task, "status"))
    reason = str(field(task, "status_reason"))
    lines = [style.bold(f"{task_ref(task)}  {title}".rstrip())]
    lines.append(f"status:   {style.status(status)}" + (f"  ({reason})" if reason else ""))
    for label, names in (("agent", ("agent_name", "agent")), ("priority", ("priority",)),
                         ("context", ("context_version",)), ("submitted", ("submitted_status",))):
        value = field(task, *names)
        if value not in ("", None):
            lines.append(f"{label + ':':<9} {'v' if label == 'context' else ''}{value}")
    created, updated = when(field(task, "created_at")), when(field(task, "updated_at"))
    if created:
        lines.append(f"created:  {created}" + (f"   updated: {updated}" if updated else ""))
    if url:
        lines.append(f"url:      {url}")
    runs = task.get("runs") or []
    if runs:
        lines += ["", format_runs(runs, style)]
    entries = task.get("history") or []
    if entries and history:
        lines += ["", style.bold("history")]
        for entry in list(entries)[-history:]:
            source = field(entry, "from") or "-"
            lines.append(f"  {when(field(entry, 'at', 'timestamp'))}  {source} -> "
                         f"{style.status(str(field(entry, 'to', 'status')))}"
                         + (f"  {field(entry, 'reason')}" if field(entry, "reason") else ""))
    return "\n".join(lines)
