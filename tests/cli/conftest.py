"""Fixtures of the command-line tests."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.settings import reset_settings_cache
from tests.cli.fake_api import FakeApi
from tests.cli.up_process import Up


@pytest.fixture
def up_factory(base_env: dict[str, str], tmp_path: Path) -> Iterator:
    started: list[Up] = []

    def make(*extra: str, env: dict[str, str] | None = None) -> Up:
        merged = {k: v for k, v in {**base_env, **(env or {})}.items() if v is not None}  # None removes
        up = Up(merged, tmp_path, *extra)
        started.append(up)
        return up

    yield make
    for up in started:
        up.stop()


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeApi]:
    """A scripted API that the PM commands reach through the environment alone (nothing else of ours set)."""
    with FakeApi() as fake:
        for key in [k for k in os.environ if k.startswith("ORCHESTRATOR_")]:
            monkeypatch.delenv(key)
        monkeypatch.setenv("ORCHESTRATOR_API_URL", fake.url)
        monkeypatch.setenv("ORCHESTRATOR_API_TOKEN", "tok")
        monkeypatch.setenv("ORCHESTRATOR_DATA_DIR", str(tmp_path / "data"))
        reset_settings_cache()
        yield fake
        reset_settings_cache()
