"""Run outputs: what a run's agent leaves in its output directory (outputs.json, the hand-off file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

OUTPUTS_FILE = "outputs.json"
HANDOFF_FILE = "handoff.md"
# Optional: the agent's exit code as text, left by an agent (or a wrapper of its command) at its
# very end. With outputs.json, the only trace of a run whose Job was removed before its end was seen.
EXIT_CODE_FILE = "exit_code"
MAX_OUTPUT_BYTES = 64 * 1024
OUTPUT_KEYS = ("pull_request_url", "branch", "summary", "commit")


def run_output_dir(service: str, task_id: int, run_id: str) -> str:
    """Where a run's agent writes `outputs.json` and `handoff.md`, relative to the service's workspace.

    The launch step passes it to the agent as ORCHESTRATOR_OUTPUT_DIR.
    """
    return f".task/{task_id}/runs/{run_id}"


def read_outputs(workspace_dir: Path, service: str, task_id: int, run_id: str) -> dict[str, Any]:
    """What the agent left in its output directory: known keys of outputs.json and the hand-off file's path.

    The agent is an outsider here: only string values of known keys are kept,
    and nothing is followed outside the workspace.
    """
    root = workspace_dir.resolve()
    found: dict[str, Any] = {}
    try:
        resolved = (workspace_dir / run_output_dir(service, task_id, run_id)).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return found
    if not resolved.is_relative_to(root):
        return found
    try:
        outputs = resolved / OUTPUTS_FILE
        if outputs.is_file() and outputs.stat().st_size <= MAX_OUTPUT_BYTES:
            data = json.loads(outputs.read_text(errors="replace"))
            if isinstance(data, dict):
                found.update({k: v[:2000] for k, v in data.items() if k in OUTPUT_KEYS and isinstance(v, str)})
                if not found.get("pull_request_url", "https://").startswith("https://"):
                    del found["pull_request_url"]  # it is shown and linked: nothing but an https URL
    except (OSError, ValueError):
        pass  # unreadable or malformed outputs are the agent's problem, never the task's outcome
    try:
        handoff = resolved / HANDOFF_FILE
        if handoff.is_file() and handoff.resolve().is_relative_to(root):
            found["handoff_file"] = f"{run_output_dir(service, task_id, run_id)}/{HANDOFF_FILE}"
    except (OSError, RuntimeError):
        pass
    return found


def read_end(workspace_dir: Path, service: str, task_id: int, run_id: str) -> tuple[bool, int | None]:
    """What the run's output directory says of its end: (outputs.json was written, the exit code left).

    Read when a run's Job vanished before its end was seen: outputs.json is the
    contract's last step, so an agent that wrote it reached its end.
    """
    root = workspace_dir.resolve()
    try:
        resolved = (workspace_dir / run_output_dir(service, task_id, run_id)).resolve()
        if not resolved.is_relative_to(root):
            return False, None
        wrote_outputs = (resolved / OUTPUTS_FILE).is_file()
        marker = resolved / EXIT_CODE_FILE
        code: int | None = None
        if marker.is_file() and marker.stat().st_size <= 64:
            code = int(marker.read_text(errors="replace").strip())
    except (OSError, RuntimeError, ValueError):
        return False, None
    return wrote_outputs, code
