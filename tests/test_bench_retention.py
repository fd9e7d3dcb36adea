"""The retention soak on a tiny size: it runs, and the store holds only the retained days at the end."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO_ROOT


def test_the_soak_keeps_only_the_retained_days(tmp_path: Path) -> None:
    out = tmp_path / "retention.json"
    subprocess.run(
        [sys.executable, str(REPO_ROOT / "bench" / "retention.py"), "--days", "5", "--per-day", "40",
         "--retention", "2", "--json", str(out)],
        check=True, capture_output=True, timeout=300,
    )
    figures = json.loads(out.read_text())
    assert figures["submitted"] == 200
    assert figures["stored_at_end"] == 80  # two days of 40: the older three were deleted
    assert [day["purged"] for day in figures["series"]] == [0, 0, 40, 40, 40]
    assert figures["bytes_per_task"] > 0
