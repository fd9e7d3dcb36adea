"""The OpenAPI 3 document, generated from api/schemas.py, and a readable docs page.

Both are open (no token): they describe the API and hold no task data, and the
docs page is rendered on the server from the same document (no script, no CDN).
"""

from __future__ import annotations

from typing import Any

from apispec import APISpec
from apispec.ext.marshmallow import MarshmallowPlugin
from flask import Blueprint, Response, current_app, jsonify, render_template_string

from api import schemas
from orchestrator import __version__, validation

bp = Blueprint("openapi", __name__)

JSON = "application/json"


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"schema": "Error"}}}


def _ok(description: str, schema: str | None = None, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description}
    if schema:
        response["content"] = {JSON: {"schema": schema}}
    if headers:
        response["headers"] = headers
    return response


COMMON = {
    "400": _error("invalid request: `errors` names each bad field"),
    "401": _error("missing or unknown bearer token"),
    "503": _error(
        "the task store (Redis) is unavailable (nothing was changed), or a write was not yet confirmed by a Redis "
        "replica (a retry is deduplicated); retry after `Retry-After` seconds"
    ),
}
LOCATION = {"Location": {"description": "path of the task", "schema": {"type": "string"}}}
TASK_PARAMS = [
    {
        "in": "path",
        "name": "service",
        "required": True,
        "schema": {
            "type": "string",
            "pattern": validation.DNS_LABEL.pattern,
            "maxLength": validation.MAX_SERVICE_LENGTH,
        },
    },
    {
        "in": "path",
        "name": "task_id",
        "required": True,
        "schema": {"type": "integer", "minimum": 1, "maximum": 2**31 - 1},
    },
]


def _body(schema: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {JSON: {"schema": schema}}}


def build_spec(settings: Any) -> dict[str, Any]:
    """The OpenAPI document of an app with these settings."""
    from api.tasks import build_schemas

    built = build_schemas(settings)
    spec = APISpec(
        title="Orchestrator PM API",
        version=__version__,
        openapi_version="3.0.3",
        plugins=[MarshmallowPlugin()],
        info={
            "description": "Submit, follow, change and cancel agent tasks. Every /api/v1/pm route needs "
            "`Authorization: Bearer <token>`. Errors are `{code, message, errors?}`."
        },
    )
    spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    for name, schema in [
        ("Error", schemas.ErrorSchema),
        ("Subtask", schemas.SubtaskSchema),
        ("MarkdownFile", schemas.MarkdownFileSchema),
        ("Repository", schemas.RepositorySchema),
        ("TaskSubmission", built["submission"]),
        ("Context", built["context"]),
        ("Cancel", built["cancel"]),
        ("Run", schemas.RunViewSchema),
        ("HistoryEntry", schemas.HistoryEntrySchema),
        ("TaskSummary", schemas.TaskSummarySchema),
        ("Task", schemas.TaskViewSchema),
        ("TaskPage", schemas.TaskPageSchema),
    ]:
        spec.components.schema(name, schema=schema)

    secured: list[dict[str, list[str]]] = [{"bearer": []}]
    spec.path(
        path="/api/v1/pm/tasks",
        operations={
            "post": {
                "operationId": "submitTask",
                "summary": "Submit a task",
                "security": secured,
                "description": "Validates, stores and queues the task. The same (service_name, id) again is a 409, "
                "unless it carries the same Idempotency-Key as the first request, which returns the "
                "first answer.",
                "parameters": [
                    {
                        "in": "header",
                        "name": "Idempotency-Key",
                        "required": False,
                        "schema": {"type": "string", "pattern": schemas.IDEMPOTENCY_KEY_PATTERN},
                    }
                ],
                "requestBody": _body("TaskSubmission"),
                "responses": {
                    "202": _ok("accepted and stored", "Task", LOCATION),
                    **COMMON,
                    "409": _error(
                        "a task with this service_name and id exists, or the service holds "
                        "ORCHESTRATOR_MAX_TASKS_PER_SERVICE tasks (limit_reached)"
                    ),
                    "413": _error("request body too large"),
                    "415": _error("not application/json"),
                    "422": _error("Idempotency-Key reused for a different request"),
                },
            },
            "get": {
                "operationId": "listTasks",
                "summary": "List tasks, newest first",
                "security": secured,
                "parameters": [{"in": "query", "schema": built["list"]}],
                "responses": {"200": _ok("one page", "TaskPage"), **COMMON},
            },
        },
    )
    spec.path(
        path="/api/v1/pm/tasks/{service}/{task_id}",
        parameters=TASK_PARAMS,
        operations={
            "get": {
                "operationId": "getTask",
                "summary": "A task with its runs and recent history",
                "security": secured,
                "responses": {"200": _ok("the task", "Task"), **COMMON, "404": _error("no such task")},
            },
        },
    )
    spec.path(
        path="/api/v1/pm/tasks/{service}/{task_id}/context",
        parameters=TASK_PARAMS,
        operations={
            "post": {
                "operationId": "addContext",
                "summary": "Add a context document",
                "security": secured,
                "description": "Bumps the context version, cancels the active run of the older version and "
                "starts a new run with every earlier document plus `context-v<N>.md`.",
                "requestBody": _body("Context"),
                "responses": {
                    "202": _ok("stored; a new run follows", "Task", LOCATION),
                    **COMMON,
                    "404": _error("no such task"),
                    "409": _error("the task holds ORCHESTRATOR_MAX_CONTEXTS_PER_TASK documents (limit_reached)"),
                    "413": _error("request body too large"),
                    "415": _error("not application/json"),
                },
            },
        },
    )
    spec.path(
        path="/api/v1/pm/tasks/{service}/{task_id}/cancel",
        parameters=TASK_PARAMS,
        operations={
            "post": {
                "operationId": "cancelTask",
                "summary": "Cancel a task that has not ended",
                "security": secured,
                "requestBody": _body("Cancel", required=False),
                "responses": {
                    "200": _ok("cancelled", "Task"),
                    **COMMON,
                    "404": _error("no such task"),
                    "409": _error("the task already ended"),
                    "415": _error("not application/json"),
                },
            },
        },
    )
    spec.path(
        path="/api/v1/pm/tasks/{service}/{task_id}/retry",
        parameters=TASK_PARAMS,
        operations={
            "post": {
                "operationId": "retryTask",
                "summary": "Start a Failed or Cancelled task again",
                "security": secured,
                "responses": {
                    "202": _ok("queued again", "Task", LOCATION),
                    **COMMON,
                    "404": _error("no such task"),
                    "409": _error("the task is not Failed or Cancelled"),
                    "415": _error("not application/json"),
                },
            },
        },
    )
    spec.path(
        path="/api/v1/pm/tasks/{service}/{task_id}/logs",
        parameters=TASK_PARAMS,
        operations={
            "get": {
                "operationId": "taskLogs",
                "summary": "The agent's output of the latest run",
                "security": secured,
                "parameters": [{"in": "query", "schema": built["logs"]}],
                "responses": {
                    "200": {
                        "description": "output lines; streamed with follow=true",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **COMMON,
                    "404": _error("no such task, or it has no run yet"),
                },
            },
        },
    )
    spec.path(
        path="/api/v1/services/{service}/usage",
        parameters=TASK_PARAMS[:1],
        operations={
            "get": {
                "operationId": "serviceUsage",
                "summary": "A service's usage per UTC day and per agent",
                "security": secured,
                "parameters": [
                    {
                        "in": "query",
                        "name": "since",
                        "schema": {"type": "string", "format": "date"},
                        "description": "first day (YYYY-MM-DD); default: 30 days back; at most 366",
                    }
                ],
                "responses": {
                    "200": _ok(
                        "days with usage: totals and per agent (runs, priced_runs, cost_usd, token kinds, num_turns)"
                    ),
                    **COMMON,
                },
            },
        },
    )
    open_: dict[str, Any] = {"security": []}
    spec.path(
        path="/health",
        operations={
            "get": {"operationId": "health", "summary": "Liveness", **open_, "responses": {"200": _ok("alive")}}
        },
    )
    spec.path(
        path="/ready",
        operations={
            "get": {
                "operationId": "ready",
                "summary": "Readiness (Redis answers)",
                **open_,
                "responses": {"200": _ok("ready"), "503": _ok("Redis does not answer")},
            }
        },
    )
    doc = spec.to_dict()
    doc["security"] = secured
    return doc


def get_spec() -> dict[str, Any]:
    """The current app's document, built once."""
    doc = current_app.extensions.get("orchestrator_openapi")
    if doc is None:
        doc = build_spec(current_app.extensions["orchestrator"].settings)
        current_app.extensions["orchestrator_openapi"] = doc
    return doc


@bp.get("/api/v1/openapi.json")
def openapi_json() -> Response:
    """The OpenAPI 3 document, generated from the schemas that validate requests."""
    return jsonify(get_spec())


DOCS_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ doc.info.title }}</title>
<style>
body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.4}
code,pre{background:#f4f4f4;padding:0 .2rem}table{border-collapse:collapse;margin:.5rem 0}
td,th{border:1px solid #ccc;padding:.2rem .5rem;text-align:left;vertical-align:top}
h3{margin-top:2rem}.m{font-weight:bold;text-transform:uppercase}
</style></head><body>
<h1>{{ doc.info.title }} <small>{{ doc.info.version }}</small></h1>
<p>{{ doc.info.description }}</p>
<p>Machine-readable: <a href="/api/v1/openapi.json">/api/v1/openapi.json</a></p>
<h2>Endpoints</h2>
{% for path, item in doc.paths.items() %}{% for method, op in item.items() if method != 'parameters' %}
<h3><span class="m">{{ method }}</span> <code>{{ path }}</code></h3>
<p>{{ op.summary }}{% if op.security == [] %} (no token){% endif %}</p>
{% if op.description %}<p>{{ op.description }}</p>{% endif %}
{% set params = (item.parameters or []) + (op.parameters or []) %}
{% if params %}<table><tr><th>parameter</th><th>in</th><th>schema</th></tr>
{% for p in params %}<tr><td><code>{{ p.name }}</code>{% if p.required %} *{% endif %}</td><td>{{ p.in }}</td>
<td><code>{{ p.schema | tojson }}</code> {{ p.description or '' }}</td></tr>{% endfor %}</table>{% endif %}
{% if op.requestBody %}<p>Body: {% for ct, media in op.requestBody.content.items() %}<code>{{ ct }}</code>
<a href="#{{ media.schema['$ref'].split('/')[-1] }}">{{ media.schema['$ref'].split('/')[-1] }}</a>
{% endfor %}</p>{% endif %}
<table><tr><th>status</th><th>meaning</th></tr>
{% for code, r in op.responses.items() %}<tr><td>{{ code }}</td><td>{{ r.description }}</td></tr>{% endfor %}
</table>{% endfor %}{% endfor %}
<h2>Schemas</h2>
{% for name, s in doc.components.schemas.items() %}
<h3 id="{{ name }}">{{ name }}</h3>
<table><tr><th>field</th><th>type and rules</th><th>meaning</th></tr>
{% for field, f in (s.properties or {}).items() %}
<tr><td><code>{{ field }}</code>{% if field in (s.required or []) %} *{% endif %}</td>
<td><code>{{ f | tojson }}</code></td><td>{{ f.description or '' }}</td></tr>{% endfor %}</table>
{% endfor %}
</body></html>"""


@bp.get("/api/v1/docs")
def docs() -> str:
    """A human-readable page of the same document."""
    return render_template_string(DOCS_PAGE, doc=get_spec())
