"""Fixtures for Kubernetes tests: the emulator in its own thread, a client and runner pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from orchestrator.kube.client import KubeClient
from orchestrator.runners.kubernetes import KubernetesRunner
from orchestrator.settings import Settings
from tests.support.kube_emulator import KubeEmulator


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
