"""An incremental reader of Claude Code's `--output-format stream-json` output.

One NDJSON object per line: `system`/`init`, `assistant` and `user` messages,
`rate_limit_event`s and one final `result`. The reader keeps only counters
and the last values it needs (constant memory whatever the log's size), skips
lines that are not JSON objects (stderr, a line cut by a crash, another
agent's plain text), and never raises on what it is fed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

TOKEN_KINDS = ("input_tokens", "output_tokens", "cache_read_input_tokens", "cache_creation_input_tokens")
# modelUsage's camelCase names -> ours.
_MODEL_USAGE_NAMES = {
    "inputTokens": "input_tokens",
    "outputTokens": "output_tokens",
    "cacheReadInputTokens": "cache_read_input_tokens",
    "cacheCreationInputTokens": "cache_creation_input_tokens",
    "costUSD": "cost_usd",
}
RESULT_TEXT_MAX = 2000
_USER_PREFIX = '{"type":"user"'
DENIALS_KEPT = 10
RATE_LIMIT_STATUSES = (429, 529)  # too many requests; overloaded
RATE_LIMIT_FALLBACK_SECONDS = 300.0  # a 429 that said not when it ends


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _float(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number == number and abs(number) != float("inf") else None


def tool_summary(name: str, tool_input: Any, width: int = 120) -> str:
    """`Bash(ls -la)`-style words for a tool call: its command, path or pattern, shortened."""
    detail = ""
    if isinstance(tool_input, Mapping):
        for key in ("command", "file_path", "path", "pattern", "url", "query", "description", "prompt"):
            value = tool_input.get(key)
            if isinstance(value, str) and value.strip():
                detail = value
                break
        else:
            for value in tool_input.values():
                if isinstance(value, (str, int, float)) and str(value).strip():
                    detail = str(value)
                    break
    elif isinstance(tool_input, str):
        detail = tool_input
    detail = " ".join(detail.split())
    if len(detail) > width:
        detail = detail[: width - 1] + "…"
    return detail


@dataclass
class Verdict:
    """What the stream says about how the run ended, beyond its exit code."""

    failed: bool = False
    reason: str = ""
    rate_limited_until: float | None = None  # a model rate limit: wait, do not fail
    cut: bool = False  # the stream began but has no result: the process's own end tells more


class StreamParser:
    """Feed it lines (str or bytes); ask `usage()` and `verdict()` at any time."""

    def __init__(self) -> None:
        self.lines = 0
        self.events = 0  # lines that were stream-json objects
        self.session_id = ""
        self.model = ""
        self.tools: list[str] = []
        self.assistant_messages = 0
        self.tool_uses = 0
        self.tool_counts: dict[str, int] = {}
        self._last_message_id: str | None = None
        self._last_message_usage: dict[str, int] = {}
        self._streamed_tokens = dict.fromkeys(TOKEN_KINDS, 0)  # from assistant messages, for a cut stream
        self.rate_limit: dict[str, Any] | None = None
        self.result: dict[str, Any] | None = None
        self.result_count = 0

    # Input --------------------------------------------------------------------

    def feed(self, line: str | bytes) -> None:
        """One line of output; anything that is not a stream-json object is counted and skipped."""
        self.lines += 1
        if isinstance(line, bytes):
            line = line.decode("utf-8", errors="replace")
        line = line.strip()
        if not line.startswith("{") or not line.endswith("}"):
            return
        if line.startswith(_USER_PREFIX):
            # Tool results: most of a log's bytes, nothing usage needs (Claude Code writes `type` first).
            self.events += 1
            return
        try:
            event = json.loads(line)
        except (ValueError, RecursionError):
            return
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            return
        try:
            self._event(event)
        except Exception:  # a shape we did not expect must not lose the rest of the stream
            return

    def feed_all(self, lines: Iterable[str | bytes]) -> StreamParser:
        for line in lines:
            self.feed(line)
        return self

    def _event(self, event: dict[str, Any]) -> None:
        kind = event["type"]
        if kind == "system":
            self.events += 1
            if event.get("subtype") == "init":
                self.session_id = str(event.get("session_id") or self.session_id)
                self.model = str(event.get("model") or self.model)
                tools = event.get("tools")
                if isinstance(tools, list):
                    self.tools = [str(t) for t in tools[:200]]
        elif kind == "assistant":
            self.events += 1
            self._assistant(event.get("message") or {})
        elif kind == "user":
            self.events += 1
        elif kind == "rate_limit_event":
            self.events += 1
            info = event.get("rate_limit_info") or {}
            if isinstance(info, Mapping):
                self.rate_limit = {
                    "status": str(info.get("status") or ""),
                    "resets_at": _float(info.get("resetsAt", info.get("resets_at"))),
                    "type": str(info.get("rateLimitType") or ""),
                }
        elif kind == "result":
            self.events += 1
            self.result_count += 1
            self._result(event)

    def _assistant(self, message: Mapping[str, Any]) -> None:
        if not isinstance(message, Mapping):
            return
        if message.get("model") and not self.model:
            self.model = str(message["model"])
        # One API message may come as several lines (one per content block), each
        # repeating its usage: count a message, and its tokens, once.
        message_id = message.get("id")
        usage = message.get("usage")
        if message_id is None or message_id != self._last_message_id:
            self.assistant_messages += 1
            self._last_message_id = message_id
            self._last_message_usage = {}
        if isinstance(usage, Mapping):
            for kind in TOKEN_KINDS:
                value = _int(usage.get(kind))
                before = self._last_message_usage.get(kind, 0)
                if value > before:
                    self._streamed_tokens[kind] += value - before
                    self._last_message_usage[kind] = value
        for block in message.get("content") or ():
            if isinstance(block, Mapping) and block.get("type") == "tool_use":
                self.tool_uses += 1
                name = str(block.get("name") or "?")[:100]
                if name in self.tool_counts or len(self.tool_counts) < 100:
                    self.tool_counts[name] = self.tool_counts.get(name, 0) + 1

    def _result(self, event: dict[str, Any]) -> None:
        raw_usage = event.get("usage")
        usage: Mapping[str, Any] = raw_usage if isinstance(raw_usage, Mapping) else {}
        models: dict[str, dict[str, Any]] = {}
        model_usage = event.get("modelUsage")
        if isinstance(model_usage, Mapping):
            for name, numbers in list(model_usage.items())[:20]:
                if not isinstance(numbers, Mapping):
                    continue
                entry: dict[str, Any] = {}
                for theirs, ours in _MODEL_USAGE_NAMES.items():
                    value = numbers.get(theirs, numbers.get(ours))
                    entry[ours] = _float(value) if ours == "cost_usd" else _int(value)
                models[str(name)] = entry
        denials = []
        for denial in (event.get("permission_denials") or [])[:DENIALS_KEPT]:
            if isinstance(denial, Mapping):
                name = str(denial.get("tool_name") or "?")
                denials.append(f"{name}({tool_summary(name, denial.get('tool_input'), 200)})")
            else:
                denials.append(str(denial)[:200])
        text = event.get("result")
        if not isinstance(text, str):
            errors = event.get("errors")
            text = "; ".join(str(e) for e in errors[:5]) if isinstance(errors, list) else ""
        status = event.get("api_error_status")
        self.result = {
            "subtype": str(event.get("subtype") or ""),
            "is_error": bool(event.get("is_error")),
            "num_turns": _int(event.get("num_turns")),
            "duration_ms": _int(event.get("duration_ms")),
            "duration_api_ms": _int(event.get("duration_api_ms")),
            "cost_usd": _float(event.get("total_cost_usd")),
            "tokens": {kind: _int(usage.get(kind)) for kind in TOKEN_KINDS},
            "models": models,
            "permission_denials": denials,
            "permission_denial_count": len(event.get("permission_denials") or []),
            "api_error_status": _int(status) if status not in (None, "", 0) else None,
            "session_id": str(event.get("session_id") or ""),
            "result": text[:RESULT_TEXT_MAX],
        }

    # Output -------------------------------------------------------------------

    @property
    def seen_stream(self) -> bool:
        """True when the output held any stream-json at all (else usage is unknown)."""
        return self.events > 0

    def usage(self) -> dict[str, Any] | None:
        """The run's usage record (the API's `usage`), or None when the agent printed no stream-json."""
        if not self.seen_stream:
            return None
        result = self.result
        if result is not None:
            tokens = result["tokens"]
            if not any(tokens.values()) and result["models"]:
                tokens = {k: sum(m.get(k, 0) for m in result["models"].values()) for k in TOKEN_KINDS}
            models = result["models"]
        else:
            tokens = dict(self._streamed_tokens)
            models = {}
        record: dict[str, Any] = {
            **tokens,
            "cost_usd": result["cost_usd"] if result else None,
            "num_turns": (result["num_turns"] or self.assistant_messages) if result else self.assistant_messages,
            "session_id": (result["session_id"] if result else "") or self.session_id,
            "model": self.model or (next(iter(models)) if models else ""),
            "models": models,
            "tool_uses": self.tool_uses,
            "tools": dict(sorted(self.tool_counts.items(), key=lambda kv: -kv[1])[:20]),
            "complete": result is not None,
        }
        if result is not None:
            for key in (
                "subtype",
                "is_error",
                "duration_ms",
                "duration_api_ms",
                "permission_denials",
                "api_error_status",
                "result",
            ):
                record[key] = result[key]
        if self.rate_limit is not None:
            record["rate_limit"] = dict(self.rate_limit)
        return record

    def verdict(self, *, now: float | None = None) -> Verdict:
        """Whether the stream reports a failure (or a model rate limit) that an exit code of 0 hides."""
        now = time.time() if now is None else now
        limit = self.rate_limit or {}
        rejected = limit.get("status") == "rejected"
        result = self.result
        if result is None:
            if rejected:
                return Verdict(
                    True,
                    "model rate limit",
                    rate_limited_until=limit.get("resets_at") or now + RATE_LIMIT_FALLBACK_SECONDS,
                )
            if self.seen_stream:
                return Verdict(True, "the agent's output ended without a result (it stopped mid-stream)", cut=True)
            return Verdict()
        status = result["api_error_status"]
        if status in RATE_LIMIT_STATUSES or (rejected and (result["is_error"] or status)):
            until = limit.get("resets_at") if rejected else None
            return Verdict(True, "model rate limit", rate_limited_until=until or now + RATE_LIMIT_FALLBACK_SECONDS)
        subtype = result["subtype"]
        text = " ".join(result["result"].split())[:300]
        if subtype == "error_max_turns":
            return Verdict(True, f"max_turns: stopped after {result['num_turns']} turns")
        if subtype == "error_max_budget_usd":
            cost = result["cost_usd"]
            return Verdict(
                True,
                "budget: the run's cost limit was reached" + (f" ({cost:.4f} USD spent)" if cost is not None else ""),
            )
        if result["permission_denials"]:
            more = result["permission_denial_count"] - 1
            return Verdict(
                True,
                "permission denied: " + result["permission_denials"][0] + (f" (and {more} more)" if more > 0 else ""),
            )
        if status:
            return Verdict(True, f"model API error {status}" + (f": {text}" if text else ""))
        if result["is_error"]:
            return Verdict(True, "agent reported an error" + (f": {text}" if text else ""))
        if subtype and subtype != "success":
            return Verdict(True, subtype + (f": {text}" if text else ""))
        return Verdict()


def parse_lines(lines: Iterable[str | bytes]) -> StreamParser:
    """A parser fed every line of `lines` (read lazily, one at a time)."""
    return StreamParser().feed_all(lines)
