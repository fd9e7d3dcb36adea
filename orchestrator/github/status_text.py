"""The Markdown of a task's status comment (pure): its status, and at the end what the run delivered.

The comment is the one place an issue's author watches, so its end state says
what a run left behind in the words the API uses: the outcome (`changes` or
`no_changes`, never a bare success), the branch and its commits, the pull
request, the run's figures, and later whether the pull request was merged
(delivered) or closed (declined).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from orchestrator.github.routing import STATUS_MARKER
from orchestrator.logs import scrub
from orchestrator.model import Outcome, Run, Task
from orchestrator.states import Status

MAX_REASON = 1500

HEADLINES = {
    Status.PENDING: "⏳ Pending: waiting to be admitted",
    Status.QUEUED: "⏳ Queued",
    Status.BLOCKED: "⏸️ Blocked",
    Status.PREPARING: "🛠️ Preparing the workspace",
    Status.LAUNCHING: "🚀 Launching",
    Status.RUNNING: "🏃 Running",
    Status.SUCCEEDED: "✅ Succeeded",
    Status.FAILED: "❌ Failed",
    Status.CANCELLED: "🛑 Cancelled",
}

# What our pull request's end makes of the task (recorded by the webhook handler).
DELIVERY = {"merged": "delivered", "closed": "declined"}
_DELIVERY_LINES = {
    "delivered": "📦 **Delivered**: the pull request was merged.",
    "declined": "🚫 **Declined**: the pull request was closed without merging; the workspace is released.",
}


def clean(text: str, secrets: list[str]) -> str:
    text = scrub(text, secrets)
    # No mentions from our text: a reason quoting "@someone" must not ping them.
    return text.replace("@", "@\u200b")[:MAX_REASON]


def delivery_of(task: Task) -> str | None:
    """`delivered` (pull request merged), `declined` (closed unmerged) or None."""
    return DELIVERY.get(str(task.pull_request_outcome or ""))


def _duration(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    return f"{minutes}m {secs:02d}s" if minutes else f"{secs}s"


def figures(run: Run) -> str:
    """`3m 05s · 14 turns · $0.42`: the run's duration, turns and cost, those that are known."""
    parts = []
    start = run.started_at or run.launched_at
    if start and run.finished_at and run.finished_at >= start:
        parts.append(_duration(run.finished_at - start))
    usage: Mapping[str, Any] = run.usage or {}
    turns = usage.get("num_turns")
    if isinstance(turns, int) and not isinstance(turns, bool) and turns > 0:
        parts.append(f"{turns} turn{'s' if turns != 1 else ''}")
    cost = usage.get("cost_usd")
    if isinstance(cost, (int, float)) and not isinstance(cost, bool) and cost > 0:
        parts.append(f"${cost:.2f}")
    return " · ".join(parts)


def _outcome_line(run: Run, secrets: list[str]) -> str:
    if run.outcome == Outcome.NO_CHANGES:
        return "Outcome: **no changes**: the agent finished without changing the repository."
    if run.outcome != Outcome.CHANGES:
        return f"Outcome: **{run.outcome.value}**." if run.outcome else ""
    line = "Outcome: **changes**"
    if run.branch:
        commits = run.commits or 0
        line += f": {commits} commit{'s' if commits != 1 else ''} on branch `{clean(run.branch, secrets)}`"
    stat = run.diffstat or {}
    if stat:
        files = int(stat.get("files", 0))
        line += f" ({files} file{'s' if files != 1 else ''}, +{stat.get('insertions', 0)} −{stat.get('deletions', 0)})"
    return line + "."


def render_status(
    task: Task,
    *,
    run: Run | None = None,
    job_name: str = "",
    secrets: list[str] | None = None,
    now: datetime | None = None,
) -> str:
    """The Markdown of a task's status comment; `run` is its current run, when it has one."""
    secrets = secrets or []
    status = task.status
    ref = f"{task.service}/{task.id}"
    lines = [f"{STATUS_MARKER} {ref} -->", f"**Orchestrator** · task `{ref}` · agent `{task.agent}`", ""]
    headline = HEADLINES[status]
    job_name = job_name or (run.job_name if run else "")
    if job_name and status in (Status.LAUNCHING, Status.RUNNING):
        headline += f" (Job `{clean(job_name, secrets)}`)"
    lines.append(f"**{headline}**")
    reason = task.status_reason
    if reason and status != Status.SUCCEEDED:
        lines += ["", f"Reason: {clean(reason, secrets)}"]
    ended = status in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)
    details: list[str] = []
    if run is not None and ended and run.outcome:
        details.append(_outcome_line(run, secrets))
    pull_request = (run.pull_request_url if run else "") or task.outputs.get("pull_request_url")
    if isinstance(pull_request, str) and pull_request.startswith("https://"):
        details.append(f"Pull request: {clean(pull_request, secrets)}")
    if run is not None and ended:
        shown = figures(run)
        if shown:
            details.append(f"Figures: {shown}")
    if details:
        lines += [""] + [f"{line}  " for line in details[:-1]] + details[-1:]  # one paragraph, a line each
    delivery = delivery_of(task)
    if delivery:
        lines += ["", _DELIVERY_LINES[delivery]]
    stamp = (now or datetime.now(UTC)).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines += ["", f"<sub>Updated {stamp}. Commands: `run`, `cancel`, `retry`, `status`.</sub>"]
    return "\n".join(lines)
