"""How the command line shows things: rich tables and views sized to the terminal, plain JSON for scripts."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, TextIO

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

STATUS_STYLES = {
    "Succeeded": "green",
    "Failed": "red",
    "Cancelled": "yellow",
    "Running": "cyan",
    "Preparing": "cyan",
    "Launching": "cyan",
    "Blocked": "magenta",
}
# How a run ended for the user (DESIGN.md "outcome"); a run that changed nothing is not shown as a success.
OUTCOME_STYLES = {"changes": "green", "no_changes": "yellow", "failed": "red", "cancelled": "yellow"}
TERMINAL_STATUSES = ("Succeeded", "Failed", "Cancelled")
UNBOUNDED = 1_000_000


def make_console(stream: TextIO, *, no_color: bool = False) -> Console:
    """A console on `stream`: colour only on a terminal, never with --no-color or NO_COLOR (rich reads it)."""
    # soft_wrap: plain lines (URLs, log lines) are never broken by us; tables size themselves.
    return Console(file=stream, no_color=no_color or None, highlight=False, soft_wrap=True, emoji=False, markup=False)


def status_text(status: str) -> Text:
    return Text(status, style=STATUS_STYLES.get(status, ""))


def dumps(value: Any) -> str:
    """JSON output: stable, indented, for scripts and `jq`."""
    return json.dumps(value, indent=2, sort_keys=True, default=str)


def _moment(value: Any) -> datetime | None:
    """A timestamp (epoch seconds or ISO 8601) in local time."""
    if value in (None, ""):
        return None
    try:
        if isinstance(value, (int, float)) or (isinstance(value, str) and re.fullmatch(r"\d+(\.\d+)?", value)):
            return datetime.fromtimestamp(float(value)).astimezone()
        return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone()
    except (ValueError, OverflowError, OSError):
        return None


def when(value: Any) -> str:
    """A timestamp in local time, to the second."""
    moment = _moment(value)
    if moment is None:
        return "" if value in (None, "") else str(value)
    return moment.strftime("%Y-%m-%d %H:%M:%S")


def when_short(value: Any, now: datetime | None = None) -> str:
    """A timestamp for a table cell, like `ls -l`: the time today, the day this year, else the date."""
    moment = _moment(value)
    if moment is None:
        return "" if value in (None, "") else str(value)
    now = now or datetime.now().astimezone()
    if moment.date() == now.date():
        return moment.strftime("%H:%M:%S")
    if moment.year == now.year:
        return moment.strftime("%b %d %H:%M")
    return moment.strftime("%Y-%m-%d")


def task_ref(task: Mapping[str, Any]) -> str:
    return f"{task.get('service_name', '')}/{task.get('id', '')}"


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def print_block(console: Console, renderable: RenderableType) -> None:
    """Print without the padding rich adds to the right of table cells, so piped lines end cleanly."""
    with console.capture() as captured:
        console.print(renderable, soft_wrap=False)
    console.file.write("\n".join(line.rstrip() for line in captured.get().splitlines()) + "\n")
    console.file.flush()


def _table(gap: int) -> Table:
    """Borderless columns `gap` spaces apart under a bold header."""
    return Table(box=None, pad_edge=False, padding=(0, gap, 0, 0), header_style="bold", show_edge=False)


class Fitted:
    """A table fitted to the width it gets, giving way in its flexible column first.

    The columns other than the flexible one (the column with a `ratio`: a title,
    a reason) keep their natural width while they fit and the flexible one gets
    what they leave; when that is less than FLEX_MIN the gaps shrink to one space,
    and on a terminal narrower still rich wraps the other columns that may wrap. Rich alone would shrink
    the widest columns first, cutting job names to leave a reason its full width.
    """

    FLEX_MIN = 10

    def __init__(self, build: Callable[[int], Table]):
        self.build = build

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        unbounded = options.update_width(UNBOUNDED)  # rich clamps a measurement to the width it is given
        for gap in (2, 1):
            table = self.build(gap)
            if Measurement.get(console, unbounded, table).maximum <= options.max_width:
                yield table
                return
            flexible = next((c for c in table.columns if c.ratio), None)
            if flexible is None:
                continue
            flexible.width = 1  # measure what the other columns need
            room = options.max_width - (Measurement.get(console, unbounded, table).maximum - 1)
            flexible.width = None
            if room >= self.FLEX_MIN or gap == 1:
                # Too narrow even so: the flexible column keeps FLEX_MIN and rich wraps the others.
                flexible.max_width = max(room, self.FLEX_MIN)
                yield table
                return
        yield table

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement.get(console, options, self.build(1))


def task_list_table(tasks: Sequence[Mapping[str, Any]]) -> RenderableType:
    """One row per task, newest first as the API sends them."""
    if not tasks:
        return Text("no tasks")

    def build(gap: int) -> Table:
        table = _table(gap)
        # The reference and status stay whole; the title gives way first, then the agent and priority.
        table.add_column("TASK", overflow="fold")
        table.add_column("STATUS", no_wrap=True)
        table.add_column("AGENT", overflow="ellipsis", no_wrap=True, max_width=12)
        table.add_column("PRIORITY", overflow="ellipsis", no_wrap=True)
        table.add_column("TITLE", overflow="ellipsis", no_wrap=True, ratio=1)
        table.add_column("UPDATED", overflow="fold")
        for task in tasks:
            table.add_row(
                task_ref(task),
                status_text(_text(task.get("status"))),
                _text(task.get("agent_name")),
                _text(task.get("priority")),
                _text(task.get("title")),
                when_short(task.get("updated_at")),
            )
        return table

    return Fitted(build)


def run_outcome(run: Mapping[str, Any]) -> Text:
    """How the run ended: its outcome when the API sends one, else why it failed."""
    outcome = _text(run.get("outcome"))
    if outcome:
        return Text(outcome, style=OUTCOME_STYLES.get(outcome, ""))
    return Text(_text(run.get("failure_reason")), style="red")


def usage_text(usage: Any) -> str:
    """Cost, tokens and turns in a few words: `$0.1234 · 12.3k in / 4.5k out · 7 turns`; '' when unknown."""
    if not isinstance(usage, Mapping) or not usage:
        return ""

    def count(n: Any) -> str:
        n = int(n or 0)
        return f"{n / 1_000_000:.1f}M" if n >= 1_000_000 else f"{n / 1000:.1f}k" if n >= 1000 else str(n)

    tokens_in = sum(
        int(usage.get(k) or 0) for k in ("input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
    )
    cost = usage.get("cost_usd")
    parts = [
        f"${cost:.4f}" if isinstance(cost, (int, float)) else "$?",
        f"{count(tokens_in)} in / {count(usage.get('output_tokens'))} out",
    ]
    if usage.get("num_turns"):
        parts.append(f"{usage['num_turns']} turns")
    return " · ".join(parts)


def runs_table(runs: Sequence[Mapping[str, Any]]) -> RenderableType:
    """One row per run, oldest first; OUTCOME is the run's outcome, or its failure reason."""
    with_pull_requests = any(run.get("pull_request_url") for run in runs)
    with_usage = any(run.get("usage") for run in runs)

    def build(gap: int) -> Table:
        table = _table(gap)
        table.add_column("RUN", no_wrap=True)
        table.add_column("JOB", overflow="fold")
        table.add_column("PHASE", no_wrap=True)
        table.add_column("STARTED", overflow="fold")
        table.add_column("FINISHED", overflow="fold")
        if with_pull_requests:
            table.add_column("PULL REQUEST", overflow="fold")
        if with_usage:
            table.add_column("USAGE", overflow="fold")
        # Last, and given the room left: reasons are sentences, wrapped rather than cut.
        table.add_column("OUTCOME", overflow="fold", ratio=1)
        for run in runs:
            cells: list[RenderableType] = [
                f"v{_text(run.get('version'))}.{_text(run.get('attempt'))}",
                _text(run.get("job_name") or run.get("run_id")),
                status_text(_text(run.get("phase"))),
                when_short(run.get("started_at")),
                when_short(run.get("finished_at")),
            ]
            if with_pull_requests:
                cells.append(_text(run.get("pull_request_url")))
            if with_usage:
                cells.append(usage_text(run.get("usage")))
            table.add_row(*cells, run_outcome(run))
        return table

    return Fitted(build)


def _labelled(label: str, value: str | Text) -> Text:
    return Text.assemble(f"{label + ':':<9} ", value)


def task_detail(task: Mapping[str, Any], *, url: str = "", history: int = 8) -> Group:
    """A task's status, its runs and its recent history."""
    title = _text(task.get("title"))
    status = _text(task.get("status"))
    reason = _text(task.get("status_reason"))
    parts: list[RenderableType] = [Text(f"{task_ref(task)}  {title}".rstrip(), style="bold")]
    parts.append(_labelled("status", Text.assemble(status_text(status), f"  ({reason})" if reason else "")))
    for label, key, prefix in (
        ("agent", "agent_name", ""),
        ("priority", "priority", ""),
        ("context", "context_version", "v"),
        ("submitted", "submitted_status", ""),
    ):
        value = task.get(key)
        if value not in ("", None):
            parts.append(_labelled(label, f"{prefix}{value}"))
    created, updated = when(task.get("created_at")), when(task.get("updated_at"))
    if created:
        parts.append(_labelled("created", created + (f"   updated: {updated}" if updated else "")))
    if url:
        parts.append(_labelled("url", url))
    if usage_text(task.get("usage")) and (task.get("usage") or {}).get("runs"):
        parts.append(_labelled("usage", f"{usage_text(task.get('usage'))} over {task['usage']['runs']} run(s)"))
    runs = task.get("runs") or []
    if runs:
        parts += [Text(""), runs_table(runs)]
    entries = task.get("history") or []
    if entries and history:
        parts += [Text(""), Text("history", style="bold")]
        for entry in list(entries)[-history:]:
            line = Text.assemble(
                f"  {when(entry.get('at'))}  {entry.get('from') or '-'} -> ", status_text(_text(entry.get("to")))
            )
            if entry.get("reason"):
                line.append(f"  {entry['reason']}")
            parts.append(line)
    return Group(*parts)


def log_lines(lines: Iterable[str]) -> list[Text]:
    """Agent output, one screen row per line: its own colours kept, the rest cut at the edge."""
    return [Text.from_ansi(line, no_wrap=True, overflow="ellipsis") for line in lines]
