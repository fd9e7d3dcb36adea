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


def test_the_time_of_each_line_is_its_own_even_when_seconds_repeat() -> None:
    import json
    import logging

    from orchestrator.logs import JsonFormatter

    formatter = JsonFormatter()
    times = []
    for created in (1700000000.25, 1700000000.5, 1700000001.125, 1700000000.75):
        record = logging.LogRecord("t", logging.INFO, __file__, 1, "m", (), None)
        record.created, record.msecs = created, (created - int(created)) * 1000
        times.append(json.loads(formatter.format(record))["time"])
    assert times == ["2023-11-14T22:13:20.250Z", "2023-11-14T22:13:20.500Z",
                     "2023-11-14T22:13:21.125Z", "2023-11-14T22:13:20.750Z"]
