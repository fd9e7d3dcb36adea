"""JSON log lines for every process, with configured secrets scrubbed from each one.

Scrubbing happens in a filter on the root handler, so a secret that slips into
a message, an argument or a traceback is replaced before anything is written.

A secret is masked as it is and in the encodings a program is likely to print
it in: base64 (standard and URL-safe, at each of the three alignments it can
sit at inside a longer encoded string), URL-encoding and hex; and when a line
break splits it in two (wrapped output, base64 at 76 columns). Line streams go
through `scrub_lines`, which sees each line with the next.
"""

from __future__ import annotations

import base64
import functools
import logging
import re
import sys
import time
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import quote, quote_plus

import orjson

REDACTED = "***"

# Attributes every LogRecord has; anything else was passed with `extra=` and is shown.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", (), None))) | {"message", "asctime", "taskName"}

_PLAIN = (str, int, float, bool, type(None))  # shown as they are; anything else as str(value)


# An encoded form (or a split) shorter than this could match ordinary text by chance.
MIN_VARIANT = 8
_LINE_BREAK = re.compile(r"\r?\n")


def _base64_fragments(data: bytes) -> list[str]:
    """What base64 text always contains when `data` is encoded inside a longer string.

    Where `data` starts modulo 3 bytes decides its encoding (three alignments);
    the first and last characters of each are shared with the neighbouring
    bytes, so only the characters that `data` alone decides are kept.
    """
    found = []
    for offset, start in ((0, 0), (1, 2), (2, 3)):
        encoded = base64.b64encode(b"\0" * offset + data).decode()
        total = offset + len(data)
        end = total // 3 * 4 + total % 3  # whole groups, plus the 1 or 2 characters a partial group decides
        fragment = encoded[start:end]
        found += [fragment, fragment.replace("+", "-").replace("/", "_")]
    return found


def secret_variants(secret: str) -> list[str]:
    """`secret` and its common encodings: base64 (three alignments, standard and URL-safe), URL, hex."""
    data = secret.encode()
    variants = {
        quote(secret, safe=""),
        quote_plus(secret, safe=""),
        data.hex(),
        data.hex().upper(),
        *_base64_fragments(data),
    }
    return [secret, *sorted(v for v in variants if v != secret and len(v) >= MIN_VARIANT)]


def scrubbable(secrets: Iterable[str]) -> list[str]:
    """The secrets and their encodings worth replacing, longest first (so overlapping ones all go)."""
    found = {variant for s in secrets if s and len(s) >= 4 for variant in secret_variants(s)}
    return sorted(found, key=len, reverse=True)


@functools.lru_cache(maxsize=512)
def _split_pattern(secret: str) -> re.Pattern[str]:
    """`secret` with line breaks anywhere inside it."""
    return re.compile(r"(?:\r?\n)?".join(re.escape(c) for c in secret))


def _mask_split(match: re.Match[str]) -> str:
    # One mask per line the secret spans: the lines stay where they were.
    return "\n".join(REDACTED for _ in _LINE_BREAK.split(match.group(0)))


def scrub(text: str, secrets: Iterable[str], *, ordered: bool = False) -> str:
    """Replace every secret (and encoding of one) in `text`; `ordered=True` when `secrets` came from
    `scrubbable`."""
    candidates = secrets if ordered else scrubbable(secrets)
    for secret in candidates:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "\n" in text:
        for secret in candidates:
            if len(secret) >= MIN_VARIANT:
                text = _split_pattern(secret).sub(_mask_split, text)
    return text


def scrub_lines(lines: Iterable[str], secrets: Iterable[str]) -> Iterator[str]:
    """Each line scrubbed together with the next (a secret split across two is masked), each ending in a
    newline; a line is given out once the next one came (or the stream ended)."""
    ordered = scrubbable(secrets)
    held: str | None = None
    for line in lines:
        line = line.rstrip("\n")
        if held is None:
            held = line
            continue
        first, _, held = scrub(f"{held}\n{line}", ordered, ordered=True).partition("\n")
        yield first + "\n"
    if held is not None:
        yield scrub(held, ordered, ordered=True) + "\n"


def bounded_excerpt(lines: Iterable[str], secrets: Iterable[str], keep: int, limit: int = 4000) -> str:
    """The last `keep` lines, scrubbed before they are cut (so a cut never leaves part of a secret
    unrecognised), at most `limit` characters, starting at a line boundary when it can.

    What a run record keeps of an agent's output: never the raw output.
    """
    scrubbed = "".join(scrub_lines(lines, secrets)).splitlines()
    text = "\n".join(scrubbed[-keep:])
    if len(text) > limit:
        text = text[-limit:].partition("\n")[2] or text[-limit:]
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
