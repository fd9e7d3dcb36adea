"""Live pages under real gunicorn: 200 open status streams hold a socket each, not a request thread (#20).

Two workers of four threads each: before the live hub, at most half the
threads of a process served streams and the rest of the 200 pages were told to
come back later; here every page gets its stream, /health still answers, and
a status change reaches the open streams.
"""

from __future__ import annotations

import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.store import TaskStore
from tests.support.gunicorn import Gunicorn
from tests.support.sse import read_until

TOKEN = "live-hub-token"
PAGES = 200


@pytest.fixture
def server(base_env: dict[str, str], tmp_path: Path) -> Iterator[Gunicorn]:
    env = {**base_env, "ORCHESTRATOR_API_TOKENS": TOKEN, "ORCHESTRATOR_SESSION_SECRET": "live-hub-secret"}
    server = Gunicorn(env, tmp_path, GUNICORN_WORKERS="2", GUNICORN_THREADS="4").start()
    yield server
    server.stop()


def session_cookie(server: Gunicorn) -> str:
    status, headers, body = server.request("GET", "/sign-in", headers={"Accept": "text/html"})
    cookie = headers["Set-Cookie"].split(";", 1)[0]
    csrf = re.search(rb'name="csrf_token" value="([^"]+)"', body)
    assert status == 200 and csrf
    form = f"token={TOKEN}&csrf_token={csrf.group(1).decode()}"
    conn_status, answer = request_raw(
        server,
        f"POST /sign-in HTTP/1.1\r\nHost: t\r\nCookie: {cookie}\r\nContent-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(form)}\r\nConnection: close\r\n\r\n{form}",
    )
    assert conn_status == 303, answer
    return re.search(r"Set-Cookie: ([^;]+);", answer).group(1)  # type: ignore[union-attr]


def request_raw(server: Gunicorn, text: str) -> tuple[int, str]:
    with server.connect() as sock:
        sock.sendall(text.encode())
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head = data.decode("latin-1")
    return int(head.split(" ", 2)[1]), head


def open_stream(server: Gunicorn, cookie: str, ref: str) -> socket.socket:
    sock = server.connect()
    sock.sendall(f"GET /console/events?task={ref} HTTP/1.1\r\nHost: t\r\nCookie: {cookie}\r\n\r\n".encode())
    return sock


def test_two_hundred_live_pages_hold_a_socket_each_and_the_api_still_answers(
    server: Gunicorn, store: TaskStore
) -> None:
    store.create_task(service="live", task_id=1, agent="claude", spec={"title": "watched"})
    cookie = session_cookie(server)
    streams = [open_stream(server, cookie, "live/1") for _ in range(PAGES)]
    try:
        firsts = [read_until(sock, b'"status":"Pending"') for sock in streams]
        assert all(first.startswith(b"HTTP/1.1 200 ") for first in firsts), {f[:40] for f in firsts}
        assert all(b"text/event-stream" in first and b'"status":"Pending"' in first for first in firsts)

        status, _, body = server.request("GET", "/health", timeout=10)
        assert status == 200, body  # every thread is still free for it
        assert server.request("GET", "/api/v1/pm/tasks/live/1", headers={"Authorization": "Bearer x"})[0] == 401

        store.transition("live", 1, "Cancelled", reason="seen live", actor="test")
        changed = [read_until(sock, b'"status":"Cancelled"') for sock in streams]
        assert all(b'"reason":"seen live"' in data for data in changed)
    finally:
        for sock in streams:
            sock.close()


def test_a_live_stream_without_a_session_is_refused_and_closed(server: Gunicorn) -> None:
    sock = open_stream(server, "orchestrator_session=forged", "live/1")
    try:
        data = read_until(sock, b"sign in first")
        assert data.startswith(b"HTTP/1.1 401 ")
        sock.settimeout(5)
        assert sock.recv(100) == b""  # answered and closed: nothing held
    finally:
        sock.close()


def test_a_malformed_live_request_is_answered_400_at_once(server: Gunicorn) -> None:
    """The read-ahead worker parsed it and gave up: it must answer, not hand a half-read connection to a thread."""
    sock = server.connect()
    try:
        sock.sendall(b"GET /console/events?task=live/1 HTTP/1.1\r\nHost: t\r\nNo colon in this header\r\n\r\n")
        started = time.monotonic()
        data = read_until(sock, b"\r\n\r\n", seconds=15)
        assert data.startswith(b"HTTP/1.1 400 "), (data[:80], f"{time.monotonic() - started:.1f} s")
        sock.settimeout(5)
        while sock.recv(4096):  # closed after the answer: nothing held
            pass
    finally:
        sock.close()
    status, _, _ = server.request("GET", "/health", timeout=10)
    assert status == 200


class FakeChanges:
    """The store's stream of status changes, fed by the test (the hub's reader blocks on it)."""

    def __init__(self) -> None:
        import queue

        self.queue: queue.Queue = queue.Queue()

    def status_changes_cursor(self) -> str:
        return "0-0"

    def status_changes(self, after: str, *, block_ms: int) -> tuple[str, list]:
        import queue

        try:
            return after, [self.queue.get(timeout=block_ms / 1000)]
        except queue.Empty:
            return after, []


def test_the_hub_writes_changes_to_the_streams_that_follow_them_and_forgets_a_client_that_left() -> None:
    from api.live_hub import SUBSCRIPTION_KEY, LiveHub, Subscription
    from orchestrator.store import StatusChange

    def app(environ, start_response):
        refs = frozenset(environ["QUERY_STRING"].split(","))
        environ[SUBSCRIPTION_KEY] = Subscription(refs, b"retry: 1000\n\n")
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return [b""]

    changes = FakeChanges()
    hub = LiveHub(app, lambda: changes)  # type: ignore[arg-type]
    pairs = [socket.socketpair() for _ in range(3)]
    for (server_side, _), query in zip(pairs, ("a/1", "a/1,a/2", "b/9")):
        hub.accept(server_side, {"QUERY_STRING": query})
    for _, client in pairs:
        assert read_until(client, b"retry: 1000").startswith(b"HTTP/1.1 200 OK")
    changes.queue.put(StatusChange("a/1", "Running", "run started", 1_700_000_000.0))
    assert b'"status":"Running"' in read_until(pairs[0][1], b"Running")
    assert b'"status":"Running"' in read_until(pairs[1][1], b"Running")
    pairs[2][1].settimeout(0.5)
    with pytest.raises(TimeoutError):
        pairs[2][1].recv(100)  # b/9 did not change
    pairs[0][1].close()  # a page closed
    deadline = time.monotonic() + 5
    while hub.count() != 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert hub.count() == 2
    changes.queue.put(StatusChange("a/2", "Failed", "exit 1", 1_700_000_001.0))
    assert b'"status":"Failed"' in read_until(pairs[1][1], b"Failed")
    for _, client in pairs[1:]:
        client.close()


def test_the_streams_of_a_signed_out_session_end(monkeypatch: pytest.MonkeyPatch) -> None:
    from api import live_hub
    from api.live_hub import SUBSCRIPTION_KEY, LiveHub, Subscription

    monkeypatch.setattr(live_hub, "SESSION_CHECK_SECONDS", 0.2)

    def app(environ, start_response):
        environ[SUBSCRIPTION_KEY] = Subscription(frozenset({"a/1"}), b"retry: 1000\n\n", environ["QUERY_STRING"])
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return [b""]

    class Sessions(FakeChanges):
        open = {"kept", "signed-out"}

        def console_sessions_open(self, ids: list[str]) -> list[bool]:
            return [i in self.open for i in ids]

    store = Sessions()
    hub = LiveHub(app, lambda: store)  # type: ignore[arg-type]
    kept, ended = socket.socketpair(), socket.socketpair()
    hub.accept(kept[0], {"QUERY_STRING": "kept"})
    hub.accept(ended[0], {"QUERY_STRING": "signed-out"})
    for _, client in (kept, ended):
        assert read_until(client, b"retry: 1000").startswith(b"HTTP/1.1 200 OK")
    Sessions.open = {"kept"}  # signed out in another tab
    ended[1].settimeout(5)
    assert ended[1].recv(100) == b""  # its stream was closed
    assert hub.count() == 1
    for pair in (kept, ended):
        pair[1].close()
