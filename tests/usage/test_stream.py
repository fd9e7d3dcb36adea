"""The stream-json parser on recorded Claude Code conversations, cut ones and garbage."""

from __future__ import annotations

from pathlib import Path

import pytest

from orchestrator.usage.stream import StreamParser, parse_lines

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "claude_stream"


def parsed(name: str) -> StreamParser:
    with open(FIXTURES / f"{name}.jsonl", "rb") as handle:
        return parse_lines(handle)


def test_a_successful_run_gives_its_usage_per_kind_and_per_model() -> None:
    parser = parsed("success")
    usage = parser.usage()
    assert usage is not None
    assert (usage["input_tokens"], usage["output_tokens"]) == (1204, 2311)
    assert (usage["cache_read_input_tokens"], usage["cache_creation_input_tokens"]) == (81920, 10240)
    assert usage["cost_usd"] == pytest.approx(0.1234567)
    assert usage["num_turns"] == 4 and usage["session_id"] == "8f7a4a2e-3b1c-4d9e-a0f1-5c2b7d9e1a34"
    assert usage["model"] == "claude-sonnet-4-5-20250929"
    assert usage["models"]["claude-haiku-4-5-20251001"] == {
        "input_tokens": 100, "output_tokens": 100, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0,
        "cost_usd": 0.0034}
    assert usage["tool_uses"] == 2 and usage["tools"] == {"Bash": 1, "Edit": 1}
    assert usage["complete"] and usage["subtype"] == "success" and usage["duration_ms"] == 48211
    assert usage["rate_limit"]["status"] == "allowed"
    assert parser.tools[:2] == ["Task", "Bash"]
    assert not parser.verdict().failed


@pytest.mark.parametrize(("name", "reason"), [
    ("is_error", "agent reported an error: API Error: 500"),
    ("max_turns", "max_turns: stopped after 5 turns"),
    ("max_budget", "budget: the run's cost limit was reached (1.5213 USD spent)"),
    ("denied", "permission denied: Bash(rm -rf /workspace/billing/.git)"),
])
def test_a_result_that_reports_an_error_is_a_failure(name: str, reason: str) -> None:
    verdict = parsed(name).verdict()
    assert verdict.failed and verdict.reason.startswith(reason) and verdict.rate_limited_until is None


def test_a_429_with_a_rejected_rate_limit_waits_until_it_resets() -> None:
    parser = parsed("rate_limited")
    verdict = parser.verdict(now=1_800_000_000)
    assert verdict.rate_limited_until == 1893456000
    assert parser.usage()["api_error_status"] == 429


def test_a_429_without_a_reset_time_waits_a_while() -> None:
    parser = StreamParser()
    parser.feed('{"type":"result","subtype":"success","is_error":true,"api_error_status":429,"result":"x"}')
    assert parser.verdict(now=1000).rate_limited_until == 1300


def test_a_stream_cut_by_a_crash_keeps_what_it_said() -> None:
    parser = parsed("crash")
    usage = parser.usage()
    assert usage is not None and not usage["complete"] and usage["cost_usd"] is None
    # Two API messages so far; the first came as two lines and counts once.
    assert usage["num_turns"] == 2
    assert usage["output_tokens"] == 88 + 120 and usage["cache_read_input_tokens"] == 12000 + 14048
    verdict = parser.verdict()
    assert verdict.failed and verdict.cut


def test_output_without_stream_json_has_no_usage_and_no_verdict() -> None:
    parser = parse_lines(["plain text", "", "{not json}", '{"no": "type"}', "[1, 2]", b"\xff\xfe bytes"])
    assert parser.usage() is None and not parser.verdict().failed and parser.lines == 6


def test_garbage_between_events_is_skipped() -> None:
    lines = (FIXTURES / "success.jsonl").read_text().splitlines()
    noisy = []
    for line in lines:
        noisy += [line, "npm WARN something", line[: len(line) // 2], '{"type": 5}', '{"type":"assistant","message":7}']
    usage = parse_lines(noisy).usage()
    assert usage["cost_usd"] == pytest.approx(0.1234567) and usage["complete"]
