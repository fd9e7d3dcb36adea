"""The pull request half of delivery: one pull request per task, opened once and then updated.

Only `GitHubClient.request()` is used. Before opening one, the open pull
requests of the branch are listed, so a redelivered step finds the one it
opened and never opens a second.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from orchestrator.github.client import GitHubError

log = logging.getLogger("orchestrator.delivery")

MAX_BODY = 60_000
MARKER = "<!-- orchestrator:task"
_HTTPS = re.compile(r"^https://[^/]+/(?P<owner>[A-Za-z0-9_.-]+)/(?P<repo>[A-Za-z0-9_.-]+?)(?:\.git)?/?$")
_SSH = re.compile(r"^[^@]+@[^:]+:(?P<owner>[A-Za-z0-9_.-]+)/(?P<repo>[A-Za-z0-9_.-]+?)(?:\.git)?$")
_READY = "mutation($id: ID!) { markPullRequestReadyForReview(input: {pullRequestId: $id}) { pullRequest { isDraft } } }"


@dataclass(frozen=True)
class PullRequest:
    number: int
    url: str
    draft: bool
    created: bool


def repository_of(url: str) -> tuple[str, str] | None:
    """(owner, repo) of an https or ssh repository URL, else None."""
    match = _HTTPS.fullmatch(url or "") or _SSH.fullmatch(url or "")
    return (match.group("owner"), match.group("repo")) if match else None


def _text(value: Any) -> str:
    return str(value).strip() if value not in (None, "") else ""


def acceptance_criteria(spec: Mapping[str, Any]) -> str:
    """The task's acceptance criteria: its acceptance-criteria documents, else its test strategy."""
    found = [
        _text(item.get("content"))
        for item in spec.get("markdown_files") or []
        if isinstance(item, Mapping) and item.get("file_type") == "acceptance-criteria"
    ]
    found = [text for text in found if text]
    return "\n\n".join(found) if found else _text(spec.get("test_strategy"))


def render_body(
    spec: Mapping[str, Any],
    *,
    service: str,
    task_id: int,
    agent_summary: str,
    closes: int | None,
    run_id: str,
    stages_left: Sequence[str] = (),
    figures: str = "",
) -> str:
    """The pull request's description: the task, its acceptance criteria, the agent's summary, the run's
    figures (duration, turns, cost: those known), `Closes #N`."""
    out = [_text(spec.get("description")) or f"Task {task_id} of service `{service}`.", ""]
    details = _text(spec.get("details"))
    if details:
        out += ["## Details", "", details, ""]
    criteria = acceptance_criteria(spec)
    if criteria:
        out += ["## Acceptance criteria", "", criteria, ""]
    if agent_summary:
        out += ["## Summary from the agent", "", agent_summary.strip(), ""]
    if figures:
        out += [f"Run `{run_id}`: {figures}", ""]
    if stages_left:
        out += [f"_Stages still to run: {', '.join(stages_left)}; this pull request is a draft until they have._", ""]
    if closes:
        out += [f"Closes #{int(closes)}", ""]
    out.append(f"{MARKER} {service}/{task_id} run={run_id} -->")
    body = "\n".join(out)
    return body if len(body) <= MAX_BODY else body[: MAX_BODY - 20] + "\n\n(truncated)"


def title_of(spec: Mapping[str, Any], task_id: int) -> str:
    return " ".join(str(spec.get("title") or f"Task {task_id}").split())[:250]


def find_open(client: Any, owner: str, repo: str, branch: str) -> dict[str, Any] | None:
    """The open pull request whose head is `owner:branch`, if any."""
    found = client.request(
        "GET", f"/repos/{owner}/{repo}/pulls?head={quote(f'{owner}:{branch}', safe=':')}&state=open&per_page=10"
    )
    for pull in found or []:
        if isinstance(pull, Mapping) and (pull.get("head") or {}).get("ref", branch) == branch:
            return dict(pull)
    return None


def open_or_update(
    client: Any, *, owner: str, repo: str, branch: str, base: str, title: str, body: str, draft: bool
) -> PullRequest:
    """Update the branch's open pull request, or open it; mark it ready when it no longer should be a draft."""
    existing = find_open(client, owner, repo, branch)
    if existing is None:
        try:
            created = client.request(
                "POST",
                f"/repos/{owner}/{repo}/pulls",
                {"title": title, "head": branch, "base": base, "body": body, "draft": draft},
            )
            return PullRequest(int(created["number"]), str(created["html_url"]), bool(created.get("draft")), True)
        except GitHubError as exc:
            # 422: one was opened meanwhile (GitHub's search lags behind a create); update that one.
            existing = find_open(client, owner, repo, branch) if exc.status == 422 else None
            if existing is None:
                raise
    number = int(existing["number"])
    updated = client.request("PATCH", f"/repos/{owner}/{repo}/pulls/{number}", {"title": title, "body": body})
    is_draft = bool((updated or existing).get("draft"))
    if is_draft and not draft and existing.get("node_id"):
        # REST cannot take a pull request out of draft; GraphQL can. Best effort: the rest is delivered.
        try:
            client.request("POST", "/graphql", {"query": _READY, "variables": {"id": existing["node_id"]}})
            is_draft = False
        except GitHubError as exc:
            log.warning("could not mark pull request %s/%s#%s ready for review: %s", owner, repo, number, exc)
    return PullRequest(number, str((updated or existing).get("html_url") or existing.get("html_url")), is_draft, False)
