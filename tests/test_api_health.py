"""Health and readiness, and the error envelope."""

from __future__ import annotations

from api.app import create_app
from orchestrator.settings import Settings
from tests.support.redis_server import RedisServer


def test_health_touches_nothing() -> None:
    app = create_app(Settings.from_env({"ORCHESTRATOR_REDIS_URL": "redis://127.0.0.1:1/0"}))
    for path in ("/health", "/api/v1/health"):
        body = app.test_client().get(path).get_json()
        assert body["status"] == "ok" and body["version"] and body["timestamp"]


def test_ready_follows_redis(tmp_path) -> None:
    server = RedisServer(tmp_path / "r")
    server.start()
    app = create_app(Settings.from_env({"ORCHESTRATOR_REDIS_URL": server.url}))
    client = app.test_client()
    assert client.get("/ready").status_code == 200
    server.stop()
    assert client.get("/ready").status_code == 503
    server.start()
    assert client.get("/ready").status_code == 200
    server.stop()


def test_unknown_route_is_an_envelope() -> None:
    app = create_app(Settings.from_env({}))
    response = app.test_client().get("/nope")
    assert response.status_code == 404
    assert set(response.get_json()) == {"code", "message"}
