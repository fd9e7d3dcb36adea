"""The API under real gunicorn with its own config file, for tests that need real sockets and threads."""

from __future__ import annotations

import http.client
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.support.redis_server import free_port


class Gunicorn:
    """`gunicorn -c python:api.gunicorn_conf api.wsgi:app` on a free port; output in `directory`."""

    def __init__(self, env: dict[str, str], directory: Path, **gunicorn_env: str) -> None:
        self.port = free_port()
        self.env = {**env, "GUNICORN_BIND": f"127.0.0.1:{self.port}", **gunicorn_env}
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.out_path = directory / f"gunicorn-{self.port}.out"
        self.err_path = directory / f"gunicorn-{self.port}.err"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> Gunicorn:
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "python:api.gunicorn_conf", "api.wsgi:app"],
                env=self.env, stdout=out, stderr=err)
        deadline = time.monotonic() + 30
        while True:
            try:
                if self.request("GET", "/health", timeout=2)[0] == 200:
                    return self
            except OSError:
                pass
            assert self.process.poll() is None, self.err_path.read_text()
            assert time.monotonic() < deadline, "gunicorn did not answer"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def request(self, method: str, path: str, *, body: Any = None, headers: dict[str, str] | None = None,
                timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            payload = json.dumps(body).encode() if body is not None else None
            conn.request(method, path, body=payload, headers={"Content-Type": "application/json", **(headers or {})})
            response = conn.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            conn.close()

    def open(self, method: str, path: str, headers: dict[str, str] | None = None,
             timeout: float = 10) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        """A request whose response is read by the caller (a stream)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        conn.request(method, path, headers=headers or {})
        return conn, conn.getresponse()

    def connect(self) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=10)

    def access_lines(self) -> list[dict[str, Any]]:
        lines = [json.loads(line) for line in self.out_path.read_text().splitlines() if line.startswith("{")]
        return [line for line in lines if line.get("logger") == "orchestrator.api.access"]
