"""The HTTP client of the PM API; turns every failure into a CliError a person can act on."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import requests

from orchestrator.cli.errors import (
    AuthError,
    CliError,
    Conflict,
    InvalidRequest,
    NotFound,
    ServerError,
    Unreachable,
    UsageError,
)

TASKS_PATH = "/api/v1/pm/tasks"


class TimedOut(Unreachable):
    """No answer in time: the request may or may not have been handled."""


def flatten_errors(errors: Any, prefix: str = "") -> list[str]:
    """Marshmallow's nested `{field: [messages]}` as `field.sub: message` lines."""
    lines: list[str] = []
    if isinstance(errors, Mapping):
        for key, value in errors.items():
            lines += flatten_errors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(errors, list):
        if all(isinstance(item, str) for item in errors):
            lines += [f"{prefix}: {item}" if prefix else item for item in errors]
        else:
            for item in errors:
                lines += flatten_errors(item, prefix)
    elif errors not in (None, ""):
        lines.append(f"{prefix}: {errors}" if prefix else str(errors))
    return lines


class ApiClient:
    """Calls the PM API at `base_url` with a bearer token."""

    def __init__(
        self, base_url: str, token: str = "", *, timeout: float = 10.0, session: requests.Session | None = None
    ):
        parts = urlsplit(base_url.strip())
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(
                f"the API URL {base_url!r} is not an http:// or https:// URL; check --api-url or ORCHESTRATOR_API_URL"
            )
        self.base_url = base_url.strip().rstrip("/")
        self.token = token
        self.timeout = timeout
        self.session = session or requests.Session()

    # Plumbing ---------------------------------------------------------------

    def task_url(self, service: str, task_id: int) -> str:
        """Where a task lives in the API."""
        return f"{self.base_url}{TASKS_PATH}/{quote(service, safe='')}/{int(task_id)}"

    def _headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "orchestrator-cli"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        headers.update(extra or {})
        return headers

    def _request(
        self,
        method: str,
        url: str,
        *,
        auth: bool = True,
        stream: bool = False,
        accept: tuple[int, ...] = (),
        timeout: float | tuple[float, float | None] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        if auth and not self.token:
            raise AuthError("no API token: set ORCHESTRATOR_API_TOKEN (`orchestrator up` prints the local one)")
        try:
            response = self.session.request(
                method,
                url,
                headers=self._headers(kwargs.pop("headers", None)),
                timeout=timeout or self.timeout,
                stream=stream,
                **kwargs,
            )
        except (requests.exceptions.InvalidURL, requests.exceptions.InvalidSchema, requests.exceptions.MissingSchema):
            raise UsageError(
                f"the API URL {self.base_url!r} is not a valid URL; check --api-url or ORCHESTRATOR_API_URL"
            ) from None
        except requests.exceptions.Timeout:
            raise TimedOut(
                f"the API at {self.base_url} did not answer in time; check that it is running "
                "and not overloaded, then try again"
            ) from None
        except requests.exceptions.ConnectionError:
            raise Unreachable(
                f"cannot reach the API at {self.base_url}; start it with `orchestrator up` or "
                "point --api-url / ORCHESTRATOR_API_URL at a running one"
            ) from None
        if response.status_code >= 400 and response.status_code not in accept:
            try:
                raise self._error(response)
            finally:
                response.close()
        return response

    def _error(self, response: requests.Response) -> CliError:
        """The CliError for an error answer, from the API's `{code, message, errors?}` envelope."""
        status = response.status_code
        body: Any = None
        if "json" in response.headers.get("Content-Type", ""):
            try:
                body = response.json()
            except ValueError:
                body = None
        if not isinstance(body, dict) or "message" not in body:
            if status in (401, 403):
                return AuthError(
                    f"the API refused the token (HTTP {status}); set ORCHESTRATOR_API_TOKEN to a "
                    "token listed in the API's ORCHESTRATOR_API_TOKENS"
                )
            if status >= 500 and status != 503:
                return ServerError(f"the API failed (HTTP {status}); see its log, then try again")
            kind = response.headers.get("Content-Type", "no content type").split(";")[0]
            return CliError(
                f"the server at {self.base_url} did not answer like the Orchestrator API "
                f"(HTTP {status}, {kind}); check --api-url or ORCHESTRATOR_API_URL",
                exit_code=Unreachable.exit_code if status == 503 else None,
            )
        message = str(body.get("message") or "").rstrip(".")
        code = str(body.get("code") or "")
        details = flatten_errors(body.get("errors"))
        request_id = response.headers.get("X-Request-Id")  # set on every answer; the envelope has no such field
        if status in (401, 403):
            return AuthError(
                f"the API refused the token (HTTP {status}); set ORCHESTRATOR_API_TOKEN to a token "
                "listed in the API's ORCHESTRATOR_API_TOKENS"
            )
        if status == 404:
            if code in ("no_run", "no_logs"):
                return NotFound(message, code=code)
            return NotFound(f"{message}; list existing tasks with `orchestrator task list`", code=code)
        if status == 409:
            return Conflict(message, code=code)
        if status == 413:
            return InvalidRequest(f"{message}; attach smaller documents", code=code)
        if status in (400, 415, 422):
            return InvalidRequest(f"the API refused the request: {message}", details=details, code=code)
        if status == 503:
            return Unreachable(
                f"{message}; the API cannot serve requests now (is Redis running?), try again shortly", code=code
            )
        suffix = f" (request id {request_id})" if request_id else ""
        return ServerError(f"the API failed: {message}{suffix}; see the API log, then try again", code=code)

    def _json(self, response: requests.Response) -> Any:
        try:
            return response.json()
        except ValueError:
            raise CliError(
                f"the server at {self.base_url} answered with something that is not JSON; "
                "check --api-url or ORCHESTRATOR_API_URL"
            ) from None

    # Endpoints --------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """GET /health: liveness."""
        return self._json(self._request("GET", f"{self.base_url}/health", auth=False))

    def ready(self) -> tuple[bool, dict[str, Any]]:
        """GET /ready: (ready, body); a 503 is an answer here, not an error."""
        response = self._request("GET", f"{self.base_url}/ready", auth=False, accept=(503,))
        try:
            body = response.json()
        except ValueError:
            body = {}
        if not isinstance(body, dict):
            body = {}
        return response.status_code < 400, body

    def submit(self, body: Mapping[str, Any], *, idempotency_key: str | None = None) -> tuple[dict[str, Any], str]:
        """POST /api/v1/pm/tasks; returns (task, Location).

        The same idempotency key is sent again when a connection fails before
        an answer, so a retried submission is never stored twice.
        """
        key = idempotency_key or str(uuid.uuid4())
        last: TimedOut | None = None
        for _attempt in range(3):
            try:
                response = self._request(
                    "POST", f"{self.base_url}{TASKS_PATH}", json=dict(body), headers={"Idempotency-Key": key}
                )
            except TimedOut as exc:
                last = exc  # it may have been stored: ask again with the same key
                continue
            task = self._json(response)
            location = response.headers.get("Location", "")
            if location.startswith("/"):
                location = self.base_url + location
            return task, location or self.task_url(body["service_name"], body["id"])
        assert last is not None
        raise last

    def list_tasks(
        self,
        *,
        service: str | None = None,
        status: str | None = None,
        agent: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """GET /api/v1/pm/tasks: one page and the cursor of the next (None at the end)."""
        params = {
            k: v
            for k, v in (
                ("service", service),
                ("status", status),
                ("agent", agent),
                ("limit", limit),
                ("cursor", cursor),
            )
            if v not in (None, "")
        }
        body = self._json(self._request("GET", f"{self.base_url}{TASKS_PATH}", params=params))
        if not isinstance(body, dict) or not isinstance(body.get("items"), list):
            raise CliError(
                f"the server at {self.base_url} did not answer like the Orchestrator API (no task "
                "list); check --api-url or ORCHESTRATOR_API_URL"
            )
        return body["items"], body.get("next_cursor") or None

    def get_task(self, service: str, task_id: int) -> dict[str, Any]:
        """GET one task with its runs and recent history."""
        return self._json(self._request("GET", self.task_url(service, task_id)))

    def add_context(self, service: str, task_id: int, document: Mapping[str, Any]) -> dict[str, Any]:
        """POST a context document; the API starts a new run with it."""
        return self._json(self._request("POST", self.task_url(service, task_id) + "/context", json=dict(document)))

    def cancel(self, service: str, task_id: int) -> dict[str, Any]:
        """POST .../cancel."""
        return self._json(self._request("POST", self.task_url(service, task_id) + "/cancel", json={}))

    def retry(self, service: str, task_id: int) -> dict[str, Any]:
        """POST .../retry."""
        return self._json(self._request("POST", self.task_url(service, task_id) + "/retry", json={}))

    def logs(
        self, service: str, task_id: int, *, tail: int | None = None, follow: bool = False, raw: bool = False
    ) -> Iterator[str]:
        """The agent's output lines (the conversation as text; `raw`: its own stream); with `follow`, streamed."""
        params: dict[str, Any] = {"format": "raw"} if raw else {}
        if tail is not None:
            params["tail"] = tail
        if follow:
            params["follow"] = "true"
        # A followed stream may be silent for long stretches: no read timeout then.
        response = self._request(
            "GET",
            self.task_url(service, task_id) + "/logs",
            params=params,
            stream=True,
            timeout=(self.timeout, None if follow else self.timeout),
        )
        with response:
            try:
                for data in response.iter_lines(decode_unicode=False):
                    yield data.decode("utf-8", errors="replace")
            except requests.exceptions.ChunkedEncodingError:
                raise Unreachable(
                    "the log stream was cut off before the run ended; run the command again to pick it up"
                ) from None
