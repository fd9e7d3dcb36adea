"""A real Celery worker process consuming from the tests' Redis."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from pathlib import Path


class WorkerProcess:
    """`celery -A workers.app worker` as a child process; waits until it is ready."""

    def __init__(self, env: Mapping[str, str], log_path: Path, *, queues: Iterable[str],
                 concurrency: int = 1, pool: str = "prefork", name: str = "test",
                 include: Iterable[str] = (), extra_args: Iterable[str] = ()):
        self.env = dict(env)
        self.log_path = log_path
        self.queues = ",".join(queues)
        self.concurrency = concurrency
        self.pool = pool
        self.name = name
        self.include = ",".join(include)  # extra step modules (test stand-ins)
        self.extra_args = list(extra_args)  # more worker options (--heartbeat-file...)
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        args = [
            sys.executable, "-m", "celery", "-A", "workers.app", "worker", "-Q", self.queues,
            "-c", str(self.concurrency), "-P", self.pool, "-n", f"{self.name}-{os.getpid()}-{time.monotonic_ns()}@%h",
            "--without-gossip", "--without-mingle", "-l", "INFO",
        ]
        if self.include:
            args += ["--include", self.include]
        args += self.extra_args
        self._log = open(self.log_path, "ab")
        self.process = subprocess.Popen(args, env=self.env, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"celery worker exited early:\n{self.log_path.read_text()[-3000:]}")
            if b" ready." in self.log_path.read_bytes():
                return
            time.sleep(0.1)
        raise RuntimeError(f"celery worker not ready:\n{self.log_path.read_text()[-3000:]}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> None:
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, sig)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if getattr(self, "_log", None):
            self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")
