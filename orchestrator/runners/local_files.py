"""What a local run leaves on disk, read from outside the run: its log's tail, and whether its supervisor lives.

The supervisor (orchestrator/runners/local_supervisor.py) writes `status.json`
and touches a heartbeat; a process in another PID namespace (another
container on the same volume) cannot see its pid, so the heartbeat decides there.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any, BinaryIO

TAIL_BLOCK = 65536
TAIL_MAX_BYTES = 4 << 20  # a tail never reads more than this, however long its lines


def tail_lines(handle: BinaryIO, count: int) -> list[bytes]:
    """The last `count` lines of a file, read backwards in blocks; leaves the handle at the end.

    Memory and reads are bounded by the lines asked for (at most TAIL_MAX_BYTES),
    never by the file's size: a 200 MB log costs a few blocks.
    """
    end = handle.seek(0, os.SEEK_END)
    if count <= 0:
        return []
    blocks: list[bytes] = []
    position, newlines = end, 0
    # One newline more than the lines asked for marks where the first of them starts
    # (a final newline ends the last line and does not count).
    while position > 0 and newlines <= count and end - position < TAIL_MAX_BYTES:
        size = min(TAIL_BLOCK, position)
        position -= size
        handle.seek(position)
        block = handle.read(size)
        blocks.append(block)
        newlines += block.count(b"\n")
    handle.seek(end)
    lines = b"".join(reversed(blocks)).splitlines()
    if position > 0 and lines:
        lines = lines[1:] if newlines > count else lines  # the first line is only a part
    return lines[-count:]


def supervisor_running(run_dir: Path) -> bool:
    """True when a supervisor holds the run's lock (it started and has not exited)."""
    from orchestrator.runners.local_supervisor import take_lock

    fd = take_lock(run_dir)
    if fd is None:
        return True
    os.close(fd)  # nobody held it: closing releases it at once
    return False


HEARTBEAT_STALE_SECONDS = 30.0


def same_namespace(status: dict[str, Any]) -> bool:
    """True when the supervisor's pid means the same process here (same machine boot and PID namespace)."""
    from orchestrator.runners.local_supervisor import process_namespace

    theirs = status.get("pid_namespace")
    return theirs is None or theirs == process_namespace()  # None: written before namespaces were recorded


def supervisor_alive(run_dir: Path, status: dict[str, Any]) -> bool:
    """Whether the supervisor of a Running run lives: by pid where we share its namespace, else by heartbeat.

    docker compose runs the supervisors in the deploy worker's container and
    the watcher in another; there the pid names nobody, or somebody else.
    """
    if same_namespace(status):
        return pid_alive(int(status.get("pid", 0)))
    from orchestrator.runners.local_supervisor import HEARTBEAT_FILE

    try:
        age = time.time() - (run_dir / HEARTBEAT_FILE).stat().st_mtime
    except FileNotFoundError:
        return False
    return age < HEARTBEAT_STALE_SECONDS


def pid_alive(pid: int) -> bool:
    """True when a process with that pid exists (ours or not) and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed supervisor nobody reaped yet (no init in the container) is dead
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def signal_group(pgid: int, sig: int) -> None:
    if pgid <= 0:
        return  # 0 or less would signal our own group, or every process we may signal
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def kill_lost_agent(pgid: int, run_id: str) -> bool:
    """SIGKILL the agent group of a run declared lost, if it still runs; True when it did.

    A supervisor killed outright leaves its agent working: the retry would then
    start a second agent in the same checkout. The group id may have been
    reused since, so a group is killed only when one of its processes carries
    this run's id in its environment (the agent contract's ORCHESTRATOR_RUN_ID).
    """
    if pgid <= 0:
        return False
    wanted = f"ORCHESTRATOR_RUN_ID={run_id}".encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            if wanted in (entry / "environ").read_bytes().split(b"\0"):
                signal_group(pgid, signal.SIGKILL)
                return True
        except (OSError, IndexError, ValueError):
            continue
    return False
