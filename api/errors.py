"""One error envelope for every failure: `{code, message, errors?}`."""

from __future__ import annotations

import logging
import os
from typing import Any

from flask import Flask, Response, g, jsonify
from werkzeug.exceptions import HTTPException

from orchestrator.operations import OperationRefused
from orchestrator.settings import VARIABLES
from orchestrator.store import (
    IllegalTransition,
    LimitReached,
    NotReplicated,
    StoreUnavailable,
    TaskExists,
    TaskNotFound,
)

log = logging.getLogger("orchestrator.api")


class ApiError(Exception):
    """An error that knows its HTTP status and its envelope."""

    status = 400
    code = "bad_request"
    headers: dict[str, str] = {}

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.message = message
        if headers is not None:
            self.headers = headers
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        self.errors = errors


def envelope(status: int, code: str, message: str, errors: dict[str, Any] | None = None) -> Response:
    body: dict[str, Any] = {"code": code, "message": message}
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    return response


def request_id() -> str:
    """The id of the current request (also in its log line)."""
    rid = g.get("request_id")
    if rid is None:
        rid = g.request_id = os.urandom(8).hex()  # 16 hex characters, as a uuid4's first 16
    return rid


# The field a full cap is reported on: the service of a submission, the task of a context.
_LIMIT_FIELDS = {"max_tasks_per_service": "service_name", "max_contexts_per_task": "task_id"}


def limit_errors(exc: LimitReached) -> dict[str, list[str]]:
    """The field-level errors of a full cap, naming the variable that sets it."""
    variable = next((v.env for v in VARIABLES if v.attr == exc.setting), exc.setting)
    return {_LIMIT_FIELDS.get(exc.setting, "_schema"): [f"{exc} ({variable}={exc.limit})"]}


def register_error_handlers(app: Flask) -> None:
    """Render every error as the envelope; never a stack trace or a secret."""

    @app.errorhandler(ApiError)
    def _api_error(exc: ApiError) -> Response:
        response = envelope(exc.status, exc.code, exc.message, exc.errors)
        response.headers.update(exc.headers)
        return response

    @app.errorhandler(TaskNotFound)
    def _not_found(exc: TaskNotFound) -> Response:
        return envelope(404, "task_not_found", str(exc))

    @app.errorhandler(TaskExists)
    def _exists(exc: TaskExists) -> Response:
        return envelope(409, "task_exists", f"{exc}; submit it with another id, or send new context to it")

    @app.errorhandler(LimitReached)
    def _limit(exc: LimitReached) -> Response:
        return envelope(409, "limit_reached", f"{exc}; see errors", limit_errors(exc))

    @app.errorhandler(OperationRefused)
    @app.errorhandler(IllegalTransition)
    def _refused(exc: Exception) -> Response:
        return envelope(409, "conflict", str(exc))

    @app.errorhandler(StoreUnavailable)
    def _unavailable(exc: StoreUnavailable) -> Response:
        response = envelope(503, "unavailable", "the task store is unavailable; nothing was changed, retry shortly")
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(NotReplicated)
    def _not_replicated(exc: NotReplicated) -> Response:
        # Not a 202: a failover now could lose the write. It stays on the master, so
        # the retry is deduplicated (the same Idempotency-Key replays the answer, a
        # delivery id already claimed is answered as a duplicate).
        response = envelope(
            503,
            "unavailable",
            "stored, but not yet confirmed by a Redis replica; retry shortly (a retry is deduplicated)",
        )
        response.headers["Retry-After"] = "5"
        return response

    @app.errorhandler(HTTPException)
    def _http(exc: HTTPException) -> Response:
        code = (exc.name or "error").lower().replace(" ", "_")
        response = envelope(exc.code or 500, code, exc.description or exc.name)
        for name, value in exc.get_headers():  # e.g. Allow on a 405
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        rid = request_id()
        log.exception("unexpected error", extra={"request_id": rid})
        return envelope(500, "internal_error", f"unexpected error; quote request id {rid} when reporting it")
