"""`orchestrator up` as a subprocess for tests, and the command line as a subprocess."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from orchestrator.cli import processes
from tests.support.redis_server import free_port


def alive(pid: int) -> bool:
    """Running and not a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] != "Z"


class Up:
    """`python -m orchestrator.cli up` in a subprocess, with its output in a file."""

    def __init__(self, env: dict[str, str], tmp_path: Path, *extra: str):
        self.api_port = free_port()
        self.out = tmp_path / f"up-{self.api_port}.out"
        self.args = [sys.executable, "-m", "orchestrator.cli", "up", "--api-port", str(self.api_port),
                     "--redis-port", str(free_port()), *extra]
        self.env = env
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    def start(self, timeout: float = 120) -> None:
        with open(self.out, "wb") as out:
            self.proc = subprocess.Popen(self.args, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        # The banner's last line: it is printed line by line, after "everything runs".
        while "orchestrator task watch demo/1" not in self.output():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError(f"up did not start:\n{self.output()}\n{self.logs()}")
            time.sleep(0.2)

    def output(self) -> str:
        return self.out.read_text(errors="replace") if self.out.exists() else ""

    def logs(self) -> str:
        log_dir = Path(self.env["ORCHESTRATOR_DATA_DIR"]) / "logs"
        if not log_dir.exists():
            return ""
        return "\n".join(f"--- {path.name}\n{path.read_text(errors='replace')[-2000:]}"
                         for path in sorted(log_dir.glob("*.log")))

    def interrupt(self, timeout: float = 60) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                for pid in processes.descendants(self.proc.pid):
                    os.kill(pid, signal.SIGKILL)
                self.proc.kill()
                self.proc.wait()


def cli(env: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "orchestrator.cli", *argv], env=env, capture_output=True,
                          text=True, timeout=60)
