#!/usr/bin/env python3
"""An agent that needs no API key and leaves a commit: reads the task files, writes a change, commits it.

Use it as the local runner's agent to see the whole flow on a git checkout:

    ORCHESTRATOR_LOCAL_AGENT_COMMAND="python $PWD/examples/commit_agent.py" orchestrator up

It runs in the workspace directory the runner gives it: it reads CLAUDE.md
and the task documents it links to (the title comes from task.md, never from
CLAUDE.md's `<!-- orchestrator ... -->` header), writes
`agent-notes/<run>.md` summarising them, and, when the directory is a git
checkout, commits that file on the checked-out branch. It never pushes: the
orchestrator's delivery pushes the branch and opens the pull request. It
writes its summary to $ORCHESTRATOR_OUTPUT_DIR/outputs.json. Without a
checkout it only writes the files. Exit 2 when there is no CLAUDE.md to read.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

IDENTITY = {"GIT_AUTHOR_NAME": "Orchestrator example agent", "GIT_AUTHOR_EMAIL": "agent@orchestrator.invalid",
            "GIT_COMMITTER_NAME": "Orchestrator example agent", "GIT_COMMITTER_EMAIL": "agent@orchestrator.invalid"}


def git(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # The configured identity wins; ours only fills a gap (a fresh container has none).
    env = {**IDENTITY, **os.environ}
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True, check=False)


LINK = re.compile(r"^- \[[^\]]+\]\(([^)\s]+)\)")
TASK_HEADING = re.compile(r"^#\s+Task\s+\d+:\s*(.+?)\s*$")


def task_documents(cwd: Path, brief: str) -> list[Path]:
    """The documents CLAUDE.md links to (paths relative to where the agent starts), that exist."""
    found = []
    for line in brief.splitlines():
        match = LINK.match(line.strip())
        if match and (cwd / match.group(1)).is_file():
            found.append(cwd / match.group(1))
    return found


def title_of(brief: str, documents: list[Path]) -> str:
    """The heading of task.md (`# Task 7: Add login` gives `Add login`), else CLAUDE.md's first heading."""
    texts = [doc.read_text(errors="replace") for doc in documents if doc.name == "task.md"] + [brief]
    for text in texts:
        for line in text.splitlines():
            match = TASK_HEADING.match(line)
            if match:
                return match.group(1)
    return next((line[2:].strip() for line in brief.splitlines() if line.startswith("# ")), "the task")


def main() -> int:
    """Read, write, commit; print what happened so `orchestrator task logs` shows it."""
    cwd = Path.cwd()
    brief = cwd / "CLAUDE.md"
    run_id = os.environ.get("ORCHESTRATOR_RUN_ID", "") or "run"
    if not brief.is_file():
        print(f"commit agent: no CLAUDE.md in {cwd}; nothing to do", file=sys.stderr, flush=True)
        return 2
    text = brief.read_text(errors="replace")
    documents = [brief, *task_documents(cwd, text)]
    for doc in documents:
        print(f"commit agent: read {os.path.relpath(doc, cwd)}", flush=True)
    title = title_of(text, documents)
    notes = cwd / "agent-notes" / f"{run_id}.md"
    notes.parent.mkdir(parents=True, exist_ok=True)
    notes.write_text(f"# {title}\n\nRun `{run_id}` read:\n\n"
                     + "".join(f"- `{os.path.relpath(doc, cwd)}`\n" for doc in documents))
    print(f"commit agent: wrote {notes.relative_to(cwd)}", flush=True)
    output_dir = os.environ.get("ORCHESTRATOR_OUTPUT_DIR")
    if output_dir:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
        (Path(output_dir) / "outputs.json").write_text(json.dumps(
            {"summary": f"Wrote agent-notes/{run_id}.md listing the {len(documents)} document(s) read."}))
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
