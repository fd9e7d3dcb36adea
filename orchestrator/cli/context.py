"""What every command needs: its options, settings, consoles, the API client; built lazily."""

from __future__ import annotations

import os
import sys
from functools import cached_property
from typing import TextIO

from rich.console import Console, RenderableType
from rich.text import Text

from orchestrator.cli import localstate
from orchestrator.cli.client import ApiClient
from orchestrator.cli.output import make_console, print_block
from orchestrator.settings import Settings, get_settings


class Context:
    """Per-invocation state shared by the commands (click's `ctx.obj`).

    The common options may be given before or after the sub-command; whichever
    is parsed last wins, so each one is a field here rather than a parameter.
    """

    def __init__(self) -> None:
        self.api_url_option: str | None = None
        self.output = "table"
        self.no_color = False

    # Streams are looked up when first used, so a test runner's replacements are the ones written to.
    @cached_property
    def stdout(self) -> TextIO:
        return sys.stdout

    @cached_property
    def stderr(self) -> TextIO:
        return sys.stderr

    @cached_property
    def out(self) -> Console:
        return make_console(self.stdout, no_color=self.no_color)

    @cached_property
    def err(self) -> Console:
        return make_console(self.stderr, no_color=self.no_color)

    @cached_property
    def settings(self) -> Settings:
        return get_settings()

    @property
    def json(self) -> bool:
        return self.output == "json"

    @property
    def live(self) -> bool:
        """Redraw in place (progress, `task watch`): only for people at a terminal, never for JSON."""
        return not self.json and self.out.is_terminal

    def api_url(self) -> str:
        """--api-url, else ORCHESTRATOR_API_URL, else the local stack's, else the default."""
        explicit = self.api_url_option or os.environ.get("ORCHESTRATOR_API_URL", "").strip()
        if explicit:
            return explicit
        running = localstate.running_stack(self.settings.data_dir)
        if running and running.get("api_url"):
            return str(running["api_url"])
        return self.settings.api_url

    def api_token(self, api_url: str) -> str:
        """ORCHESTRATOR_API_TOKEN, else the token of the local stack when talking to it."""
        if self.settings.api_token:
            return self.settings.api_token
        running = localstate.running_stack(self.settings.data_dir)
        if running and str(running.get("api_url", "")).rstrip("/") == api_url.rstrip("/"):
            # The stack's generated token, or the first configured one it was given.
            return localstate.read_token(self.settings.data_dir) or next(iter(self.settings.api_tokens), "")
        return ""

    @cached_property
    def client(self) -> ApiClient:
        url = self.api_url()
        return ApiClient(url, self.api_token(url))

    def print(self, text: str | Text = "") -> None:
        """One line on stdout; plain strings are written as they are (JSON stays byte-exact)."""
        if isinstance(text, Text):
            self.out.print(text)
        else:
            self.stdout.write(text + "\n")
            self.stdout.flush()

    def show(self, renderable: RenderableType) -> None:
        """A table or view, fitted to the terminal's width."""
        print_block(self.out, renderable)

    def note(self, text: str | Text) -> None:
        """Progress and hints go to stderr, so stdout stays parseable."""
        if isinstance(text, Text):
            self.err.print(text)
        else:
            self.stderr.write(text + "\n")
            self.stderr.flush()

    def fail(self, message: str, details: list[str] | None = None) -> None:
        """One line saying what went wrong and what to do; field details indented below."""
        print_error(self.err, message, details)


def print_error(console: Console, message: str, details: list[str] | None = None) -> None:
    console.print(Text.assemble(("orchestrator:", "red"), f" {message}"))
    for line in details or []:
        console.print(Text(f"  {line}"))
