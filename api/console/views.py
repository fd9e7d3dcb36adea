"""Console pages: sign-in, tasks, a task, submit, services; live parts over Server-Sent Events."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from markupsafe import Markup
from werkzeug.exceptions import HTTPException

from api import live_hub, log_follow, schemas
from api import tasks as api_tasks
from api.console import data
from api.console import session as console_session
from api.console.graph import layout
from api.console.markdown import render_markdown
from api.errors import ApiError, limit_errors
from orchestrator import operations, taskmaster
from orchestrator.logs import scrub_lines
from orchestrator.runners.errors import RunnerError
from orchestrator.states import CANCELLABLE_FROM, RETRYABLE_FROM, Status
from orchestrator.store import (
    IllegalTransition,
    LimitReached,
    NotReplicated,
    StoreUnavailable,
    TaskExists,
    TaskNotFound,
    task_ref,
)

log = logging.getLogger("orchestrator.api")

bp = Blueprint(
    "console", __name__, template_folder="templates", static_folder="static", static_url_path="/console/static"
)

# Live parts: a stream ends after this long and the browser's EventSource reconnects,
# so an open page never holds an API thread for good.
EVENTS_SECONDS = 25.0
EVENTS_POLL_SECONDS = 1.0
EVENTS_MAX_TASKS = 100
LOG_STREAM_SECONDS = 300.0
LOG_TAIL = 200

CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
OPEN_ENDPOINTS = {"console.sign_in", "console.static"}
STATUSES = [s.value for s in Status]


# Every console request ----------------------------------------------------------------------


@bp.before_request
def _require_session() -> Any:
    """Pages need a live session; a GET is sent to sign in, anything else is refused."""
    if request.endpoint in OPEN_ENDPOINTS or console_session.signed_in():
        return None
    console_session.forget()
    if request.method == "GET" and request.endpoint not in {"console.events", "console.logs"}:
        return redirect(url_for("console.sign_in", next=request.full_path.rstrip("?")))
    abort(401, description="sign in first")
    return None


@bp.after_request
def _security_headers(response: Response) -> Response:
    """A strict policy on every console answer: own scripts and styles only, never framed."""
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.app_context_processor
def _template_globals() -> dict[str, Any]:
    return {
        "csrf_token": console_session.csrf_token,
        "signed_in": console_session.signed_in,
        "status_class": lambda s: "st-" + (s or "unknown").lower(),
    }


@bp.app_template_filter("markdown")
def _markdown(text: str) -> Markup:
    return render_markdown(text)


@bp.app_template_filter("http_url")
def _http_url(value: Any) -> str:
    """A link target only when it is an http(s) URL (never javascript: or data:)."""
    text = str(value or "")
    return text if urlsplit(text).scheme in {"http", "https"} else ""


def _page_error(status: int, message: str) -> tuple[str, int]:
    return render_template("console/error.html", status=status, message=message), status


@bp.errorhandler(TaskNotFound)
def _not_found(exc: TaskNotFound) -> tuple[str, int]:
    return _page_error(404, str(exc))


@bp.errorhandler(StoreUnavailable)
def _unavailable(exc: StoreUnavailable) -> tuple[str, int]:
    if isinstance(exc, NotReplicated):  # written, but not yet safe from a failover
        return _page_error(503, "stored, but not yet confirmed by a Redis replica; check the task list shortly")
    return _page_error(503, "the task store is unavailable; nothing was changed, retry shortly")


@bp.errorhandler(ApiError)
def _api_error(exc: ApiError) -> tuple[str, int]:
    return _page_error(exc.status, exc.message)


@bp.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[str, int] | Response:
    if exc.code == 401 and request.endpoint in {"console.events", "console.logs"}:
        return Response("sign in first\n", 401, mimetype="text/plain")
    return _page_error(exc.code or 500, exc.description or exc.name)


def _safe_next(target: str | None) -> str:
    """Only a path of this site after sign-in (never another host)."""
    if not target:
        return url_for("console.tasks")
    parts = urlsplit(target)
    if parts.scheme or parts.netloc or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return url_for("console.tasks")
    return target


# Sign in and out ------------------------------------------------------------------------------


@bp.route("/sign-in", methods=["GET", "POST"])
def sign_in() -> Any:
    """Ask for an API token; a valid one starts a session."""
    next_url = _safe_next(request.values.get("next"))
    if request.method == "POST":
        console_session.check_csrf()  # no signing in from another site's form either
        if console_session.sign_in(request.form.get("token", "")):
            return redirect(next_url, 303)
        return render_template("console/sign_in.html", next_url=next_url, error="That token is not accepted."), 401
    if console_session.signed_in():
        return redirect(next_url)
    console_session.ensure_csrf_token()
    return render_template("console/sign_in.html", next_url=next_url, error=None)


@bp.post("/sign-out")
def sign_out() -> Any:
    """End the session."""
    console_session.check_csrf()
    console_session.sign_out()
    return redirect(url_for("console.sign_in"), 303)


# Tasks ---------------------------------------------------------------------------------------------


@bp.get("/")
def tasks() -> Any:
    """Tasks newest first, filtered by service, status, agent and title text, one page at a time."""
    text = request.args.get("q", "").strip()
    filters = {k: request.args.get(k, "") for k in ("service", "status", "agent")}
    errors: dict[str, Any] = {}
    items: list[dict[str, Any]] = []
    cursor = None
    try:
        query = data.list_query(request.args)
        items, cursor = data.task_page(query, text)
    except ApiError as exc:
        errors = exc.errors or {"_schema": [exc.message]}
    runs = data.latest_runs(items)
    next_args: dict[str, Any] = {
        k: v
        for k, v in {**filters, "q": text, "cursor": cursor or "", "limit": request.args.get("limit", "")}.items()
        if v
    }
    return render_template(
        "console/tasks.html",
        items=items,
        runs=runs,
        filters=filters,
        text=text,
        errors=errors,
        statuses=STATUSES,
        next_url=url_for("console.tasks", **next_args) if cursor else None,
        age=data.age,
    )


def _task_context(service: str, task_id: int) -> dict[str, Any]:
    view = data.full_view(service, task_id)
    deps, dependents = data.graph_neighbours(view)
    graph = layout(
        service, task_id, view["status"], deps, dependents, href=request.script_root + "/tasks/{service}/{id}"
    )
    runs = view["runs"]
    latest = runs[-1] if runs else None
    status = Status(view["status"])
    log_lines: list[str] | None = None
    live_logs = (
        latest is not None
        and latest.get("phase", "") not in {"Succeeded", "Failed"}
        and status not in (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)
    )
    if latest and not live_logs:
        log_lines = _last_lines(latest["run_id"])
    return {
        "task": view,
        "runs": runs,
        "latest": latest,
        "graph": graph,
        "contexts": data.contexts(service, task_id),
        "can_cancel": status in CANCELLABLE_FROM,
        "can_retry": status in RETRYABLE_FROM,
        "live_logs": live_logs,
        "log_lines": log_lines,
        "duration": data.duration,
        "age": data.age,
        "ref": task_ref(service, task_id),
    }


@bp.get("/tasks/<service>/<int:task_id>")
def task(service: str, task_id: int) -> Any:
    """One task: live status, documents, runs, history, dependency graph, logs and actions."""
    service = api_tasks._service(service)
    return render_template("console/task.html", **_task_context(service, task_id))


@bp.get("/tasks/<service>/<int:task_id>/parts")
def task_parts(service: str, task_id: int) -> Any:
    """The parts of a task page that change with its status (fetched by the page when it changes)."""
    service = api_tasks._service(service)
    return render_template("console/task_parts.html", **_task_context(service, task_id))


def _run_action(service: str, task_id: int, action: str) -> Any:
    """Do what the API does for `action`, showing its error message on the task page."""
    console_session.check_csrf()
    service = api_tasks._service(service)
    store = data.store()
    actor = console_session.actor()
    try:
        if action == "cancel":
            body = api_tasks._load("cancel", {"reason": request.form.get("reason", "")})
            operations.cancel_task(
                store, service, task_id, actor=actor, reason=body["reason"], dispatcher=api_tasks._dispatcher()
            )
            flash("Cancel requested.", "ok")
        elif action == "retry":
            operations.retry_task(store, service, task_id, actor=actor, dispatcher=api_tasks._dispatcher())
            flash("Retry requested.", "ok")
        else:
            document = api_tasks._load(
                "context", {"content": request.form.get("content", ""), "title": request.form.get("title", "")}
            )
            document = {**document, "added_by": actor, "added_at": datetime.now(UTC).isoformat()}
            operations.add_context(store, service, task_id, document, actor=actor, dispatcher=api_tasks._dispatcher())
            flash("Context added; the task starts again with it.", "ok")
    except ApiError as exc:
        details = "; ".join(
            f"{k}: {' '.join(map(str, v)) if isinstance(v, list) else v}" for k, v in (exc.errors or {}).items()
        )
        flash(exc.message + (f" ({details})" if details else ""), "error")
    except (operations.OperationRefused, IllegalTransition) as exc:
        flash(str(exc), "error")
    except LimitReached as exc:
        flash(" ".join(m for ms in limit_errors(exc).values() for m in ms), "error")
    return redirect(url_for("console.task", service=service, task_id=task_id), 303)


@bp.post("/tasks/<service>/<int:task_id>/cancel")
def cancel(service: str, task_id: int) -> Any:
    """Cancel the task (as POST .../cancel)."""
    return _run_action(service, task_id, "cancel")


@bp.post("/tasks/<service>/<int:task_id>/retry")
def retry(service: str, task_id: int) -> Any:
    """Retry the task (as POST .../retry)."""
    return _run_action(service, task_id, "retry")


@bp.post("/tasks/<service>/<int:task_id>/context")
def context(service: str, task_id: int) -> Any:
    """Add a context document (as POST .../context)."""
    return _run_action(service, task_id, "context")


# Submit -----------------------------------------------------------------------------------------------

PRIORITIES = list(schemas.PRIORITIES)
SUBMIT_FIELDS = (
    "service_name",
    "id",
    "title",
    "agent_name",
    "priority",
    "description",
    "details",
    "test_strategy",
    "dependencies",
    "repository_url",
    "repository_branch",
    "model",
    "document",
)


def _int_or_raw(value: str) -> Any:
    value = value.strip()
    return int(value) if value.isdigit() else value


def submission_from_form(form: Mapping[str, str]) -> dict[str, Any]:
    """The API's submission document from the form's fields (the schema judges it)."""
    body: dict[str, Any] = {
        "service_name": form.get("service_name", "").strip(),
        "id": _int_or_raw(form.get("id", "")),
        "title": form.get("title", "").strip(),
        "agent_name": form.get("agent_name", "").strip(),
        "priority": form.get("priority") or "medium",
    }
    for key in ("description", "details", "test_strategy"):
        if form.get(key, "").strip():
            body[key] = form[key]
    deps = [d for d in form.get("dependencies", "").replace(" ", ",").split(",") if d.strip()]
    if deps:
        body["dependencies"] = [_int_or_raw(d) for d in deps]
    if form.get("repository_url", "").strip():
        body["repository"] = {
            "url": form["repository_url"].strip(),
            "branch": form.get("repository_branch", "").strip() or "main",
        }
    if form.get("model", "").strip():
        body["model"] = form["model"].strip()
    document = form.get("document", "")
    body["markdown_files"] = (
        [{"filename": "task.md", "content": document, "file_type": "task"}] if document.strip() else []
    )
    return body


def field_errors(errors: Mapping[str, Any]) -> dict[str, list[str]]:
    """Schema errors by form field: nested ones (repository.url, markdown_files.0.content) flattened."""
    flat: dict[str, list[str]] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, Mapping):
            for key, inner in value.items():
                walk(f"{prefix}.{key}" if prefix else str(key), inner)
        else:
            flat.setdefault(prefix, []).extend(str(v) for v in (value if isinstance(value, list) else [value]))

    walk("", errors)
    by_field: dict[str, list[str]] = {}
    for key, messages in flat.items():
        head = key.split(".")[0]
        field = {"repository": "repository_url", "markdown_files": "document"}.get(head, head)
        if key == "repository.branch":
            field = "repository_branch"
        if field not in SUBMIT_FIELDS:
            field = "_schema"
        if key != field:  # the API's name for it, when the form calls it something else
            messages = [f"{key}: {m}" for m in messages]
        by_field.setdefault(field, []).extend(messages)
    return by_field


@bp.route("/submit", methods=["GET", "POST"])
def submit() -> Any:
    """A form that submits a task as POST /api/v1/pm/tasks does; the schema's errors beside their fields."""
    form: dict[str, str] = {"priority": "medium", "repository_branch": "main"}
    errors: dict[str, list[str]] = {}
    status = 200
    if request.method == "POST":
        console_session.check_csrf()
        form = {k: request.form.get(k, "") for k in SUBMIT_FIELDS}
        try:
            spec = api_tasks._load("submission", submission_from_form(form))
            operations.submit_task(
                data.store(),
                spec,
                actor=console_session.actor(),
                origin={"kind": "console"},
                dispatcher=api_tasks._dispatcher(),
            )
            flash("Task submitted.", "ok")
            return redirect(url_for("console.task", service=spec["service_name"], task_id=spec["id"]), 303)
        except ApiError as exc:
            errors, status = field_errors(exc.errors or {"_schema": [exc.message]}), exc.status
        except TaskExists as exc:
            errors, status = {"id": [f"{exc}; submit it with another id, or add context to it"]}, 409
        except operations.DependencyCycle as exc:
            errors, status = {"dependencies": [str(exc)]}, 409
        except LimitReached as exc:
            errors, status = field_errors(limit_errors(exc)), 409
    return render_template(
        "console/submit.html", form=form, errors=errors, tm_errors={}, tm_form={}, priorities=PRIORITIES
    ), status


TASKMASTER_FIELDS = ("service_name", "agent_name", "repository_url", "repository_branch")


def _taskmaster_page(
    form: Mapping[str, str], raw: str, tasks: list[dict[str, Any]], errors: dict[str, list[str]], status: int
) -> tuple[str, int]:
    return render_template(
        "console/taskmaster.html", form=form, raw=raw, tasks=tasks, errors=errors, dependencies=taskmaster.dependencies
    ), status


@bp.post("/submit/taskmaster")
def submit_taskmaster() -> Any:
    """Pick a task of an uploaded Task Master tasks.json and submit it as `task submit` would."""
    console_session.check_csrf()
    limit = data.settings().max_request_bytes
    if request.content_length is not None and request.content_length > limit:
        abort(413, description=f"the upload is larger than {limit} bytes")
    form = {k: request.form.get(k, "").strip() for k in TASKMASTER_FIELDS}
    upload = request.files.get("tasks_file")
    raw = (
        upload.read(limit + 1).decode("utf-8", "replace")
        if upload and upload.filename
        else request.form.get("tasks_json", "")
    )
    try:
        tasks = taskmaster.tasks_from_document(json.loads(raw), source="the uploaded file")
    except ValueError as exc:
        message = f"the file is not valid JSON: {exc}" if raw.strip() else "choose a Task Master tasks.json"
        return render_template(
            "console/submit.html",
            form={"priority": "medium"},
            errors={},
            tm_errors={"tasks_file": [message]},
            tm_form=form,
            priorities=PRIORITIES,
        ), 400
    except taskmaster.TaskFileError as exc:
        return render_template(
            "console/submit.html",
            form={"priority": "medium"},
            errors={},
            tm_errors={"tasks_file": [str(exc)]},
            tm_form=form,
            priorities=PRIORITIES,
        ), 400
    picked = request.form.get("task_id", "")
    if not picked:
        return _taskmaster_page(form, raw, tasks, {}, 200)
    try:
        task = taskmaster.find_task(tasks, int(picked), source="the uploaded file")
    except (ValueError, taskmaster.TaskFileError) as exc:
        return _taskmaster_page(form, raw, tasks, {"task_id": [str(exc)]}, 400)
    repository = None
    if form["repository_url"]:
        repository = {"url": form["repository_url"], "branch": form["repository_branch"] or "main"}
    body = taskmaster.build_submission(
        task, service=form["service_name"], agent=form["agent_name"], repository=repository
    )
    try:
        spec = api_tasks._load("submission", body)
        operations.submit_task(
            data.store(),
            spec,
            actor=console_session.actor(),
            origin={"kind": "console", "source": "taskmaster"},
            dispatcher=api_tasks._dispatcher(),
        )
    except ApiError as exc:
        return _taskmaster_page(form, raw, tasks, field_errors(exc.errors or {"_schema": [exc.message]}), exc.status)
    except TaskExists as exc:
        return _taskmaster_page(form, raw, tasks, {"task_id": [f"{exc}; add context to it instead"]}, 409)
    except operations.DependencyCycle as exc:
        return _taskmaster_page(form, raw, tasks, {"task_id": [str(exc)]}, 409)
    except LimitReached as exc:
        return _taskmaster_page(form, raw, tasks, field_errors(limit_errors(exc)), 409)
    flash("Task submitted from the Task Master file.", "ok")
    return redirect(url_for("console.task", service=spec["service_name"], task_id=spec["id"]), 303)


@bp.get("/services")
def services() -> Any:
    """Active runs against the caps, waiting tasks and queue depths."""
    return render_template("console/services.html", overview=data.services_overview())


# Live parts ------------------------------------------------------------------------------------------


def _sse(event: str, payload: Any) -> str:
    return f"event: {event}\ndata: {json.dumps(payload, separators=(',', ':'))}\n\n"


def _event_stream(body: Iterator[str]) -> Response:
    response = Response(
        stream_with_context(body),
        mimetype="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )
    # Nothing may turn the stream into a list (werkzeug does that to compute a length).
    response.implicit_sequence_conversion = False
    return response


@bp.get("/console/events")
def events() -> Response:
    """Status changes of the tasks a page shows (`?task=service/id`, repeated), for about 25 seconds.

    A stream holds an API thread, so it is admitted as a followed log is
    (api/log_follow.py: half a process's threads at most, a per-token cap, ended
    when the client goes); one refused is told to come back in a few seconds.
    """
    refs = [r for r in (data.parse_ref(v) for v in request.args.getlist("task")[:EVENTS_MAX_TASKS]) if r]
    if live_hub.ENVIRON_KEY in request.environ:
        return _live_subscription(refs)
    store = data.store()
    follow = log_follow.Follow(store, console_session.token_owner() + ":status")
    try:
        follow.admit(data.settings().log_follows_per_token)
    except ApiError:
        return _event_stream(iter(["retry: 5000\n\n"]))  # busy: the page asks again shortly
    sock = log_follow.client_socket(request.environ)

    def stream() -> Iterator[str]:
        try:
            yield "retry: 1000\n\n"  # reconnect a second after the stream ends
            seen: dict[str, tuple[str, str]] = {}
            started = time.monotonic()
            deadline, renew_at = started + EVENTS_SECONDS, started + follow.lease_seconds / 3
            quiet_since = started
            while time.monotonic() < deadline:
                if sock is not None and log_follow.client_gone(sock):
                    return
                if time.monotonic() >= renew_at:
                    follow.renew()
                    renew_at = time.monotonic() + follow.lease_seconds / 3
                try:
                    current = data.statuses(refs) if refs else {}
                except StoreUnavailable:
                    return
                for ref, row in current.items():
                    key = (row["status"], row["updated_at"] or "")
                    if seen.get(ref) != key:
                        seen[ref] = key
                        quiet_since = time.monotonic()
                        yield _sse("status", row)
                if sock is None and time.monotonic() - quiet_since > 10:
                    quiet_since = time.monotonic()
                    yield ": idle\n\n"  # no socket to look at: a write finds a gone client
                time.sleep(EVENTS_POLL_SECONDS)
        finally:
            follow.release()

    response = _event_stream(stream())
    response.call_on_close(follow.release)  # also when the stream never started
    return response


def _live_subscription(refs: list[tuple[str, int]]) -> Response:
    """The stream's first bytes; the process's live hub (api/live_hub.py) keeps it open and writes the changes.

    Statuses are read after the hub started following changes, so a change is
    either in what this sends or among those the hub sends next.
    """
    current = data.statuses(refs) if refs else {}
    first = "retry: 1000\n\n" + "".join(_sse("status", row) for row in current.values())
    request.environ[live_hub.SUBSCRIPTION_KEY] = live_hub.Subscription(
        frozenset(task_ref(service, task_id) for service, task_id in refs),
        first.encode(),
        console_session.session_id(),
    )
    return Response(b"", mimetype="text/event-stream", headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})


def _runner() -> Any:
    return current_app.extensions["orchestrator"].runner()


def _last_lines(run_id: str, tail: int = LOG_TAIL) -> list[str] | None:
    """The last lines of a run's output, secrets masked as the API masks them (None: no output here)."""
    try:
        return [
            line.rstrip("\n")
            for line in scrub_lines(_runner().logs(run_id, follow=False, tail=tail), data.settings().secret_values())
        ]
    except (LookupError, FileNotFoundError, ImportError, RunnerError):
        return None
    except Exception:  # noqa: BLE001 - a page shows without its logs rather than failing
        log.exception("could not read the logs of run %s", run_id)
        return None


@bp.get("/console/tasks/<service>/<int:task_id>/logs")
def logs(service: str, task_id: int) -> Response:
    """The latest run's output as events: its last lines, then each new one until the run ends.

    The API's follow machinery (api/log_follow.py) reads and bounds it: the same
    caps as `GET .../logs?follow=true` for the signed-in token, a pump thread,
    lines scrubbed with the next, the end when the client goes.
    """
    service = api_tasks._service(service)
    store = data.store()
    runs = store.list_runs(service, task_id)
    settings = data.settings()
    if not runs:
        return _event_stream(iter(["retry: 3000\n\n", _sse("waiting", "no run yet")]))
    run_id = runs[-1].run_id
    max_seconds = min(LOG_STREAM_SECONDS, float(settings.log_follow_max_seconds))
    follow = log_follow.Follow(store, console_session.token_owner())
    try:
        follow.admit(settings.log_follows_per_token)
    except ApiError as exc:
        return _event_stream(iter(["retry: 5000\n\n", _sse("waiting", exc.message)]))
    try:
        lines = _runner().logs(run_id, follow=True, tail=LOG_TAIL)
    except (LookupError, FileNotFoundError, ImportError, RunnerError):
        follow.release()
        return _event_stream(iter(["retry: 3000\n\n", _sse("waiting", "no output yet")]))
    inner = log_follow.stream(
        lines,
        follow,
        max_seconds=max_seconds,
        secrets=settings.secret_values(),
        sock=log_follow.client_socket(request.environ),
        run_id=run_id,
    )

    def stream() -> Iterator[str]:
        yield "retry: 3000\n\n"
        yield _sse("reset", run_id)
        started = time.monotonic()
        for chunk in inner:
            if chunk == "":
                continue
            if chunk == "\n":  # log_follow's keepalive without a socket to watch (an empty line is dropped too)
                yield ": keepalive\n\n"
                continue
            if time.monotonic() - started >= max_seconds and chunk.startswith("orchestrator: this follow ended"):
                return  # the browser reconnects and starts again from the last lines
            yield _sse("line", chunk.rstrip("\n"))
        yield _sse("end", run_id)

    response = _event_stream(stream())
    response.call_on_close(follow.release)
    return response
