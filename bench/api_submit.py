"""Benchmark: POST /api/v1/pm/tasks under gunicorn against a bare Flask endpoint doing one LPUSH.

    python bench/api_submit.py [--seconds 10] [--connections 32] [--processes 4] [--no-floors]

Every server runs with the same gunicorn config (api/gunicorn_conf.py) against
the same Redis (a redis-server of the benchmark's own), one after the other in
the same run, driven by bench/_common.py's closed-loop load generator
(processes x threads keep-alive connections, on the same cores). Prints
throughput, p50/p99 latency, the server's CPU per request and the ratios.
The judged comparison is against the reference: a plain Flask endpoint that
validates the same body with the same marshmallow schema and hands it to
Celery's `send_task`, the way such an endpoint is usually written. Target:
ours/reference throughput >= 1.0 and p99 ours/reference <= 1.0. The bare
LPUSH endpoint stays as the machine's ceiling (no validation, no store).

Two "floor" endpoints run too (unless --no-floors), to show where the budget
goes: the bare endpoint plus only the request validation (the same marshmallow
schema), and the bare endpoint plus only the store write (the task, its
indexes and its queued step in one Lua call, no validation). Each does a part
of what the real endpoint must do; neither can be faster than the bare one.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis  # noqa: E402

from bench._common import drive, serve, stop  # noqa: E402

TOKEN = "bench-token"
HEADERS = {"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"}


def bare_app() -> Any:
    """The baseline: a bare Flask endpoint doing one Redis LPUSH (gunicorn factory)."""
    import redis
    from flask import Flask, request

    app = Flask("bare")
    client = redis.Redis.from_url(os.environ["ORCHESTRATOR_REDIS_URL"])

    @app.post("/bare")
    def bare() -> tuple[dict[str, bool], int]:
        """Store the body in one list."""
        client.lpush("bench:bare", request.get_data())
        return {"ok": True}, 202

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def reference_app() -> Any:
    """The reference: plain Flask + the same marshmallow schema + Celery's send_task (gunicorn factory)."""
    from celery import Celery
    from flask import Flask, request

    from api.tasks import build_schemas
    from orchestrator.settings import get_settings
    from orchestrator.steps import Step

    settings = get_settings()
    app = Flask("reference")
    schema = build_schemas(settings)["submission"]
    celery = Celery("reference", broker=settings.redis_url)
    celery.conf.update(task_serializer="json", broker_connection_retry_on_startup=False)

    @app.post("/reference")
    def reference() -> tuple[dict[str, Any], int]:
        """Validate the task and queue it as one message with its spec."""
        spec = schema.load(json.loads(request.get_data()))
        celery.send_task(Step.ADMIT.value, args=[spec], queue=Step.ADMIT.queue)
        return {"service": spec["service_name"], "id": spec["id"], "status": "Pending"}, 202

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def validation_floor_app() -> Any:
    """The bare endpoint plus the submission schema's validation, nothing else (gunicorn factory)."""
    from api.tasks import build_schemas
    from orchestrator.settings import get_settings

    app = bare_app()
    schema = build_schemas(get_settings())["submission"]
    lpush = app.view_functions["bare"]

    def validated() -> Any:
        from flask import request

        schema.load(json.loads(request.get_data()))
        return lpush()

    app.view_functions["bare"] = validated
    return app


def store_floor_app() -> Any:
    """The bare endpoint replaced by the store's write of a task and its step, nothing else (gunicorn factory)."""
    from flask import Flask, request

    from orchestrator.dispatch import Write
    from orchestrator.steps import Step
    from orchestrator.settings import get_settings
    from orchestrator.store import TaskStore, connect
    from orchestrator.celery_dispatch import default

    app = Flask("store-floor")
    store = TaskStore(connect(get_settings().redis_url))
    dispatcher = default()

    @app.post("/bare")
    def stored() -> tuple[dict[str, bool], int]:
        """Create the (unvalidated) task with its admission message, as the real endpoint does."""
        spec = json.loads(request.get_data())
        dispatcher.send(Step.ADMIT, spec["service_name"], spec["id"], write=Write(store, lambda enqueue: store.create_task(
            service=spec["service_name"], task_id=spec["id"], agent=spec["agent_name"], spec=spec, enqueue=enqueue)))
        return {"ok": True}, 202

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def task_body(service: str, task_id: int) -> bytes:
    """A realistic submission: a task with one markdown file and a repository."""
    return json.dumps({
        "id": task_id, "title": f"Benchmark task {task_id}", "description": "Measure the submit path.",
        "details": "Nothing to do.", "test_strategy": "None.", "priority": "medium", "status": "pending",
        "dependencies": [], "subtasks": [{"id": 1, "title": "only"}],
        "service_name": service, "agent_name": "claude",
        "markdown_files": [{"filename": "task.md", "content": "# Task\n" + "text " * 100, "file_type": "task"}],
        "repository": {"url": "https://github.com/acme/bench.git", "branch": "main"},
        "env": {"LOG_LEVEL": "info"},
    }).encode()


def make_request(seq: int, proc: int, thread: int) -> tuple[bytes, dict[str, str]]:
    """One submission: each connection submits its own service's tasks 1, 2, 3..."""
    return task_body(f"bench-p{proc}-t{thread}", seq), HEADERS


TARGETS = (
    ("bare", "bare LPUSH", "bench.api_submit:bare_app()", "/bare"),
    ("reference", "Flask+marshmallow+send_task", "bench.api_submit:reference_app()", "/reference"),
    ("ours", "POST /api/v1/pm/tasks", "api.wsgi:app", "/api/v1/pm/tasks"),
)
FLOORS = (
    ("validation_floor", "bare + validation only", "bench.api_submit:validation_floor_app()", "/bare"),
    ("store_floor", "bare + store write only", "bench.api_submit:store_floor_app()", "/bare"),
)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Run every server in turn and print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--processes", type=int, default=4, help="load generator processes")
    parser.add_argument("--no-floors", action="store_true", help="skip the two floor endpoints")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)

    from tests.support.redis_server import RedisServer

    workdir = Path(tempfile.mkdtemp(prefix="bench-api-"))
    redis_server = RedisServer(workdir / "redis")
    redis_server.start()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "PROMETHEUS_"))}
    env.update({"ORCHESTRATOR_REDIS_URL": redis_server.url, "ORCHESTRATOR_API_TOKENS": TOKEN,
                "ORCHESTRATOR_LOG_LEVEL": "INFO", "PYTHONPATH": str(ROOT)})
    figures: dict[str, dict[str, Any]] = {}
    labels: dict[str, str] = {}
    try:
        for key, label, app, path in TARGETS + (() if args.no_floors else FLOORS):
            redis.Redis.from_url(redis_server.url).flushall()
            process, port = serve(app, env, workdir / f"{key}.log")
            try:
                figures[key] = drive(port, path, make_request, connections=args.connections,
                                     processes=args.processes, warmup=args.warmup, seconds=args.seconds,
                                     ok=(202,), server_pid=process.pid)
                labels[key] = label
            finally:
                stop(process)
    finally:
        redis_server.stop()

    workers = env.get("GUNICORN_WORKERS") or "config default"
    print(f"gunicorn -c python:api.gunicorn_conf (workers: {workers}), {os.cpu_count()} cores, "
          f"{args.connections} keep-alive connections ({args.processes} generator processes), {args.seconds:g}s each")
    print(f"{'endpoint':<30}{'requests':>10}{'errors':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'server CPU ms/req':>19}")
    for key, f in figures.items():
        print(f"{labels[key]:<30}{f['requests']:>10}{f['errors']:>8}{f['rps']:>9.0f}{f['p50_ms']:>9.1f}"
              f"{f['p99_ms']:>9.1f}{f.get('server_cpu_ms', float('nan')):>19.3f}")
    bare, ours, reference = figures["bare"], figures["ours"], figures["reference"]
    result: dict[str, Any] = {
        "ours": ours, "bare": bare, "reference": reference, "connections": args.connections, "seconds": args.seconds,
        "ratio": ours["rps"] / bare["rps"] if bare["rps"] else float("nan"),
        "p99_ratio": ours["p99_ms"] / bare["p99_ms"] if bare["p99_ms"] else float("nan"),
        "reference_ratio": ours["rps"] / reference["rps"] if reference["rps"] else float("nan"),
        "reference_p99_ratio": ours["p99_ms"] / reference["p99_ms"] if reference["p99_ms"] else float("nan"),
    }
    for key in ("validation_floor", "store_floor"):
        if key in figures:
            result[key] = figures[key] | {"ratio": figures[key]["rps"] / bare["rps"] if bare["rps"] else float("nan")}
            print(f"{labels[key]} / bare: {result[key]['ratio']:.2f} (a part of the real work alone)")
    print(f"throughput ratio (ours/reference): {result['reference_ratio']:.2f} "
          f"(target >= 1.00: {'met' if result['reference_ratio'] >= 1.0 else 'NOT met'})")
    print(f"p99 ratio (ours/reference): {result['reference_p99_ratio']:.2f} "
          f"(target <= 1.00: {'met' if result['reference_p99_ratio'] <= 1.0 else 'NOT met'})")
    print(f"throughput ratio (ours/bare LPUSH, the ceiling): {result['ratio']:.2f}; p99 {result['p99_ratio']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
