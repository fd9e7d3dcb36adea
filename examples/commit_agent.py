#!/usr/bin/env python3
"""An agent that needs no API key and leaves a commit: reads the task files, writes a change, commits it.

Use it as the local runner's agent to see the whole flow on a git checkout:

    ORCHESTRATOR_LOCAL_AGENT_COMMAND="python $PWD/examples/commit_agent.py" orchestrator up

It runs in the workspace directory the runner gives it: it reads CLAUDE.md
(and the task's documents under .task/), writes `agent-notes/<run>.md`
summarising them, and, when the directory is a git checkout, commits that
file on the checked-out branch (it never pushes). Without a checkout it only
writes the file. Exit 2 when there is no CLAUDE.md to read.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

IDENTITY = {"GIT_AUTHOR_NAME": "Orchestrator example agent", "GIT_AUTHOR_EMAIL": "agent@orchestrator.invalid",
            "GIT_COMMITTER_NAME": "Orchestrator example agent", "GIT_COMMITTER_EMAIL": "agent@orchestrator.invalid"}


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The configured identity wins; ours only fills a gap (a fresh container has none).
    env = {**IDENTITY, **os.environ}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)


def title_of(text: str) -> str:
    return next((line.lstrip("# ").strip() for line in text.splitlines() if line.strip()), "the task")


def main() -> int:
    """Read, write, commit; print what happened so `orchestrator task logs` shows it."""
    cwd = Path.cwd()
    brief = cwd / "CLAUDE.md"
    run_id = os.environ.get("ORCHESTRATOR_RUN_ID", "") or "run"
    if not brief.is_file():
        print(f"commit agent: no CLAUDE.md in {cwd}; nothing to do", file=sys.stderr, flush=True)
        return 2
    documents = sorted([brief, *cwd.glob(".task/**/*.md")])
    for doc in documents:
        print(f"commit agent: read {doc.relative_to(cwd)}", flush=True)
    title = title_of(brief.read_text(errors="replace"))
    notes = cwd / "agent-notes" / f"{run_id}.md"
    notes.parent.mkdir(parents=True, exist_ok=True)
    notes.write_text(f"# {title}\n\nRun `{run_id}` read:\n\n"
                     + "".join(f"- `{doc.relative_to(cwd)}`\n" for doc in documents))
    print(f"commit agent: wrote {notes.relative_to(cwd)}", flush=True)
    if git(cwd, "rev-parse", "--is-inside-work-tree").returncode != 0:
        print("commit agent: not a git checkout; nothing to commit", flush=True)
        return 0
    branch = git(cwd, "rev-parse", "--abbrev-ref", "HEAD").stdout.strip()
    added = git(cwd, "add", "--", str(notes.relative_to(cwd)))
    committed = git(cwd, "commit", "--no-verify", "-m", f"{title}\n\nWritten by the example agent, run {run_id}.")
    if added.returncode or committed.returncode:
        print(f"commit agent: git failed: {(added.stderr + committed.stderr).strip()}", file=sys.stderr, flush=True)
        return 1
    sha = git(cwd, "rev-parse", "--short", "HEAD").stdout.strip()
    print(f"commit agent: committed {sha} on {branch}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
