"""A tiny, real agent: `python -m orchestrator.agents.example`.

It reads the task's CLAUDE.md (and the other markdown documents beside it)
in its working directory, prints what it read, and writes
$ORCHESTRATOR_OUTPUT_DIR/result.json. It needs no API key, so the whole
system runs end to end on a laptop.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path


def main() -> int:
    """Read the task documents and write a result file; exit 2 when there is no CLAUDE.md."""
    cwd = Path.cwd()
    brief = cwd / "CLAUDE.md"
    run_id = os.environ.get("ORCHESTRATOR_RUN_ID", "")
    print(f"example agent: run {run_id} in {cwd}", flush=True)
    if not brief.is_file():
        print("example agent: no CLAUDE.md here; nothing to do", file=sys.stderr, flush=True)
        return 2
    documents = sorted(p.name for p in cwd.glob("*.md"))
    text = brief.read_text(errors="replace")
    title = next((line.lstrip("# ").strip() for line in text.splitlines() if line.strip()), "")
    for name in documents:
        print(f"example agent: read {name} ({(cwd / name).stat().st_size} bytes)", flush=True)
    output_dir = Path(os.environ.get("ORCHESTRATOR_OUTPUT_DIR") or cwd / ".orchestrator" / "runs" / (run_id or "run"))
    output_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "run_id": run_id,
        "agent": "example",
        "model": os.environ.get("ANTHROPIC_MODEL", ""),
        "title": title,
        "documents": documents,
        "summary": f"Read {len(documents)} document(s); the task is: {title}" if title else "Read the task.",
        "finished_at": time.time(),
    }
    tmp = output_dir / ".result.json.tmp"
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, output_dir / "result.json")
    print(f"example agent: wrote {output_dir / 'result.json'}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
