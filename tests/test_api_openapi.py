"""The OpenAPI document, the docs page, and a fuzz run of the API from its own document."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, given, settings as hypothesis_settings
from hypothesis.errors import Unsatisfiable
from openapi_spec_validator import validate
from schemathesis.generation import GenerationMode

from api.app import create_app
from orchestrator.settings import Settings
from orchestrator.store import TaskStore
from tests.support.api import AUTH, TOKEN, valid_task

EXAMPLES_PER_OPERATION = 25


@pytest.fixture
def app(settings: Settings) -> Flask:
    return create_app(settings)


def test_document_is_valid_openapi_and_open(app: Flask) -> None:
    response = app.test_client().get("/api/v1/openapi.json")
    assert response.status_code == 200
    doc = response.get_json()
    validate(doc)
    assert doc["openapi"].startswith("3.")
    assert set(doc["paths"]) >= {"/api/v1/pm/tasks", "/api/v1/pm/tasks/{service}/{task_id}",
                                 "/api/v1/pm/tasks/{service}/{task_id}/context",
                                 "/api/v1/pm/tasks/{service}/{task_id}/cancel",
                                 "/api/v1/pm/tasks/{service}/{task_id}/retry",
                                 "/api/v1/pm/tasks/{service}/{task_id}/logs"}
    submission = doc["components"]["schemas"]["TaskSubmission"]
    # Built from the same schema that validates, with the app's settings in it.
    assert submission["additionalProperties"] is False
    assert submission["properties"]["timeout_seconds"]["maximum"] == app.extensions["orchestrator"].settings.max_timeout_seconds
    assert set(submission["required"]) == {"id", "title", "service_name", "agent_name", "markdown_files"}
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}


def test_docs_page_lists_every_endpoint(app: Flask) -> None:
    page = app.test_client().get("/api/v1/docs")
    assert page.status_code == 200 and page.mimetype == "text/html"
    text = page.get_data(as_text=True)
    for path in ("/api/v1/pm/tasks/{service}/{task_id}/logs", "TaskSubmission", "markdown_files"):
        assert path in text


def _envelope_or_ok(case: Any, response: Any) -> None:
    assert response.status_code < 500, (case.method, case.formatted_path, response.status_code, response.text)
    if response.status_code >= 400:
        body = response.json()
        assert set(body) <= {"code", "message", "errors"} and body["code"] and body["message"], body


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_fuzz_from_the_document_finds_no_server_error(app: Flask, store: TaskStore, mode: GenerationMode) -> None:
    client = app.test_client()
    # A task to act on, so the task routes get past 404 sometimes.
    assert client.post("/api/v1/pm/tasks", json=valid_task(id=1, service_name="a"), headers=AUTH).status_code == 202
    store.create_run("a", 1, version=1, attempt=1)
    app.extensions["orchestrator"]._runner = _Lines()
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 9
    for operation in operations:
        strategy = operation.as_strategy(generation_mode=mode)

        @hypothesis_settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None,
                             suppress_health_check=list(HealthCheck), derandomize=True)
        @given(case=strategy)
        def run(case: Any) -> None:
            headers = dict(case.headers or {})
            headers.setdefault("Authorization", f"Bearer {TOKEN}")
            _envelope_or_ok(case, case.call(headers=headers))

        try:
            run()
        except Unsatisfiable:
            # Nothing in the operation can be made invalid (no parameters, no body).
            assert mode is GenerationMode.NEGATIVE and not operation.body and not operation.query


class _Lines:
    def logs(self, run_id: str, *, follow: bool = False, tail: int | None = None):
        yield from ["a\n", "b\n"]
