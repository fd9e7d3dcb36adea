"""Output helpers: colour only on a terminal, tables aligned despite colour codes, timestamps."""

from __future__ import annotations

import io

import pytest

from orchestrator.cli.output import ANSI, Style, table, use_color, when


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_colour_only_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert use_color(Tty()) and not use_color(io.StringIO())
    assert not use_color(Tty(), no_color=True)
    monkeypatch.setenv("NO_COLOR", "1")
    assert not use_color(Tty())


def test_table_ignores_colour_codes_when_aligning() -> None:
    style = Style(True)
    text = table(["A", "B"], [[style.status("Succeeded"), "x"], ["Failed", "y"]], Style(False))
    lines = [ANSI.sub("", line) for line in text.splitlines()]
    assert lines[1].index("x") == lines[2].index("y") == len("Succeeded") + 2
    assert Style(False).status("Failed") == "Failed" and style.status("Failed") == "\x1b[31mFailed\x1b[0m"


def test_when_accepts_epoch_and_iso() -> None:
    assert when(None) == "" and when("not a time") == "not a time"
    assert when(0) == when("1970-01-01T00:00:00+00:00")
