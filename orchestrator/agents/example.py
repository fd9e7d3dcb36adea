"""A tiny, real agent: `python -m orchestrator.agents.example`.

It reads the task's CLAUDE.md in its working directory and the documents it
links to (task.md, acceptance criteria...), and the previous stage's
hand-off when ORCHESTRATOR_HANDOFF_FILE names one; prints what it read, and
writes $ORCHESTRATOR_OUTPUT_DIR/result.json, outputs.json (`summary`) and
handoff.md (which quotes the hand-off it received). It needs no API key, so
the whole system runs end to end on a laptop. It changes nothing in the
repository, so its runs end with the outcome `no_changes`.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path

LINK = re.compile(r"^- \[[^\]]+\]\(([^)\s]+)\)")
TASK_HEADING = re.compile(r"^#\s+Task\s+\d+:\s*(.+?)\s*$")


def task_documents(cwd: Path, brief: str) -> list[Path]:
    """The task's documents CLAUDE.md links to (relative to where the agent starts), that exist."""
    found = []
    for line in brief.splitlines():
        match = LINK.match(line.strip())
        if match and (cwd / match.group(1)).is_file():
            found.append(cwd / match.group(1))
    return found


def task_title(brief: str, documents: list[Path]) -> str:
    """The task's title: the heading of its task.md (`# Task 7: Add login`), else CLAUDE.md's first heading.

    Never the `<!-- orchestrator ... -->` comment CLAUDE.md starts with.
    """
    for doc in documents:
        if doc.name == "task.md":
            for line in doc.read_text(errors="replace").splitlines():
                match = TASK_HEADING.match(line)
                if match:
                    return match.group(1)
    for line in brief.splitlines():
        match = TASK_HEADING.match(line)
        if match:
            return match.group(1)
        if line.startswith("# "):
            return line[2:].strip()
    return ""


def read_handoff(cwd: Path) -> tuple[str, str]:
    """(path, text) of the previous stage's hand-off: ORCHESTRATOR_HANDOFF_FILE, relative to the service directory."""
    name = os.environ.get("ORCHESTRATOR_HANDOFF_FILE") or ""
    if not name:
        return "", ""
    for base in (cwd, *cwd.parents):  # the agent may start in a working directory inside the service directory
        if (base / name).is_file():
            return name, (base / name).read_text(errors="replace")
    return name, ""


def main() -> int:
    """Read the task documents and write a result file; exit 2 when there is no CLAUDE.md."""
    cwd = Path.cwd()
    brief = cwd / "CLAUDE.md"
    run_id = os.environ.get("ORCHESTRATOR_RUN_ID", "")
    print(f"example agent: run {run_id} in {cwd}", flush=True)
    if not brief.is_file():
        print("example agent: no CLAUDE.md here; nothing to do", file=sys.stderr, flush=True)
        return 2
    text = brief.read_text(errors="replace")
    documents = task_documents(cwd, text)
    title = task_title(text, documents)
    print(f"example agent: read CLAUDE.md ({brief.stat().st_size} bytes)", flush=True)
    for doc in documents:
        print(
            f"example agent: read {doc.relative_to(cwd) if doc.is_relative_to(cwd) else doc} "
            f"({doc.stat().st_size} bytes)",
            flush=True,
        )
    started = time.time()
    session = f"example-{run_id or 'run'}"
    model = os.environ.get("ANTHROPIC_MODEL", "") or "example"
    # The same stream-json shape Claude Code prints (`--output-format stream-json --verbose`), at no cost.
    _event(
        {"type": "system", "subtype": "init", "session_id": session, "model": model, "tools": ["Read"], "cwd": str(cwd)}
    )
    _event(
        {
            "type": "assistant",
            "session_id": session,
            "message": {
                "id": f"msg-{session}",
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [
                    {"type": "tool_use", "id": f"tool-{session}", "name": "Read", "input": {"file_path": str(brief)}}
                ],
                "usage": {
                    "input_tokens": 0,
                    "output_tokens": 0,
                    "cache_read_input_tokens": 0,
                    "cache_creation_input_tokens": 0,
                },
            },
        }
    )
    output_dir = Path(os.environ.get("ORCHESTRATOR_OUTPUT_DIR") or cwd / ".orchestrator" / "runs" / (run_id or "run"))
    output_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "run_id": run_id,
        "agent": "example",
        "model": os.environ.get("ANTHROPIC_MODEL", ""),
        "title": title,
        "documents": [doc.name for doc in documents],
        "summary": f"Read {len(documents)} document(s); the task is: {title}" if title else "Read the task.",
        "finished_at": time.time(),
    }
    handoff, received = read_handoff(cwd)
    if handoff:
        # A pipeline stage: the previous agent's notes, relative to the service's directory.
        print(f"example agent: received hand-off {handoff} ({len(received)} characters)", flush=True)
        result["received_handoff"] = handoff
    if os.environ.get("ORCHESTRATOR_STAGE_PROMPT"):
        result["stage_prompt"] = os.environ["ORCHESTRATOR_STAGE_PROMPT"]
    _write(output_dir / "result.json", json.dumps(result, indent=2))
    # outputs.json and handoff.md are what coordination reads back when the run ends.
    _write(output_dir / "outputs.json", json.dumps({"summary": result["summary"]}))
    notes = f"# Hand-off from run {run_id}\n\n{result['summary']}\n"
    if received.strip():
        notes += "\n## Received from the previous stage\n\n" + received.strip() + "\n"
    _write(output_dir / "handoff.md", notes)
    print(f"example agent: wrote {output_dir / 'result.json'}", flush=True)
    zero = {"input_tokens": 0, "output_tokens": 0, "cache_read_input_tokens": 0, "cache_creation_input_tokens": 0}
    _event(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "num_turns": 1,
            "duration_ms": int((time.time() - started) * 1000),
            "duration_api_ms": 0,
            "total_cost_usd": 0.0,
            "usage": zero,
            "modelUsage": {
                model: {
                    "inputTokens": 0,
                    "outputTokens": 0,
                    "cacheReadInputTokens": 0,
                    "cacheCreationInputTokens": 0,
                    "costUSD": 0.0,
                }
            },
            "permission_denials": [],
            "session_id": session,
            "result": result["summary"],
        }
    )
    return 0


def _event(event: dict) -> None:
    print(json.dumps(event, separators=(",", ":")), flush=True)


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
