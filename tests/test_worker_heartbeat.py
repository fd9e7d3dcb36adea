"""A real worker's consumer heartbeat (workers/heartbeat.py), judged the way the liveness probe judges it.

Stuck two ways: the whole process stopped (SIGSTOP: its event loop no longer
beats), and a consumer that runs but takes nothing while work waits (its
queues' consumers cancelled through Celery's remote control, as a consumer
that never resumed after a reconnect looks from outside).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from orchestrator import heartbeat
from orchestrator.steps import QUEUES
from tests.support.celery_app import point_celery_at
from tests.support.wait import wait_for

BEAT = 0.5


def _probe(env: dict[str, str], path: Path, max_age: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "orchestrator.cli",
            "worker-alive",
            "--heartbeat-file",
            str(path),
            "--max-age",
            str(max_age),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_the_heartbeat_goes_stale_when_the_worker_is_frozen(worker_factory, base_env, tmp_path: Path) -> None:
    path = tmp_path / "hb.json"
    path.write_text('{"at": 1}')  # a previous container's heartbeat: removed when the worker starts
    worker = worker_factory(extra_args=["--heartbeat-file", str(path), "--heartbeat-seconds", str(BEAT)])
    wait_for(lambda: (heartbeat.read(path) or {}).get("pid") == worker.process.pid, "the first heartbeat")
    assert _probe(base_env, path, 5).returncode == 0
    os.kill(worker.process.pid, signal.SIGSTOP)
    try:
        time.sleep(3)
        assert "no consumer heartbeat" in heartbeat.verdict(path, 2)
        failed = _probe(base_env, path, 2)
        assert failed.returncode == 1 and "worker not consuming" in failed.stderr
    finally:
        os.kill(worker.process.pid, signal.SIGCONT)
    wait_for(lambda: heartbeat.verdict(path, 2) == "", "beats again once it runs again", timeout=10)


def test_a_consumer_that_takes_nothing_while_work_waits_is_caught(
    worker_factory, redis_url, store, tmp_path: Path
) -> None:
    path = tmp_path / "hb.json"
    worker = worker_factory(extra_args=["--heartbeat-file", str(path), "--heartbeat-seconds", str(BEAT)])
    wait_for(lambda: heartbeat.read(path), "the first heartbeat")
    point_celery_at(redis_url)
    from workers.app import app

    # An idle worker with empty queues is healthy, however long it idles.
    time.sleep(4 * BEAT)
    assert heartbeat.verdict(path, 1) == ""
    hostname = next(iter(app.control.ping(timeout=5)[0]))
    for queue in QUEUES:
        app.control.cancel_consumer(queue, destination=[hostname], reply=True, timeout=5)
    time.sleep(2)  # a BRPOP sent before the cancel may still return one message: let it end
    app.send_task("orchestrator.probe", queue="coordination")
    assert store.queue_depths(["coordination"])["coordination"] == 1
    wait_for(lambda: "took none" in heartbeat.verdict(path, 1), "the stall seen", timeout=20)
    assert worker.process.poll() is None  # alive: only the heartbeat tells
