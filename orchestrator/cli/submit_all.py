"""`task submit --all`: every task of a Task Master file in dependency order, with a progress display.

Tasks already submitted are skipped, so running it again after an error finishes the rest.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.text import Text

from orchestrator import taskmaster
from orchestrator.cli.context import Context
from orchestrator.cli.errors import EXIT_OK, Conflict
from orchestrator.cli.output import (
    dumps,
    status_text,
)

FILE = click.Path(dir_okay=False, path_type=Path)  # existence is checked by taskmaster, with a better message


def submit_all(app: Context, service: str, tasks: list[dict[str, Any]], inputs: dict[str, Any]) -> int:
    # Imported here: rich.progress alone adds a twentieth of a second to every command's start.
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    ordered = taskmaster.dependency_order(tasks)
    total = len(ordered)
    results: list[dict[str, Any]] = []
    # A bar only for a person at a terminal; the per-task lines are printed either way.
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=app.out,
        disable=not app.live,
    )
    with progress:
        bar = progress.add_task("submitting", total=total)
        for index, task in enumerate(ordered, start=1):
            ref = f"{service}/{task['id']}"
            progress.update(bar, description=f"submitting {ref}")
            body = taskmaster.build_submission(task, **inputs)
            try:
                answer, url = app.client.submit(body)
                result = {
                    "id": body["id"],
                    "result": "submitted",
                    "status": answer.get("status", "Pending"),
                    "url": url,
                }
            except Conflict as exc:
                # Already there (an earlier --all that stopped half way): keep going.
                result = {
                    "id": body["id"],
                    "result": "exists",
                    "status": "",
                    "url": app.client.task_url(service, body["id"]),
                    "message": exc.message,
                }
            except Exception:
                progress.stop()
                report_partial(app, results, total)
                raise
            results.append(result)
            progress.advance(bar)
            if not app.json:
                line = Text(f"[{index}/{total}] {ref}  ")
                line.append_text(
                    status_text(str(result["status"]))
                    if result["result"] == "submitted"
                    else Text("already submitted, skipped", style="dim")
                )
                progress.console.print(line)
        progress.update(bar, description="submitted")
    if app.json:
        app.print(dumps(results))
    else:
        submitted = sum(1 for r in results if r["result"] == "submitted")
        app.note(
            f"{submitted} submitted, {total - submitted} already there; "
            f"list them with: orchestrator task list --service {service}"
        )
    return EXIT_OK


def report_partial(app: Context, results: list[dict[str, Any]], total: int) -> None:
    if results:
        app.note(
            f"stopped after {len(results)} of {total} tasks ("
            + ", ".join(str(r["id"]) for r in results)
            + " done); fix the error and run the same command "
            "again: tasks already submitted are skipped"
        )
