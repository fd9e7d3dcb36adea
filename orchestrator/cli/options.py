"""Options and argument types shared by the commands, and the examples block of every help text."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click

from orchestrator import validation
from orchestrator.cli.context import Context
from orchestrator.states import Status

F = TypeVar("F", bound=Callable[..., Any])

OUTPUT_FORMATS = ("table", "json")
# The API's status names; typed in any case, sent as the API spells them.
STATUS = click.Choice([s.value for s in Status], case_sensitive=False)

pass_context = click.make_pass_decorator(Context, ensure=True)


def examples(*lines: str) -> str:
    """The `Examples:` block click prints at the end of a command's --help (`\\b` keeps the lines as they are)."""
    return "\b\nExamples:\n" + "\n".join(f"  {line}" for line in lines)


def _set(field: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def remember(ctx: click.Context, _param: click.Parameter, value: Any) -> None:
        # Only a value actually given: a default on the sub-command must not undo the group's option.
        if value is not None and value is not False:
            setattr(ctx.ensure_object(Context), field, value)

    return remember


def common_options(func: F) -> F:
    """--api-url, --output/-o and --no-color, accepted before or after the sub-command."""
    decorators = (
        click.option(
            "--api-url",
            metavar="URL",
            expose_value=False,
            callback=_set("api_url_option"),
            help="Base URL of the API (default: ORCHESTRATOR_API_URL, else the running `orchestrator "
            "up`, else http://127.0.0.1:8080).",
        ),
        click.option(
            "--output",
            "-o",
            type=click.Choice(OUTPUT_FORMATS, case_sensitive=False),
            expose_value=False,
            callback=_set("output"),
            help="Output format (default: table).",
        ),
        click.option(
            "--no-color",
            is_flag=True,
            default=False,
            expose_value=False,
            callback=_set("no_color"),
            help="No colour even on a terminal (NO_COLOR does the same).",
        ),
    )
    for decorate in reversed(decorators):
        func = decorate(func)
    return func


class TaskRef(click.ParamType):
    """`SERVICE/ID` -> (service, id)."""

    name = "SERVICE/ID"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> tuple[str, int]:
        if isinstance(value, tuple):
            return value
        service, sep, raw_id = str(value).strip().partition("/")
        if not sep or not raw_id.isdigit() or int(raw_id) < 1:
            self.fail(f"{value!r} is not a task reference; write SERVICE/ID, e.g. demo/1", param, ctx)
        try:
            validation.service_name(service)
        except ValueError as exc:
            self.fail(f"{value!r}: {exc}", param, ctx)
        return service, int(raw_id)


TASK_REF = TaskRef()


def task_ref_argument(func: F) -> F:
    return click.argument("ref", metavar="SERVICE/ID", type=TASK_REF)(func)
