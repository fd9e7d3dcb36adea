"""Redis stopped and started again under a stream of submissions (issue #19, item 1): shared by the fault
test (tests/faults/test_redis_restart_load.py, a few dozen tasks) and the benchmark (bench/redis_restart.py,
full size).

The system runs as separate processes: redis-server (AOF, appendfsync always), gunicorn, one Celery worker
for every queue, the watcher, the local runner; caps of 1000. Submissions stream at a steady rate until
`tasks` were accepted (202), through the outages (a refused one, 503, is not counted). Each outage stops
Redis (SIGTERM: a clean shutdown; SIGKILL: a crash) for some seconds and starts it again on the same port
with the same AOF. Every agent start is counted in a file of its own (tests/support/counting_agent.py),
so a task run twice shows there whatever the store says.

The worker and the watcher are restarted with backoff when they exit, the way `orchestrator up`
supervises them (orchestrator/cli/supervise.py), so a process that died on the outage comes back: what
is measured is whether every accepted task ends, once, and how long after Redis came back.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from orchestrator.cli.supervise import Supervisor
from tests.support.faults import END_STATES, FaultStack, task_body
from tests.support.stack import REPO_ROOT, Process

# The operator's settings: the defaults (a reconcile every 30 s, a step re-driven after 90 s stuck),
# not the fault suites' fast recovery, which would hide how long recovery really takes.
DEFAULT_RECOVERY = {
    "ORCHESTRATOR_RECONCILE_SECONDS": "30",
    "ORCHESTRATOR_STUCK_AFTER_SECONDS": "90",
    "ORCHESTRATOR_WATCHER_LEASE_SECONDS": "15",
}


# What `orchestrator up` starts and restarts when it exits (orchestrator/cli/supervise.py).
SUPERVISED = ("api", "worker", "watcher")


@dataclass(frozen=True)
class Outage:
    """One fault, `after` seconds after the previous one (the first: once `tasks_before` were accepted).

    `how`: "sigterm" (Redis stopped cleanly) or "sigkill" (Redis crashed), each for `seconds` and then
    started again; "worker" / "watcher" / "api": that process (the API: gunicorn's master and its workers)
    SIGKILLed, left to the supervisor; "none": nothing
    (the baseline, timed from the same moment).
    """

    how: str = "sigterm"
    seconds: float = 10.0
    after: float = 0.0


@dataclass
class Result:
    accepted: int = 0
    refused: int = 0
    other_answers: Counter[int] = field(default_factory=Counter)
    ended: int = 0
    succeeded: int = 0
    lost: list[str] = field(default_factory=list)  # accepted, never ended (or not found)
    twice: list[str] = field(default_factory=list)  # an agent started more than once for the task
    not_succeeded: list[str] = field(default_factory=list)
    recovery_seconds: float | None = None  # from Redis's last return (or the kill) to the last task's end
    restarts: dict[str, int] = field(default_factory=dict)
    stuck: Counter[str] = field(default_factory=Counter)  # statuses of the tasks not ended at the deadline
    dead: list[str] = field(default_factory=list)  # unsupervised processes that were not running at the end

    def summary(self) -> str:
        recovery = "never" if self.recovery_seconds is None else f"{self.recovery_seconds:.1f} s"
        return (
            f"accepted {self.accepted}, refused {self.refused}, ended {self.ended}, lost {len(self.lost)}, "
            f"twice {len(self.twice)}, not succeeded {len(self.not_succeeded)}, recovery {recovery}, "
            f"restarts {self.restarts}, stuck {dict(self.stuck)}"
        )


class RestartLoad:
    """The stack, the submission stream and the agent start counter."""

    def __init__(
        self,
        tmp: Path,
        *,
        tasks: int = 40,
        rate: float = 20.0,
        tasks_before: int | None = None,
        services: int = 2,
        env: dict[str, str] | None = None,
        concurrency: int = 2,
        supervise: bool = True,
    ):
        self.tmp = tmp
        self.tasks = tasks
        self.rate = rate
        self.tasks_before = tasks_before if tasks_before is not None else tasks // 2
        self.starts = tmp / "agent-starts.log"
        self.starts.parent.mkdir(parents=True, exist_ok=True)
        self.starts.touch()
        self.concurrency = concurrency
        self.services = services
        self.supervise = supervise  # False: as before issue #19, a process that dies stays dead
        merged = {
            "ORCHESTRATOR_LOCAL_AGENT_COMMAND": f"{sys.executable} {REPO_ROOT}/tests/support/counting_agent.py "
            f"{self.starts}",
            "ORCHESTRATOR_MAX_ACTIVE_RUNS": "1000",
            "ORCHESTRATOR_MAX_RUNS_PER_SERVICE": "1000",
            "ORCHESTRATOR_LOG_LEVEL": "INFO",
            **DEFAULT_RECOVERY,
            **(env or {}),
        }
        self.stack = FaultStack(tmp / "stack", env=merged)
        self.accepted: list[tuple[str, int]] = []
        self.answers: Counter[int] = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._submit, daemon=True, name="submissions")
        self.supervisor: Supervisor | None = None
        self.redis_back_at = 0.0

    # The stack -------------------------------------------------------------------------

    def up(self) -> None:
        self.stack.start_redis()
        self.stack.start_api()
        self.stack.start_worker("worker", concurrency=self.concurrency)
        self.stack.start_watcher()
        if not self.supervise:
            return
        procs = {name: self.stack.processes[name] for name in SUPERVISED}
        self.supervisor = Supervisor(
            {name: _Restartable(self.stack, name, proc) for name, proc in procs.items()},
            base_delay=0.5,
            max_delay=5.0,
        )
        self.supervisor.start_thread()

    def down(self) -> None:
        self.stop.set()
        if self.supervisor:
            self.supervisor.stop_thread()
        self.stack.down()

    # Traffic ---------------------------------------------------------------------------

    def _submit(self) -> None:
        n = 0
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.stop.is_set() and len(self.accepted) < self.tasks:
            n += 1
            service = f"load-{n % self.services}"
            try:
                status, _ = self.stack.request("POST", "/api/v1/pm/tasks", task_body(n, service), timeout=15)
            except OSError:
                status = 0
            self.answers[status] += 1
            if status == 202:
                self.accepted.append((service, n))
            next_at += interval
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def run(self, outages: list[Outage], settle_timeout: float = 180.0) -> Result:
        """Stream submissions, cause the outages, wait until every accepted task ended (or the timeout)."""
        self.thread.start()
        deadline = time.monotonic() + 120
        while len(self.accepted) < self.tasks_before:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.accepted)} submissions accepted\n{self.stack.dump_logs()}")
            time.sleep(0.05)
        for outage in outages:
            time.sleep(outage.after)
            if outage.how == "none":  # the baseline: the same stream, nothing broken
                self.redis_back_at = time.monotonic()
                continue
            if outage.how in SUPERVISED:
                self.stack.processes[outage.how].kill()  # the supervisor starts it again
                self.redis_back_at = time.monotonic()
                continue
            if outage.how == "sigkill":
                self.stack.redis.kill()
            else:
                self.stack.redis.stop()  # SIGTERM: Redis finishes its AOF and exits
            time.sleep(outage.seconds)
            self.stack.redis.start()
            self.redis_back_at = time.monotonic()
        self.thread.join(timeout=300)
        return self.settle(settle_timeout)

    def settle(self, timeout: float) -> Result:
        result = Result(accepted=len(self.accepted), refused=self.answers.get(503, 0))
        result.other_answers = Counter({k: v for k, v in self.answers.items() if k not in (202, 503)})
        deadline = self.redis_back_at + timeout
        pending = set(self.accepted)
        last_end = self.redis_back_at
        statuses: dict[tuple[str, int], str] = {}
        while pending and time.monotonic() < deadline:
            for ref in sorted(pending):
                status = self._status(*ref)
                statuses[ref] = status
                if status in END_STATES:
                    pending.discard(ref)
                    last_end = time.monotonic()
            if pending:
                time.sleep(1.0)
        result.ended = result.accepted - len(pending)
        result.lost = [f"{s}/{t}" for s, t in sorted(pending)]
        result.stuck = Counter(statuses.get(ref, "?") for ref in pending)
        if not pending:
            result.recovery_seconds = max(0.0, last_end - self.redis_back_at)
        result.not_succeeded = [
            f"{s}/{t}" for (s, t) in self.accepted if (s, t) not in pending and statuses.get((s, t)) != "Succeeded"
        ]
        result.succeeded = result.ended - len(result.not_succeeded)
        per_task = Counter(_task_of(line) for line in self.starts.read_text().splitlines() if line.strip())
        result.twice = sorted(task for task, count in per_task.items() if count > 1)
        if self.supervisor:
            result.restarts = dict(self.supervisor.restarts)
        else:
            result.restarts = {name: 0 for name in SUPERVISED}
            result.dead = [name for name in SUPERVISED if not self.stack.processes[name].alive]
        return result

    def _status(self, service: str, task_id: int) -> str:
        try:
            status, body = self.stack.request("GET", f"/api/v1/pm/tasks/{service}/{task_id}", timeout=10)
        except OSError:
            return "?"
        return str(body["status"]) if status == 200 and isinstance(body, dict) else f"HTTP {status}"


def _task_of(run_id: str) -> str:
    """`load-1-17-...` (service, task id, version, attempt...) -> `load-1/17`."""
    parts = run_id.split("-")
    return f"{parts[0]}-{parts[1]}/{parts[2]}" if len(parts) > 2 else run_id


class _Restartable:
    """A test-stack process as the supervisor sees it: alive or not, started again in place."""

    def __init__(self, stack: FaultStack, name: str, proc: Process):
        self.stack, self.name, self.proc = stack, name, proc

    def poll(self) -> Any:
        return None if self.proc.alive else (self.proc.proc.returncode if self.proc.proc else -1)

    def restart(self) -> None:
        # Not Stack.start_worker, which waits for "ready": with Redis still away that may take long.
        self.proc = Process(self.name, self.proc.args, self.proc.env, self.stack.logs).start()
        self.stack.processes[self.name] = self.proc

    def kill(self) -> None:
        self.proc.kill()
