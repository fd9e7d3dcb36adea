"""The local runner's agents under `orchestrator up`: which user they run as, and their runs when `up` stops.

As root, agents run as their own unprivileged user, so they cannot read the
stack's secrets; when that cannot be had, `up` says plainly that the local
runner is no security boundary. Runs still going when `up` stops are abandoned,
not cancelled: the next `up` finds them lost and runs them again.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from orchestrator.cli.errors import UsageError
from orchestrator.cli.processes import descendants, reap_children
from orchestrator.runners import agent_user
from orchestrator.runners.agent_user import AgentUser
from orchestrator.settings import Settings


@dataclass(frozen=True)
class AgentBoundary:
    """Who local agents run as, or why they run as this process's user (no boundary)."""

    user: AgentUser | None
    why_not: str = ""


def choose_agent_user(settings: Settings) -> AgentBoundary:
    """The dedicated user local agents run as, created when missing; else why there is none.

    Only a root `up` can switch users. The default user falls back to no boundary
    (said in the banner) when it cannot be used; a user named explicitly in
    ORCHESTRATOR_LOCAL_AGENT_USER that cannot be used is an error.
    """
    configured = os.environ.get("ORCHESTRATOR_LOCAL_AGENT_USER")
    if settings.runner != "local":
        return AgentBoundary(None, "")
    if configured is not None and not configured.strip():
        return AgentBoundary(None, "ORCHESTRATOR_LOCAL_AGENT_USER is empty")
    name = (configured or "").strip() or agent_user.DEFAULT_USER
    if os.geteuid() != 0:
        existing = agent_user.lookup(name)
        if existing is not None and existing.uid == os.geteuid():
            return AgentBoundary(None, f"up itself runs as {name}")
        if configured:
            raise UsageError(f"ORCHESTRATOR_LOCAL_AGENT_USER={name} needs `orchestrator up` to run as root")
        return AgentBoundary(None, "up does not run as root, so agents run as this user")
    try:
        user = agent_user.ensure(name)
    except OSError as exc:
        if configured:
            raise UsageError(f"cannot use ORCHESTRATOR_LOCAL_AGENT_USER={name}: {exc}") from None
        return AgentBoundary(None, f"the user {name} cannot be created ({exc})")
    from orchestrator.runners.local import default_local_command

    command = default_local_command(settings)
    program = shutil.which(command[0]) if command else None
    # The agent's program must be runnable by it (an interpreter under /root is not).
    blocked = agent_user.unreachable(Path(os.path.realpath(program)).parent, user) if program else None
    if blocked is not None:
        why = f"{name} cannot enter {blocked}, on the way to the agent program {program}"
        if configured:
            raise UsageError(f"ORCHESTRATOR_LOCAL_AGENT_USER={name}: {why}")
        return AgentBoundary(None, why)
    return AgentBoundary(user)


def abandon_local_runs(data_dir: Path, wait: float = 10.0) -> list[str]:
    """Tell the supervisors of running local runs that the platform goes away, and wait for them.

    They stop their agents and write no outcome: the next `up` finds the runs
    lost (a platform failure, retried), where a plain SIGTERM would cancel them.
    """
    from orchestrator.runners.local_supervisor import ABANDON

    pids: dict[str, int] = {}
    runs_dir = data_dir / "runs"
    for status_file in runs_dir.glob("*/status.json") if runs_dir.is_dir() else []:
        try:
            status = json.loads(status_file.read_text())
            pid = int(status.get("pid") or 0)
        except (OSError, ValueError, TypeError):
            continue
        if status.get("phase") == "Running" and pid > 0 and pid in descendants(os.getpid()):
            try:
                os.kill(pid, ABANDON)
                pids[status_file.parent.name] = pid
            except ProcessLookupError:
                pass
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline and any(pid in descendants(os.getpid()) for pid in pids.values()):
        reap_children()
        time.sleep(0.05)
    return list(pids)
