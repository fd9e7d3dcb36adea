"""JSON log lines never carry a configured secret."""

from __future__ import annotations

import io
import json
import logging

from orchestrator.logs import configure, scrub


def test_scrub_replaces_every_secret() -> None:
    assert scrub("token ghp_abc123 and ghp_abc123x", ["ghp_abc123", "ghp_abc123x"]) == "token *** and ***"
    assert scrub("short ab stays", ["ab"]) == "short ab stays"  # too short to scrub meaningfully


def test_json_lines_are_scrubbed_in_message_args_extra_and_traceback() -> None:
    stream = io.StringIO()
    handler = configure("DEBUG", secrets=["s3cr3t-value"], stream=stream)
    log = logging.getLogger("test.logs")
    try:
        log.info("cloning with %s", "s3cr3t-value", extra={"url": "https://x:s3cr3t-value@h/r"})
        try:
            raise RuntimeError("failed: s3cr3t-value")
        except RuntimeError:
            log.exception("boom")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert lines[0]["message"] == "cloning with ***" and lines[0]["url"] == "https://x:***@h/r"
    assert lines[1]["level"] == "ERROR" and "RuntimeError: failed: ***" in lines[1]["exception"]
    assert "s3cr3t-value" not in stream.getvalue()
