"""Run every benchmark and write bench/RESULTS.md (machine, date, commit, figures, targets).

    python bench/run_all.py            # sizes that finish in a few minutes
    python bench/run_all.py --full     # longer runs (minutes each)
    python bench/run_all.py --only api_submit,webhooks --out /tmp/RESULTS.md

Each benchmark runs as its own process (python bench/<name>.py --json ...),
one after the other, so none measures another's leftovers. Their printed
output goes to this terminal as it comes; the figures come back as JSON.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

QUICK: dict[str, list[str]] = {
    "api_submit": ["--seconds", "6"],
    "webhooks": ["--seconds", "8", "--rounds", "4"],
    "pipeline": ["--seconds", "10", "--rate", "20", "--burst", "200"],
    "tracking": ["--counts", "10,100,1000,10000", "--window", "12", "--reconcile", "5"],
    "webhook_burst": ["--deliveries", "5000", "--replays", "250"],
    "exactly_once": ["--tasks", "1"],
    "console_pages": ["--tasks", "100000", "--requests", "100"],
    "live_pages": ["--pages", "200", "--idle", "20"],
    "redis_failover": ["--rounds", "1"],
}
FULL: dict[str, list[str]] = {
    "api_submit": ["--seconds", "30"],
    "webhooks": ["--seconds", "20", "--rounds", "3"],
    "pipeline": ["--seconds", "60", "--rate", "20", "--burst", "1000"],
    "tracking": ["--counts", "10,100,1000,10000", "--window", "60", "--reconcile", "30"],
    "webhook_burst": ["--deliveries", "5000", "--replays", "500"],
    "exactly_once": ["--tasks", "3"],
    "console_pages": ["--tasks", "100000", "--requests", "300"],
    "live_pages": ["--pages", "200", "--idle", "60"],
    "redis_failover": ["--rounds", "3"],
}


def machine() -> dict[str, str]:
    """Cores, memory and CPU model of this machine, and its load when the run began."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        model = platform.processor()
    memory = ""
    try:
        kb = int(next(line for line in Path("/proc/meminfo").read_text().splitlines()
                      if line.startswith("MemTotal")).split()[1])
        memory = f"{kb / 1024 / 1024:.1f} GiB"
    except (OSError, StopIteration):
        pass
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return {"cores": str(os.cpu_count()), "memory": memory, "cpu": model or "unknown",
            "python": platform.python_version(), "load": load}


def commit() -> str:
    """The checked-out commit (and whether the tree had changes)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    sha = git("rev-parse", "--short=12", "HEAD") or "unknown"
    return sha + (" (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else "")


def run(name: str, args: list[str], tmp: Path) -> Any:
    """Run bench/<name>.py with --json; its figures, or None when it failed."""
    out = tmp / f"{name}.json"
    print(f"\n=== {name} {' '.join(args)}", flush=True)
    result = subprocess.run([sys.executable, str(ROOT / "bench" / f"{name}.py"), *args, "--json", str(out)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if result.returncode != 0 or not out.exists():
        print(f"=== {name} failed (exit {result.returncode})", flush=True)
        return None
    return json.loads(out.read_text())


def _ok(flag: bool | None) -> str:
    return "n/a" if flag is None else ("**yes**" if flag else "**NO**")


def _finite(x: Any) -> bool:
    return isinstance(x, (int, float)) and math.isfinite(x)


def rows(results: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(figure, measured, target, met) for every benchmark that ran."""
    out: list[tuple[str, str, str, str]] = []
    a = results.get("api_submit")
    if a:
        ref = a["reference"]
        out.append(("API submit throughput, POST /api/v1/pm/tasks / Flask + marshmallow + Celery send_task",
                    f"{a['reference_ratio']:.2f} ({a['ours']['rps']:.0f} vs {ref['rps']:.0f} req/s, "
                    f"{a['connections']} connections)", ">= 1.00", _ok(a["reference_ratio"] >= 1.0)))
        out.append(("API submit p99 latency, ours / Flask + marshmallow + Celery send_task",
                    f"{a['reference_p99_ratio']:.2f} ({a['ours']['p99_ms']:.1f} vs {ref['p99_ms']:.1f} ms; "
                    f"p50 {a['ours']['p50_ms']:.1f} vs {ref['p50_ms']:.1f} ms)", "<= 1.00",
                    _ok(a["reference_p99_ratio"] <= 1.0)))
        out.append(("API submit beside the machine's ceiling, ours / bare Flask LPUSH (no validation, no store)",
                    f"{a['ratio']:.2f} ({a['bare']['rps']:.0f} req/s; p99 {a['p99_ratio']:.2f})", "", "n/a"))
        if _finite(a["ours"].get("server_cpu_ms")) and _finite(a["bare"].get("server_cpu_ms")):
            out.append(("API submit: server CPU per request, ours / bare",
                        f"{a['ours']['server_cpu_ms']:.2f} vs {a['bare']['server_cpu_ms']:.2f} ms", "", "n/a"))
        for key, label in (("validation_floor", "the bare endpoint plus only the request validation"),
                           ("store_floor", "the bare endpoint plus only the store write (task, indexes, step)")):
            if key in a:
                out.append((f"API submit floor: {label}, / bare",
                            f"{a[key]['ratio']:.2f} ({a[key]['rps']:.0f} req/s, server CPU "
                            f"{a[key].get('server_cpu_ms', float('nan')):.2f} ms/request)",
                            "(a part of the work alone)", "n/a"))
    w = results.get("webhooks")
    if w:
        pairs = list(zip(w["rounds"]["ours"], w["rounds"]["bare"]))
        each = ", ".join(f"{o['rps'] / b['rps']:.2f}" for o, b in pairs)
        each_p99 = ", ".join(f"{o['p99_ms'] / b['p99_ms']:.2f}" for o, b in pairs)
        out.append((f"Webhook intake throughput, POST /webhooks/github / bare Flask LPUSH (median of {len(pairs)} "
                    "back-to-back pairs)",
                    f"{w['paired_ratio']:.2f} (pairs {each}; best rounds {w['ours']['rps']:.0f} vs "
                    f"{w['bare']['rps']:.0f} deliveries/s, {w['ratio']:.2f}; server CPU per delivery "
                    f"{w['ours'].get('server_cpu_ms', float('nan')):.2f} vs "
                    f"{w['bare'].get('server_cpu_ms', float('nan')):.2f} ms)",
                    ">= 0.70", _ok(w["paired_ratio"] >= 0.7)))
        out.append((f"Webhook intake p99 latency, ours / bare (median of {len(pairs)} pairs)",
                    f"{w['paired_p99_ratio']:.2f} (pairs {each_p99}; best rounds {w['ours']['p99_ms']:.1f} vs "
                    f"{w['bare']['p99_ms']:.1f} ms, {w['p99_ratio']:.2f})", "<= 1.50",
                    _ok(w["paired_p99_ratio"] <= 1.5)))
    p = results.get("pipeline")
    if p:
        s = p["pipeline"]["steady"]
        out.append((f"Pipeline submit -> Job created at a steady {s['count'] / max(s['submit_seconds'], 1e-9):.0f} "
                    "tasks/s (Kubernetes runner, emulator), p50 / p99",
                    f"{s['p50_ms']:.0f} / {s['p99_ms']:.0f} ms ({s['completed']}/{s['count']} Jobs created; "
                    f"bare chain {p['chain']['steady']['p50_ms']:.0f} / {p['chain']['steady']['p99_ms']:.0f} ms)",
                    "keeps up (every Job created)", _ok(s["completed"] == s["count"])))
        ratio = p["rate_ratio"]
        bursts = {side: ", ".join(f"{b['rate']:.0f}" for b in p[side].get("bursts", [])) for side in ("pipeline", "chain")}
        out.append((f"Pipeline highest sustained rate, {p['workers']} worker processes, / bare Celery chain of "
                    f"{p['steps']} no-op steps (median burst)",
                    f"{ratio:.2f} ({p['pipeline']['burst']['rate']:.1f} vs {p['chain']['burst']['rate']:.1f} tasks/s"
                    + (f"; bursts {bursts['pipeline']} vs {bursts['chain']}" if bursts["pipeline"] else "") + ")",
                    ">= 0.50", _ok(_finite(ratio) and ratio >= 0.5)))
        out.append(("Pipeline: Jobs created per task", f"{p['job_creates']} for {p['tasks_submitted']} tasks",
                    "exactly one each", _ok(p["job_creates"] == p["tasks_submitted"])))
    t = results.get("tracking")
    if t:
        rpm = [r["requests_per_minute"] for r in t]
        flat = max(rpm) <= 1.5 * min(rpm) if min(rpm) > 0 else False
        out.append(("Tracking: Kubernetes API requests per minute at " + " / ".join(f"{r['runs']:,}" for r in t) + " runs",
                    " / ".join(f"{x:.0f}" for x in rpm) + " (per reconcile: "
                    + " / ".join(str(r["requests_per_reconcile"]) for r in t) + ")",
                    "flat (max <= 1.5 x min)", _ok(flat)))
        # Requests per minute stay flat only while a reconcile is shorter than its period (see
        # bench/tracking.py): its seconds, and the watcher's own CPU time, are shown beside them.
        cpu = [r.get("watcher_cpu_seconds_per_minute") for r in t]
        out.append(("Tracking: one reconcile (timed alone in the bench process; the emulator in its own process)",
                    " / ".join(f"{r['reconcile_seconds']:.2f}" for r in t) + " s"
                    + ("" if None in cpu else " (watcher CPU: " + " / ".join(f"{c:.1f}" for c in cpu)
                       + " s per minute)"), "", "n/a"))
        big = max(t, key=lambda r: r["runs"])
        out.append((f"Watcher memory (RSS) at {big['runs']:,} runs",
                    f"{big['rss_mb']:.0f} MB (peak {big['peak_rss_mb']:.0f} MB; at "
                    + " / ".join(f"{r['runs']:,}: {r['rss_mb']:.0f}" for r in t) + " MB)",
                    "< 200 MB at 10,000", _ok(big["peak_rss_mb"] < 200 if big["runs"] >= 10000 else None)))
    b = results.get("webhook_burst")
    if b:
        out.append((f"Webhook burst: {b['deliveries']:,} deliveries + {b['replays']} replays answered within 10 s",
                    f"{b['sent'] - b['over_budget']:,}/{b['sent']:,} (p50 {b['p50_ms']:.0f} ms, p99 {b['p99_ms']:.0f} ms, "
                    f"max {b['max_ms']:.0f} ms; answers {b['statuses']})", "all", _ok(b["over_budget"] == 0)))
        out.append(("Webhook burst: none lost (accepted = queued, one message per delivery id)",
                    f"accepted {b['accepted']:,}, queued {b['queued']:,}, lost {b['lost']}, queued twice {b['queued_twice']}",
                    "0 lost, 0 twice",
                    _ok(b["lost"] == 0 and b["queued_twice"] == 0 and b["accepted"] == b["deliveries"])))
        if "handled" in b:
            out.append(("Webhook burst: none processed twice (2 workers drain the queue)",
                        f"handled {b['handled']:,}/{b['accepted']:,} in {b['handle_seconds']:.0f} s, "
                        f"processed twice {b['processed_twice']}", "all handled, 0 twice",
                        _ok(b["handled"] == b["accepted"] and b["processed_twice"] == 0)))
    e = results.get("exactly_once")
    if e:
        cells = e["cells"]
        effects = sum(c["effects"] for c in cells)
        expected = sum(c["expected"] for c in cells)
        recovery = sorted(c["recovery_s"] for c in cells)
        out.append((f"Exactly once: every side effect (agent starts, pushes, pull request POSTs, comment POSTs) "
                    f"counted where received, a worker SIGKILLed at every point ({len(cells)} cells x "
                    f"{e['tasks']} tasks, bench/exactly_once.py)",
                    f"{effects}/{expected} counted; duplicates {e['duplicates']}, missing {e['missing']}, "
                    f"wrong ends {e['wrong_end']}; recovery median {recovery[len(recovery) // 2]:.1f} s, "
                    f"max {recovery[-1]:.1f} s", "0 duplicates, 0 missing",
                    _ok(e["duplicates"] == 0 and e["missing"] == 0 and e["wrong_end"] == 0)))
    c = results.get("console_pages")
    if c:
        full, small = c["at_full"], c["at_small"]
        pages = {k: v for k, v in full.items() if isinstance(v, dict)}
        out.append((f"Tasks page and API list at {c['tasks']:,} tasks over {c['services']} services, worst p95 "
                    "(first page, filtered, title search, deep cursor; bench/console_pages.py)",
                    f"{c['p95_ms_worst']:.1f} ms (" + ", ".join(f"{k} {v['p95_ms']:.0f}" for k, v in pages.items())
                    + "; server CPU " + ", ".join(f"{v['server_cpu_ms']:.1f}" for v in pages.values()) + " ms)",
                    "< 100 ms", _ok(c["p95_ms_worst"] < 100)))
        out.append((f"Tasks page: API worker peak RSS at {c['small']:,} / {c['tasks']:,} tasks",
                    f"{small['worker_peak_rss_mib']:.1f} / {full['worker_peak_rss_mib']:.1f} MiB",
                    "flat (< 10 MiB more)", _ok(c["rss_growth_mib"] < 10)))
    lp = results.get("live_pages")
    if lp:
        out.append((f"Live pages: {lp['pages']} open status streams, each following {lp['tasks_per_page']} tasks",
                    f"{lp['streams_open']}/{lp['pages']} open; GET /health meanwhile p50 "
                    f"{lp['health_p50_ms']:.1f} ms, max {lp['health_max_ms']:.1f} ms; a change reached every page "
                    f"in {lp['delivery_seconds']:.2f} s", "every page open, /health answers",
                    _ok(lp["streams_open"] == lp["pages"])))
        out.append(("Live pages: server CPU per idle page (bench/live_pages.py)",
                    f"{lp['cpu_share_per_page'] * 100:.4f}% of a core ({lp['server_cpu_share_idle'] * 100:.2f}% for "
                    f"all {lp['streams_open']})", "< 1% of a core", _ok(lp["cpu_share_per_page"] < 0.01)))
    f = results.get("redis_failover")
    if f:
        out.append((f"Redis failover: kill -9 of the Sentinel-managed master under submissions and webhooks, "
                    f"until the API accepts again ({len(f['rounds'])} rounds, bench/redis_failover.py)",
                    f"median {f['first_202_median_s']:.2f} s, max {f['first_202_max_s']:.2f} s (503 meanwhile, "
                    f"other errors {f['other']}); every accepted task settled within {f['settled_max_s']:.0f} s; "
                    f"lost {f['lost']}, run twice {f['run_twice']}", "0 lost, 0 twice, only 503s",
                    _ok(f["lost"] == 0 and f["run_twice"] == 0 and f["other"] == 0 and f["unsettled"] == 0)))
    return out


def write(path: Path, results: dict[str, Any], info: dict[str, str], sha: str, started: str, full: bool) -> None:
    lines = [
        "# Benchmark results", "",
        f"Written by `python bench/run_all.py{' --full' if full else ''}`. Each script under `bench/` says in its "
        "docstring exactly what it measures and how.", "",
        "| | |", "| --- | --- |",
        f"| date | {started} |", f"| commit | `{sha}` |",
        f"| machine | {info['cores']} cores, {info['memory']}, {info['cpu']} |",
        f"| load average when started | {info['load']} (a shared machine: figures move between runs) |",
        f"| Python | {info['python']} |", "",
        "| figure | measured | target | met |", "| --- | --- | --- | --- |",
    ]
    for figure, measured, target, met in rows(results):
        lines.append(f"| {figure} | {measured} | {target} | {met} |")
    missing = [name for name, value in results.items() if value is None]
    if missing:
        lines += ["", "Failed to run: " + ", ".join(missing)]
    path.write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    """Run the benchmarks in turn and write the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="longer runs")
    parser.add_argument("--only", default="", help="comma-separated subset: " + ",".join(QUICK))
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "RESULTS.md")
    args = parser.parse_args(argv)
    plan = FULL if args.full else QUICK
    names = [n for n in args.only.split(",") if n] or list(plan)
    info, sha = machine(), commit()
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-all-") as tmp:
        for name in names:
            results[name] = run(name, plan[name], Path(tmp))
    write(args.out, results, info, sha, started, args.full)
    print(f"\nwrote {args.out}")
    print(args.out.read_text())


if __name__ == "__main__":
    main()
