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
    handoff = os.environ.get("ORCHESTRATOR_HANDOFF_FILE")
    if handoff:
        # A pipeline stage: the previous agent's notes, relative to the service's directory.
        print(f"example agent: received hand-off {handoff}", flush=True)
        result["received_handoff"] = handoff
    if os.environ.get("ORCHESTRATOR_STAGE_PROMPT"):
        result["stage_prompt"] = os.environ["ORCHESTRATOR_STAGE_PROMPT"]
    _write(output_dir / "result.json", json.dumps(result, indent=2))
    # outputs.json and handoff.md are what coordination reads back when the run ends.
    _write(output_dir / "outputs.json", json.dumps({"summary": result["summary"]}))
    _write(output_dir / "handoff.md", f"# Hand-off from run {run_id}\n\n{result['summary']}\n")
    print(f"example agent: wrote {output_dir / 'result.json'}", flush=True)
    return 0


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
