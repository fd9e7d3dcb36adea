"""A test agent that counts its own starts: one line per start appended to the file named by argv[1].

It changes one file in its checkout (so delivery has a commit to push and a
pull request to open), writes its outputs and exits 0 after a moment.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    run_id = os.environ.get("ORCHESTRATOR_RUN_ID", "?")
    with open(sys.argv[1], "a") as counter:  # O_APPEND: concurrent starts each add their line
        counter.write(f"{run_id}\n")
    Path(f"agent-{os.environ.get('ORCHESTRATOR_TASK_ID', 'x')}.txt").write_text(f"written by run {run_id}\n")
    output = os.environ.get("ORCHESTRATOR_OUTPUT_DIR")
    if output:
        Path(output).mkdir(parents=True, exist_ok=True)
        Path(output, "outputs.json").write_text(json.dumps({"summary": f"run {run_id} wrote one file"}))
    time.sleep(float(os.environ.get("COUNTING_AGENT_SECONDS", "0.3")))
    print(f"counting agent: run {run_id} done", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
