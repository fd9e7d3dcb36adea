"""The access log line of a streamed answer is written without reading the stream."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
from flask import Response

from api.app import create_app
from orchestrator.settings import Settings


def test_a_streamed_body_is_not_read_to_log_its_length(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="orchestrator.api.access")  # as under gunicorn
    app = create_app(settings)
    produced: list[int] = []

    def body() -> Iterator[str]:
        for i in range(3):
            produced.append(i)
            yield f"line {i}\n"

    @app.get("/stream-under-test")
    def stream() -> Response:
        return Response(body(), mimetype="text/plain")

    response = app.test_client().get("/stream-under-test", buffered=False)
    # Werkzeug's test client takes one chunk to see the response start; reading the
    # whole body first (to log its length) would have made all three.
    assert produced == [0]
    assert b"".join(response.response) == b"line 0\nline 1\nline 2\n"
    response.close()
    [line] = [r for r in caplog.records if r.name == "orchestrator.api.access"]
    assert line.status == 200 and line.length == 21  # type: ignore[attr-defined]  # written when the stream ended
