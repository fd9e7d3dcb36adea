"""The quick start, as a new user runs it: `orchestrator up`, submit the example, follow it to Succeeded."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.cli import processes
from tests.cli.up_process import alive, cli

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "tasks.json")

# Every piece of the pipeline the example crosses, and who brings it.
PIECES = {
    "api.tasks": "the PM API (issue 3, branch api)",
    "orchestrator.coordination": "admit/finish coordination (branch coord)",
    "orchestrator.workspace.prepare": "workspace preparation (branch workspace)",
    "orchestrator.runners.local": "the local runner (branch kube)",
    "orchestrator.watcher": "the watcher, `orchestrator watcher` (branch kube)",
    "orchestrator.agents.example": "the built-in example agent (branch kube)",
}


def _present(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # its parent package is missing
        return False


MISSING = [who for module, who in PIECES.items() if not _present(module)]


@pytest.mark.xfail(bool(MISSING), reason="not on this branch yet: " + "; ".join(MISSING), run=False,
                   raises=(AssertionError, subprocess.TimeoutExpired))
def test_quick_start_reaches_succeeded_and_ctrl_c_leaves_nothing(up_factory, tmp_path: Path) -> None:
    # No API key: the built-in example agent runs, not Claude Code.
    up = up_factory(env={"ANTHROPIC_API_KEY": None, "ORCHESTRATOR_LOCAL_AGENT_COMMAND": None,
                         "ORCHESTRATOR_API_TOKENS": None})
    up.start()
    data_dir = Path(up.env["ORCHESTRATOR_DATA_DIR"])
    # The other terminal: nothing configured but the data dir; the CLI finds the stack and its token.
    env = {k: v for k, v in up.env.items() if k not in ("ORCHESTRATOR_API_URL", "ORCHESTRATOR_API_TOKEN")}
    try:
        submitted = cli(env, "task", "submit", "--task-json", EXAMPLE, "--task-id", "1", "--service", "demo",
                        "--agent", "claude")
        assert submitted.returncode == 0, submitted.stderr
        assert submitted.stdout.startswith("submitted demo/1: Pending")

        followed = subprocess.run([sys.executable, "-m", "orchestrator.cli", "task", "logs", "demo/1", "-f"],
                                  env=env, capture_output=True, text=True, timeout=240)
        assert followed.returncode == 0, followed.stderr
        assert "example agent" in followed.stdout

        watched = subprocess.run([sys.executable, "-m", "orchestrator.cli", "task", "watch", "demo/1",
                                  "--interval", "0.5"], env=env, capture_output=True, text=True, timeout=120)
        assert watched.returncode == 0, watched.stdout + watched.stderr
        assert watched.stdout.splitlines()[-1].split()[2] == "Succeeded"

        status = cli(env, "task", "status", "demo/1", "-o", "json")
        task = json.loads(status.stdout)
        assert task["status"] == "Succeeded" and task["runs"] and task["runs"][-1]["finished_at"]
        assert (Path(up.env.get("ORCHESTRATOR_WORKSPACE_ROOT") or data_dir / "workspaces") / "demo").is_dir()
    except BaseException:
        print(up.output(), up.logs(), sep="\n")
        raise
    finally:
        children = processes.descendants(up.proc.pid)
        assert up.interrupt() == 0
        assert [pid for pid in children if alive(pid)] == []
