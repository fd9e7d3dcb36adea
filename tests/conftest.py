"""Shared fixtures: a real redis-server per session, settings pointing at it, a real worker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from orchestrator import dispatch, runtime
from orchestrator.kube.client import KubeClient
from orchestrator.runners.kubernetes import KubernetesRunner
from orchestrator.settings import Settings, reset_settings_cache
from orchestrator.store import TaskStore, connect
from tests.support.api import route_steps_to
from tests.support.celery_app import point_celery_at
from tests.support.celery_worker import WorkerProcess
from tests.support.fake_github import FakeGitHub
from tests.support.github import BOT, REPO, SECRET, SERVICE
from tests.support.kube_emulator import KubeEmulator
from tests.support.redis_server import RedisServer

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _fresh_dispatcher() -> Iterator[None]:
    """No test sees the dispatcher another test installed or built (each builds its own on first send)."""
    yield
    dispatch.install(None)


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """A redis-server of the test session's own, on a free port."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: RedisServer) -> Iterator[str]:
    """The session's Redis, emptied before each test."""
    if redis_server.process is None:  # a fault test stopped it
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    yield redis_server.url


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server for one test alone, which the test may stop and restart."""
    server = RedisServer(tmp_path / "redis", appendonly=True)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def base_env(tmp_path: Path, redis_url: str) -> dict[str, str]:
    """An environment for child processes: our Redis, a temporary workspace, no cluster."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env.update({
        "ORCHESTRATOR_REDIS_URL": redis_url,
        "ORCHESTRATOR_RUNNER": "local",
        "ORCHESTRATOR_WORKSPACE_ROOT": str(tmp_path / "workspaces"),
        "ORCHESTRATOR_DATA_DIR": str(tmp_path / "data"),
        "ORCHESTRATOR_API_TOKENS": "test-token",
        # git.example.test is the tests' own git server (tests/support/git_server.py).
        "ORCHESTRATOR_ALLOWED_GIT_HOSTS": "github.com,git.example.test",
        "PYTHONPATH": str(REPO_ROOT),
    })
    return env


@pytest.fixture
def settings(base_env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Settings]:
    """Settings parsed from `base_env`, also installed as this process's settings."""
    for key, value in base_env.items():
        if key.startswith("ORCHESTRATOR_"):
            monkeypatch.setenv(key, value)
    reset_settings_cache()
    runtime.reset()
    parsed = Settings.from_env(base_env)
    # Steps sent by a test that installs no dispatcher of its own go to this test's Redis:
    # workers.app registers a default built from whatever environment first imported it
    # (import it now, so its registration is the one replaced), and ours builds on first send.
    import workers.app  # noqa: F401
    from orchestrator.celery_app import create_celery
    from orchestrator.celery_dispatch import CeleryDispatcher

    built: list[Any] = []

    def _dispatcher() -> CeleryDispatcher:
        celery = create_celery(parsed)
        built.append(celery)
        return CeleryDispatcher(celery)

    previous = dispatch.set_default(_dispatcher)
    yield parsed
    dispatch.set_default(previous)
    for celery in built:
        celery.close()
    reset_settings_cache()
    runtime.reset()


@pytest.fixture
def store(redis_url: str) -> Iterator[TaskStore]:
    client = connect(redis_url)
    yield TaskStore(client, history_limit=50)
    client.close()


@pytest.fixture
def worker_factory(base_env: dict[str, str], tmp_path: Path) -> Iterator:
    """Start real Celery workers; every one is stopped at the end of the test."""
    started: list[WorkerProcess] = []

    def start(queues=("events", "coordination", "workspace", "deploy"), **kwargs) -> WorkerProcess:
        env = dict(base_env)
        env.update(kwargs.pop("env", {}))
        worker = WorkerProcess(env, tmp_path / f"worker-{len(started)}.log", queues=queues, **kwargs)
        started.append(worker)
        worker.start()
        return worker

    yield start
    for worker in started:
        worker.stop()


# Kubernetes: the emulator in its own thread, a client and runner pointed at it ---------------


@pytest.fixture
def emulator() -> Iterator[KubeEmulator]:
    emu = KubeEmulator()
    emu.start()
    yield emu
    emu.stop()


@pytest.fixture
def kube_settings(settings: Settings) -> Settings:
    return settings.replace(runner="kubernetes", namespace="default", kube_request_timeout=2.0, kube_retries=3,
                            reconcile_seconds=0.2, pending_timeout_seconds=300)


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def kube_client(emulator: KubeEmulator, kube_settings: Settings, sleeps: list[float]) -> Iterator[KubeClient]:
    api = emulator.api_client()
    client = KubeClient.from_settings(kube_settings, api, backoff=0.001, max_backoff=0.01, sleep=sleeps.append)
    yield client
    api.close()


@pytest.fixture
def kube_runner(kube_settings: Settings, kube_client: KubeClient) -> KubernetesRunner:
    return KubernetesRunner(kube_settings, kube_client)


# GitHub ---------------------------------------------------------------------------------------


@pytest.fixture
def github_settings(settings: Settings, redis_url: str) -> Iterator[Settings]:
    """Settings with a webhook secret, the corpus repository mapped, `bug` as trigger label."""
    point_celery_at(redis_url)
    yield settings.replace(
        github_webhook_secrets=(SECRET,),
        github_repositories={REPO.lower(): SERVICE},
        github_trigger_label="bug",
        github_bot_login=BOT,
    )


# The API -------------------------------------------------------------------------------------


@pytest.fixture
def app(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    """The API app against the test Redis, its steps queued there (no worker takes them unless a test starts one)."""
    celery = route_steps_to(settings, monkeypatch)
    yield create_app(settings)
    celery.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def github() -> Iterator[FakeGitHub]:
    """GitHub's REST API as a fake served over HTTP (tests/support/fake_github.py)."""
    fake = FakeGitHub().start()
    yield fake
    fake.stop()
