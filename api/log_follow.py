"""Followed log streams (`GET .../logs?follow=true`): bounded in number, in time, and in what a gone client holds.

A follow holds one of gunicorn's request threads for as long as it streams,
so the threads that answer /health, /ready and GitHub's webhooks are kept
free three ways:

- a process serves at most half its threads as follows (`limit_per_process`,
  set by api/gunicorn_conf.py); a follow past that is answered 503 at once;
- one API token holds at most ORCHESTRATOR_LOG_FOLLOWS_PER_TOKEN follows
  across every API process (a lease in the store, renewed while streaming,
  lapsing with a crashed process), past that 429;
- a stream ends when its client has gone (checked every KEEPALIVE_SECONDS
  while the run is silent) and after ORCHESTRATOR_LOG_FOLLOW_MAX_SECONDS.

The runner's iterator is read by a pump thread, because a Kubernetes log
stream blocks in a socket read until the next line: the request thread waits
on a queue instead, so it wakes to check its client and its deadline. When the
stream ends the pump is aborted (`orchestrator.runners.base.Lines.abort`), so
nothing keeps waiting on a silent run for a client that left.
"""

from __future__ import annotations

import logging
import os
import queue
import select
import socket
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any

from api.errors import ApiError
from orchestrator.logs import scrub, scrubbable
from orchestrator.runners.errors import RunnerError
from orchestrator.store import TaskStore

log = logging.getLogger("orchestrator.api")

KEEPALIVE_SECONDS = 2.0  # a silent stream checks its client this often
HOLD_SECONDS = 0.5  # a line waits this long for the next, to be scrubbed with it
LEASE_SECONDS = 30.0  # a follow's lease in the store; renewed every third of it
_QUEUE_LINES = 1024  # lines read ahead of a slow client, at most

_process_slots: threading.Semaphore | None = None  # None: not limited (no gunicorn config)
_process_limit = 0


def limit_per_process(slots: int) -> None:
    """Serve at most `slots` follows at once in this process (0: none)."""
    global _process_slots, _process_limit
    _process_limit = max(0, slots)
    _process_slots = threading.BoundedSemaphore(_process_limit) if _process_limit else threading.Semaphore(0)


class Follow:
    """One admitted follow: its slot in this process and its lease in the store, released once."""

    def __init__(self, store: TaskStore, owner: str, lease_seconds: float = LEASE_SECONDS) -> None:
        self.store = store
        self.owner = owner
        self.stream_id = os.urandom(8).hex()
        self.lease_seconds = lease_seconds
        self.limit = 0
        self._slot = False
        self._released = False

    def admit(self, limit: int) -> Follow:
        """Take the lease (429 when the token holds `limit` already), then a slot here (503 when none)."""
        self.limit = limit
        if not self.store.acquire_follow(self.owner, self.stream_id, lease_seconds=self.lease_seconds, limit=limit):
            raise ApiError(
                f"this token follows {limit} log streams already (ORCHESTRATOR_LOG_FOLLOWS_PER_TOKEN); "
                "end one, or read the logs without follow",
                status=429,
                code="too_many_follows",
                headers={"Retry-After": "10"},
            )
        if _process_slots is not None:
            if not _process_slots.acquire(blocking=False):
                self.release()
                raise ApiError(
                    f"this API process streams {_process_limit} followed logs already (half its "
                    "threads; the rest answer health checks and webhooks); retry shortly",
                    status=503,
                    code="unavailable",
                    headers={"Retry-After": "5"},
                )
            self._slot = True
        return self

    def renew(self) -> None:
        try:
            self.store.acquire_follow(self.owner, self.stream_id, lease_seconds=self.lease_seconds, limit=self.limit)
        except Exception:  # the store is down: the stream goes on, the lease may lapse meanwhile
            log.warning("could not renew the lease of a followed log stream", exc_info=True)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        if self._slot and _process_slots is not None:
            _process_slots.release()
        try:
            self.store.release_follow(self.owner, self.stream_id)
        except Exception:  # it lapses by itself
            log.warning("could not release the lease of a followed log stream", exc_info=True)


def client_socket(environ: dict[str, Any]) -> socket.socket | None:
    """The client's plain TCP socket when the server exposes it (gunicorn does), else None."""
    sock = environ.get("gunicorn.socket")
    return sock if type(sock) is socket.socket else None  # an SSLSocket cannot be peeked


def client_gone(sock: socket.socket) -> bool:
    """True when the client closed its connection (readable, and nothing to read)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        if not readable:
            return False
        return sock.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except (BlockingIOError, InterruptedError):
        return False
    except (OSError, ValueError):
        return True


def stream(
    lines: Iterator[str],
    follow: Follow,
    *,
    max_seconds: float,
    secrets: Iterable[str],
    sock: socket.socket | None,
    run_id: str,
) -> Iterator[str]:
    """The run's lines as they arrive, until the run ends, the client goes, or `max_seconds` pass.

    Each line is scrubbed together with the next (a secret split across two is
    masked, as `orchestrator.logs.scrub_lines` does) when that one comes within
    HOLD_SECONDS, else alone: a silent agent's last line is not held back.
    """
    ordered = scrubbable(secrets)
    pipe: queue.Queue[tuple[str, Any]] = queue.Queue(_QUEUE_LINES)
    stop = threading.Event()
    pump = threading.Thread(target=_pump, args=(lines, pipe, stop, run_id), name=f"log-follow-{run_id}", daemon=True)
    pump.start()
    started = time.monotonic()
    deadline = started + max_seconds
    renew_at = started + follow.lease_seconds / 3
    held: str | None = None
    send_by = 0.0  # when the held line goes out alone
    try:
        yield ""  # the status line and headers go out now, not with the first line
        while True:
            now = time.monotonic()
            if held is not None and (now >= send_by or now >= deadline):
                yield scrub(held, ordered, ordered=True) + "\n"
                held = None
            if now >= deadline:
                yield (
                    f"orchestrator: this follow ended after {max_seconds:g} s "
                    "(ORCHESTRATOR_LOG_FOLLOW_MAX_SECONDS); follow again to go on\n"
                )
                return
            if now >= renew_at:
                follow.renew()
                renew_at = now + follow.lease_seconds / 3
            wait = min(KEEPALIVE_SECONDS, deadline - now, send_by - now if held is not None else KEEPALIVE_SECONDS)
            try:
                kind, value = pipe.get(timeout=max(wait, 0.0))
            except queue.Empty:
                if held is not None and time.monotonic() < send_by:
                    continue
                if sock is None:
                    yield "\n"  # no socket to look at: a write to a gone client raises instead
                elif client_gone(sock):
                    return
                continue
            if kind != "line":
                if held is not None:
                    yield scrub(held, ordered, ordered=True) + "\n"
                return
            line = value.rstrip("\n")
            if held is None:
                held = line
            else:
                first, _, held = scrub(f"{held}\n{line}", ordered, ordered=True).partition("\n")
                yield first + "\n"
            send_by = time.monotonic() + HOLD_SECONDS
    finally:
        stop.set()
        abort = getattr(lines, "abort", None)
        if abort is not None and pump.is_alive():
            abort()  # the pump may wait on a silent run for hours; it ends now
        follow.release()


def _pump(lines: Iterator[str], pipe: queue.Queue[tuple[str, Any]], stop: threading.Event, run_id: str) -> None:
    """Move the runner's lines to `pipe` until they end or the stream is stopped; close the runner's iterator."""

    def put(item: tuple[str, Any]) -> bool:
        while not stop.is_set():
            try:
                pipe.put(item, timeout=KEEPALIVE_SECONDS)
                return True
            except queue.Full:
                continue
        return False

    try:
        for line in lines:
            if not put(("line", line)):
                return
    except (LookupError, FileNotFoundError, RunnerError) as exc:
        if not stop.is_set():  # else it was aborted: nobody listens any more
            log.info("log stream of run %s ended: %s", run_id, exc)
    except Exception:  # the status line is already sent; end the stream and say why in the log
        log.exception("log stream of run %s ended by an error", run_id)
    finally:
        close = getattr(lines, "close", None)
        if close is not None:
            close()
        put(("end", None))
