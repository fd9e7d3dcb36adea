"""What every command needs: settings, output style, the API client; built lazily."""

from __future__ import annotations

import argparse
import os
import sys
from functools import cached_property
from typing import TextIO

from orchestrator.cli import localstate
from orchestrator.cli.client import ApiClient
from orchestrator.cli.output import Style, use_color
from orchestrator.settings import Settings, get_settings


def common_options() -> argparse.ArgumentParser:
    """Options accepted before or after the sub-command (`orchestrator task list --output json`)."""
    parent = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    parent.add_argument("--api-url", help="base URL of the API (default: ORCHESTRATOR_API_URL, else the "
                        "running `orchestrator up`, else http://127.0.0.1:8080)")
    parent.add_argument("--output", "-o", choices=("table", "json"), help="output format (default: table)")
    parent.add_argument("--no-color", action="store_true", help="no colour even on a terminal")
    return parent


class Context:
    """Per-invocation state shared by the commands."""

    def __init__(self, args: argparse.Namespace, *, stdout: TextIO | None = None, stderr: TextIO | None = None):
        self.args = args
        self.stdout = stdout or sys.stdout
        self.stderr = stderr or sys.stderr
        self.output: str = getattr(args, "output", "table")
        no_color = bool(getattr(args, "no_color", False))
        self.style = Style(use_color(self.stdout, no_color))
        self.err_style = Style(use_color(self.stderr, no_color))

    @cached_property
    def settings(self) -> Settings:
        return get_settings()

    @property
    def json(self) -> bool:
        return self.output == "json"

    @property
    def live(self) -> bool:
        """Redraw in place (progress, `task watch`): only for people at a terminal, never for JSON."""
        isatty = getattr(self.stdout, "isatty", None)
        return not self.json and bool(isatty and isatty())

    def api_url(self) -> str:
        """--api-url, else ORCHESTRATOR_API_URL, else the local stack's, else the default."""
        explicit = getattr(self.args, "api_url", None) or os.environ.get("ORCHESTRATOR_API_URL", "").strip()
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

    def print(self, text: str = "", *, end: str = "\n") -> None:
        self.stdout.write(text + end)
        self.stdout.flush()

    def note(self, text: str) -> None:
        """Progress and hints go to stderr, so stdout stays parseable."""
        self.stderr.write(text + "\n")
        self.stderr.flush()

    def fail(self, message: str, details: list[str] | None = None) -> None:
        """One line saying what went wrong and what to do; field details indented below."""
        self.stderr.write(f"{self.err_style.red('orchestrator:')} {message}\n")
        for line in details or []:
            self.stderr.write(f"  {line}\n")
        self.stderr.flush()
