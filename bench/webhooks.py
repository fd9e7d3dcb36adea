"""Benchmark: signed GitHub deliveries per second accepted by the receiver under gunicorn.

    python bench/webhooks.py [--seconds 8] [--connections 32] [--processes 4] [--rounds 2]

Against the same fresh redis-server, one after the other, with the same
gunicorn configuration (api/gunicorn_conf.py):
  * ours: `gunicorn api.wsgi:app` (verify the HMAC, check the headers, parse
    and route the payload, claim the delivery, keep it and queue its event);
  * bare: a Flask endpoint under gunicorn that does one LPUSH of the body.
Each gets the same routed payload (an issue labelled with the trigger label)
with a fresh delivery id per request, over a new connection per request as
GitHub sends them, from bench/_common.py's closed-loop load generator
(processes x threads, on the same cores). Rounds alternate between the two,
ours then bare, and each such pair is compared: the figures set against the
target are the medians of the per-pair ratios, because the machine's speed
drifts during a run (the bare endpoint alone moved between 1,200 and
1,800/s within one) and a pair, measured back to back, sees the same
machine. The best round of each side is printed too. Prints deliveries/s,
p50/p99, the server's CPU per delivery, and the ratios. Target: ratio >=
0.7, p99 <= 1.5 x bare.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench._common import drive, serve, stop  # noqa: E402
from orchestrator.github.signature import sign  # noqa: E402

SECRET = "bench-secret"
FIXTURES = [ROOT.parent / "shared" / "fixtures" / "github-webhooks", Path("/work/shared/fixtures/github-webhooks")]
PATH = "/webhooks/github"

_payload: tuple[bytes, dict[str, str]] | None = None


def bare_app() -> Any:
    """The baseline: a Flask endpoint that LPUSHes the raw body (gunicorn factory)."""
    from flask import Flask, request

    app = Flask("bare")
    client = redis.Redis.from_url(os.environ["ORCHESTRATOR_REDIS_URL"])

    @app.post(PATH)
    def receive() -> tuple[dict[str, str], int]:
        """Push the body; nothing else."""
        client.lpush("bare", request.get_data())
        return {"status": "queued"}, 202

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def payload() -> tuple[bytes, dict[str, str]]:
    """The routed delivery's body and its constant headers (signed once)."""
    global _payload
    if _payload is None:
        fixtures = next(p for p in FIXTURES if p.is_dir())
        body = (fixtures / "issues" / "labeled.payload.json").read_bytes()
        _payload = body, {"X-Hub-Signature-256": sign(body, SECRET), "X-GitHub-Event": "issues",
                          "Content-Type": "application/json", "User-Agent": "GitHub-Hookshot/bench"}
    return _payload


def server_env(redis_url: str) -> dict[str, str]:
    """This environment with the receiver configured to route the payload's repository and label."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "PROMETHEUS_"))}
    env.update({
        "ORCHESTRATOR_REDIS_URL": redis_url, "GITHUB_WEBHOOK_SECRET": SECRET,
        "ORCHESTRATOR_GITHUB_REPOSITORIES": "Codertocat/Hello-World=hello-world",
        "ORCHESTRATOR_GITHUB_TRIGGER_LABEL": "bug", "ORCHESTRATOR_LOG_LEVEL": "INFO",
        "PYTHONPATH": str(ROOT),
    })
    return env


def make_request(seq: int, proc: int, thread: int) -> tuple[bytes, dict[str, str]]:
    """One delivery: the same payload, a fresh delivery id."""
    body, headers = payload()
    return body, {**headers, "X-GitHub-Delivery": str(uuid.uuid4())}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--processes", type=int, default=4, help="load generator processes")
    parser.add_argument("--rounds", type=int, default=2, help="alternating rounds per target; the best is kept")
    parser.add_argument("--workers", type=int, default=None, help="GUNICORN_WORKERS (default: the config's)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    options = parser.parse_args(argv)

    from tests.support.redis_server import RedisServer

    workdir = Path(tempfile.mkdtemp(prefix="bench-webhooks-"))
    redis_server = RedisServer(workdir / "redis")
    redis_server.start()
    env = server_env(redis_server.url)
    if options.workers:
        env["GUNICORN_WORKERS"] = str(options.workers)
    targets = {"bare": "bench.webhooks:bare_app()", "ours": "api.wsgi:app"}
    rounds: dict[str, list[dict[str, Any]]] = {"bare": [], "ours": []}
    try:
        for _ in range(options.rounds):
            for name, app in targets.items():
                redis.Redis.from_url(redis_server.url).flushall()
                process, port = serve(app, env, workdir / f"{name}.log")
                try:
                    rounds[name].append(drive(port, PATH, make_request, connections=options.connections,
                                              processes=options.processes, warmup=options.warmup,
                                              seconds=options.seconds, keepalive=False, ok=(202,),
                                              server_pid=process.pid))
                finally:
                    stop(process)
    finally:
        redis_server.stop()
        shutil.rmtree(workdir, ignore_errors=True)

    best = {name: max(runs, key=lambda f: f["rps"]) for name, runs in rounds.items()}
    body, _ = payload()
    print(f"payload {len(body)} bytes, {options.rounds} rounds x {options.seconds:g}s each, {options.connections} "
          f"connections ({options.processes} generator processes, a new connection per delivery), "
          f"gunicorn workers: {options.workers or 'config default'}, {os.cpu_count()} cores")
    for i, (o, b) in enumerate(zip(rounds["ours"], rounds["bare"]), 1):
        print(f"round {i}: ours {o['rps']:7.1f}/s p99 {o['p99_ms']:6.1f} ms, bare {b['rps']:7.1f}/s "
              f"p99 {b['p99_ms']:6.1f} ms, ratio {o['rps'] / b['rps']:.2f}, p99 ratio {o['p99_ms'] / b['p99_ms']:.2f}")
    for name in ("ours", "bare"):
        f = best[name]
        print(f"{name:5} {f['rps']:8.1f} deliveries/s  p50 {f['p50_ms']:7.2f} ms  p99 {f['p99_ms']:7.2f} ms  "
              f"non-2xx {f['errors']}  server CPU {f.get('server_cpu_ms', float('nan')):.3f} ms/delivery")
    ratio = best["ours"]["rps"] / best["bare"]["rps"] if best["bare"]["rps"] else float("nan")
    p99_ratio = best["ours"]["p99_ms"] / best["bare"]["p99_ms"] if best["bare"]["p99_ms"] else float("nan")
    cpu = {n: best[n].get("server_cpu_ms") for n in best}
    cpu_ratio = cpu["bare"] / cpu["ours"] if cpu["bare"] and cpu["ours"] else float("nan")
    print(f"server CPU ratio bare/ours {cpu_ratio:.2f} (the throughput ratio if the load generator had its own cores)")
    print(f"best rounds: throughput ratio ours/bare {ratio:.2f}; p99 ratio {p99_ratio:.2f}")
    pairs = list(zip(rounds["ours"], rounds["bare"]))
    paired = (statistics.median(o["rps"] / b["rps"] for o, b in pairs),
              statistics.median(o["p99_ms"] / b["p99_ms"] for o, b in pairs))
    print(f"median over the {len(pairs)} paired rounds: throughput ratio ours/bare {paired[0]:.2f} (target >= 0.7); "
          f"p99 ratio {paired[1]:.2f} (target <= 1.5)")
    result = {**best, "ratio": ratio, "p99_ratio": p99_ratio, "cpu_ratio": cpu_ratio,
              "paired_ratio": paired[0], "paired_p99_ratio": paired[1], "rounds": rounds,
              "connections": options.connections, "seconds": options.seconds, "payload_bytes": len(body)}
    if options.json:
        options.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
