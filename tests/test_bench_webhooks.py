"""The webhook benchmark still runs (a tiny load; figures are printed, never asserted)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import REPO_ROOT


def test_the_benchmark_runs_and_every_delivery_is_accepted(base_env: dict[str, str]) -> None:
    result = subprocess.run(
        [sys.executable, "bench/webhooks.py", "--seconds", "1", "--warmup", "0.2", "--rounds", "1",
         "--connections", "2", "--processes", "1", "--workers", "1"],
        cwd=REPO_ROOT, env=base_env, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert any(line.startswith("ours") and "non-2xx 0" in line for line in lines), result.stdout
    assert any(line.startswith("bare") and "non-2xx 0" in line for line in lines), result.stdout
    assert "throughput ratio ours/bare" in result.stdout
