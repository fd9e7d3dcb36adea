"""A local agent for the parallel-run test and benchmark: `python parallel_agent.py <log dir> <seconds>`.

It records when it started and ended (time.time(), for overlap measured from
its own timestamps), whether it found another task's file in its checkout,
then writes `notes.txt` (the same name in every task's worktree) with its
task id, sleeps, checks the file is still its own, commits it on the checked-out
branch and writes its summary to the output directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

IDENTITY = {"GIT_AUTHOR_NAME": "parallel agent", "GIT_AUTHOR_EMAIL": "agent@example.invalid",
            "GIT_COMMITTER_NAME": "parallel agent", "GIT_COMMITTER_EMAIL": "agent@example.invalid"}


def git(*args: str) -> str:
    return subprocess.run(["git", *args], env={**os.environ, **IDENTITY}, capture_output=True, text=True,
                          check=True).stdout.strip()


def main() -> int:
    log_dir, seconds = Path(sys.argv[1]), float(sys.argv[2])
    task_id, run_id = os.environ["ORCHESTRATOR_TASK_ID"], os.environ["ORCHESTRATOR_RUN_ID"]
    record = {"task": int(task_id), "run": run_id, "cwd": os.getcwd(), "start": time.time()}
    notes = Path("notes.txt")
    record["found_before"] = notes.read_text() if notes.exists() else None
    record["branch"] = git("rev-parse", "--abbrev-ref", "HEAD")
    notes.write_text(f"{task_id}\n")
    time.sleep(seconds)
    record["after_sleep"] = notes.read_text()
    git("add", "notes.txt")
    git("commit", "--quiet", "-m", f"notes for task {task_id}")
    out = Path(os.environ["ORCHESTRATOR_OUTPUT_DIR"])
    out.mkdir(parents=True, exist_ok=True)
    (out / "outputs.json").write_text(json.dumps({"summary": f"wrote notes for task {task_id}"}))
    record["end"] = time.time()
    log_dir.mkdir(parents=True, exist_ok=True)
    (log_dir / f"{run_id}.json").write_text(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
