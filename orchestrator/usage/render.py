"""Claude Code's stream-json as a conversation a person reads: text, one line per tool call, the result.

Lines that are not stream-json (stderr, other agents) pass through as they
are; stream-json objects nobody needs to read (tool results that succeeded,
partial message deltas) are dropped.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from orchestrator.usage.stream import tool_summary

TEXT_MAX = 20_000
_QUIET = frozenset(
    {
        "user",
        "stream_event",
        "content_block_delta",
        "content_block_start",
        "content_block_stop",
        "message_start",
        "message_delta",
        "message_stop",
        "control_request",
        "control_response",
    }
)


def _money(value: Any) -> str:
    return f"${float(value):.4f}" if isinstance(value, (int, float)) else "$?"


def _result_line(event: Mapping[str, Any]) -> str:
    usage = event.get("usage") if isinstance(event.get("usage"), Mapping) else {}
    ok = event.get("subtype") == "success" and not event.get("is_error") and not event.get("permission_denials")
    facts = [str(event.get("subtype") or "result")]
    if event.get("num_turns") is not None:
        facts.append(f"{event.get('num_turns')} turns")
    facts.append(_money(event.get("total_cost_usd")))
    if usage:
        facts.append(
            f"{usage.get('input_tokens', 0)} in / {usage.get('output_tokens', 0)} out tokens"
            f" ({usage.get('cache_read_input_tokens', 0)} cache read)"
        )
    if event.get("api_error_status"):
        facts.append(f"API error {event['api_error_status']}")
    head = ("✔ " if ok else "✘ ") + " · ".join(facts)
    lines = [head]
    for denial in (event.get("permission_denials") or [])[:10]:
        if isinstance(denial, Mapping):
            name = str(denial.get("tool_name") or "?")
            lines.append(f"  permission denied: {name}({tool_summary(name, denial.get('tool_input'))})")
    text = event.get("result")
    if isinstance(text, str) and text.strip():
        lines.append(text.strip()[:TEXT_MAX])
    return "\n".join(lines)


def render_event(event: Mapping[str, Any]) -> str | None:
    """The readable text of one stream-json object; None when it shows nothing."""
    kind = event.get("type")
    if kind == "system":
        if event.get("subtype") != "init":
            return None
        tools = event.get("tools")
        tools = tools if isinstance(tools, list) else []
        return f"● session {event.get('session_id', '?')} · model {event.get('model', '?')} · {len(tools)} tools"
    if kind == "assistant":
        message = event.get("message") or {}
        out = []
        for block in message.get("content") or ():
            if not isinstance(block, Mapping):
                continue
            if block.get("type") == "text" and str(block.get("text") or "").strip():
                out.append(str(block["text"]).strip()[:TEXT_MAX])
            elif block.get("type") == "tool_use":
                name = str(block.get("name") or "?")
                detail = tool_summary(name, block.get("input"))
                out.append(f"→ {name}: {detail}" if detail else f"→ {name}")
        return "\n".join(out) or None
    if kind == "user":
        message = event.get("message") or {}
        content = message.get("content") if isinstance(message, Mapping) else None
        out = []
        for block in content if isinstance(content, list) else ():
            if isinstance(block, Mapping) and block.get("type") == "tool_result" and block.get("is_error"):
                body = block.get("content")
                if isinstance(body, list):
                    body = " ".join(str(b.get("text", "")) for b in body if isinstance(b, Mapping))
                first = " ".join(str(body or "").split())[:200]
                out.append(f"  ✗ {first}")
        return "\n".join(out) or None
    if kind == "rate_limit_event":
        info = event.get("rate_limit_info") or {}
        status = info.get("status") if isinstance(info, Mapping) else None
        if status in (None, "allowed"):
            return None
        resets = info.get("resetsAt")
        when = ""
        if isinstance(resets, (int, float)):
            when = " until " + datetime.fromtimestamp(resets, UTC).strftime("%Y-%m-%d %H:%M UTC")
        return f"⏸ model rate limit {status}{when}"
    if kind == "result":
        return _result_line(event)
    if kind in _QUIET:
        return None
    return None


def render_line(line: str) -> str | None:
    """One output line as text: stream-json rendered, anything else as it was."""
    stripped = line.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        try:
            event = json.loads(stripped)
        except (ValueError, RecursionError):
            return line.rstrip("\n")
        if isinstance(event, dict) and isinstance(event.get("type"), str):
            try:
                return render_event(event)
            except Exception:
                return line.rstrip("\n")
    return line.rstrip("\n")


def render_lines(lines: Iterable[str]) -> Generator[str, None, None]:
    """The conversation of a run's output, one piece of text per shown line (no trailing newlines)."""
    for line in lines:
        text = render_line(line)
        if text is not None:
            yield text


class Rendered:
    """`render_lines` over a runner's lines that passes on `close()` and `abort()`.

    The API's reader of a followed log stops a silent run's read with
    `abort()` (orchestrator.runners.base.Lines); a plain generator would hide it.
    """

    def __init__(self, lines: Iterable[str]) -> None:
        self.lines = lines
        self._shown = render_lines(lines)

    def __iter__(self) -> Rendered:
        return self

    def __next__(self) -> str:
        return next(self._shown)

    def close(self) -> None:
        self._shown.close()
        close = getattr(self.lines, "close", None)
        if close is not None:
            close()

    def abort(self) -> None:
        abort = getattr(self.lines, "abort", None)
        if abort is not None:
            abort()
