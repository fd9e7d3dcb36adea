"""Slow clients (slowloris) under real gunicorn: trickled heads and bodies hold no thread, and time out."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.github.routing import ROUTES
from orchestrator.settings import VARIABLES
from tests.support.github import corpus
from tests.support.gunicorn import Gunicorn

HEAD = b"GET /health HTTP/1.1\r\nHost: test\r\nX-Padding: " + b"x" * 200 + b"\r\n\r\n"
BODY_HEAD = (b"POST /api/v1/pm/tasks HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer test-token\r\n"
             b"Content-Type: application/json\r\nContent-Length: 4000\r\n\r\n")


@pytest.fixture
def server(base_env: dict[str, str], tmp_path: Path) -> Iterator[Gunicorn]:
    server = Gunicorn(base_env, tmp_path, GUNICORN_WORKERS="2", GUNICORN_THREADS="4",
                      GUNICORN_HEADER_TIMEOUT="4", GUNICORN_BODY_TIMEOUT="4").start()
    yield server
    server.stop()


class Trickler:
    """Connections that send `prefix` at once, then the rest of `data` one byte every `every` seconds."""

    def __init__(self, server: Gunicorn, count: int, prefix: bytes, data: bytes, every: float = 0.2) -> None:
        self.sockets = [server.connect() for _ in range(count)]
        self.prefix, self.data, self.every = prefix, data, every
        self.closed_by_server: list[float] = []
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.threads = [threading.Thread(target=self._run, args=(s,), daemon=True) for s in self.sockets]
        for thread in self.threads:
            thread.start()

    def _run(self, sock: socket.socket) -> None:
        try:
            sock.sendall(self.prefix)
            for byte in self.data:
                if self.stop.wait(self.every):
                    return
                sock.sendall(bytes([byte]))
        except OSError:
            self.closed_by_server.append(time.monotonic() - self.started)

    def close(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=5)
        for sock in self.sockets:
            sock.close()


def _health_within(server: Gunicorn, seconds: float) -> None:
    started = time.monotonic()
    status, _, _ = server.request("GET", "/health", timeout=seconds)
    assert status == 200 and time.monotonic() - started < seconds


@pytest.mark.parametrize("prefix,data", [(b"", HEAD), (BODY_HEAD, b'{"id": 1' + b" " * 3990 + b"}")],
                         ids=["head", "body"])
def test_twelve_slow_clients_leave_health_answering_and_are_cut_off(server: Gunicorn, prefix: bytes,
                                                                    data: bytes) -> None:
    slow = Trickler(server, 12, prefix, data)
    try:
        time.sleep(1.5)  # every slow client has started sending
        for _ in range(3):
            _health_within(server, 2)
            time.sleep(0.5)
        # The read deadline (4 s here) closes them, long before they would finish (about 40 s more).
        deadline = time.monotonic() + 10
        while len(slow.closed_by_server) < 12:
            assert time.monotonic() < deadline, f"{12 - len(slow.closed_by_server)} slow clients still connected"
            time.sleep(0.2)
        assert max(slow.closed_by_server) < 10
    finally:
        slow.close()
    _health_within(server, 2)


def test_requests_read_ahead_are_served_whole_pipelined_and_refused_when_chunked(server: Gunicorn) -> None:
    with server.connect() as sock:  # two requests in one write, on one kept-alive connection
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: t\r\n\r\nGET /api/v1/health HTTP/1.1\r\nHost: t\r\n"
                     b"Connection: close\r\n\r\n")
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    assert received.count(b"HTTP/1.1 200 OK") == 2
    with server.connect() as sock:  # a body announced with Expect: 100-continue is asked for, then read
        sock.sendall(BODY_HEAD.replace(b"Content-Length: 4000", b"Content-Length: 2\r\nExpect: 100-continue"))
        assert sock.recv(65536).startswith(b"HTTP/1.1 100 Continue")
        sock.sendall(b"{}")
        answer = b""
        while b"validation_error" not in answer:  # the app read the body: {} is no task
            chunk = sock.recv(65536)
            assert chunk, answer
            answer += chunk
        assert b"HTTP/1.1 400" in answer
    with server.connect() as sock:
        sock.sendall(BODY_HEAD.replace(b"Content-Length: 4000", b"Transfer-Encoding: chunked"))
        assert sock.recv(65536).startswith(b"HTTP/1.1 411")


def _answer(sock: socket.socket) -> bytes:
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def test_an_unsigned_webhook_body_over_the_cap_is_refused_before_any_of_it_is_read(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    """#16 finding 14: an outsider's body is held only up to ORCHESTRATOR_WEBHOOK_MAX_BYTES, never 25 MB."""
    env = {**base_env, "GITHUB_WEBHOOK_SECRET": "s3cret", "ORCHESTRATOR_WEBHOOK_MAX_BYTES": "4096"}
    server = Gunicorn(env, tmp_path, GUNICORN_WORKERS="1", GUNICORN_THREADS="2").start()
    head = (b"POST /webhooks/github HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
            b"X-GitHub-Event: issues\r\nX-GitHub-Delivery: d-1\r\nX-Hub-Signature-256: sha256=00\r\n")
    try:
        with server.connect() as sock:  # 25 MB announced, not one byte of it sent: answered at once
            sock.settimeout(5)
            sock.sendall(head + b"Content-Length: 26214400\r\n\r\n")
            answer = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 413")
        assert b'"code":"payload_too_large"' in answer and b"larger than 4096 bytes" in answer
        with server.connect() as sock:  # one byte over the cap: the same, before the body
            sock.settimeout(5)
            sock.sendall(head + b"Content-Length: 4097\r\n\r\n")
            assert _answer(sock).startswith(b"HTTP/1.1 413")
        with server.connect() as sock:  # at the cap it is read, and the signature refuses it
            sock.settimeout(5)
            sock.sendall(head + b"Content-Length: 4096\r\nConnection: close\r\n\r\n" + b" " * 4094 + b"{}")
            answer = _answer(sock)
        assert answer.startswith(b"HTTP/1.1 401") and b"bad_signature" in answer
    finally:
        server.stop()


def test_the_default_webhook_cap_holds_every_real_payload_the_receiver_acts_on() -> None:
    default = int(next(v.default for v in VARIABLES if v.env == "ORCHESTRATOR_WEBHOOK_MAX_BYTES"))
    assert default <= 2 << 20  # not GitHub's 25 MB: what an unsigned sender may make us hold
    routed = {route.event for route in ROUTES}
    sizes = [path.stat().st_size for event, path in corpus() if event in routed]
    assert len(sizes) > 20
    # GitHub caps an issue, comment, review or pull request text at 65536 characters; the
    # worst a routed payload carries is two of them (issue and comment), \u-escaped (6 bytes each).
    assert max(sizes) + 2 * 65536 * 6 < default
