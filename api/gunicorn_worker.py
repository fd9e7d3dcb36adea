"""gunicorn's gthread worker, with request heads and bodies read ahead in its event loop, under deadlines.

gthread hands a connection to a thread as soon as its first byte arrives; the
thread then blocks until the whole head (and, in the app, the body) has come.
Twelve clients sending a byte a second held every thread of two workers, and
/health timed out: gunicorn's `timeout` and `keepalive` are no read deadlines
for this worker. Here the worker's event loop reads what a client sends, without
blocking, until the head is complete and a body of known length (up to the
largest body the app accepts on that path, `ORCHESTRATOR_WEBHOOK_MAX_BYTES`
for webhooks, else `ORCHESTRATOR_MAX_REQUEST_BYTES`) has arrived; only then does a thread take the
request, with every byte it needs already in memory. A longer Content-Length
is answered 413 before any of the body is read: nobody, signed or not, makes a
worker hold more than the app would take. A client that takes longer than
GUNICORN_HEADER_TIMEOUT for its head, or GUNICORN_BODY_TIMEOUT for its body,
is answered 408 and closed. Connections being read ahead do not count against
`worker_connections` (they hold no thread), so slow clients do not stop a worker
from accepting others; at most READING_MAX are read ahead at once per worker,
and the oldest is dropped for a new one past that.

A request body must come with a Content-Length (a chunked one is answered
411: our clients and GitHub send the length). Not covered: TLS (gunicorn's
`certfile`; terminate TLS in front instead) and HTTP/2. In a cluster the
ingress controller buffers requests anyway.
"""

from __future__ import annotations

import os
import re
import selectors
import socket
import time
from functools import partial
from typing import Any

import orjson
from gunicorn.workers.gthread import ThreadWorker

from orchestrator.settings import get_settings

READ_AHEAD_BYTES_MAX = 64 << 20  # of all connections being read ahead by one worker
HEAD_MAX = 64 << 10
READING_MAX = 256


def _answer(status: str, body: bytes = b"") -> bytes:
    kind = "Content-Type: application/json\r\n" if body else ""
    return f"HTTP/1.1 {status}\r\nConnection: close\r\n{kind}Content-Length: {len(body)}\r\n\r\n".encode() + body


def _too_large(limit: int) -> bytes:
    """413 in the app's error envelope, before the body is read."""
    message = f"the body is larger than {limit} bytes"
    return _answer("413 Content Too Large", orjson.dumps({"code": "payload_too_large", "message": message}))


TIMED_OUT = _answer("408 Request Timeout")
LENGTH_REQUIRED = _answer("411 Length Required")
HEAD_TOO_LARGE = _answer("431 Request Header Fields Too Large")
BUSY = _answer("503 Service Unavailable")
BAD_REQUEST = _answer("400 Bad Request")
_CONTENT_LENGTH = re.compile(rb"^content-length[ \t]*:[ \t]*(\d{1,12})[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_CHUNKED = re.compile(rb"^transfer-encoding[ \t]*:", re.IGNORECASE | re.MULTILINE)
_WEBHOOK = re.compile(rb"[A-Z]+ (?:https?://[^/ ]*)?/webhooks/")  # the request line of a webhook
_EXPECT_CONTINUE = re.compile(rb"^expect[ \t]*:[ \t]*100-continue", re.IGNORECASE | re.MULTILINE)
# The console's live status streams: served by the process's live hub, never by a request thread (api/live_hub.py).
_LIVE_REQUEST = re.compile(rb"^GET /console/events[? ]")


def _seconds(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


class _Reading:
    """What one connection has sent so far, and by when the rest must come."""

    __slots__ = ("buffer", "deadline", "needed")

    def __init__(self, buffer: bytes, deadline: float) -> None:
        self.buffer = bytearray(buffer)
        self.deadline = deadline
        self.needed: int | None = None  # the request's full length, once its head is known


class ReadAheadWorker(ThreadWorker):
    """gthread whose threads only ever see requests that have fully arrived (see the module docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = _seconds("GUNICORN_HEADER_TIMEOUT", 10.0)
        self.body_timeout = _seconds("GUNICORN_BODY_TIMEOUT", 60.0)
        # Bodies up to the app's own cap of their path are read ahead, so a thread never waits on one.
        settings = get_settings()
        self.caps = {True: settings.webhook_max_bytes, False: settings.max_request_bytes}
        self.too_large = {webhook: _too_large(cap) for webhook, cap in self.caps.items()}
        self.reading: dict[Any, _Reading] = {}  # insertion order: the oldest first

    def enqueue_req(self, conn: Any) -> None:
        if self.cfg.is_ssl or getattr(conn, "is_http2", False) or not self.alive:
            super().enqueue_req(conn)
            return
        # Bytes of a pipelined request the last one's parser already read.
        held = conn.parser.unreader.take_buffered() if conn.parser is not None else b""
        state = _Reading(held, time.monotonic() + self.header_timeout)
        verdict = self._verdict(conn, state)
        if verdict == b"":
            self._hand_over(conn, state)
            return
        if verdict is not None:
            self._refuse(conn, verdict, counted=True)
            return
        if len(self.reading) >= READING_MAX:
            self._drop(next(iter(self.reading)), BUSY)  # the oldest
        conn.sock.setblocking(False)
        self.reading[conn] = state
        self.nr_conns -= 1  # holds no thread: the worker keeps accepting
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))
        # A kept-alive connection comes here because it is readable, a new one often
        # has its request waiting already: read now rather than after another poll.
        self._on_readable(conn, conn.sock)

    def _on_readable(self, conn: Any, sock: socket.socket) -> None:
        state = self.reading[conn]
        try:
            data = sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._drop(conn, None)
            return
        if sum(len(s.buffer) for s in self.reading.values()) + len(data) > READ_AHEAD_BYTES_MAX:
            self._drop(conn, BUSY)
            return
        state.buffer += data
        verdict = self._verdict(conn, state)
        if verdict is None:
            return
        if verdict:
            self._drop(conn, verdict)
            return
        self.poller.unregister(conn.sock)
        del self.reading[conn]
        self.nr_conns += 1
        self._hand_over(conn, state)

    def _verdict(self, conn: Any, state: _Reading) -> bytes | None:
        """None: wait for more; b"": a thread can take it without waiting; else the answer that refuses it."""
        if state.needed is None:
            end = state.buffer.find(b"\r\n\r\n")
            if end < 0:
                return HEAD_TOO_LARGE if len(state.buffer) > HEAD_MAX else None
            head = bytes(state.buffer[: end + 2])
            if _CHUNKED.search(head):
                return LENGTH_REQUIRED
            match = _CONTENT_LENGTH.search(head)
            length = int(match.group(1)) if match else 0
            webhook = _WEBHOOK.match(head) is not None
            if length > self.caps[webhook]:
                return self.too_large[webhook]
            state.needed = end + 4 + length
            if length:
                state.deadline = time.monotonic() + self.body_timeout
                if len(state.buffer) < state.needed and _EXPECT_CONTINUE.search(head):
                    try:  # the client waits for this before it sends the body; gunicorn may send another (allowed)
                        conn.sock.send(b"HTTP/1.1 100 Continue\r\n\r\n")
                    except OSError:
                        pass
        return b"" if len(state.buffer) >= state.needed else None

    def _hand_over(self, conn: Any, state: _Reading) -> None:
        conn.sock.setblocking(True)
        conn.init()
        if state.buffer:
            conn.parser.unreader.unread(bytes(state.buffer))
        conn.data_ready = True
        if _LIVE_REQUEST.match(state.buffer) and self._to_live_hub(conn):
            return
        super().enqueue_req(conn)

    def _to_live_hub(self, conn: Any) -> bool:
        """Give a live page's stream, fully read, to the live hub: it holds a socket there, not a thread."""
        from gunicorn.http import wsgi

        from api.live_hub import hub_for

        try:
            req = next(conn.parser)  # every byte is in memory: this does not wait
            _resp, environ = wsgi.create(req, conn.sock, conn.client, conn.server, self.cfg)
        except Exception:  # noqa: BLE001 - whatever the parser refuses
            # Answered here: the parser has consumed the request, so a request thread handed this
            # connection would wait for another one from the client, and the client for an answer.
            self._refuse(conn, BAD_REQUEST, counted=True)
            return True
        self.nr_conns -= 1  # the worker no longer holds it
        hub_for(self.wsgi).accept(conn.sock, environ)
        return True

    def _refuse(self, conn: Any, answer: bytes, *, counted: bool) -> None:
        try:
            conn.sock.send(answer)
        except OSError:
            pass
        if counted:
            self.nr_conns -= 1
        conn.close()

    def _drop(self, conn: Any, answer: bytes | None) -> None:
        """Close a connection being read ahead (its client left, took too long, or sent too much)."""
        self.reading.pop(conn, None)
        try:
            self.poller.unregister(conn.sock)
        except (KeyError, ValueError, OSError):
            pass
        if answer:
            self._refuse(conn, answer, counted=False)
        else:
            conn.close()

    def murder_pending(self) -> None:
        """gunicorn's own expiry of waiting connections, and the read deadlines."""
        super().murder_pending()
        now = time.monotonic()
        for conn in [c for c, state in self.reading.items() if state.deadline <= now]:
            self._drop(conn, TIMED_OUT)
