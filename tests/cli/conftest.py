"""Fixtures of the command-line tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

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
