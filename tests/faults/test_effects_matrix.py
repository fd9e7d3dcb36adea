"""The fault matrix of issue #22: a worker killed (SIGKILL) at every point of every side effect, each counted.

The whole system runs as separate processes (redis-server, gunicorn, Celery
workers, the watcher) with the local runner. Tasks come from GitHub webhooks
(a labelled issue), so every effect of a task's life happens, each received
and counted by what it reaches:

- agent starts: the counting agent appends one line per start to a file;
- pushes: the bare repository's post-receive hook appends one line per push;
- pull request POSTs and comment POSTs: the GitHub emulator's request log.

For each cell a worker pauses at one point (tests/support/step_hooks.py):
before an effect, between the effect and its record, after the record, or
inside a step (admit, prepare, finish) after its own effect. The test kills
it there, starts a fresh worker, and checks that the task succeeded with one
run and that every count is exactly one. The broker's visibility timeout
stays at an hour: recovery comes from the reconcile loop's re-drive and the
effects' records. bench/exactly_once.py runs the same matrix at a larger size.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.validation import ISSUE_TASK_ID_OFFSET
from tests.support.fake_github import FakeGitHub
from tests.support.faults import SECRETS, FaultStack, succeeded_count
from tests.support.git_server import PUBLIC_BASE, GitHttpServer
from tests.support.github import signed_headers
from tests.support.stack import REPO_ROOT

REPO = "acme/shop"
SERVICE = "shop"

POST_RECEIVE = """#!/bin/sh
# One line per ref pushed: "<old> <new> <ref>" (counted by the fault matrix).
cat >> "$(dirname "$0")/../pushes.log"
"""


class EffectsWorld:
    """The stack and everything that counts what it receives."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.github = FakeGitHub().start()
        self.git = GitHttpServer(tmp / "remotes", SECRETS["GITHUB_TOKEN"])
        self.git.start()
        self.bare = self.git.create_repository(REPO, tmp / "seed", branches={"main": {"README.md": "# shop\n"}})
        hook = self.bare / "hooks" / "post-receive"
        hook.write_text(POST_RECEIVE)
        hook.chmod(0o755)
        self.starts = tmp / "agent-starts.log"
        self.starts.touch()
        env = {
            **self.git.git_env(),
            "ORCHESTRATOR_LOCAL_AGENT_COMMAND": f"{sys.executable} {REPO_ROOT}/tests/support/counting_agent.py "
                                                f"{self.starts}",
            "ORCHESTRATOR_GITHUB_API_URL": self.github.url,
            "ORCHESTRATOR_GITHUB_REPOSITORIES": f"{REPO}={SERVICE}",
            "ORCHESTRATOR_GITHUB_TRUSTED_AUTHORS_ONLY": "false",
            "ORCHESTRATOR_GIT_TIMEOUT_SECONDS": "30",
            "ORCHESTRATOR_DELIVERY_BACKOFF_SECONDS": "0.5",
        }
        self.stack = FaultStack(tmp / "stack", env=env)
        self.comment_wait = 10.0

    def up(self) -> None:
        self.stack.up()

    def down(self) -> None:
        self.stack.down()
        self.github.stop()
        self.git.stop()

    # Input ----------------------------------------------------------------------

    def open_issue(self, number: int) -> None:
        """A labelled issue arrives as a signed webhook delivery: the task is created from it."""
        payload = {
            "action": "labeled",
            "label": {"name": "orchestrator"},
            "issue": {"number": number, "title": f"Issue {number}", "body": "Write one file.",
                      "html_url": f"https://github.com/{REPO}/issues/{number}", "user": {"login": "pm"},
                      "author_association": "OWNER", "labels": [{"name": "orchestrator"}], "state": "open"},
            "repository": {"full_name": REPO, "clone_url": f"{PUBLIC_BASE}{REPO}.git", "default_branch": "main"},
            "sender": {"login": "pm"},
        }
        body = json.dumps(payload).encode()
        status, text = self.stack.raw("POST", "/webhooks/github", body,
                                      signed_headers(body, "issues", secret=SECRETS["GITHUB_WEBHOOK_SECRET"]))
        assert status == 202, text

    # Counts ---------------------------------------------------------------------

    def agent_starts(self, run_id: str) -> int:
        return sum(1 for line in self.starts.read_text().splitlines() if line == run_id)

    def pushes(self, branch: str) -> int:
        log = self.bare / "pushes.log"
        if not log.exists():
            return 0
        return sum(1 for line in log.read_text().splitlines() if line.split()[-1:] == [f"refs/heads/{branch}"])

    def pull_posts(self, branch: str) -> int:
        return sum(1 for r in self.github.requests_to("POST", f"/repos/{REPO}/pulls")
                   if isinstance(r.body, dict) and r.body.get("head") == branch)

    def comment_posts(self, issue: int) -> int:
        return len(self.github.requests_to("POST", f"/repos/{REPO}/issues/{issue}/comments"))

    @staticmethod
    def task_id(issue: int) -> int:
        """The id of the task made from `issue` (issues have their own id space above Task Master's)."""
        return ISSUE_TASK_ID_OFFSET + issue

    def counts(self, issue: int) -> dict[str, Any]:
        """Every effect of the task of `issue`, counted where it was received; waits for the task's end."""
        task = self.stack.wait_end(SERVICE, self.task_id(issue), timeout=120)
        run_id = task["runs"][0]["run_id"] if task["runs"] else ""
        branch = f"task-{self.task_id(issue)}"
        # The status report follows the end: give it a moment to arrive (a report killed before
        # its comment waits for the dead worker's report lock to lapse: LEASE_SECONDS, a minute).
        deadline = time.monotonic() + self.comment_wait
        while self.comment_posts(issue) == 0 and time.monotonic() < deadline:
            time.sleep(0.1)
        return {"status": task["status"], "runs": len(task["runs"]), "succeeded": succeeded_count(task),
                "agent starts": self.agent_starts(run_id), "pushes": self.pushes(branch),
                "pull POSTs": self.pull_posts(branch), "comment POSTs": self.comment_posts(issue)}

    # One cell ------------------------------------------------------------------

    def kill_at(self, point: str, *issues: int) -> float:
        """Run tasks with the only worker paused at `point` (the first to get there), kill it, start a fresh one.

        Returns the recovery time: from the fresh worker's start to the last task's end.
        """
        stack = self.stack
        stack.processes["worker0"].stop()
        paused = stack.start_paused_worker("paused", point, concurrency=1)
        for issue in issues:
            self.open_issue(issue)
        stack.wait_hook(point, timeout=90)
        paused.kill()
        started = time.monotonic()
        stack.start_worker("worker0")
        for issue in issues:
            stack.wait_end(SERVICE, self.task_id(issue), timeout=120)
        return time.monotonic() - started


EXPECTED = {"status": "Succeeded", "runs": 1, "succeeded": 1, "agent starts": 1, "pushes": 1, "pull POSTs": 1,
            "comment POSTs": 1}

# (step, point): the pause point inside the step (see tests/support/step_hooks.py).
CELLS: list[tuple[str, str]] = [
    ("admit", "admit"),  # a slot taken, the move to Preparing not recorded
    ("prepare", "prepare_workspace"),  # documents written, the move to Launching not recorded
    ("launch", "local-agent.before"),
    ("launch", "local-agent.between"),
    ("launch", "local-agent.after"),
    ("finish", "finish_run"),  # outputs read, the outcome not recorded
    ("deliver", "push.between"),
    ("deliver", "pull-request.between"),
    ("report", "comment.between"),
]
# The rest of the matrix (every effect at every point) runs in bench/exactly_once.py.


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EffectsWorld]:
    running = EffectsWorld(tmp_path_factory.mktemp("effects-matrix"))
    try:
        running.up()
        yield running
    finally:
        running.down()


def test_without_a_fault_each_effect_happens_once(world: EffectsWorld) -> None:
    world.open_issue(1)
    assert world.counts(1) == EXPECTED, world.stack.dump_logs()


@pytest.mark.parametrize("step,point", CELLS, ids=[point for _, point in CELLS])
def test_worker_killed_at_the_point_causes_each_effect_once(world: EffectsWorld, step: str, point: str) -> None:
    issue = 10 + CELLS.index((step, point))
    world.kill_at(point, issue)
    counts = world.counts(issue)
    assert counts == EXPECTED, (step, point, counts)
