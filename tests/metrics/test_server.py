"""The worker's metrics server: pool processes merged on one port, whatever imported prometheus-client first."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

from tests.support.redis_server import free_port

ROOT = Path(__file__).resolve().parents[2]

# A worker's main process in miniature: prometheus-client imported before the directory is
# set (as the `celery` command's Flower plugin does), then two forked "pool processes"
# count steps, one of them ends, and the main process serves the merged figures.
SCRIPT = textwrap.dedent(
    """
    import os, sys, urllib.request
    import prometheus_client  # imported first, in-memory values chosen
    from orchestrator.metrics import registry, server

    path = server.prepare_directory()
    assert os.environ["PROMETHEUS_MULTIPROC_DIR"] == path
    assert not any(name.endswith(".db") for name in os.listdir(path)), "stale files left"
    for n in (1, 2):
        pid = os.fork()
        if pid == 0:
            for _ in range(n):
                registry.step_done("orchestrator.admit", "SUCCESS")
            registry.watcher_leader(True)
            os._exit(0)
        os.waitpid(pid, 0)
        server.process_ended(pid)
    server.serve(int(sys.argv[1]), host="127.0.0.1")
    text = urllib.request.urlopen("http://127.0.0.1:%s/metrics" % sys.argv[1], timeout=5).read().decode()
    print(text)
    server.remove_directory()
    """
)


def test_pool_processes_are_merged_on_one_port(tmp_path: Path) -> None:
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(port)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 0, proc.stderr
    assert 'orchestrator_steps_total{result="success",step="orchestrator.admit"} 3.0' in proc.stdout
    # Live gauges of processes that ended are dropped from the merged figures.
    assert "orchestrator_watcher_leader 1.0" not in proc.stdout


def test_a_given_directory_is_emptied_at_start(tmp_path: Path) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    (directory / "counter_123.db").write_bytes(b"stale")
    proc = subprocess.run(
        [sys.executable, "-c", "from orchestrator.metrics import server; print(server.prepare_directory())"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "PROMETHEUS_MULTIPROC_DIR": str(directory)},
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(directory)
    assert list(directory.iterdir()) == []


def test_importing_starts_nothing() -> None:
    code = (
        "import threading, workers.app, workers.steps, orchestrator.watcher, api.app; "
        "from orchestrator.metrics import registry; "
        "assert not registry.built(), 'metrics built at import'; "
        "assert threading.active_count() == 1, 'a thread (a server?) started at import'"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "ORCHESTRATOR_METRICS_PORT": "9100"},
    )
    assert proc.returncode == 0, proc.stderr
