"""Supervisor of one local run: `python -m orchestrator.runners.local_supervisor RUN_DIR`.

It detaches (double fork, its own session) so the launch step returns at once
and no zombie is left in the worker, runs the agent in its own process group,
captures its output to RUN_DIR/output.log, enforces the timeout, and writes
the outcome atomically to RUN_DIR/status.json. Secrets arrive in its
environment and are passed on to the agent; they are never written to a file.
With a `user` in the spec (the supervisor runs as root), the agent runs as
that user, its group and no other group.

SIGUSR1 means the platform is going away (`orchestrator up` stops): the agent
is stopped and no outcome is written, so the run is found lost (retryable) and
runs again on the next start, instead of ending Cancelled.
"""

from __future__ import annotations

import fcntl
import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

GRACE_SECONDS = 5.0
# Another container (docker compose's watcher, the API) shares the run directory
# but not our PID namespace: it judges the supervisor by this file's age instead.
HEARTBEAT_FILE = "heartbeat"
HEARTBEAT_SECONDS = 2.0
# Written by a canceller that cannot signal us (another PID namespace).
CANCEL_FILE = "cancel"
ABANDON = signal.SIGUSR1  # stop the agent, write no outcome: the run was lost to the platform


def write_status(run_dir: Path, **fields: Any) -> None:
    """Replace status.json atomically (a reader sees the old or the new file, never half of one)."""
    tmp = run_dir / f".status.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(fields))
    os.replace(tmp, run_dir / "status.json")


def _kill_group(pgid: int, sig: int) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


class CappedLog:
    """The run's output log, which takes no more than `cap` bytes of the agent's output (0: no cap).

    Past the cap the rest is read and dropped (the agent never blocks on a full
    pipe) and one line in the log says so.
    """

    def __init__(self, file: Any, cap: int) -> None:
        self.file = file
        self.cap = cap
        self.size = file.seek(0, os.SEEK_END)
        self.capped = False
        self.last = b"\n"

    def write(self, data: bytes) -> None:
        if self.capped or not data:
            return
        room = self.cap - self.size if self.cap else len(data)
        if room > 0:
            self.file.write(data[:room])
            self.size += min(room, len(data))
            self.last = data[:room][-1:]
        if len(data) > room:
            self.capped = True
            newline = b"" if self.last == b"\n" else b"\n"
            self.file.write(
                newline
                + (
                    f"orchestrator: the output log reached {self.cap} bytes "
                    "(ORCHESTRATOR_RUN_LOG_MAX_BYTES); the rest of the agent's output is "
                    "dropped\n"
                ).encode()
            )


def _copy(fd: int, output: CappedLog, wait: float) -> bool:
    """Copy what the agent wrote (waiting up to `wait` for it); False once its output is closed."""
    ready, _, _ = select.select([fd], [], [], wait)
    if not ready:
        return True
    for _ in range(16):  # at most 1 MiB a call: the caller also watches the clock
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return True
        if not chunk:
            return False
        output.write(chunk)
    return True


LOCK_FILE = "supervisor.lock"


def process_namespace() -> str:
    """Which pids this process can see: the machine's boot and its PID namespace ('' when unknown)."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        return f"{boot}/{os.readlink('/proc/self/ns/pid')}"
    except OSError:
        return ""


def beat(run_dir: Path) -> None:
    """Touch the heartbeat file: this supervisor is alive."""
    (run_dir / HEARTBEAT_FILE).touch()


def take_lock(run_dir: Path) -> int | None:
    """Lock the run for this supervisor (held until it exits); None when another supervisor has it."""
    fd = os.open(run_dir / LOCK_FILE, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    return fd


def supervise(run_dir: Path) -> int:
    """Run the agent described by RUN_DIR/spec.json to its end; return its exit code."""
    # One supervisor per run, whatever the number of launch attempts: a second one
    # (a launch step re-driven after a crash) leaves at once, and so does a late
    # one after the run already started.
    if take_lock(run_dir) is None or (run_dir / "status.json").exists():
        return 0
    spec = json.loads((run_dir / "spec.json").read_text())
    started = time.time()
    cancelled = abandoned = False
    log = open(run_dir / "output.log", "ab", buffering=0)
    user = spec.get("user") or None
    as_user: dict[str, Any] = {"user": user["uid"], "group": user["gid"], "extra_groups": []} if user else {}
    # The agent writes to a pipe this process copies into the log, up to the cap.
    output = CappedLog(log, int(spec.get("log_max_bytes") or 0))
    try:
        proc = subprocess.Popen(
            spec["command"],
            cwd=spec["cwd"],
            env=dict(os.environ),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            **as_user,
        )
    except OSError as exc:
        log.write(f"orchestrator: cannot start the agent: {exc.strerror or exc}\n".encode())
        write_status(
            run_dir,
            phase="Failed",
            exit_code=127,
            reason=f"cannot start the agent: {exc.strerror or exc}",
            started_at=started,
            finished_at=time.time(),
            pid=os.getpid(),
        )
        return 127

    def on_term(signum: int, frame: Any) -> None:
        nonlocal cancelled
        cancelled = True
        _kill_group(proc.pid, signal.SIGTERM)

    def on_abandon(signum: int, frame: Any) -> None:
        nonlocal abandoned
        abandoned = True
        _kill_group(proc.pid, signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(ABANDON, on_abandon)
    beat(run_dir)
    last_beat = time.monotonic()
    write_status(
        run_dir,
        phase="Running",
        pid=os.getpid(),
        agent_pgid=proc.pid,
        started_at=started,
        pid_namespace=process_namespace(),
    )
    deadline = started + float(spec["timeout"])
    timed_out = False
    kill_at: float | None = None
    assert proc.stdout is not None
    pipe = proc.stdout.fileno()
    os.set_blocking(pipe, False)
    open_pipe = True
    while True:
        if open_pipe:
            open_pipe = _copy(pipe, output, 0.2)
        else:
            time.sleep(0.2)  # the agent closed its output and goes on
        code = proc.poll()
        if code is not None:
            break
        if time.monotonic() - last_beat >= HEARTBEAT_SECONDS:
            beat(run_dir)
            last_beat = time.monotonic()
        if not cancelled and (run_dir / CANCEL_FILE).exists():
            on_term(signal.SIGTERM, None)
        now = time.time()
        if now >= deadline and not timed_out and not cancelled:
            timed_out = True
            log.write(f"orchestrator: the run exceeded its timeout of {spec['timeout']}s; stopping it\n".encode())
            _kill_group(proc.pid, signal.SIGTERM)
        if (timed_out or cancelled or abandoned) and kill_at is None:
            kill_at = now + GRACE_SECONDS
        if kill_at is not None and now >= kill_at:
            _kill_group(proc.pid, signal.SIGKILL)
    _kill_group(proc.pid, signal.SIGKILL)  # whatever the agent left behind in its group
    drain_until = time.monotonic() + GRACE_SECONDS  # a process outside the group may hold the pipe
    while open_pipe and time.monotonic() < drain_until:
        open_pipe = _copy(pipe, output, 0.2)
    proc.stdout.close()
    finished = time.time()
    if abandoned and not cancelled:
        # status.json still says Running with our pid, which is about to be gone: the run is lost.
        log.write(b"orchestrator: the platform stopped (orchestrator up ended); the run will be retried\n")
    elif cancelled:
        write_status(
            run_dir,
            phase="Failed",
            exit_code=code,
            reason="Cancelled",
            started_at=started,
            finished_at=finished,
            pid=os.getpid(),
        )
    elif timed_out:
        write_status(
            run_dir,
            phase="Failed",
            exit_code=code,
            reason="DeadlineExceeded: the run exceeded its timeout",
            started_at=started,
            finished_at=finished,
            pid=os.getpid(),
        )
    elif code == 0:
        write_status(
            run_dir,
            phase="Succeeded",
            exit_code=0,
            reason="Completed",
            started_at=started,
            finished_at=finished,
            pid=os.getpid(),
        )
    else:
        write_status(
            run_dir,
            phase="Failed",
            exit_code=code,
            reason=f"Error: exit code {code}",
            started_at=started,
            finished_at=finished,
            pid=os.getpid(),
        )
    log.close()
    return code


def main(argv: list[str]) -> int:
    run_dir = Path(argv[0])
    if os.fork():
        return 0  # the launcher waits for this parent only; the child lives on, adopted by init
    os.setsid()
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    try:
        supervise(run_dir)
    except BaseException as exc:  # never leave a run without a final status
        write_status(
            run_dir,
            phase="Failed",
            exit_code=None,
            reason=f"supervisor error: {type(exc).__name__}",
            finished_at=time.time(),
            pid=os.getpid(),
        )
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
