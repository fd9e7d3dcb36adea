"""Delivery with real parts: the preparation step, git over HTTP (http-backend behind Basic auth), a GitHub emulator."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from api.tasks import run_view
from orchestrator.coordination import outcome
from orchestrator.delivery.step import deliver_run
from orchestrator.settings import Settings
from orchestrator.steps import Step
from orchestrator.store import TaskStore
from tests.delivery.conftest import agent_ended, prepare_and_run, task_spec
from tests.support.fake_github import FakeGitHub
from tests.support.git_server import GitHttpServer, git

SERVICE = "shop"


def workspace(settings: Settings) -> Path:
    return settings.workspace_root / SERVICE / "worktrees" / "7"  # task 7's worktree


def bare_ref(bare: Path, branch: str) -> str | None:
    result = subprocess.run(["git", "rev-parse", "--verify", "--quiet", f"refs/heads/{branch}"], cwd=bare,
                            capture_output=True, text=True)
    return result.stdout.strip() or None


def pushes(server: GitHttpServer) -> int:
    return sum(1 for method, path, _ in server.requests if method == "POST" and "git-receive-pack" in path)


def issue_spec(task_id: int = 7) -> dict:
    return task_spec(task_id, title="Add login form", dependencies=[])


def ready_to_deliver(store: TaskStore, settings: Settings) -> str:
    """An issue's task whose agent left a change (login.py) and ended: finished, waiting for delivery."""
    run_id = prepare_and_run(store, settings, issue_spec())
    (workspace(settings) / "login.py").write_text("def login(): ...\n")
    agent_ended(store, run_id)
    assert outcome.finish(store, settings, run_id) == "delivering"
    return run_id


def finish_through_delivery(store: TaskStore, settings: Settings, run_id: str,
                            sent: list) -> str:
    """finish -> deliver_run -> finish, as the queues would run them."""
    assert outcome.finish(store, settings, run_id) == "delivering"
    assert sent[-1] == (Step.DELIVER_RUN, (run_id,))
    result = deliver_run(store, settings, run_id)
    assert result.action == "delivered", result.message
    assert sent[-1] == (Step.FINISH_RUN, (run_id,))
    return outcome.finish(store, settings, run_id)


def test_a_run_that_changes_files_ends_with_a_pushed_branch_and_one_pull_request(
        store: TaskStore, dl_settings: Settings, remote: Path, git_server: GitHttpServer, github: FakeGitHub,
        sent: list) -> None:
    spec = issue_spec()
    store.create_task(service=SERVICE, task_id=7, agent="claude", spec=spec,
                      origin={"github": {"repo": "acme/shop", "issue": 7}})
    run_id = prepare_and_run(store, dl_settings, spec, create=False)
    ws = workspace(dl_settings)
    # The agent: one commit of its own, one file left uncommitted, its summary in outputs.json.
    (ws / "login.py").write_text("def login(): ...\n")
    git("add", "login.py", cwd=ws)
    git("commit", "--quiet", "-m", "login view", cwd=ws)
    (ws / "form.html").write_text("<form></form>\n")
    out = ws / ".task/7/runs" / run_id
    out.mkdir(parents=True)
    (out / "outputs.json").write_text(json.dumps({"summary": "Added the login view and its form."}))
    agent_ended(store, run_id)

    assert finish_through_delivery(store, dl_settings, run_id, sent) == "Succeeded"

    run = store.get_run(run_id)
    assert run.outcome == "changes"
    assert bare_ref(remote, "task-7") == run.commit
    log = git("log", "--format=%an <%ae>|%s|%b", "-1", run.commit, cwd=ws)
    assert log.startswith("Orchestrator <orchestrator@localhost>|Add login form|")
    assert "Co-authored-by: Claude <noreply@anthropic.com>" in log
    assert git("status", "--porcelain", cwd=ws) == ""  # CLAUDE.md, .claude/ and .task/ were not committed
    committed = git("show", "--name-only", "--format=", run.commit, cwd=ws).split()
    assert committed == ["form.html"]
    pulls = github.pull_requests("acme/shop")
    assert len(pulls) == 1 and len(github.requests_to("POST", "/pulls")) == 1
    pull = pulls[0]
    assert pull["head"]["ref"] == "task-7" and pull["base"]["ref"] == "develop" and pull["title"] == "Add login form"
    assert not pull["draft"]
    assert "Closes #7" in pull["body"] and "Added the login view and its form." in pull["body"]
    assert "a user can log in" in pull["body"]  # the acceptance criteria document
    view = run_view(store.get_run(run_id))
    assert view["outcome"] == "changes" and view["branch"] == "task-7" and view["base"] == "develop"
    assert view["commits"] == 2 and view["diffstat"] == {"files": 2, "insertions": 2, "deletions": 0}
    assert view["pull_request_url"] == pull["html_url"] and view["pull_request_number"] == 1
    assert view["commit"] == run.commit
    task = store.require_task(SERVICE, 7)
    assert task.outputs["pull_request_url"] == pull["html_url"]
    assert task.status_reason == f"run {run_id} succeeded: 2 commit(s) on task-7, pull request {pull['html_url']}"
    assert store.task_for_pull_request("acme/shop#1") == (SERVICE, 7)
    # The token never reached the checkout.
    assert "ghp_TESTtoken" not in (ws.parent.parent / ".clone" / ".git" / "config").read_text()


def test_a_redelivered_deliver_step_opens_no_second_pull_request_and_pushes_nothing(
        store: TaskStore, dl_settings: Settings, remote: Path, git_server: GitHttpServer, github: FakeGitHub,
        sent: list) -> None:
    spec = issue_spec()
    run_id = prepare_and_run(store, dl_settings, spec)
    (workspace(dl_settings) / "login.py").write_text("def login(): ...\n")
    agent_ended(store, run_id)
    assert outcome.finish(store, dl_settings, run_id) == "delivering"
    assert deliver_run(store, dl_settings, run_id).action == "delivered"
    head, pushed = store.get_run(run_id).commit, pushes(git_server)
    assert pushed == 1
    # A crash before the step was acknowledged: the message comes again, as if nothing had been recorded.
    store.update_run(run_id, outcome="", delivered_at="")
    again = deliver_run(store, dl_settings, run_id)
    assert again.action == "delivered" and again.fields["commit"] == head
    assert pushes(git_server) == pushed and bare_ref(remote, "task-7") == head
    assert len(github.pull_requests()) == 1 and len(github.requests_to("POST", "/pulls")) == 1
    # The push and the pull request were recorded complete: GitHub is not asked again.
    assert len(github.requests_to("PATCH", "/pulls/1")) == 0
    # And once more after the outcome was recorded: only finish_run is sent again.
    requests = len(github.requests)
    assert deliver_run(store, dl_settings, run_id).message.startswith("already delivered")
    assert len(github.requests) == requests and sent[-1] == (Step.FINISH_RUN, (run_id,))
    assert outcome.finish(store, dl_settings, run_id) == "Succeeded"


def test_a_later_run_updates_the_same_pull_request(
        store: TaskStore, dl_settings: Settings, remote: Path, git_server: GitHttpServer, github: FakeGitHub,
        sent: list) -> None:
    spec = issue_spec()
    run_id = prepare_and_run(store, dl_settings, spec)
    (workspace(dl_settings) / "login.py").write_text("v1\n")
    agent_ended(store, run_id)
    assert finish_through_delivery(store, dl_settings, run_id, sent) == "Succeeded"
    # New context: a second run on the same branch.
    from orchestrator.states import Status
    store.transition(SERVICE, 7, Status.PENDING, reason="new context", actor="test")
    second = prepare_and_run(store, dl_settings, spec, version=2, create=False)
    assert git("log", "-1", "--format=%s", cwd=workspace(dl_settings)) == "Add login form"  # the first run's work
    (workspace(dl_settings) / "login.py").write_text("v2\n")
    agent_ended(store, second)
    assert finish_through_delivery(store, dl_settings, second, sent) == "Succeeded"
    assert len(github.pull_requests()) == 1 and len(github.requests_to("PATCH", "/pulls/1")) == 1
    assert store.get_run(second).commits in (2, "2")
    assert bare_ref(remote, "task-7") == store.get_run(second).commit


def test_a_run_without_changes_has_outcome_no_changes(
        store: TaskStore, dl_settings: Settings, remote: Path, git_server: GitHttpServer, github: FakeGitHub,
        sent: list) -> None:
    run_id = prepare_and_run(store, dl_settings, issue_spec())
    before = pushes(git_server)
    agent_ended(store, run_id)
    assert finish_through_delivery(store, dl_settings, run_id, sent) == "Succeeded"
    run = store.get_run(run_id)
    assert run.outcome == "no_changes"
    assert run_view(run)["commits"] == 0 and run_view(run)["pull_request_url"] is None
    assert store.require_task(SERVICE, 7).status_reason == f"run {run_id} finished with no changes"
    assert pushes(git_server) == before and github.requests == [] and bare_ref(remote, "task-7") is None


PRE_RECEIVE_ONCE = """#!/bin/sh
marker="$(dirname "$0")/refused-once"
if [ ! -e "$marker" ]; then
  touch "$marker"
  echo "refused: try again" >&2
  exit 1
fi
exit 0
"""


def test_a_push_refused_once_is_retried_and_then_accepted(
        store: TaskStore, dl_settings: Settings, remote: Path, git_server: GitHttpServer, github: FakeGitHub,
        sent: list) -> None:
    hook = remote / "hooks" / "pre-receive"
    hook.write_text(PRE_RECEIVE_ONCE)
    hook.chmod(0o755)
    run_id = ready_to_deliver(store, dl_settings)
    first = deliver_run(store, dl_settings, run_id, retries=0)
    assert first.action == "retry" and "push refused" in first.message and first.countdown is not None
    assert bare_ref(remote, "task-7") is None and github.pull_requests() == []
    second = deliver_run(store, dl_settings, run_id, retries=1)
    assert second.action == "delivered"
    assert bare_ref(remote, "task-7") == store.get_run(run_id).commit
    assert len(github.pull_requests()) == 1
    assert outcome.finish(store, dl_settings, run_id) == "Succeeded"


def test_a_push_refused_every_time_fails_the_run_naming_delivery_and_keeps_the_commits(
        store: TaskStore, dl_settings: Settings, remote: Path, git_server: GitHttpServer, github: FakeGitHub,
        sent: list) -> None:
    hook = remote / "hooks" / "pre-receive"
    hook.write_text("#!/bin/sh\necho 'refused: branch protected' >&2\nexit 1\n")
    hook.chmod(0o755)
    run_id = prepare_and_run(store, dl_settings, issue_spec())
    ws = workspace(dl_settings)
    (ws / "login.py").write_text("def login(): ...\n")
    agent_ended(store, run_id)
    assert outcome.finish(store, dl_settings, run_id) == "delivering"
    results = [deliver_run(store, dl_settings, run_id, retries=n) for n in range(dl_settings.delivery_retries + 1)]
    assert [r.action for r in results] == ["retry", "retry", "failed"]
    run = store.get_run(run_id)
    assert run.outcome == "failed" and run.phase == "Failed"
    assert run.failure_reason.startswith("delivery failed: push refused:")
    assert "branch protected" in run.failure_reason
    assert outcome.finish(store, dl_settings, run_id) == "Failed"
    task = store.require_task(SERVICE, 7)
    assert task.status_reason.startswith(f"run {run_id} failed: delivery failed: push refused:")
    # The commit delivery made stays on the branch in the workspace; nothing reached the remote.
    assert git("log", "-1", "--format=%s", "task-7", cwd=ws) == "Add login form"
    assert bare_ref(remote, "task-7") is None and github.pull_requests() == []
    view = run_view(run)
    assert view["outcome"] == "failed" and view["branch"] == "task-7" and view["commits"] == 1
    assert view["commit"] == git("rev-parse", "task-7", cwd=ws)


def test_a_github_failure_is_retried_then_delivered(
        store: TaskStore, dl_settings: Settings, remote: Path, git_server: GitHttpServer, github: FakeGitHub,
        sent: list) -> None:
    run_id = ready_to_deliver(store, dl_settings)
    github.fail_next(502, times=4)  # the client's own attempts, all of them
    first = deliver_run(store, dl_settings, run_id, retries=0)
    assert first.action == "retry" and "pull request" in first.message
    assert deliver_run(store, dl_settings, run_id, retries=1).action == "delivered"
    assert len(github.pull_requests()) == 1


def test_a_failed_and_a_cancelled_run_get_their_outcomes(
        store: TaskStore, dl_settings: Settings, remote: Path, git_server: GitHttpServer, sent: list) -> None:
    run_id = prepare_and_run(store, dl_settings, issue_spec())
    agent_ended(store, run_id, phase="Failed")
    assert outcome.finish(store, dl_settings, run_id) == "Failed"
    assert store.get_run(run_id).outcome == "failed"
    from orchestrator import runs

    class StopNothing:
        def cancel(self, run_id: str) -> None:
            pass

    other = prepare_and_run(store, dl_settings, issue_spec(8))
    runs.cancel(store, StopNothing(), other)
    assert store.get_run(other).outcome == "cancelled"
    assert run_view(store.get_run(other))["outcome"] == "cancelled"


def test_the_deliver_step_is_routed_to_the_workspace_queue() -> None:
    import workers.steps  # noqa: F401 - registers the steps
    from orchestrator.steps import routes
    from workers.app import app

    assert routes()[Step.DELIVER_RUN.value] == "workspace" and Step.DELIVER_RUN.queue == "workspace"
    assert Step.DELIVER_RUN in app.tasks


@pytest.mark.parametrize(("template", "service", "ref", "expected"), [
    ("task-{task_id}", "shop", "task-12", 12),
    ("task-{task_id}", "shop", "feature-12", None),
    ("orchestrator/{service}/{task_id}", "shop", "orchestrator/shop/12", 12),
    ("orchestrator/{service}/{task_id}", "shop", "orchestrator/web/12", None),
    ("agent-{task_id}-work", None, "agent-3-work", 3),
])
def test_pull_request_branches_are_recognised_by_the_branch_template(template: str, service: str | None, ref: str,
                                                                    expected: int | None) -> None:
    from orchestrator.github.routing import GitHubConfig, task_id_of_branch

    assert task_id_of_branch(ref, template, service) == expected
    settings = Settings.from_env({"ORCHESTRATOR_BRANCH_TEMPLATE": template})
    assert GitHubConfig.from_settings(settings).branch_template == template


def test_a_pull_request_opened_meanwhile_is_updated_not_duplicated(github: FakeGitHub) -> None:
    from orchestrator.delivery import pulls
    from orchestrator.github.client import GitHubClient

    client = GitHubClient("t", github.url)
    first = pulls.open_or_update(client, owner="acme", repo="shop", branch="task-7", base="main", title="t",
                                 body="b", draft=False)

    class LaggingSearch:  # the list answers empty once, as GitHub's can right after a create
        calls = 0

        def request(self, method: str, path: str, payload=None):
            if method == "GET" and "?head=" in path and not self.calls:
                self.calls += 1
                return []
            return client.request(method, path, payload)

    again = pulls.open_or_update(LaggingSearch(), owner="acme", repo="shop", branch="task-7", base="main",
                                 title="t2", body="b2", draft=False)
    assert (again.number, again.created, first.created) == (1, False, True)
    assert len(github.pull_requests()) == 1 and github.pull_requests()[0]["title"] == "t2"


def test_a_secondary_rate_limit_on_the_pull_request_waits_without_failing_or_losing_it(
        store: TaskStore, dl_settings: Settings, remote: Path, git_server: GitHttpServer, github: FakeGitHub,
        sent: list) -> None:
    from orchestrator.store.keys import GITHUB_PAUSE

    run_id = ready_to_deliver(store, dl_settings)
    github.secondary_rate_limit(retry_after=120)
    # Far more often than the delivery retry limit (2 here): a rate limit is waited out, never counted.
    for attempt in range(dl_settings.delivery_retries + 2):
        later = deliver_run(store, dl_settings, run_id, retries=0)
        assert later.action == "retry", later
        assert ("secondary rate limit" if attempt == 0 else "write budget is spent") in later.message
        assert later.countdown and later.countdown > 1
    run = store.get_run(run_id)
    assert run.delivery_failures == 0 and run.phase == "Succeeded" and not run.outcome
    assert bare_ref(remote, "task-7") is not None  # the branch is pushed already
    assert len(github.requests) == 1  # only the first asked GitHub: the others waited out the shared pause
    store.redis.delete(GITHUB_PAUSE)  # the pause is over
    # The waits were no failures: a real one still gets every retry.
    github.fail_next(502, times=4)
    assert deliver_run(store, dl_settings, run_id).action == "retry"
    assert store.get_run(run_id).delivery_failures == 1
    assert deliver_run(store, dl_settings, run_id).action == "delivered"
    assert len(github.pull_requests()) == 1


def test_the_branch_template_names_the_pushed_branch_and_finds_its_pull_requests(
        store: TaskStore, dl_settings: Settings, remote: Path, git_server: GitHttpServer, github: FakeGitHub,
        sent: list) -> None:
    from orchestrator.github.handlers import find_task_for_pull_request
    from orchestrator.github.routing import GitHubConfig

    settings = dl_settings.replace(branch_template="orchestrator/{service}/{task_id}",
                                   github_repositories={"acme/shop": SERVICE})
    run_id = prepare_and_run(store, settings, issue_spec())
    (workspace(settings) / "login.py").write_text("def login(): ...\n")
    agent_ended(store, run_id)
    assert finish_through_delivery(store, settings, run_id, sent) == "Succeeded"
    run = store.get_run(run_id)
    assert run.branch == "orchestrator/shop/7" and bare_ref(remote, "orchestrator/shop/7") == run.commit
    assert bare_ref(remote, "task-7") is None
    (pull,) = github.pull_requests()
    assert pull["head"]["ref"] == "orchestrator/shop/7"
    # A pull request event this store has no link for is recognised by the template's branch, and only by it.
    config = GitHubConfig.from_settings(settings)
    found = find_task_for_pull_request(store, config, "acme/shop#99", repo="acme/shop",
                                       head_ref="orchestrator/shop/7", head_repo="acme/shop")
    assert found == (SERVICE, 7)
    assert find_task_for_pull_request(store, config, "acme/shop#98", repo="acme/shop",
                                      head_ref="task-7", head_repo="acme/shop") is None
