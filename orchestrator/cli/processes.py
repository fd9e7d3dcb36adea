"""The processes of `orchestrator up`: started in their own sessions, supervised, stopped in reverse order.

This process is a child subreaper (Linux), so an agent its worker left behind
is re-parented here and stopped too: nothing outlives `up`.
"""

from __future__ import annotations

import ctypes
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import redis

PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1
STOP_TIMEOUT = 20.0  # seconds the children get to stop before SIGKILL


def redis_answers(url: str, timeout: float = 1.0) -> bool:
    """True when a Redis server answers PING at the URL."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False


def port_free(host: str, port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def http_ok(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own local URL
            return 200 <= response.status < 300
    except (urllib.error.URLError, OSError, ValueError):
        return False


def become_subreaper() -> bool:
    """Orphaned descendants (an agent whose worker died) are re-parented to us, so we can stop them."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def child_pids(parent: int) -> list[int]:
    """Live (non-zombie) processes whose parent is `parent`, from /proc."""
    found = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the command name, which may itself hold spaces and parentheses.
        rest = stat[stat.rfind(")") + 2 :].split()
        if len(rest) > 1 and int(rest[1]) == parent and rest[0] != "Z":
            found.append(int(entry.name))
    return found


def descendants(root: int) -> list[int]:
    """Every live descendant of `root`."""
    seen: list[int] = []
    frontier = [root]
    while frontier:
        kids = child_pids(frontier.pop())
        seen.extend(kids)
        frontier.extend(kids)
    return seen


def reap_children() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


# The stack ------------------------------------------------------------------


class Stack:
    """Child processes of `orchestrator up`, each with a log file, stopped together."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.children: list[tuple[str, subprocess.Popen[bytes], Path]] = []
        self.commands: dict[str, tuple[list[str], dict[str, str]]] = {}

    def start(self, name: str, args: Sequence[str], env: Mapping[str, str]) -> subprocess.Popen[bytes]:
        self.commands[name] = (list(args), dict(env))
        log_path = self.log_dir / f"{name}.log"
        log = open(log_path, "ab")
        # Own session per child: Ctrl-C reaches `up` only, which stops children in order.
        proc = subprocess.Popen(
            list(args),
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()  # the child has its own copy; a restarted child opens it again
        for index, (other, _proc, _log) in enumerate(self.children):
            if other == name:  # started again: it keeps its place in the stopping order
                self.children[index] = (name, proc, log_path)
                return proc
        self.children.append((name, proc, log_path))
        return proc

    def restart(self, name: str) -> subprocess.Popen[bytes]:
        """Start an ended child again with its command and environment (what is left of its group is killed)."""
        old = self.process(name)
        if old is not None:
            signal_group(old.pid, signal.SIGKILL)
        args, env = self.commands[name]
        return self.start(name, args, env)

    def process(self, name: str) -> subprocess.Popen[bytes] | None:
        return next((proc for other, proc, _log in self.children if other == name), None)

    def exited(self) -> tuple[str, int, Path] | None:
        """The first child that has exited, if any."""
        for name, proc, log_path in self.children:
            if proc.poll() is not None:
                return name, proc.returncode, log_path
        return None

    def stop(self, timeout: float = STOP_TIMEOUT, before_sweep: Callable[[], object] | None = None) -> None:
        """SIGTERM every child's process group (last started first), then SIGKILL what remains.

        `before_sweep` runs once the children are gone and before their orphans are stopped.
        """
        for _name, proc, _log in reversed(self.children):
            if proc.poll() is None:
                signal_group(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for _name, proc, _log in reversed(self.children):
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                signal_group(proc.pid, signal.SIGKILL)
                proc.wait()
            signal_group(proc.pid, signal.SIGKILL)  # members of its group that outlived the leader
        if before_sweep is not None:
            before_sweep()
        self._sweep()

    def _sweep(self) -> None:
        """Stop descendants re-parented to us (agents in their own session) and reap them."""
        for sig, pause in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 1.0)):
            left = descendants(os.getpid())
            if not left:
                break
            for pid in left:
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    pass
            deadline = time.monotonic() + pause
            while time.monotonic() < deadline and descendants(os.getpid()):
                reap_children()
                time.sleep(0.05)
        reap_children()


def _die_with_parent() -> None:
    """In the child, before exec: SIGTERM when `up` dies, even by SIGKILL (Linux), so nothing is orphaned."""
    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass


def signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


# Choosing the pieces -----------------------------------------------------------
