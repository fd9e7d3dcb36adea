"""A rolling upgrade under a stream of submissions (issue #19, item 8): shared by the fault test
(tests/faults/test_rolling_upgrade.py) and the benchmark (bench/rolling_upgrade.py).

The system runs as separate processes: redis-server, two API gunicorns behind a client-side pool of
endpoints (the Service), two Celery workers standing for two of the chart's worker groups (WORKER_QUEUES),
two watchers (the leader and a standby),
the local runner with an agent that counts its own starts and takes a few seconds. While submissions
stream in, every process is replaced one at a time the way a Deployment's rolling update does it:
the new one is started and ready first, then the old one is taken out of the Service's endpoints
(API only: the preStop pause), sent SIGTERM (to its main process, as the kubelet does for a
container's PID 1) and given a grace period to exit; only past that is it SIGKILLed, and counted.

How each Deployment rolls is read from the chart as it renders with its defaults (`chart_plan`): its
strategy (a surge starts the new pod first; `Recreate`, or no surge, stops every old pod first), the
API's preStop pause and every grace period. Taking a pod out of the endpoints reaches the clients only
after `propagation_seconds` (kube-proxy and the ingress catch up), as in a cluster: without a preStop
pause longer than that, requests still sent to a pod that got SIGTERM meet a closed socket.

What is measured: whether every accepted task ends Succeeded with its agent started once, which
answers the submissions got, whether the standby took the watcher lease, and how long after the
roll's start every accepted task had settled.
"""

from __future__ import annotations

import itertools
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.support.faults import END_STATES, FaultStack, task_body
from tests.support.redis_server import free_port
from tests.support.restart_load import _task_of
from tests.support.stack import REPO_ROOT, Process, decode_answer, send_json

LEADER_LOG = "watcher lease taken"
DEPLOYMENTS = {"api": "orchestrator-api", "worker": "orchestrator-worker-", "watcher": "orchestrator-watcher"}


# Each worker stands for a group of the chart (one Deployment per group, with its own queues), so a
# step always lands on the same one: launch_run (deploy) on worker-a, finish_run (coordination) on
# worker-b, and a pause in either is reached whatever order the messages come in.
WORKER_QUEUES = {"worker-a": ("workspace", "deploy"), "worker-b": ("events", "coordination")}


@dataclass(frozen=True)
class Rollout:
    """How one Deployment's pods are replaced, as the chart says."""

    surge: bool  # the new pod starts (and is ready) before an old one goes
    grace_seconds: float  # terminationGracePeriodSeconds
    pre_stop_seconds: float = 0.0  # lifecycle.preStop sleep


def chart_plan() -> dict[str, Rollout]:
    """api / worker / watcher -> Rollout, from charts/orchestrator rendered with its defaults."""
    import helm_python as helm

    from tests.support.chart import CHART_DIR, render

    with helm.Chart.load(CHART_DIR) as chart:
        rendered = render(chart, {})
    plan = {}
    for role, prefix in DEPLOYMENTS.items():
        deployment = next(d for d in rendered.of_kind("Deployment") if d["metadata"]["name"].startswith(prefix))
        strategy = deployment["spec"].get("strategy", {"type": "RollingUpdate"})
        rolling = strategy.get("rollingUpdate", {})
        # One pod at a time: Kubernetes rounds a percentage surge up and a percentage unavailability down.
        surge = strategy["type"] == "RollingUpdate" and str(rolling.get("maxSurge", "25%")) not in ("0", "0%")
        spec = deployment["spec"]["template"]["spec"]
        pre_stop = spec["containers"][0].get("lifecycle", {}).get("preStop", {})
        plan[role] = Rollout(
            surge=surge,
            grace_seconds=float(spec.get("terminationGracePeriodSeconds", 30)),
            pre_stop_seconds=float(pre_stop.get("sleep", {}).get("seconds", 0)),
        )
    return plan


API_ARGS = [sys.executable, "-m", "gunicorn", "-c", "python:api.gunicorn_conf", "api.wsgi:app"]


@dataclass
class Result:
    accepted: int = 0
    answers: Counter[int] = field(default_factory=Counter)
    ended: int = 0
    succeeded: int = 0
    lost: list[str] = field(default_factory=list)
    not_succeeded: list[str] = field(default_factory=list)
    twice: list[str] = field(default_factory=list)
    never_started: list[str] = field(default_factory=list)
    settle_seconds: float | None = None  # from the roll's start until every accepted task ended
    roll_seconds: float = 0.0  # from the roll's start until the last old process exited
    replaced: list[str] = field(default_factory=list)  # "old (exit code, seconds to exit), replaced by new"
    killed: list[str] = field(default_factory=list)  # old processes still alive after their grace
    standby_took_lease: bool = False
    finished_in_shutdown: list[str] = field(default_factory=list)  # paused steps the warm shutdown let end

    def summary(self) -> str:
        settled = "not settled" if self.settle_seconds is None else f"{self.settle_seconds:.1f} s"
        return (
            f"accepted {self.accepted}, answers {dict(self.answers)}, succeeded {self.succeeded}, "
            f"lost {len(self.lost)}, twice {len(self.twice)}, not succeeded {len(self.not_succeeded)}, "
            f"settled {settled} after the roll's start (roll {self.roll_seconds:.1f} s), killed {self.killed}, "
            f"standby took the lease: {self.standby_took_lease}"
        )


class RollingUpgrade:
    """The stack, the endpoints pool, the submission stream and the roll."""

    def __init__(
        self,
        tmp: Path,
        *,
        tasks: int = 20,
        rate: float = 1.0,
        tasks_before: int = 4,
        agent_seconds: float = 3.0,
        plan: dict[str, Rollout] | None = None,
        propagation_seconds: float = 1.0,
        grace_cap_seconds: float | None = None,
        pauses: dict[str, str] | None = None,
        pause_seconds: float = 30.0,
        env: dict[str, str] | None = None,
    ):
        self.tmp = tmp
        self.tasks, self.rate, self.tasks_before = tasks, rate, tasks_before
        self.plan = plan if plan is not None else chart_plan()
        self.propagation_seconds = propagation_seconds
        self.grace_cap_seconds = grace_cap_seconds  # waited at most this long, even for a longer grace period
        # role -> pause point (tests/support/step_hooks.py) of its first process: SIGTERMed inside that step
        self.pauses, self.pause_seconds = dict(pauses or {}), pause_seconds
        self.starts = tmp / "agent-starts.log"
        self.starts.parent.mkdir(parents=True, exist_ok=True)
        self.starts.touch()
        merged = {
            "ORCHESTRATOR_LOCAL_AGENT_COMMAND": f"{sys.executable} {REPO_ROOT}/tests/support/counting_agent.py "
            f"{self.starts}",
            "COUNTING_AGENT_SECONDS": str(agent_seconds),
            "ORCHESTRATOR_MAX_ACTIVE_RUNS": "1000",
            "ORCHESTRATOR_MAX_RUNS_PER_SERVICE": "1000",
            "ORCHESTRATOR_LOG_LEVEL": "INFO",
            "GUNICORN_WORKERS": "2",
            **(env or {}),
        }
        self.stack = FaultStack(tmp / "stack", env=merged)
        self.endpoints: list[str] = []  # the Service: API pods that are ready and not terminating
        self.lock = threading.Lock()
        self.accepted: list[tuple[str, int]] = []
        self._numbers, self._turn = itertools.count(1), itertools.count()  # task ids; endpoints in turn
        self.answers: Counter[int] = Counter()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._submit, daemon=True, name="submissions")
        self.generation: dict[str, int] = {}
        self.roll_started = 0.0

    # The stack -------------------------------------------------------------------------

    def up(self) -> None:
        self.stack.start_redis()
        self._start("api")
        self._start("api-b")
        self._start("worker-a")
        self._start("worker-b")
        leader = self._start("watcher-a")
        self._wait_log(leader, LEADER_LOG, 30)  # the first watcher leads, the second stands by
        self._start("watcher-b")

    def down(self) -> None:
        self.stop.set()
        self.stack.down()

    def _name(self, role: str) -> str:
        return f"{role}-{self.generation.get(role, 1)}"

    def _start(self, role: str) -> Process:
        generation = self.generation.get(role, 0) + 1
        self.generation[role] = generation
        name = f"{role}-{generation}"
        if role.startswith("worker"):
            queues = WORKER_QUEUES[role]
            if generation == 1 and role in self.pauses:
                return self.stack.start_paused_worker(
                    name, self.pauses[role], self.pause_seconds, queues=queues, concurrency=2
                )
            return self.stack.start_worker(name, queues=queues, concurrency=2)
        if role.startswith("watcher"):
            return self.stack.start_watcher(name)
        port = free_port()
        proc = self.stack._start(name, API_ARGS, {"GUNICORN_BIND": f"127.0.0.1:{port}"})
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while self._get(url, "/ready") != 200:  # the readiness probe
            if not proc.alive or time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not become ready:\n{proc.log()[-3000:]}")
            time.sleep(0.2)
        proc.url = url  # type: ignore[attr-defined]
        with self.lock:
            self.endpoints.append(url)
        return proc

    def _wait_log(self, proc: Process, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while text not in proc.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"{proc.name} never logged {text!r}\n{self.stack.dump_logs()}")
            time.sleep(0.1)

    # The roll --------------------------------------------------------------------------

    def _rollout(self, role: str) -> Rollout:
        return self.plan[role.split("-")[0]]

    def _paused_in(self, role: str) -> str | None:
        paused = self.pauses.get(role) if self.generation[role] == 1 else None
        if paused:
            self.stack.wait_hook(paused, timeout=60)  # the old worker is inside that step now
        return paused

    def replace(self, role: str, result: Result) -> None:
        """A surge: start the new process and wait until ready, then terminate the old one."""
        self.replace_together([role], result)

    def replace_together(self, roles: list[str], result: Result) -> None:
        """Surges of several Deployments at once (helm rolls them all): every new one ready, then the old ones go.

        A paused worker is waited for inside its step first, so its SIGTERM comes while the step runs.
        """
        olds = [(role, self.stack.processes[self._name(role)], self._paused_in(role)) for role in roles]
        news = [self._start(role) for role in roles]
        threads = [
            threading.Thread(target=self.terminate, args=(role, old, result, paused)) for role, old, paused in olds
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for (_, old, _), new in zip(olds, news, strict=True):
            result.replaced = [
                f"{line}, replaced by {new.name}" if line.startswith(f"{old.name} ") else line
                for line in result.replaced
            ]

    def recreate(self, roles: list[str], result: Result) -> None:
        """`Recreate` (or no surge): terminate every old pod of the Deployment, then start the new ones."""
        olds = [(role, self.stack.processes[self._name(role)], self._paused_in(role)) for role in roles]
        for role, old, paused in olds:
            self.terminate(role, old, result, paused)
        for role in roles:
            self._start(role)

    def terminate(self, role: str, old: Process, result: Result, paused: str | None) -> None:
        """What the kubelet and the endpoints controller do to a terminating pod."""
        rollout = self._rollout(role)
        if role.startswith("api"):
            # The pod leaves the endpoints now; clients stop sending to it only after the propagation.
            url = old.url  # type: ignore[attr-defined]
            threading.Timer(self.propagation_seconds, self._leave, args=(url,)).start()
            # A client whose route is not updated yet sends it one more submission, half-way through.
            threading.Timer(self.propagation_seconds / 2, self._submit_one, args=(url,)).start()
            time.sleep(rollout.pre_stop_seconds)  # preStop: the pod keeps serving
        assert old.proc is not None
        began, offset = time.monotonic(), len(old.log())
        old.proc.send_signal(signal.SIGTERM)  # the container's PID 1 only, as the kubelet sends it
        try:
            code = old.proc.wait(timeout=min(rollout.grace_seconds, self.grace_cap_seconds or rollout.grace_seconds))
        except subprocess.TimeoutExpired:
            result.killed.append(old.name)
            old.kill()
            code = -9
        old.kill()  # reaps what is left of its process group (pool processes), as the container's end does
        result.replaced.append(f"{old.name} (exit {code}, {time.monotonic() - began:.1f} s after SIGTERM)")
        if paused and f"TEST HOOK: resuming {paused}" in old.log()[offset:]:  # the step ended after the SIGTERM
            result.finished_in_shutdown.append(f"{old.name}: {paused}")

    def _leave(self, url: str) -> None:
        with self.lock:
            if url in self.endpoints:
                self.endpoints.remove(url)

    def roll(self, result: Result) -> None:
        """Each Deployment in turn (workers, APIs, watchers), one pod at a time when it surges."""
        # Workers first: their paused steps (reached with the first tasks) are still running when the roll begins.
        for deployment in (["worker-a", "worker-b"], ["api", "api-b"], ["watcher-a", "watcher-b"]):
            # (The APIs and the watchers are the replicas of one Deployment each; the workers, two groups.)
            leader = deployment[0] == "watcher-a"
            standby = self.stack.processes[self._name("watcher-b")] if leader else None
            offset = len(standby.log()) if standby else 0
            if not self._rollout(deployment[0]).surge:
                self.recreate(deployment, result)
            elif deployment[0].startswith("worker"):
                # Two worker groups' Deployments, each rolling its one pod, at the same time as helm does.
                self.replace_together(deployment, result)
            else:
                for role in deployment:
                    self.replace(role, result)
                    if role == "watcher-a" and standby is not None:  # the leader went: a standby takes over
                        # The standby of before or the leader's replacement (started first, so a standby
                        # too): whichever polls the released lease first leads.
                        successor = self.stack.processes[self._name(role)]

                        def took() -> bool:
                            return LEADER_LOG in standby.log()[offset:] or LEADER_LOG in successor.log()

                        deadline = time.monotonic() + 30
                        while not took() and time.monotonic() < deadline:
                            time.sleep(0.1)
                        result.standby_took_lease = took()

    # Traffic ---------------------------------------------------------------------------

    def _get(self, url: str, path: str) -> int:
        import urllib.error
        import urllib.request

        try:
            with urllib.request.urlopen(url + path, timeout=2) as resp:
                return int(resp.status)
        except urllib.error.HTTPError as exc:
            return int(exc.code)
        except OSError:
            return 0

    def _request(
        self, method: str, path: str, body: Any = None, timeout: float = 15, url: str | None = None
    ) -> tuple[int, Any]:
        """One request to `url`, or to the next endpoint of the Service in turn."""
        if url is None:
            with self.lock:
                url = self.endpoints[next(self._turn) % len(self.endpoints)]
        status, raw = send_json(url + path, self.stack.token, method, body, timeout=timeout)
        self.stack.responses.append(raw.decode(errors="replace"))
        return status, decode_answer(raw)

    def _submit(self) -> None:
        interval = 1.0 / self.rate
        next_at = time.monotonic()
        while not self.stop.is_set() and len(self.accepted) < self.tasks:
            self._submit_one()
            next_at += interval
            self.stop.wait(max(0.0, next_at - time.monotonic()))

    def _submit_one(self, url: str | None = None) -> int:
        with self.lock:
            n = next(self._numbers)
        service = f"roll-{n % 2}"
        try:
            status, _ = self._request("POST", "/api/v1/pm/tasks", task_body(n, service), url=url)
        except OSError:
            status = 0  # a connection refused or reset: the client saw no answer
        with self.lock:
            self.answers[status] += 1
            if status == 202:
                self.accepted.append((service, n))
        return status

    def run(self, settle_timeout: float = 90.0, roll: bool = True) -> Result:
        """Stream submissions, roll every process (`roll=False`: the baseline, timed from the same moment)."""
        result = Result()
        self.thread.start()
        deadline = time.monotonic() + 60
        while len(self.accepted) < self.tasks_before:
            if time.monotonic() > deadline:
                raise AssertionError(f"only {len(self.accepted)} submissions accepted\n{self.stack.dump_logs()}")
            time.sleep(0.05)
        self.roll_started = time.monotonic()
        if roll:
            self.roll(result)
        result.roll_seconds = time.monotonic() - self.roll_started
        self.thread.join(timeout=120)
        return self.settle(result, settle_timeout)

    def settle(self, result: Result, timeout: float) -> Result:
        result.accepted, result.answers = len(self.accepted), Counter(self.answers)
        deadline = time.monotonic() + timeout
        pending = set(self.accepted)
        statuses: dict[tuple[str, int], str] = {}
        while pending and time.monotonic() < deadline:
            for ref in sorted(pending):
                statuses[ref] = self._status(*ref)
                if statuses[ref] in END_STATES:
                    pending.discard(ref)
            if pending:
                time.sleep(0.5)
        if not pending:
            result.settle_seconds = time.monotonic() - self.roll_started
        result.ended = result.accepted - len(pending)
        result.lost = [f"{s}/{t}" for s, t in sorted(pending)]
        result.not_succeeded = [f"{s}/{t}" for (s, t) in self.accepted if statuses.get((s, t)) != "Succeeded"]
        result.succeeded = result.accepted - len(result.not_succeeded)
        per_task = Counter(_task_of(line) for line in self.starts.read_text().splitlines() if line.strip())
        result.twice = sorted(task for task, count in per_task.items() if count > 1)
        result.never_started = [f"{s}/{t}" for s, t in self.accepted if per_task.get(f"{s}/{t}", 0) == 0]
        return result

    def _status(self, service: str, task_id: int) -> str:
        try:
            status, body = self._request("GET", f"/api/v1/pm/tasks/{service}/{task_id}", timeout=10)
        except OSError:
            return "?"
        return str(body["status"]) if status == 200 and isinstance(body, dict) else f"HTTP {status}"
