"""Live status streams (the console's `/console/events`) served off gunicorn's request threads.

A live page keeps its event stream open for minutes. Served by a request
thread, every open page held one of the few threads that also answer /health
and GitHub's webhooks, so the streams were capped at half of them and a busy
page was told to come back later. Here the worker (api/gunicorn_worker.py)
hands such a request, fully read, to this process's hub instead: one thread
runs the app for it (sign-in check, which tasks), then keeps the socket in a
selector, writing each status change that concerns it and a keep-alive
comment now and then. The changes come from the store's stream of status
changes (written by the same script as the change itself), read by one more
thread with a blocking XREAD: an idle page costs nothing but its socket.

Under a server without this worker (Flask's test client, `flask run`) the view
streams from its request thread as before (api/console/views.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import selectors
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from orchestrator.store import StatusChange, TaskStore

log = logging.getLogger("orchestrator.api")

ENVIRON_KEY = "orchestrator.live_hub"  # set by the worker: the view answers with a Subscription
SUBSCRIPTION_KEY = "orchestrator.live_subscription"  # set by the view: what the stream follows
KEEPALIVE_SECONDS = 15.0  # a comment this often: proxies keep the stream, a gone client is found
STREAM_SECONDS = 600.0  # then the stream ends and the browser reconnects (its session is checked again)
MAX_STREAMS = 2000  # per process; past that a page is answered 503 and retries
PENDING_MAX = 64 << 10  # bytes a slow reader may have waiting; past that it is dropped
READ_BLOCK_MS = 2000
SESSION_CHECK_SECONDS = 30.0  # a signed-out session's open streams end within this


@dataclass
class Subscription:
    """What one stream follows (task refs), and what it sends first."""

    refs: frozenset[str]
    first: bytes = b""
    session_id: str = ""  # the console session it was opened under: its stream ends when that session does


@dataclass(eq=False)
class _Stream:
    sock: socket.socket
    refs: frozenset[str]
    ends_at: float
    keepalive_at: float
    session_id: str = ""
    pending: bytearray = field(default_factory=bytearray)


def status_event(change: StatusChange) -> bytes:
    """A change as the console's pages read it (`event: status`, as the threaded stream sends it)."""
    import json

    row = {
        "ref": change.ref,
        "status": change.status,
        "reason": change.reason,
        "updated_at": datetime.fromtimestamp(change.at, UTC).isoformat() if change.at else None,
    }
    return f"event: status\ndata: {json.dumps(row, separators=(',', ':'))}\n\n".encode()


class LiveHub:
    """The process's live streams: a thread for their sockets, a thread reading the store's changes."""

    def __init__(self, app: Callable[..., Iterable[bytes]], store: Callable[[], TaskStore]) -> None:
        self.app = app
        self.store = store
        self._incoming: queue.SimpleQueue[tuple[socket.socket, dict[str, Any]]] = queue.SimpleQueue()
        self._changes: queue.SimpleQueue[list[StatusChange]] = queue.SimpleQueue()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector = selectors.DefaultSelector()
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._streams: dict[socket.socket, _Stream] = {}
        self._by_ref: dict[str, set[_Stream]] = defaultdict(set)
        self._started = False
        self._lock = threading.Lock()
        self._sessions_checked = time.monotonic()

    # Called by the worker's event loop ----------------------------------------------------------------

    def accept(self, sock: socket.socket, environ: dict[str, Any]) -> None:
        """Take a connection whose request has been read; the hub answers it and owns the socket from now on."""
        self._start()
        self._incoming.put((sock, environ))
        self._wake()

    def count(self) -> int:
        return len(self._streams)

    # Threads ----------------------------------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._started:
                return
            self._started = True
        threading.Thread(target=self._serve, name="live-hub", daemon=True).start()
        threading.Thread(target=self._read_changes, name="live-hub-changes", daemon=True).start()

    def _wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"x")

    def _read_changes(self) -> None:
        """Follow the store's stream of status changes; hand each batch to the serving thread."""
        cursor = None
        while True:
            try:
                if cursor is None:
                    cursor = self.store().status_changes_cursor()
                cursor, changes = self.store().status_changes(cursor, block_ms=READ_BLOCK_MS)
            except Exception:  # noqa: BLE001 - Redis away: pages keep their sockets, reading resumes
                log.warning("live pages: the store's status changes could not be read; retrying", exc_info=True)
                time.sleep(2.0)
                continue
            if changes:
                self._changes.put(changes)
                self._wake()

    def _serve(self) -> None:
        while True:
            try:
                self._serve_once()
            except Exception:  # noqa: BLE001 - one bad stream never ends the others
                log.exception("live pages: serving loop error")
                time.sleep(0.1)

    def _serve_once(self) -> None:
        now = time.monotonic()
        timeout = min((min(s.keepalive_at, s.ends_at) for s in self._streams.values()), default=now + 60) - now
        timeout = min(timeout, self._sessions_checked + SESSION_CHECK_SECONDS - now)
        for key, _ in self._selector.select(max(0.0, timeout)):
            if key.data is None:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.read(self._wake_r, 4096)
            elif isinstance(key.fileobj, socket.socket):
                self._on_readable(key.fileobj, key.events)
        while not self._incoming.empty():
            sock, environ = self._incoming.get_nowait()
            self._open(sock, environ)
        while not self._changes.empty():
            for change in self._changes.get_nowait():
                for stream in list(self._by_ref.get(change.ref, ())):
                    self._send(stream, status_event(change))
        now = time.monotonic()
        if now >= self._sessions_checked + SESSION_CHECK_SECONDS:
            self._sessions_checked = now
            self._end_signed_out()
        for stream in list(self._streams.values()):
            if now >= stream.ends_at:
                self._close(stream)
            elif now >= stream.keepalive_at:
                stream.keepalive_at = now + KEEPALIVE_SECONDS
                self._send(stream, b": keepalive\n\n")

    def _end_signed_out(self) -> None:
        """End the streams whose console session was signed out (or expired) since they opened."""
        ids = sorted({s.session_id for s in self._streams.values() if s.session_id})
        if not ids:
            return
        try:
            still_open = dict(zip(ids, self.store().console_sessions_open(ids)))
        except Exception:  # noqa: BLE001 - the store away: checked again next time
            log.warning("live pages: could not check console sessions", exc_info=True)
            return
        for stream in list(self._streams.values()):
            if stream.session_id and not still_open.get(stream.session_id, True):
                self._close(stream)

    # Streams -------------------------------------------------------------------------------------------------

    def _open(self, sock: socket.socket, environ: dict[str, Any]) -> None:
        """Run the app for the request (sign-in, which tasks, their statuses now), then keep the stream."""
        environ[ENVIRON_KEY] = self
        answer: list[Any] = []

        def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[..., Any]:
            answer[:] = [status, headers]
            return lambda data: None

        try:
            body_iter = self.app(environ, start_response)
            try:
                body = b"".join(body_iter)
            finally:
                close = getattr(body_iter, "close", None)
                if close is not None:
                    close()
        except Exception:  # noqa: BLE001 - answered like any failed request
            log.exception("live pages: the app failed to open a stream")
            answer, body = ["500 Internal Server Error", [("Content-Type", "text/plain")]], b"error\n"
        subscription = environ.get(SUBSCRIPTION_KEY)
        status, headers = answer or ["500 Internal Server Error", []]
        if len(self._streams) >= MAX_STREAMS and isinstance(subscription, Subscription):
            status, headers, body, subscription = "503 Service Unavailable", [("Retry-After", "5")], b"busy\n", None
        head = [f"HTTP/1.1 {status}"]
        head += [f"{k}: {v}" for k, v in headers if k.lower() not in {"content-length", "connection"}]
        if not isinstance(subscription, Subscription):
            head += [f"Content-Length: {len(body)}", "Connection: close"]
            with contextlib.suppress(OSError):
                sock.settimeout(5)
                sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
            self._shut(sock)
            return
        # No length: the stream's body ends when the connection does (HTTP/1.1 allows it, EventSource expects it).
        head.append("Connection: close")
        sock.setblocking(False)
        now = time.monotonic()
        stream = _Stream(
            sock, subscription.refs, now + STREAM_SECONDS, now + KEEPALIVE_SECONDS, subscription.session_id
        )
        self._streams[sock] = stream
        for ref in stream.refs:
            self._by_ref[ref].add(stream)
        self._selector.register(sock, selectors.EVENT_READ, stream)
        self._send(stream, ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body + subscription.first)

    def _on_readable(self, sock: socket.socket, events: int) -> None:
        """A stream's client sent something: its end (or bytes a stream does not expect, ending it too)."""
        stream = self._streams.get(sock)
        if stream is None:
            return
        if events & selectors.EVENT_WRITE:
            self._send(stream, b"")
        if events & selectors.EVENT_READ:
            try:
                data = sock.recv(4096)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                data = b""
            if not data:
                self._close(stream)

    def _send(self, stream: _Stream, data: bytes) -> None:
        stream.pending += data
        try:
            while stream.pending:
                sent = stream.sock.send(stream.pending)
                del stream.pending[:sent]
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            self._close(stream)
            return
        if len(stream.pending) > PENDING_MAX:
            self._close(stream)
            return
        wanted = selectors.EVENT_READ | (selectors.EVENT_WRITE if stream.pending else 0)
        with contextlib.suppress(KeyError, ValueError):
            if self._selector.get_key(stream.sock).events != wanted:
                self._selector.modify(stream.sock, wanted, stream)

    def _close(self, stream: _Stream) -> None:
        if self._streams.pop(stream.sock, None) is None:
            return
        for ref in stream.refs:
            subscribers = self._by_ref.get(ref)
            if subscribers is not None:
                subscribers.discard(stream)
                if not subscribers:
                    del self._by_ref[ref]
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(stream.sock)
        self._shut(stream.sock)

    @staticmethod
    def _shut(sock: socket.socket) -> None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            sock.close()


_hubs: dict[int, LiveHub] = {}
_hubs_lock = threading.Lock()


def hub_for(app: Any) -> LiveHub:
    """This process's hub for `app` (the Flask app gunicorn loaded), made on the first live page."""
    with _hubs_lock:
        hub = _hubs.get(id(app))
        if hub is None:
            hub = _hubs[id(app)] = LiveHub(app, app.extensions["orchestrator"].store)
        return hub
