"""Parsing a large Claude Code stream-json log at a run's end: CPU seconds and peak memory.

    python bench/usage_parse.py              # a generated 50 MB log
    python bench/usage_parse.py --mb 200

The log is read the way finish reads it: through the local runner's `logs`
(64 KiB reads, one line at a time) into the incremental parser. CPU time is
measured in one pass; peak memory (tracemalloc) in a second, since tracing
slows Python down. Rendering the conversation as text is measured the same way.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from orchestrator.runners.local import LocalRunner  # noqa: E402
from orchestrator.settings import Settings  # noqa: E402
from orchestrator.usage.render import render_lines  # noqa: E402
from orchestrator.usage.stream import StreamParser  # noqa: E402

FIXTURE = ROOT / "tests" / "fixtures" / "claude_stream" / "success.jsonl"


def generate(path: Path, megabytes: float) -> int:
    """A log of real-shaped lines (assistant text and tool calls, large tool results) ending in a result."""
    lines = FIXTURE.read_text().splitlines()
    init, result = lines[0], lines[-1]
    body = lines[1:-1]
    filler = "x" * 3000
    target = int(megabytes * 1024 * 1024)
    written = 0
    count = 0
    with open(path, "w") as out:
        out.write(init + "\n")
        n = 0
        while written < target:
            for line in body:
                event = json.loads(line)
                if event["type"] == "assistant":
                    event["message"]["id"] = f"msg_{n}"
                elif event["type"] == "user":
                    event["message"]["content"][0]["content"] = filler
                text = json.dumps(event, separators=(",", ":")) + "\n"  # compact, as Claude Code writes it
                out.write(text)
                written += len(text)
                count += 1
                n += 1
        out.write(result + "\n")
    return count + 2


def measure(runner: LocalRunner, run_id: str, what: str) -> tuple[float, float, int]:
    """(CPU seconds, wall seconds, peak traced bytes) of one full pass."""
    def once() -> None:
        if what == "parse":
            parser = StreamParser()
            for line in runner.logs(run_id):
                parser.feed(line)
            assert parser.usage() and parser.usage()["complete"]
        else:
            for _ in render_lines(runner.logs(run_id)):
                pass
    cpu, wall = time.process_time(), time.perf_counter()
    once()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    tracemalloc.start()
    once()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return cpu, wall, peak


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=50.0, help="size of the generated log in MB")
    parser.add_argument("--json", type=Path, help="also write the figures to this file")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings.from_env({"ORCHESTRATOR_DATA_DIR": tmp, "ORCHESTRATOR_WORKSPACE_ROOT": tmp})
        runner = LocalRunner(settings)
        run_dir = runner.run_dir("bench-usage")
        run_dir.mkdir(parents=True)
        (run_dir / "spec.json").write_text("{}")
        lines = generate(run_dir / "output.log", args.mb)
        size = (run_dir / "output.log").stat().st_size
        figures = {"log_mb": round(size / 1024 / 1024, 1), "lines": lines}
        for what in ("parse", "render"):
            cpu, wall, peak = measure(runner, "bench-usage", what)
            figures[what] = {"cpu_seconds": round(cpu, 2), "wall_seconds": round(wall, 2),
                             "mb_per_cpu_second": round(size / 1024 / 1024 / cpu, 1),
                             "peak_memory_kib": round(peak / 1024)}
    print(f"log: {figures['log_mb']} MB, {lines} lines")
    for what in ("parse", "render"):
        f = figures[what]
        print(f"{what:>6}: {f['cpu_seconds']} CPU s ({f['mb_per_cpu_second']} MB/CPU s), "
              f"{f['wall_seconds']} s wall, peak memory {f['peak_memory_kib']} KiB")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
