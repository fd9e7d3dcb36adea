"""The PM's commands: submit, list, follow, change and cancel tasks through the API."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from orchestrator import validation
from orchestrator.cli import taskmaster
from orchestrator.cli.context import Context, common_options
from orchestrator.cli.errors import EXIT_FAILED, EXIT_OK, EXIT_UNREACHABLE, Conflict, NotFound, UsageError
from orchestrator.cli.output import (
    TERMINAL_STATUSES,
    dumps,
    field,
    format_task_detail,
    format_task_list,
    task_ref,
)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `task ...` and `health`."""
    common = common_options()
    task = sub.add_parser("task", help="submit and follow tasks (PM commands)", parents=[common])
    tasks = task.add_subparsers(dest="task_command", required=True, metavar="TASK_COMMAND",
                                parser_class=sub._parser_class)

    submit = tasks.add_parser("submit", parents=[common], help="submit a task (or all) from a Task Master file",
                              description="Render task.md and acceptance criteria from a Task Master task, attach "
                              "the documents and submit it.")
    submit.add_argument("--task-json", required=True, type=Path, metavar="FILE",
                        help="Task Master file: {\"master\": {\"tasks\": [...]}} or a list of tasks")
    which = submit.add_mutually_exclusive_group(required=True)
    which.add_argument("--task-id", type=int, metavar="N", help="id of the task to submit")
    which.add_argument("--all", action="store_true", help="submit every task of the file in dependency order")
    submit.add_argument("--service", required=True, help="service the task belongs to (DNS label)")
    submit.add_argument("--agent", required=True, help="agent that runs it, e.g. claude")
    submit.add_argument("--design-spec", type=Path, metavar="FILE", help="markdown design spec to attach")
    submit.add_argument("--prompt", type=Path, metavar="FILE", help="markdown prompt to attach")
    submit.add_argument("--repo", metavar="URL", help="git repository the agent works in (https or git@host:o/r)")
    submit.add_argument("--branch", help="branch of --repo (default main)")
    submit.add_argument("--tag", help="Task Master tag to read (default master)")
    submit.set_defaults(func=cmd_submit)

    listing = tasks.add_parser("list", parents=[common], help="list tasks, newest first")
    listing.add_argument("--service", help="only this service")
    listing.add_argument("--status", help="only this status, e.g. Running")
    listing.add_argument("--agent", help="only this agent")
    listing.add_argument("--limit", type=int, default=50, help="page size (default 50)")
    listing.add_argument("--cursor", help="cursor of the next page, as printed by the previous page")
    listing.set_defaults(func=cmd_list)

    for name, func, text in (("status", cmd_status, "a task's status, runs and history"),
                             ("cancel", cmd_cancel, "cancel a task (stops its run)"),
                             ("retry", cmd_retry, "start a failed or cancelled task again")):
        parser = tasks.add_parser(name, parents=[common], help=text)
        parser.add_argument("ref", metavar="SERVICE/ID")
        parser.set_defaults(func=func)

    context = tasks.add_parser("context", parents=[common], help="add a context document (starts a new run)")
    context.add_argument("ref", metavar="SERVICE/ID")
    context.add_argument("--file", required=True, type=Path, help="markdown file to add")
    context.set_defaults(func=cmd_context)

    logs = tasks.add_parser("logs", parents=[common], help="the agent's output")
    logs.add_argument("ref", metavar="SERVICE/ID")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing until the run ends")
    logs.add_argument("--tail", type=int, metavar="N", help="only the last N lines")
    logs.set_defaults(func=cmd_logs)

    watch = tasks.add_parser("watch", parents=[common], help="live view of a task until it ends")
    watch.add_argument("ref", metavar="SERVICE/ID")
    watch.add_argument("--interval", type=float, default=1.0, help="seconds between refreshes (default 1)")
    watch.add_argument("--lines", type=int, default=10, help="log lines shown (default 10)")
    watch.set_defaults(func=cmd_watch)

    health = sub.add_parser("health", parents=[common], help="is the API alive and ready")
    health.set_defaults(func=cmd_health)


def parse_ref(ref: str) -> tuple[str, int]:
    """`service/id` -> (service, id), with a usage error that shows the expected form."""
    service, sep, raw_id = ref.strip().partition("/")
    if not sep or not raw_id.isdigit() or int(raw_id) < 1:
        raise UsageError(f"{ref!r} is not a task reference; write SERVICE/ID, e.g. demo/1")
    try:
        validation.service_name(service)
    except ValueError as exc:
        raise UsageError(f"{ref!r}: {exc}") from None
    return service, int(raw_id)


def _check_name(check: Any, value: str, option: str) -> str:
    try:
        return check(value)
    except ValueError as exc:
        raise UsageError(f"{option} {value!r}: {exc}") from None


# Submit ---------------------------------------------------------------------


def _submission_inputs(args: argparse.Namespace) -> dict[str, Any]:
    _check_name(validation.service_name, args.service, "--service")
    _check_name(validation.agent_name, args.agent, "--agent")
    if args.branch and not args.repo:
        raise UsageError("--branch needs --repo; name the repository the branch belongs to")
    repository = None
    if args.repo:
        repository = {"url": args.repo, "branch": _check_name(validation.git_ref, args.branch or "main", "--branch")}
    return {
        "service": args.service,
        "agent": args.agent,
        "design_spec": taskmaster.read_document(args.design_spec, "design spec") if args.design_spec else None,
        "prompt": taskmaster.read_document(args.prompt, "prompt") if args.prompt else None,
        "repository": repository,
    }


def cmd_submit(ctx: Context, args: argparse.Namespace) -> int:
    """Submit one task, or every task in dependency order."""
    tasks = taskmaster.load_tasks(args.task_json, tag=args.tag)
    inputs = _submission_inputs(args)
    if not args.all:
        task = taskmaster.find_task(tasks, args.task_id, source=str(args.task_json))
        body = taskmaster.build_submission(task, **inputs)
        answer, url = ctx.client.submit(body)
        if ctx.json:
            ctx.print(dumps({**answer, "url": url}))
        else:
            ctx.print(f"submitted {task_ref(answer) if field(answer, 'id') else f'{args.service}/{args.task_id}'}: "
                      f"{ctx.style.status(str(field(answer, 'status', default='Pending')))}")
            ctx.print(f"  {url}")
            ctx.note(f"follow it with: orchestrator task watch {args.service}/{args.task_id}")
        return EXIT_OK
    return _submit_all(ctx, args, tasks, inputs)


def _submit_all(ctx: Context, args: argparse.Namespace, tasks: list[dict[str, Any]], inputs: dict[str, Any]) -> int:
    ordered = taskmaster.dependency_order(tasks)
    total = len(ordered)
    results: list[dict[str, Any]] = []
    live = ctx.live  # redraw a progress line only on a terminal
    for index, task in enumerate(ordered, start=1):
        ref = f"{args.service}/{task['id']}"
        if live:
            ctx.stdout.write(f"\r\x1b[K{_bar(index - 1, total)} {index - 1}/{total}  submitting {ref}…")
            ctx.stdout.flush()
        body = taskmaster.build_submission(task, **inputs)
        try:
            answer, url = ctx.client.submit(body)
            result = {"id": body["id"], "result": "submitted", "status": field(answer, "status", default="Pending"),
                      "url": url}
        except Conflict as exc:
            # Already there (an earlier --all that stopped half way): keep going.
            result = {"id": body["id"], "result": "exists", "status": "", "url": ctx.client.task_url(args.service,
                      body["id"]), "message": exc.message}
        except Exception:
            if live:
                ctx.stdout.write("\r\x1b[K")
            _report_partial(ctx, results, total)
            raise
        results.append(result)
        if not ctx.json:
            line = (f"[{index}/{total}] {ref}  "
                    + (ctx.style.status(str(result["status"])) if result["result"] == "submitted"
                       else ctx.style.dim("already submitted, skipped")))
            ctx.print(("\r\x1b[K" if live else "") + line)
    if ctx.json:
        ctx.print(dumps(results))
    else:
        if live:
            ctx.print(f"{_bar(total, total)} {total}/{total}")
        submitted = sum(1 for r in results if r["result"] == "submitted")
        ctx.note(f"{submitted} submitted, {total - submitted} already there; "
                 f"list them with: orchestrator task list --service {args.service}")
    return EXIT_OK


def _bar(done: int, total: int, width: int = 20) -> str:
    filled = int(width * done / total) if total else width
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _report_partial(ctx: Context, results: list[dict[str, Any]], total: int) -> None:
    if results:
        ctx.note(f"stopped after {len(results)} of {total} tasks ("
                 + ", ".join(str(r["id"]) for r in results) + " done); fix the error and run the same command "
                 "again: tasks already submitted are skipped")


# Reading --------------------------------------------------------------------


def cmd_list(ctx: Context, args: argparse.Namespace) -> int:
    """One page of tasks, filtered."""
    if args.limit < 1:
        raise UsageError("--limit must be at least 1")
    items, cursor = ctx.client.list_tasks(service=args.service, status=args.status, agent=args.agent,
                                          limit=args.limit, cursor=args.cursor)
    if ctx.json:
        ctx.print(dumps({"items": items, "next_cursor": cursor}))
        return EXIT_OK
    ctx.print(format_task_list(items, ctx.style))
    if cursor:
        ctx.note(f"more: orchestrator task list --cursor {cursor}")
    return EXIT_OK


def cmd_status(ctx: Context, args: argparse.Namespace) -> int:
    """A task's status, runs and recent history."""
    service, task_id = parse_ref(args.ref)
    task = ctx.client.get_task(service, task_id)
    if ctx.json:
        ctx.print(dumps(task))
    else:
        ctx.print(format_task_detail(task, ctx.style, url=ctx.client.task_url(service, task_id)))
    return EXIT_OK


def cmd_logs(ctx: Context, args: argparse.Namespace) -> int:
    """Print the agent's output; with -f, until the run ends."""
    service, task_id = parse_ref(args.ref)
    if args.tail is not None and args.tail < 1:
        raise UsageError("--tail must be at least 1")
    if not args.follow:
        for line in ctx.client.logs(service, task_id, tail=args.tail):
            ctx.print(line)
        return EXIT_OK
    while True:
        _wait_for_run(ctx, service, task_id)
        printed = 0
        for line in ctx.client.logs(service, task_id, tail=args.tail, follow=True):
            ctx.print(line)
            printed += 1
        # A stream that ended before the run wrote anything may have started too early
        # (the run was still being prepared): ask again until the task ends.
        if printed or str(field(ctx.client.get_task(service, task_id), "status")) in TERMINAL_STATUSES:
            return EXIT_OK
        time.sleep(0.5)


def _wait_for_run(ctx: Context, service: str, task_id: int, interval: float = 0.5) -> None:
    """With -f on a task that has no run yet, wait for its first run instead of failing."""
    told = False
    while True:
        task = ctx.client.get_task(service, task_id)
        if task.get("runs") or str(field(task, "status")) in TERMINAL_STATUSES:
            return
        if not told:
            ctx.note(f"waiting for {service}/{task_id} to start (it is {field(task, 'status')})…")
            told = True
        time.sleep(interval)


# Changing -------------------------------------------------------------------


def _show_changed(ctx: Context, verb: str, task: dict[str, Any], service: str, task_id: int) -> None:
    if ctx.json:
        ctx.print(dumps(task))
        return
    status = str(field(task, "status"))
    reason = str(field(task, "status_reason"))
    ctx.print(f"{verb} {service}/{task_id}: {ctx.style.status(status)}" + (f" ({reason})" if reason else ""))


def cmd_cancel(ctx: Context, args: argparse.Namespace) -> int:
    """Cancel a task; its run is stopped."""
    service, task_id = parse_ref(args.ref)
    try:
        task = ctx.client.cancel(service, task_id)
    except Conflict as exc:
        raise Conflict(f"{exc.message}; see `orchestrator task status {service}/{task_id}`") from None
    _show_changed(ctx, "cancelled", task, service, task_id)
    return EXIT_OK


def cmd_retry(ctx: Context, args: argparse.Namespace) -> int:
    """Start a failed or cancelled task again."""
    service, task_id = parse_ref(args.ref)
    try:
        task = ctx.client.retry(service, task_id)
    except Conflict as exc:
        raise Conflict(f"{exc.message}; see `orchestrator task status {service}/{task_id}`") from None
    _show_changed(ctx, "retrying", task, service, task_id)
    return EXIT_OK


def cmd_context(ctx: Context, args: argparse.Namespace) -> int:
    """Add a context document; the task starts a new run that sees it."""
    service, task_id = parse_ref(args.ref)
    content = taskmaster.read_document(args.file, "context")
    # The API stores it as context-v<N>.md; the file's name becomes its title.
    task = ctx.client.add_context(service, task_id, {"content": content, "title": args.file.stem[:500]})
    if ctx.json:
        ctx.print(dumps(task))
    else:
        version = field(task, "context_version")
        ctx.print(f"added context to {service}/{task_id}" + (f" (now v{version})" if version else "")
                  + f": {ctx.style.status(str(field(task, 'status')))}")
    return EXIT_OK


# Following ------------------------------------------------------------------


def cmd_watch(ctx: Context, args: argparse.Namespace) -> int:
    """Redraw the task's status, runs and last log lines until it ends."""
    service, task_id = parse_ref(args.ref)
    if args.interval <= 0:
        raise UsageError("--interval must be more than 0 seconds")
    live = ctx.live
    last_status = None
    while True:
        task = ctx.client.get_task(service, task_id)
        status = str(field(task, "status"))
        if live:
            lines = _recent_logs(ctx, service, task_id, args.lines)
            screen = format_task_detail(task, ctx.style, url=ctx.client.task_url(service, task_id), history=5)
            if lines:
                screen += "\n\n" + ctx.style.bold("last log lines") + "\n" + "\n".join(lines)
            ctx.stdout.write("\x1b[H\x1b[J" + screen + "\n")
            ctx.stdout.flush()
        elif status != last_status:
            if ctx.json:
                ctx.print(dumps({"task": task_ref(task), "status": status,
                                 "status_reason": field(task, "status_reason")}))
            else:
                reason = field(task, "status_reason")
                ctx.print(f"{time.strftime('%H:%M:%S')}  {service}/{task_id}  {status}"
                          + (f"  ({reason})" if reason else ""))
        last_status = status
        if status in TERMINAL_STATUSES:
            return EXIT_OK if status == "Succeeded" else EXIT_FAILED
        time.sleep(args.interval)


def _recent_logs(ctx: Context, service: str, task_id: int, count: int) -> list[str]:
    if count <= 0:
        return []
    try:
        return list(ctx.client.logs(service, task_id, tail=count))[-count:]
    except NotFound:
        return []  # no run yet


def cmd_health(ctx: Context, args: argparse.Namespace) -> int:
    """Liveness and readiness of the API."""
    alive = ctx.client.health()
    ready, detail = ctx.client.ready()
    if ctx.json:
        ctx.print(dumps({"health": alive, "ready": ready, "readiness": detail}))
    else:
        ctx.print(f"API {ctx.client.base_url}: {ctx.style.green('alive')}"
                  f" (version {field(alive, 'version', default='?')}), "
                  + (ctx.style.green("ready") if ready else ctx.style.red("not ready")
                     + f": {field(detail, 'reason', 'message', default='Redis does not answer')}"))
    if not ready:
        return EXIT_UNREACHABLE
    return EXIT_OK
