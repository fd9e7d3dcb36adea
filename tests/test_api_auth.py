"""Bearer tokens: every PM route needs one; health, readiness, metrics and docs stay open."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from api.app import create_app
from api.auth import token_accepted
from orchestrator.settings import Settings
from tests.support.api import valid_task

PM_ROUTES = [
    ("POST", "/api/v1/pm/tasks"), ("GET", "/api/v1/pm/tasks"), ("GET", "/api/v1/pm/tasks/billing/7"),
    ("POST", "/api/v1/pm/tasks/billing/7/context"), ("POST", "/api/v1/pm/tasks/billing/7/cancel"),
    ("POST", "/api/v1/pm/tasks/billing/7/retry"), ("GET", "/api/v1/pm/tasks/billing/7/logs"),
]
BAD_HEADERS = [
    {}, {"Authorization": "test-token"}, {"Authorization": "Basic dGVzdC10b2tlbg=="},
    {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer "}, {"Authorization": "Bearer test-token-x"},
    {"Authorization": "Bearer tést"},
]


@pytest.fixture
def client(settings: Settings) -> FlaskClient:
    return create_app(settings.replace(api_tokens=("old-token", "test-token"))).test_client()


@pytest.mark.parametrize(("method", "path"), PM_ROUTES)
@pytest.mark.parametrize("headers", BAD_HEADERS, ids=range(len(BAD_HEADERS)))
def test_refused_without_a_valid_token(client: FlaskClient, method: str, path: str, headers: dict) -> None:
    response = client.open(path, method=method, json=valid_task(), headers=headers)
    assert response.status_code == 401
    assert response.get_json() == {"code": "unauthorized", "message": "authentication required"}
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_every_configured_token_works(client: FlaskClient) -> None:
    for token in ("old-token", "test-token"):
        response = client.get("/api/v1/pm/tasks", headers={"Authorization": f"bearer {token}"})
        assert response.status_code == 200


def test_no_configured_token_refuses_everyone(settings: Settings) -> None:
    client = create_app(settings.replace(api_tokens=())).test_client()
    for header in ("Bearer ", "Bearer test-token", "Bearer x"):
        assert client.get("/api/v1/pm/tasks", headers={"Authorization": header}).status_code == 401


@pytest.mark.parametrize("path", ["/health", "/api/v1/health", "/ready", "/metrics", "/api/v1/openapi.json",
                                  "/api/v1/docs"])
def test_open_routes(client: FlaskClient, path: str) -> None:
    assert client.get(path).status_code == 200


def test_token_comparison() -> None:
    assert token_accepted("a", ("a", "b")) and token_accepted("b", ("a", "b"))
    assert not token_accepted("", ("",)) and not token_accepted("c", ("a", "b"))
    assert not token_accepted("é", ("e",)) and not token_accepted("a", ())
