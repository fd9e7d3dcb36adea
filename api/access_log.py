"""One log line per request, with its request id (JSON through orchestrator.logs.JsonFormatter)."""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

from flask import Flask, Response, g, request

from api.errors import request_id

access_log = logging.getLogger("orchestrator.api.access")

# A caller's X-Request-Id is kept only when it is short and plain (it reaches logs).
REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")

# Metric labels take the method from this set and "other" for anything else:
# gunicorn accepts any token as a method, and each new label value is a new series.
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def init_access_log(app: Flask) -> None:
    """Give every request an id, then log it and count it when it ends."""

    # Runs twice per request: the request and g proxies are resolved once each.
    @app.before_request
    def _start() -> None:
        ctx_g = g._get_current_object()
        ctx_g.started = time.perf_counter()
        incoming = request.environ.get("HTTP_X_REQUEST_ID")
        if incoming and REQUEST_ID.match(incoming):
            ctx_g.request_id = incoming

    @app.after_request
    def _finish(response: Response) -> Response:
        req = request._get_current_object()  # type: ignore[attr-defined]
        rid = request_id()
        response.headers["X-Request-Id"] = rid
        seconds = time.perf_counter() - g.get("started", time.perf_counter())
        route = req.url_rule.rule if req.url_rule is not None else "unmatched"
        metrics = app.extensions.get("orchestrator_metrics")
        if metrics is not None:
            method = req.method
            metrics.observe(route, method if method in _METHODS else "other", response.status_code, seconds)
        if access_log.isEnabledFor(logging.INFO):
            line = {
                "request_id": rid,
                "method": req.method,
                "path": req.path,  # never the query string: it may carry anything
                "route": route,
                "status": response.status_code,
                "duration_ms": round(seconds * 1000, 2),
                "remote": req.remote_addr,
            }
            if response.is_streamed:
                # Measuring a stream's length here would drain it before its first byte
                # is sent (a followed log would print nothing until the run ended): the
                # line is written when the stream ends, with what it sent and how long it took.
                _log_when_streamed(response, line, g.get("started", time.perf_counter()))
            else:
                access_log.info("request", extra={**line, "length": response.calculate_content_length()})
        return response


class _Counted:
    """A response body passed through unchanged, counting its bytes."""

    def __init__(self, body: Iterable[Any]) -> None:
        self.body = body
        self.sent = 0

    def __iter__(self) -> Iterator[Any]:
        for chunk in self.body:
            self.sent += len(chunk.encode() if isinstance(chunk, str) else chunk)
            yield chunk

    def close(self) -> None:
        close = getattr(self.body, "close", None)
        if close is not None:
            close()


def _log_when_streamed(response: Response, line: dict[str, Any], started: float) -> None:
    counted = _Counted(response.response)
    response.response = counted

    def _done() -> None:
        access_log.info(
            "request",
            extra={**line, "duration_ms": round((time.perf_counter() - started) * 1000, 2), "length": counted.sent},
        )

    response.call_on_close(_done)
