"""Files `orchestrator up` keeps in the data directory, so other commands find the local stack."""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path
from typing import Any

from orchestrator.runners.local import pid_alive

STATE_FILE = "up.json"  # pid and URLs of the running stack
LOCK_FILE = "up.lock"  # flock held while the stack runs
TOKEN_FILE = "api-token"  # the generated API token of the local stack (mode 0600)


def read_state(data_dir: Path) -> dict[str, Any] | None:
    try:
        state = json.loads((data_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) else None


def running_stack(data_dir: Path) -> dict[str, Any] | None:
    """The state of the `orchestrator up` running from this data dir, or None."""
    state = read_state(data_dir)
    if state and isinstance(state.get("pid"), int) and pid_alive(state["pid"]):
        return state
    return None


def write_state(data_dir: Path, state: dict[str, Any]) -> None:
    tmp = data_dir / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(state, indent=2, sort_keys=True))
    tmp.replace(data_dir / STATE_FILE)


def clear_state(data_dir: Path, pid: int) -> None:
    """Remove the state file when it is still ours."""
    state = read_state(data_dir)
    if state and state.get("pid") == pid:
        (data_dir / STATE_FILE).unlink(missing_ok=True)


def read_token(data_dir: Path) -> str:
    try:
        return (data_dir / TOKEN_FILE).read_text().strip()
    except OSError:
        return ""


def ensure_token(data_dir: Path) -> str:
    """The local stack's token: generated once, kept readable by this user only."""
    existing = read_token(data_dir)
    if existing:
        return existing
    token = secrets.token_urlsafe(32)
    path = data_dir / TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(token + "\n")
    return token
