"""Files `orchestrator up` keeps in the data directory, so other commands find the local stack."""

from __future__ import annotations

import fcntl
import json
import os
import secrets
from pathlib import Path
from typing import IO, Any

from orchestrator.cli.errors import Conflict
from orchestrator.runners.local_files import pid_alive

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


def acquire_lock(data_dir: Path) -> IO[str]:
    """Hold `up.lock` for as long as we run; a second `up` sees it taken and says so."""
    handle = open(data_dir / LOCK_FILE, "a+")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        state = read_state(data_dir) or {}
        where = f" with the API at {state['api_url']}" if state.get("api_url") else ""
        pid = f" (pid {state['pid']})" if state.get("pid") else ""
        raise Conflict(
            f"orchestrator up is already running from {data_dir}{pid}{where}; use it, or stop it "
            "with Ctrl-C in its terminal first"
        ) from None
    return handle


def ensure_secret(path: Path) -> str:
    """A generated secret kept in `path` (mode 0600): made once, the same on every start."""
    try:
        existing = path.read_text().strip()
    except OSError:
        existing = ""
    if existing:
        os.chmod(path, 0o600)
        return existing
    secret = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret


def private_dir(path: Path, group: int | None = None) -> Path:
    """`path` created if needed and closed to other users: 0700, or 0710 (enter, not list) for `group`."""
    path.mkdir(parents=True, exist_ok=True)
    if group is None:
        os.chmod(path, 0o700)
    else:
        os.chown(path, -1, group)
        os.chmod(path, 0o710)
    return path


def private_files(directory: Path) -> None:
    """Plain files directly in `directory` (state, tokens, passwords) readable by their owner only."""
    for entry in directory.iterdir():
        if entry.is_file() and not entry.is_symlink():
            os.chmod(entry, entry.stat().st_mode & 0o700)
