"""The PM's commands: submit, list, follow, change and cancel tasks through the API."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.text import Text

from orchestrator import taskmaster, validation
from orchestrator.cli import follow
from orchestrator.cli.command import AliasGroup, Command
from orchestrator.cli.context import Context
from orchestrator.cli.errors import EXIT_OK, EXIT_UNREACHABLE, Conflict, UsageError
from orchestrator.cli.options import (
    STATUS,
    common_options,
    examples,
    pass_context,
    task_ref_argument,
)
from orchestrator.cli.output import (
    dumps,
    status_text,
    task_detail,
    task_list_table,
    task_ref,
)
from orchestrator.cli.submit_all import submit_all as submit_every_task

FILE = click.Path(dir_okay=False, path_type=Path)  # existence is checked by taskmaster, with a better message


@click.group(
    "task",
    cls=AliasGroup,
    epilog=examples(
        "orchestrator task submit --task-json tasks.json --task-id 1 --service demo --agent claude",
        "orchestrator task watch demo/1",
        "orchestrator task list --status running -o json",
    ),
)
@common_options
def task_group() -> None:
    """Submit and follow tasks (PM commands)."""


def _check_name(check: Any, value: str, option: str) -> str:
    try:
        return check(value)
    except ValueError as exc:
        raise UsageError(f"{option} {value!r}: {exc}") from None


# Submit ---------------------------------------------------------------------


@task_group.command(
    "submit",
    epilog=examples(
        "orchestrator task submit --task-json .taskmaster/tasks/tasks.json --task-id 3 --service demo --agent claude",
        "orchestrator task submit --all --task-json tasks.json --service demo --agent claude \\",
        "    --design-spec docs/design.md --repo https://github.com/acme/demo.git --branch main",
    ),
)
@click.option(
    "--task-json",
    required=True,
    type=FILE,
    metavar="FILE",
    help='Task Master file: {"master": {"tasks": [...]}} or a list of tasks.',
)
@click.option("--task-id", type=click.IntRange(min=1), metavar="N", help="Id of the task to submit.")
@click.option("--all", "submit_all", is_flag=True, help="Submit every task of the file in dependency order.")
@click.option("--service", required=True, help="Service the task belongs to (DNS label).")
@click.option("--agent", required=True, help="Agent that runs it, e.g. claude.")
@click.option("--design-spec", type=FILE, metavar="FILE", help="Markdown design spec to attach.")
@click.option("--prompt", type=FILE, metavar="FILE", help="Markdown prompt to attach.")
@click.option("--repo", metavar="URL", help="Git repository the agent works in (https or git@host:o/r).")
@click.option("--branch", help="Branch of --repo (default main).")
@click.option("--tag", help="Task Master tag to read (default master).")
@common_options
@pass_context
def submit(
    app: Context,
    task_json: Path,
    task_id: int | None,
    submit_all: bool,
    service: str,
    agent: str,
    design_spec: Path | None,
    prompt: Path | None,
    repo: str | None,
    branch: str | None,
    tag: str | None,
) -> int:
    """Submit a task (or all of them) from a Task Master file."""
    if (task_id is None) == (not submit_all):
        raise click.UsageError("give one of --task-id N or --all")
    tasks = taskmaster.load_tasks(task_json, tag=tag)
    _check_name(validation.service_name, service, "--service")
    _check_name(validation.agent_name, agent, "--agent")
    if branch and not repo:
        raise UsageError("--branch needs --repo; name the repository the branch belongs to")
    repository = None
    if repo:
        repository = {"url": repo, "branch": _check_name(validation.git_ref, branch or "main", "--branch")}
    inputs: dict[str, Any] = {
        "service": service,
        "agent": agent,
        "design_spec": taskmaster.read_document(design_spec, "design spec") if design_spec else None,
        "prompt": taskmaster.read_document(prompt, "prompt") if prompt else None,
        "repository": repository,
    }
    if submit_all:
        return submit_every_task(app, service, tasks, inputs)
    assert task_id is not None
    body = taskmaster.build_submission(taskmaster.find_task(tasks, task_id, source=str(task_json)), **inputs)
    answer, url = app.client.submit(body)
    if app.json:
        app.print(dumps({**answer, "url": url}))
    else:
        app.print(Text.assemble(f"submitted {task_ref(answer)}: ", status_text(str(answer.get("status", "")))))
        app.print(f"  {url}")
        app.note(f"follow it with: orchestrator task watch {service}/{task_id}")
    return EXIT_OK


# Reading --------------------------------------------------------------------


@task_group.command(
    "list",
    epilog=examples(
        "orchestrator task list",
        "orchestrator task list --service demo --status failed",
        "orchestrator task list --limit 20 --cursor 1700000000123 -o json",
    ),
)
@click.option("--service", help="Only this service.")
@click.option("--status", type=STATUS, help="Only this status, in any case, e.g. running.")
@click.option("--agent", help="Only this agent.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="Page size.")
@click.option("--cursor", help="Cursor of the next page, as printed by the previous page.")
@common_options
@pass_context
def list_tasks(
    app: Context, service: str | None, status: str | None, agent: str | None, limit: int, cursor: str | None
) -> int:
    """List tasks, newest first."""
    items, next_cursor = app.client.list_tasks(service=service, status=status, agent=agent, limit=limit, cursor=cursor)
    if app.json:
        app.print(dumps({"items": items, "next_cursor": next_cursor}))
        return EXIT_OK
    app.show(task_list_table(items))
    if next_cursor:
        app.note(f"more: orchestrator task list --cursor {next_cursor}")
    return EXIT_OK


@task_group.command(
    "status", epilog=examples("orchestrator task status demo/1", "orchestrator task status demo/1 -o json | jq .runs")
)
@task_ref_argument
@common_options
@pass_context
def status(app: Context, ref: tuple[str, int]) -> int:
    """Show a task's status, runs and recent history."""
    service, task_id = ref
    task = app.client.get_task(service, task_id)
    if app.json:
        app.print(dumps(task))
    else:
        app.show(task_detail(task, url=app.client.task_url(service, task_id)))
    return EXIT_OK


@task_group.command(
    "logs", epilog=examples("orchestrator task logs demo/1 --tail 50", "orchestrator task logs demo/1 -f")
)
@task_ref_argument
@click.option("-f", "--follow", "follow_", is_flag=True, help="Keep printing until the run ends.")
@click.option("--tail", type=click.IntRange(min=1), metavar="N", help="Only the last N lines.")
@click.option(
    "--raw", is_flag=True, help="The agent's own output (Claude Code's stream-json), not the conversation as text."
)
@common_options
@pass_context
def logs(app: Context, ref: tuple[str, int], follow_: bool, tail: int | None, raw: bool) -> int:
    """Print the agent's output; with -f, until the run ends."""
    service, task_id = ref
    if follow_:
        return follow.follow_logs(app, service, task_id, tail=tail, raw=raw)
    for line in app.client.logs(service, task_id, tail=tail, raw=raw):
        app.print(line)
    return EXIT_OK


@task_group.command(
    "watch",
    epilog="On a terminal the view is redrawn in place; otherwise one line per status change "
    "(one JSON object with -o json). Exits 0 when the task Succeeded, 1 when it Failed or was "
    "Cancelled.\n\n"
    + examples(
        "orchestrator task watch demo/1",
        "orchestrator task watch demo/1 --interval 5 --lines 20",
        "orchestrator task watch demo/1 && echo it succeeded",
    ),
)
@task_ref_argument
@click.option(
    "--interval",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Seconds between refreshes.",
)
@click.option("--lines", type=click.IntRange(min=0), default=10, show_default=True, help="Log lines shown.")
@common_options
@pass_context
def watch(app: Context, ref: tuple[str, int], interval: float, lines: int) -> int:
    """Show a task live until it ends (exit 1 if it failed)."""
    service, task_id = ref
    return follow.watch_task(app, service, task_id, interval=interval, lines=lines)


# Changing -------------------------------------------------------------------


def _show_changed(app: Context, verb: str, task: dict[str, Any], service: str, task_id: int) -> None:
    if app.json:
        app.print(dumps(task))
        return
    reason = str(task.get("status_reason") or "")
    app.print(
        Text.assemble(
            f"{verb} {service}/{task_id}: ", status_text(str(task.get("status", ""))), f" ({reason})" if reason else ""
        )
    )


def _refused(exc: Conflict, service: str, task_id: int) -> Conflict:
    return Conflict(f"{exc.message}; see `orchestrator task status {service}/{task_id}`")


@task_group.command("cancel", epilog=examples("orchestrator task cancel demo/1"))
@task_ref_argument
@common_options
@pass_context
def cancel(app: Context, ref: tuple[str, int]) -> int:
    """Cancel a task (its run is stopped)."""
    service, task_id = ref
    try:
        task = app.client.cancel(service, task_id)
    except Conflict as exc:
        raise _refused(exc, service, task_id) from None
    _show_changed(app, "cancelled", task, service, task_id)
    return EXIT_OK


@task_group.command("retry", epilog=examples("orchestrator task retry demo/1"))
@task_ref_argument
@common_options
@pass_context
def retry(app: Context, ref: tuple[str, int]) -> int:
    """Start a failed or cancelled task again."""
    service, task_id = ref
    try:
        task = app.client.retry(service, task_id)
    except Conflict as exc:
        raise _refused(exc, service, task_id) from None
    _show_changed(app, "retrying", task, service, task_id)
    return EXIT_OK


@task_group.command("context", epilog=examples("orchestrator task context demo/1 --file review-notes.md"))
@task_ref_argument
@click.option("--file", "document", required=True, type=FILE, metavar="FILE", help="Markdown file to add.")
@common_options
@pass_context
def context(app: Context, ref: tuple[str, int], document: Path) -> int:
    """Add a context document; the task starts a new run that sees it."""
    service, task_id = ref
    content = taskmaster.read_document(document, "context")
    # The API stores it as context-v<N>.md; the file's name becomes its title.
    task = app.client.add_context(service, task_id, {"content": content, "title": document.stem[:500]})
    if app.json:
        app.print(dumps(task))
    else:
        version = task.get("context_version")
        app.print(
            Text.assemble(
                f"added context to {service}/{task_id}" + (f" (now v{version})" if version else "") + ": ",
                status_text(str(task.get("status", ""))),
            )
        )
    return EXIT_OK


# The API itself -------------------------------------------------------------


@click.command(
    "health", cls=Command, epilog=examples("orchestrator health", "orchestrator health --api-url http://10.0.0.5:8080")
)
@common_options
@pass_context
def health(app: Context) -> int:
    """Tell whether the API is alive and ready (exit 5 when not ready)."""
    alive = app.client.health()
    ready, detail = app.client.ready()
    if app.json:
        app.print(dumps({"health": alive, "ready": ready, "readiness": detail}))
    else:
        app.print(
            Text.assemble(
                f"API {app.client.base_url}: ",
                ("alive", "green"),
                f" (version {alive.get('version') or '?'}), ",
                ("ready", "green") if ready else ("not ready", "red"),
                "" if ready else f": {detail.get('reason') or 'Redis does not answer'}",
            )
        )
    return EXIT_OK if ready else EXIT_UNREACHABLE


COMMANDS = (task_group, health)
