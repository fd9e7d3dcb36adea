"""The conversation as text: assistant text, one line per tool call, the result; other lines as they were."""

from __future__ import annotations

from pathlib import Path

from orchestrator.usage.render import render_lines

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "claude_stream"


def test_a_conversation_reads_as_text() -> None:
    text = "\n".join(render_lines((FIXTURES / "success.jsonl").read_text().splitlines())).splitlines()
    assert text[0].startswith("● session 8f7a4a2e") and "claude-sonnet-4-5" in text[0]
    assert "I'll look at the repository first." in text
    assert "→ Bash: ls -la" in text and "→ Edit: /workspace/billing/app.py" in text
    assert text[-2].startswith("✔ success · 4 turns · $0.1235")
    assert text[-1] == "Added the endpoint and its tests."
    assert not any(line.lstrip().startswith("{") for line in text)


def test_denials_errors_and_rate_limits_are_shown() -> None:
    denied = "\n".join(render_lines((FIXTURES / "denied.jsonl").read_text().splitlines()))
    assert "✗ Claude requested permissions to use Bash" in denied
    assert "permission denied: Bash(rm -rf /workspace/billing/.git)" in denied and "✘ success" in denied
    limited = "\n".join(render_lines((FIXTURES / "rate_limited.jsonl").read_text().splitlines()))
    assert "⏸ model rate limit rejected until 2030-01-01 00:00 UTC" in limited and "API error 429" in limited


def test_lines_that_are_not_stream_json_pass_through() -> None:
    lines = ["example agent: run r1", "{cut in the midd", '{"type":"stream_event","event":{}}', "[1]"]
    assert list(render_lines(lines)) == ["example agent: run r1", "{cut in the midd", "[1]"]


def test_rendered_lines_pass_on_abort_and_close() -> None:
    from orchestrator.runners.base import Lines
    from orchestrator.usage.render import Rendered

    calls: list[str] = []

    def source():
        try:
            yield '{"type":"assistant","message":{"content":[{"type":"text","text":"hi"}]}}'
            yield "more"
        finally:
            calls.append("closed")

    shown = Rendered(Lines(source(), lambda: calls.append("aborted")))
    assert next(shown) == "hi"
    shown.abort()
    shown.close()
    assert calls == ["aborted", "closed"]
