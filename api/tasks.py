"""The PM API: submit, list, follow, change and cancel tasks (/api/v1/pm/tasks...)."""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import logging
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from flask import Blueprint, Response, current_app, request
from marshmallow import Schema, ValidationError

from api import log_follow, schemas
from api.auth import protect
from api.errors import ApiError
from orchestrator import operations, validation
from orchestrator.delivery.record import run_view_fields
from orchestrator.dispatch import Dispatcher
from orchestrator.github.status_text import delivery_of
from orchestrator.logs import scrub_lines
from orchestrator.model import Run, Task, TaskSummary
from orchestrator.runners.errors import LogsUnavailable, RunnerError
from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.store import TaskExists, TaskStore, split_ref, task_ref
from orchestrator.usage.render import Rendered
from orchestrator.usage.totals import run_usage, usage_totals

log = logging.getLogger("orchestrator.api")

PREFIX = "/api/v1/pm/tasks"
bp = protect(Blueprint("tasks", __name__, url_prefix=PREFIX))

# Spec fields shown in a task view, with what an older record lacking one shows.
SPEC_FIELDS: dict[str, Any] = {
    "description": "",
    "details": "",
    "test_strategy": "",
    "dependencies": [],
    "subtasks": [],
    "markdown_files": [],
    "repository": None,
    "model": None,
    "working_directory": "",
    "timeout_seconds": None,
    "env": {},
    "agent": {},
    "max_cost_usd": None,
    "max_turns": None,
    "exclusive": False,
}


# Resources -----------------------------------------------------------------------------


def _settings() -> Settings:
    return current_app.extensions["orchestrator"].settings


def _store() -> TaskStore:
    return current_app.extensions["orchestrator"].store()


def _dispatcher() -> Dispatcher:
    return current_app.extensions["orchestrator"].dispatcher()


def _schema(name: str) -> Schema:
    """The app's schema instances, built once from its settings."""
    built = current_app.extensions.get("orchestrator_schemas")
    if built is None:
        built = build_schemas(_settings())
        current_app.extensions["orchestrator_schemas"] = built
    return built[name]


def build_schemas(settings: Settings) -> dict[str, Schema]:
    """Schema instances carrying the settings-dependent rules (also used by the OpenAPI document)."""
    return {
        "submission": schemas.TaskSubmissionSchema(settings=settings),
        "context": schemas.ContextSchema(),
        "cancel": schemas.CancelSchema(),
        "list": schemas.ListQuerySchema(settings=settings),
        "logs": schemas.LogsQuerySchema(),
    }


def _token_owner() -> str:
    """Whose follows these are, in the store: a digest of the token (never the token)."""
    token = request.headers.get("Authorization", "").partition(" ")[2].strip()
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:32]


def _token_digest() -> str:
    """A digest of the request's bearer token (never the token itself)."""
    token = request.headers.get("Authorization", "").partition(" ")[2].strip()
    return hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()


def _actor() -> str:
    """Who asked, for the history: a short digest of the token."""
    return "api:" + _token_digest()[:8]


# Input ---------------------------------------------------------------------------------


def _json_body(*, required: bool) -> Any:
    """The request's JSON document: 413 when too large, 415 when not JSON, 400 when malformed."""
    length = request.content_length
    limit = _settings().max_request_bytes
    if length is not None and length > limit:
        raise ApiError(f"request body is larger than {limit} bytes", status=413, code="payload_too_large")
    has_body = bool(length) or "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if not has_body and not required:
        return {}
    if request.mimetype != "application/json":
        raise ApiError("send the request body as application/json", status=415, code="unsupported_media_type")
    # A chunked body declares no length: read one byte past the limit to see whether it is over.
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        raise ApiError(f"request body is larger than {limit} bytes", status=413, code="payload_too_large")
    if not raw:
        if required:
            raise ApiError("the request body must be a JSON object", code="invalid_json")
        return {}
    try:
        return orjson.loads(raw)  # a third of json's time; refuses NaN, invalid UTF-8 and deep nesting too
    except (ValueError, RecursionError):
        raise ApiError("the request body is not valid JSON", code="invalid_json") from None


def _load(name: str, data: Any) -> dict[str, Any]:
    """Validate with a schema; every bad field is named in the 400 answer."""
    if not isinstance(data, Mapping):
        raise ApiError(
            "expected a JSON object", code="validation_error", errors={"_schema": ["expected a JSON object"]}
        )
    try:
        return _schema(name).load(data)
    except ValidationError as exc:
        raise ApiError(
            "the request is invalid; see errors", code="validation_error", errors=exc.normalized_messages()
        ) from None


def _query(name: str) -> dict[str, Any]:
    return _load(name, request.args.to_dict(flat=True))


def _service(service: str) -> str:
    try:
        return validation.service_name(service)
    except ValueError as exc:
        raise ApiError(str(exc), code="validation_error", errors={"service": [str(exc)]}) from None


# Views of stored records -----------------------------------------------------------------


def _iso(ts: Any) -> str | None:
    if ts in (None, ""):
        return None
    return datetime.fromtimestamp(float(ts), UTC).isoformat()


def task_url(service: str, task_id: int) -> str:
    """Path of a task resource."""
    return f"{PREFIX}/{service}/{task_id}"


def task_summary(task: Task | TaskSummary) -> dict[str, Any]:
    """A task as the list shows it (TaskSummarySchema), from its summary or its whole record."""
    if isinstance(task, TaskSummary):
        title, submitted_status = task.title, task.submitted_status
    else:
        title, submitted_status = task.spec.get("title", ""), task.spec.get("status", "pending")
    return {
        "service_name": task.service,
        "id": task.id,
        "agent_name": task.agent,
        "title": title,
        "priority": task.priority.value,
        "status": task.status.value,
        "status_reason": task.status_reason,
        "submitted_status": submitted_status,
        "context_version": task.context_version,
        "current_run": task.current_run or None,
        "created_at": _iso(task.created_at),
        "updated_at": _iso(task.updated_at),
        "url": task_url(task.service, task.id),
    }


def run_view(run: Run) -> dict[str, Any]:
    """A run as a task view shows it (RunViewSchema)."""
    return {
        "run_id": run.run_id,
        "version": run.version,
        "attempt": run.attempt,
        "stage": run.stage,
        "job_name": run.job_name,
        "phase": run.phase.value,
        "queued_at": _iso(run.queued_at),
        "started_at": _iso(run.started_at),
        "finished_at": _iso(run.finished_at),
        "exit_code": run.exit_code,
        "failure_reason": run.failure_reason,
        "pull_request_url": run.outputs.get("pull_request_url"),
        **run_view_fields(run),  # branch, base, commit, commits, diffstat, pull request, outcome
        "usage": run_usage(run),
    }


def history_view(entry: Mapping[str, Any]) -> dict[str, Any]:
    """A status change (HistoryEntrySchema)."""
    return {
        "seq": entry.get("seq"),
        "at": _iso(entry.get("at")),
        "from": entry.get("from"),
        "to": entry.get("to"),
        "reason": entry.get("reason", ""),
        "actor": entry.get("actor", ""),
    }


def task_view(task: Task, runs: Sequence[Run], history: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """A task with its documents, runs and recent history (TaskViewSchema)."""
    view = task_summary(task)
    spec = task.spec
    for key, default in SPEC_FIELDS.items():
        view[key] = spec.get(key, default)
    view["runs"] = [run_view(r) for r in runs]
    view["usage"] = usage_totals(r["usage"] for r in view["runs"])
    view["history"] = [history_view(h) for h in history]
    view["delivery"] = delivery_of(task)
    return view


def accepted_view(task: Task) -> dict[str, Any]:
    """The 202 answer to a submission: the task as it was stored, rebuilt the same way on a replay."""
    first = dataclasses.replace(
        task,
        status=Status.PENDING,
        status_reason="submitted",
        context_version=1,
        current_run=None,
        updated_at=task.created_at,
    )
    entry = {
        "seq": 1,
        "at": task.created_at,
        "from": None,
        "to": Status.PENDING.value,
        "reason": "submitted",
        "actor": task.submitted_by,
    }
    return task_view(first, [], [entry])


def _full_view(store: TaskStore, service: str, task_id: int) -> dict[str, Any]:
    task = store.require_task(service, task_id)
    return task_view(
        task, store.list_runs(service, task_id), store.history(service, task_id, limit=schemas.HISTORY_SHOWN)
    )


def _json(body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    response = current_app.response_class(
        orjson.dumps(body, option=orjson.OPT_NON_STR_KEYS), status=status, mimetype="application/json"
    )
    response.headers.update(headers or {})
    return response


# Endpoints -----------------------------------------------------------------------------


@bp.post("")
def submit_task() -> Response:
    """Validate, store and queue a task; 202 with the task and its Location."""
    body = _json_body(required=True)
    key = request.headers.get("Idempotency-Key")
    if key is not None and not re.match(schemas.IDEMPOTENCY_KEY_PATTERN, key):
        raise ApiError(
            "Idempotency-Key must be 1-128 letters, digits or . _ : -",
            code="validation_error",
            errors={"Idempotency-Key": ["must match " + schemas.IDEMPOTENCY_KEY_PATTERN]},
        )
    spec = _load("submission", body)
    store = _store()
    settings = _settings()
    fingerprint = ""
    if key:  # only a keyed request is ever compared with another
        # A key is its token's own: another token's same key is another request.
        key = f"{_token_digest()[:32]}:{key}"
        fingerprint = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()
        first = store.get_idempotent(key)
        if first:
            return _replay(store, first, fingerprint)
    try:
        task = operations.submit_task(
            store,
            spec,
            actor=_actor(),
            origin={"kind": "api"},
            idempotency_key=key,
            idempotency_ttl=settings.idempotency_ttl_seconds,
            idempotency_value={"task": task_ref(spec["service_name"], spec["id"]), "fingerprint": fingerprint}
            if key
            else None,
            dispatcher=_dispatcher(),
        )
    except TaskExists:
        first = store.get_idempotent(key) if key else None
        if first:  # a concurrent request with the same key won the race
            return _replay(store, first, fingerprint)
        raise
    view = accepted_view(task)
    return _json(view, 202, {"Location": view["url"]})


def _replay(store: TaskStore, first: Mapping[str, Any], fingerprint: str) -> Response:
    """The first answer again, when the same Idempotency-Key comes with the same task."""
    if first.get("fingerprint") != fingerprint:
        raise ApiError(
            "this Idempotency-Key was used for a different request", status=422, code="idempotency_key_reused"
        )
    task = store.require_task(*split_ref(first["task"]))
    view = accepted_view(task)
    return _json(view, 202, {"Location": view["url"], "Idempotent-Replayed": "true"})


@bp.get("")
def list_tasks() -> Response:
    """Tasks newest first, filtered by service, status and agent, one page at a time."""
    query = _query("list")
    # Summaries only: a page of huge tasks costs what a page of small ones does (#16 item 7).
    items, cursor = _store().list_summaries(
        service=query.get("service"),
        status=query.get("status"),
        agent=query.get("agent"),
        limit=query["limit"],
        cursor=query.get("cursor"),
    )
    return _json({"items": [task_summary(t) for t in items], "next_cursor": cursor})


@bp.get("/<service>/<int:task_id>")
def get_task(service: str, task_id: int) -> Response:
    """One task: status and reason, runs, recent history."""
    return _json(_full_view(_store(), _service(service), task_id))


@bp.post("/<service>/<int:task_id>/context")
def add_context(service: str, task_id: int) -> Response:
    """Add a context document; supersedes the active run and starts a new one."""
    service = _service(service)
    body = _json_body(required=True)
    document = _load("context", body)
    store = _store()
    actor = _actor()
    document = {**document, "added_by": actor, "added_at": datetime.now(UTC).isoformat()}
    operations.add_context(store, service, task_id, document, actor=actor, dispatcher=_dispatcher())
    return _json(_full_view(store, service, task_id), 202, {"Location": task_url(service, task_id)})


@bp.post("/<service>/<int:task_id>/cancel")
def cancel_task(service: str, task_id: int) -> Response:
    """Cancel a task that has not ended (409 when it has)."""
    service = _service(service)
    body = _load("cancel", _json_body(required=False))
    store = _store()
    operations.cancel_task(store, service, task_id, actor=_actor(), reason=body["reason"], dispatcher=_dispatcher())
    return _json(_full_view(store, service, task_id))


@bp.post("/<service>/<int:task_id>/retry")
def retry_task(service: str, task_id: int) -> Response:
    """Start a Failed or Cancelled task again (409 otherwise)."""
    service = _service(service)
    _json_body(required=False)  # optional; when present it must still be JSON
    store = _store()
    operations.retry_task(store, service, task_id, actor=_actor(), dispatcher=_dispatcher())
    return _json(_full_view(store, service, task_id), 202, {"Location": task_url(service, task_id)})


@bp.get("/<service>/<int:task_id>/logs")
def task_logs(service: str, task_id: int) -> Response:
    """The agent's output of the latest run; `follow=true` streams until the run ends."""
    service = _service(service)
    query = _query("logs")
    store = _store()
    store.require_task(service, task_id)
    runs = store.list_runs(service, task_id)
    if not runs:
        raise ApiError(
            f"task {service}/{task_id} has no run yet; logs appear once it is launched", status=404, code="no_run"
        )
    run_id = runs[-1].run_id
    try:
        runner = current_app.extensions["orchestrator"].runner()
    except ImportError:
        raise ApiError("logs are not available: no runner is installed", status=503, code="unavailable") from None
    secrets = _settings().secret_values()
    headers = {"X-Run-Id": run_id}
    shown = Rendered if query["format"] == "text" else iter  # the conversation, or the stream as it was
    follow: log_follow.Follow | None = None
    try:
        if query["follow"]:
            settings = _settings()
            follow = log_follow.Follow(store, _token_owner()).admit(settings.log_follows_per_token)
            lines = shown(runner.logs(run_id, follow=True, tail=query.get("tail")))
            response = Response(
                log_follow.stream(
                    lines,
                    follow,
                    max_seconds=settings.log_follow_max_seconds,
                    secrets=secrets,
                    sock=log_follow.client_socket(request.environ),
                    run_id=run_id,
                ),
                mimetype="text/plain",
                headers={**headers, "Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
            response.call_on_close(follow.release)  # also when the stream never started
            follow = None
            return response
        lines = iter(shown(runner.logs(run_id, follow=False, tail=query.get("tail"))))
        first = next(lines, None)  # a log that is missing says so here, before the status line is sent
    except (LookupError, FileNotFoundError, LogsUnavailable) as exc:
        # Preparing, Launching, a Pending pod, or a Job that Kubernetes removed after its TTL.
        message = str(exc) if isinstance(exc, LogsUnavailable) else f"run {run_id} has no logs yet"
        raise ApiError(message, status=404, code="no_logs") from None
    except RunnerError:  # the Kubernetes API failed or refused (typed by orchestrator.kube.client)
        log.warning("logs of run %s are unavailable", run_id, exc_info=True)
        raise ApiError(
            "the run's logs cannot be read right now; retry shortly",
            status=503,
            code="unavailable",
            headers={"Retry-After": "5"},
        ) from None
    finally:
        if follow is not None:  # admitted, but no stream was returned
            follow.release()
    if first is None:
        return Response("", mimetype="text/plain", headers=headers)
    # Streamed in pieces: a whole 200 MB log is never in memory at once.
    return Response(_pieces(itertools.chain([first], lines), secrets, run_id), mimetype="text/plain", headers=headers)


def _pieces(lines: Iterator[str], secrets: list[str], run_id: str) -> Iterator[str]:
    """The scrubbed lines joined into pieces of about 64 KiB (one write each, not one per line)."""
    piece: list[str] = []
    size = 0
    try:
        for line in scrub_lines(lines, secrets):
            piece.append(line)
            size += len(line)
            if size >= 65536:
                yield "".join(piece)
                piece, size = [], 0
    except Exception:  # the status line is already sent; end the answer and say why in the log
        log.exception("reading the log of run %s failed", run_id)
    if piece:
        yield "".join(piece)
