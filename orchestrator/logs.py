"""JSON log lines for every process, with configured secrets scrubbed from each one.

Scrubbing happens in a filter on the root handler, so a secret that slips into
a message, an argument or a traceback is replaced before anything is written.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterable
from typing import Any

import orjson

REDACTED = "***"

# Attributes every LogRecord has; anything else was passed with `extra=` and is shown.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}

_PLAIN = (str, int, float, bool, type(None))  # shown as they are; anything else as str(value)


def scrubbable(secrets: Iterable[str]) -> list[str]:
    """The secrets worth replacing, longest first (so overlapping ones all go)."""
    return sorted((s for s in secrets if s and len(s) >= 4), key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str], *, ordered: bool = False) -> str:
    """Replace every secret in `text`; `ordered=True` when `secrets` came from `scrubbable`."""
    for secret in secrets if ordered else scrubbable(secrets):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


class SecretFilter(logging.Filter):
    """Renders the message once and removes secrets from it and from the traceback."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self.secrets = scrubbable(secrets)  # once: every log line goes through here

    def _scrub(self, text: str) -> str:
        return scrub(text, self.secrets, ordered=True)

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        record.msg = self._scrub(record.getMessage())
        record.args = ()
        if record.exc_info:
            record.exc_text = self._scrub(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        fields = record.__dict__
        for key in fields.keys() - _STANDARD:  # the `extra` fields: a few of a record's ~25
            value = fields[key]
            if isinstance(value, str):
                fields[key] = self._scrub(value)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message and any `extra` fields."""

    _last: tuple[int, str] = (-1, "")  # (second, its text), replaced as one value: threads share it

    def _time(self, record: logging.LogRecord) -> str:
        second = int(record.created)
        last = self._last
        if last[0] != second:  # formatting the date is a good part of a line's cost: once a second
            last = self._last = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
        return f"{last[1]}.{int(record.msecs):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": self._time(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        fields = record.__dict__
        for key in fields:
            if key not in _STANDARD and not key.startswith("_"):
                value = fields[key]
                entry[key] = value if isinstance(value, _PLAIN) else str(value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        return orjson.dumps(entry, default=str).decode()  # every request writes one: the fast encoder


def configure(level: str = "INFO", secrets: Iterable[str] = (), stream: Any = None) -> logging.Handler:
    """Install one JSON handler on the root logger; returns it (tests attach their own stream)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(SecretFilter(secrets))
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_orchestrator", False):
            root.removeHandler(old)
    handler._orchestrator = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    return handler
