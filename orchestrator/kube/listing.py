"""Streamed answers of the Kubernetes API, read piece by piece: lists item by item, logs and watches line by line.

A list of ten thousand Jobs is never held whole: only the item being parsed
and the unread rest of one chunk are.
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

# What one item of a list answer becomes as it is parsed (the tracker keeps only what it needs).
Transform = Callable[[dict[str, Any]], dict[str, Any]]

_CHUNK = 256 * 1024
_WS = " \t\n\r"


def parse_list(chunks: Iterable[bytes], transform: Transform) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Parse a Kubernetes list answer arriving in `chunks`, one item at a time; (transformed items, metadata).

    Only the item being parsed and the unread rest of one chunk are held, so a
    list of ten thousand objects costs what `transform` keeps of them.
    """
    decoder = json.JSONDecoder()
    utf8 = codecs.getincrementaldecoder("utf-8")()
    source = iter(chunks)
    state: dict[str, Any] = {"buf": "", "pos": 0, "eof": False}

    def more() -> bool:
        if state["eof"]:
            return False
        chunk = next(source, None)
        if chunk is None:
            state["eof"] = True
            state["buf"] = state["buf"][state["pos"] :] + utf8.decode(b"", final=True)
        else:
            state["buf"] = state["buf"][state["pos"] :] + utf8.decode(chunk)
        state["pos"] = 0
        return True

    def skip_ws() -> str:
        while True:
            buf, pos = state["buf"], state["pos"]
            while pos < len(buf) and buf[pos] in _WS:
                pos += 1
            state["pos"] = pos
            if pos < len(buf):
                return buf[pos]
            if not more():
                raise ValueError("the list answer ended early")

    def expect(char: str) -> None:
        if skip_ws() != char:
            raise ValueError(f"the list answer is not JSON: expected {char!r}")
        state["pos"] += 1

    def value() -> Any:
        skip_ws()
        while True:
            try:
                obj, end = decoder.raw_decode(state["buf"], state["pos"])
            except json.JSONDecodeError:
                if not more():
                    raise
                continue
            if end == len(state["buf"]) and not state["eof"] and not isinstance(obj, (dict, list, str)):
                more()  # a number or literal may go on in the next chunk
                continue
            state["pos"] = end
            return obj

    items: list[dict[str, Any]] = []
    metadata: dict[str, Any] = {}
    expect("{")
    if skip_ws() == "}":
        return items, metadata
    while True:
        key = value()
        expect(":")
        if key == "items" and skip_ws() == "[":
            state["pos"] += 1
            if skip_ws() == "]":
                state["pos"] += 1
            else:
                while True:
                    items.append(transform(value()))
                    sep = skip_ws()
                    state["pos"] += 1
                    if sep == "]":
                        break
                    if sep != ",":
                        raise ValueError("the list answer is not JSON: expected ',' or ']'")
        else:
            got = value()
            if key == "metadata" and isinstance(got, dict):
                metadata = got
        sep = skip_ws()
        state["pos"] += 1
        if sep == "}":
            return items, metadata
        if sep != ",":
            raise ValueError("the list answer is not JSON: expected ',' or '}'")


@dataclass(frozen=True)
class Listing:
    """Items of a list call and the resourceVersion to watch from."""

    items: list[dict[str, Any]]
    resource_version: str


def _lines(response: Any) -> Iterator[str]:
    """Lines of a streamed response, decoded as UTF-8."""
    buffer = b""
    for chunk in response.stream(amt=None, decode_content=False):
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            yield line.decode("utf-8", errors="replace")
    if buffer:
        yield buffer.decode("utf-8", errors="replace")
