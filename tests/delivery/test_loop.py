"""The whole GitHub loop with real parts: a labelled issue becomes a task, the agent commits, the branch is
pushed over HTTPS, one pull request opens with `Closes #N`, the status comment reaches its end; a review with
changes requested starts one follow-up run on the same branch that pushes to the same pull request; the merge
records the task as delivered and sweeps its workspace.

The status comment and the pull request body this run writes are the ones the README shows: this test fails
when the README's copy differs (`ORCHESTRATOR_REGENERATE_README=1` rewrites the README's copy from the run).
"""

from __future__ import annotations

import json
import os
import re
import time
import uuid
from pathlib import Path
from typing import Any

from orchestrator.coordination import admission, outcome
from orchestrator.delivery.step import deliver_run
from orchestrator.github.handlers import handle_event
from orchestrator.runners.base import RUNNING, RunObservation
from orchestrator.runs import apply_observation
from orchestrator.settings import Settings
from orchestrator.store import TaskStore
from orchestrator.validation import issue_task_id
from orchestrator.workspace.cleanup import sweep
from orchestrator.workspace.step import prepare_for_run
from tests.delivery.conftest import REPO_URL, InlineReports, agent_ended
from tests.support.fake_github import FakeGitHub
from tests.support.git_server import GitHttpServer, git
from tests.support.github import REPO_ROOT, load

SERVICE = "shop"
REPO = "acme/shop"
ISSUE = 7
TASK = issue_task_id(ISSUE)
PR_URL = f"https://github.com/{REPO}/pull/1"
README = REPO_ROOT / "README.md"
STAMP = re.compile(r"Updated \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC")


def event(store: TaskStore, settings: Settings, name: str, payload: dict[str, Any]) -> dict[str, Any]:
    result = handle_event(store, settings, str(uuid.uuid4()), name, payload)
    assert result["status"] == "changed", result
    return result


def issue_labelled() -> dict[str, Any]:
    payload = load("issues/labeled.payload.json")
    payload["repository"].update(full_name=REPO, clone_url=REPO_URL, default_branch="main")
    payload["label"]["name"] = "orchestrator"
    payload["issue"].update(
        number=ISSUE,
        title="Add a login form",
        html_url=f"https://github.com/{REPO}/issues/7",
        body="Users sign in with their email and a password.",
    )
    return payload


def pull_request_payload(payload: dict[str, Any], branch: str) -> dict[str, Any]:
    payload["repository"]["full_name"] = REPO
    payload["pull_request"].update(number=1, html_url=PR_URL, state="open")
    payload["pull_request"]["head"].update(ref=branch)
    payload["pull_request"]["head"]["repo"]["full_name"] = REPO
    return payload


def run_agent(
    store: TaskStore, settings: Settings, files: dict[str, str], summary: str, turns: int, cost: float
) -> str:
    """Admission, preparation, the agent (a commit of its own), the watcher's observations, delivery, finish."""
    assert admission.admit(store, settings, SERVICE, TASK) == "Preparing"
    run_id = store.require_task(SERVICE, TASK).current_run
    assert prepare_for_run(store, settings, run_id).action == "launched"
    store.update_run(run_id, job_name=f"orch-{run_id}")
    apply_observation(store, RunObservation(run_id, RUNNING, started_at=time.time()))
    ws = settings.workspace_root / SERVICE / "worktrees" / str(TASK)
    for name, text in files.items():
        (ws / name).write_text(text)
    git("add", "--all", cwd=ws)
    git("commit", "--quiet", "-m", summary, cwd=ws)
    out = ws / f".task/{TASK}/runs/{run_id}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "outputs.json").write_text(json.dumps({"summary": summary}))
    agent_ended(store, run_id)
    # Fixed figures, so the README's copy does not change with the machine's speed.
    store.update_run(run_id, started_at=1_000.0, finished_at=1_185.0, usage={"num_turns": turns, "cost_usd": cost})
    assert outcome.finish(store, settings, run_id) == "delivering"
    assert deliver_run(store, settings, run_id).action == "delivered"
    assert outcome.finish(store, settings, run_id) == "Succeeded"
    return run_id


def test_issue_to_delivered_pull_request(
    store: TaskStore,
    dl_settings: Settings,
    remote: Path,
    git_server: GitHttpServer,
    github: FakeGitHub,
    reports: InlineReports,
) -> None:
    settings = dl_settings.replace(github_repositories={REPO: SERVICE}, github_bot_login="orchestrator-bot")
    reports.settings = settings

    # An issue labelled `orchestrator` becomes a task in the issues' own id space.
    assert event(store, settings, "issues", issue_labelled())["task"] == f"{SERVICE}/{TASK}"
    first = run_agent(
        store, settings, {"login.html": "<form></form>\n"}, "Added the login form at /login.", turns=14, cost=0.42
    )
    run = store.get_run(first)
    assert run.branch == "task-1000000007" and run.outcome == "changes"
    (pull,) = github.pull_requests()
    assert pull["head"]["ref"] == run.branch and f"Closes #{ISSUE}" in pull["body"]
    assert git("rev-parse", "refs/heads/task-1000000007", cwd=remote) == run.commit

    # Changes requested: one follow-up run, on the same branch, pushing to the same pull request.
    review = pull_request_payload(load("pull_request_review/submitted.payload.json"), run.branch)
    review["review"].update(
        id=777, state="changes_requested", body="Please validate the email address.", author_association="OWNER"
    )
    github.add_review(REPO, 1, {**review["review"], "state": "CHANGES_REQUESTED"}, [])
    event(store, settings, "pull_request_review", review)
    second = run_agent(
        store,
        settings,
        {"validate.js": "// checks the address\n"},
        "Added email validation, as the review asked.",
        turns=6,
        cost=0.18,
    )
    follow_up = store.get_run(second)
    assert follow_up.branch == run.branch and follow_up.commits == 2
    assert follow_up.pull_request_url == PR_URL and len(github.pull_requests()) == 1
    assert git("rev-parse", "refs/heads/task-1000000007", cwd=remote) == follow_up.commit
    (pull,) = github.pull_requests()
    assert "Added email validation" in pull["body"]

    # The merge: delivered, and the workspace is swept.
    merged = pull_request_payload(load("pull_request/closed.payload.json"), run.branch)
    merged["pull_request"]["merged"] = True
    assert "delivered" in event(store, settings, "pull_request", merged)["detail"]
    assert store.require_task(SERVICE, TASK).pull_request_outcome == "merged"
    assert f"{SERVICE}/{TASK}" in sweep(store, settings).removed
    (comment,) = github.comments.values()
    assert "📦 **Delivered**" in comment["body"] and "Outcome: **changes**: 2 commits" in comment["body"]

    readme_shows(comment=comment["body"], body=pull["body"])


def _block(name: str, text: str) -> str:
    return f"<!-- loop:{name} -->\n```markdown\n{text}\n```\n<!-- /loop:{name} -->"


def readme_shows(*, comment: str, body: str) -> None:
    """The README's copies of the status comment and the pull request body are this run's."""
    readme = README.read_text()
    wanted = readme
    for name, text in (("status-comment", comment), ("pull-request", body)):
        pattern = re.compile(rf"<!-- loop:{name} -->\n.*?<!-- /loop:{name} -->", re.DOTALL)
        assert pattern.search(readme), f"the README has no <!-- loop:{name} --> block"
        block = _block(name, text)
        wanted = pattern.sub(lambda _, block=block: block, wanted)
    if os.environ.get("ORCHESTRATOR_REGENERATE_README") == "1":
        README.write_text(wanted)
        return
    # The comment's time stamp is the run's own; everything else must match to the character.
    assert STAMP.sub("Updated <stamp>", readme) == STAMP.sub("Updated <stamp>", wanted), (
        "the README's status comment or pull request body differs from what this project writes; "
        "rerun with ORCHESTRATOR_REGENERATE_README=1 to update it"
    )
