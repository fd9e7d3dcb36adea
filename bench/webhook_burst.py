"""Benchmark: a burst of signed GitHub deliveries: answered in time, none lost, none processed twice.

    python bench/webhook_burst.py [--deliveries 5000] [--replays 250] [--senders 4x16] [--no-handle] [--json out.json]

`gunicorn -c python:api.gunicorn_conf api.wsgi:app` on a redis-server of the
benchmark's own receives `--deliveries` signed deliveries (a routed
`issues`/`labeled` payload from the fixtures, a fresh delivery id each) sent
at once by `--senders` processes x threads, each on a new connection as GitHub
does, plus `--replays` deliveries sent again with an id already used (mixed
into the second half of the burst). Then:

  * every answer must come within GitHub's 10 s budget (the client gives up at 10 s);
  * none lost: the `events` queue holds exactly one message per accepted
    delivery id (checked by reading the messages' delivery ids);
  * none processed twice: two Celery worker processes then drain the queue;
    each accepted delivery must be marked handled, and the handler's log line
    (written once per delivery it acts on) must appear once per id.
"""

from __future__ import annotations

import argparse
import base64
import collections
import http.client
import json
import multiprocessing
import random
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench._common import serve, stop  # noqa: E402
from bench.webhooks import payload, server_env  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.stack import Process  # noqa: E402

BUDGET = 10.0  # GitHub's timeout for a delivery


def _sender(port: int, body: bytes, signature: str, ids: list[str], threads: int, start_at: float,
            results: Any) -> None:
    """Send deliveries `ids` from `threads` threads, each on a new connection; report (id, status, seconds)."""
    lock = threading.Lock()
    todo = iter(ids)
    out: list[tuple[str, int, float]] = []

    def loop() -> None:
        mine = []
        while True:
            with lock:
                delivery = next(todo, None)
            if delivery is None:
                break
            headers = {"X-Hub-Signature-256": signature, "X-GitHub-Event": "issues",
                       "X-GitHub-Delivery": delivery, "Content-Type": "application/json",
                       "User-Agent": "GitHub-Hookshot/bench"}
            started = time.perf_counter()
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=BUDGET)
                conn.request("POST", "/webhooks/github", body=body, headers=headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                conn.close()
            except (OSError, http.client.HTTPException):
                status = 0  # refused, reset or over the budget
            mine.append((delivery, status, time.perf_counter() - started))
        with lock:
            out.extend(mine)

    while time.time() < start_at:
        time.sleep(0.005)
    pool = [threading.Thread(target=loop) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    results.put(out)


def queued_delivery_ids(redis_client: Any, queue: str = "events") -> list[str]:
    """The delivery id (first argument) of every message waiting in `queue`."""
    ids = []
    for raw in redis_client.lrange(queue, 0, -1):
        message = json.loads(raw)
        args = json.loads(base64.b64decode(message["body"]))[0]
        ids.append(args[0])
    return ids


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Send the burst, check the queue and the handling; print and return the figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deliveries", type=int, default=5000)
    parser.add_argument("--replays", type=int, default=250, help="deliveries sent again with a used id")
    parser.add_argument("--senders", default="4x16", help="processes x threads")
    parser.add_argument("--no-handle", action="store_true", help="skip draining the queue with workers")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    processes, threads = (int(n) for n in args.senders.split("x"))

    body, signed = payload()
    signature = signed["X-Hub-Signature-256"]
    workdir = Path(tempfile.mkdtemp(prefix="bench-burst-"))
    (workdir / "logs").mkdir()
    redis_server = RedisServer(workdir / "redis")
    redis_server.start()
    env = {**server_env(redis_server.url), "ORCHESTRATOR_API_TOKENS": "bench"}
    figures: dict[str, Any] = {"deliveries": args.deliveries, "replays": args.replays, "senders": args.senders}
    procs: list[Process] = []
    api = None
    try:
        import redis

        client = redis.Redis.from_url(redis_server.url)
        api, port = serve("api.wsgi:app", env, workdir / "logs" / "api.log")

        ids = [str(uuid.uuid4()) for _ in range(args.deliveries)]
        replayed = random.Random(1).sample(ids, min(args.replays, len(ids)))
        half = len(ids) // 2
        second = ids[half:] + replayed
        random.Random(2).shuffle(second)
        order = ids[:half] + second
        shares = [order[i::processes] for i in range(processes)]
        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        start_at = time.time() + 2.0
        senders = [ctx.Process(target=_sender, args=(port, body, signature, share, threads, start_at, results))
                   for share in shares]
        for p in senders:
            p.start()
        answers: list[tuple[str, int, float]] = []
        for _ in senders:
            answers += results.get(timeout=600)
        for p in senders:
            p.join()
        burst_seconds = time.time() - start_at

        statuses = collections.Counter(status for _, status, _ in answers)
        latencies = sorted(seconds for _, _, seconds in answers)
        accepted = {d for d, status, _ in answers if status == 202}
        queued = queued_delivery_ids(client)
        queued_counts = collections.Counter(queued)
        figures.update({
            "sent": len(answers), "burst_seconds": burst_seconds, "statuses": dict(statuses),
            "p50_ms": latencies[len(latencies) // 2] * 1000, "p99_ms": latencies[int(0.99 * len(latencies))] * 1000,
            "max_ms": latencies[-1] * 1000,
            "over_budget": sum(1 for s in latencies if s >= BUDGET) + statuses.get(0, 0),
            "accepted": len(accepted), "queued": len(queued),
            "lost": len(accepted - set(queued_counts)),
            "queued_twice": sum(1 for n in queued_counts.values() if n > 1),
            "queued_not_accepted": len(set(queued_counts) - accepted),
        })

        if not args.no_handle:
            worker_env = {**env, "ORCHESTRATOR_LOG_LEVEL": "INFO"}
            for i in range(2):
                cmd = [sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", "events", "-c", "1",
                       "-n", f"burst{i}-{time.monotonic_ns()}@%h", "--without-gossip", "--without-mingle",
                       "-l", "INFO"]
                procs.append(Process(f"worker{i}", cmd, worker_env, workdir / "logs").start())
            started = time.time()
            deadline = started + max(120.0, args.deliveries / 10)
            while time.time() < deadline:
                waiting = client.llen("events") + client.hlen("unacked")
                if waiting == 0:
                    break
                time.sleep(0.5)
            handle_seconds = time.time() - started
            from orchestrator.store import TaskStore, connect

            store = TaskStore(connect(redis_server.url))
            handled = sum(1 for d in accepted if store.event_handled(d))
            acted: collections.Counter[str] = collections.Counter()
            for proc in procs:
                for line in proc.log().splitlines():
                    if "github delivery " in line:
                        for d in line.split("github delivery ", 1)[1].split(" ", 1)[:1]:
                            acted[d] += 1
            figures.update({"handled": handled, "handle_seconds": handle_seconds,
                            "processed_twice": sum(1 for n in acted.values() if n > 1),
                            "handler_lines": sum(acted.values())})
    finally:
        for proc in reversed(procs):
            proc.stop()
        if api is not None:
            stop(api)
        redis_server.stop()

    print(f"{figures['sent']} requests ({args.deliveries} deliveries + {args.replays} replays) in "
          f"{figures['burst_seconds']:.1f}s from {args.senders} senders; answers {figures['statuses']}")
    print(f"latency p50 {figures['p50_ms']:.0f} ms, p99 {figures['p99_ms']:.0f} ms, max {figures['max_ms']:.0f} ms; "
          f"over the {BUDGET:g}s budget or failed: {figures['over_budget']}")
    print(f"accepted {figures['accepted']}, queued {figures['queued']}, lost {figures['lost']}, "
          f"queued twice {figures['queued_twice']}, queued but not accepted {figures['queued_not_accepted']}")
    if "handled" in figures:
        print(f"handled {figures['handled']}/{figures['accepted']} in {figures['handle_seconds']:.1f}s by 2 workers; "
              f"processed twice {figures['processed_twice']} ({figures['handler_lines']} handler log lines)")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return figures


if __name__ == "__main__":
    main()
