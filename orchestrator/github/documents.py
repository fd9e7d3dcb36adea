"""GitHub text made into task documents: an issue's task spec, a review's and a comment's context.

Everything here is an outsider's text: bounded, and stripped of HTML comments GitHub does not show.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from orchestrator.github.event import EventContext
from orchestrator.github.hidden import removal_note, strip_hidden
from orchestrator.github.routing import dig, number
from orchestrator.validation import issue_task_id

log = logging.getLogger("orchestrator.github")

MAX_TITLE = 200
MAX_DOCUMENT = 60_000  # GitHub caps an issue body at 65536 characters; keep room for the heading
PR_SCAN_LIMIT = 200


def bounded_text(value: Any, limit: int) -> str:
    return value[:limit] if isinstance(value, str) else ""


def _visible(value: Any, limit: int, what: str) -> tuple[str, str]:
    """The text GitHub displays (HTML comments removed), and the note to add when any were."""
    text, removed = strip_hidden(bounded_text(value, limit))
    return text, (removal_note(what) + "\n") if removed else ""


def task_spec_from_issue(payload: Mapping[str, Any], service: str, agent: str) -> dict[str, Any]:
    """The task spec of an issue: its title and body become the task document.

    Its id is the issue's in the issues' own id space (`issue_task_id`), never the bare
    number: issue #3 and Task Master task 3 are different tasks of the same service.
    """
    issue_number = number(dig(payload, "issue", "number"))
    title = bounded_text(dig(payload, "issue", "title"), MAX_TITLE).strip() or f"Issue #{issue_number}"
    body, note = _visible(dig(payload, "issue", "body"), MAX_DOCUMENT, "this issue")
    url = bounded_text(dig(payload, "issue", "html_url"), 500)
    full_name = str(dig(payload, "repository", "full_name"))
    branch = dig(payload, "repository", "default_branch")
    # The payload's own clone URL, so a GitHub Enterprise host works too; checked by the caller.
    clone_url = dig(payload, "repository", "clone_url")
    document = f"# {title}\n\n{body.strip()}\n\n---\n{note}From GitHub issue {full_name}#{issue_number}: {url}\n"
    return {
        "id": issue_task_id(issue_number) if issue_number is not None else 0,
        "title": title,
        "description": title,
        "details": body,  # without hidden comments, like the document
        "test_strategy": "",
        "priority": "medium",
        "status": "pending",
        "dependencies": [],
        "subtasks": [],
        "service_name": service,
        "agent_name": agent,
        "markdown_files": [{"filename": "task.md", "content": document, "file_type": "task"}],
        "repository": {
            "url": clone_url if isinstance(clone_url, str) and clone_url else f"https://github.com/{full_name}.git",
            "branch": branch if isinstance(branch, str) and branch else "main",
        },
    }


def issue_origin(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The `origin` of a task created from an issue."""
    return {
        "github": {
            "repo": str(dig(payload, "repository", "full_name")),
            "issue": number(dig(payload, "issue", "number")),
            "url": bounded_text(dig(payload, "issue", "html_url"), 500),
        }
    }


def review_of(ctx: EventContext) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The review an event belongs to, and the inline comments the payload itself carries.

    A review event carries the review; an inline comment carries itself and its review's id.
    """
    p = ctx.payload
    if ctx.event == "pull_request_review":
        review = p.get("review")
        return (dict(review) if isinstance(review, Mapping) else {}), []
    comment = p.get("comment")
    comment = dict(comment) if isinstance(comment, Mapping) else {}
    review = {"id": comment.get("pull_request_review_id"), "user": comment.get("user"), "body": ""}
    return review, [comment]


def _inline(comment: Mapping[str, Any], budget: int) -> str:
    body, note = _visible(comment.get("body"), budget, "this comment")
    user = dig(comment, "user", "login")
    path, line = comment.get("path"), comment.get("line") or comment.get("original_line")
    where = f"`{path}`" + (f", line {line}" if isinstance(line, int) else "") if path else "(no file)"
    hunk = strip_hidden(bounded_text(comment.get("diff_hunk"), 5000))[0]
    text = f"### File {where} (@{user})\n\n"
    if hunk:
        text += f"```diff\n{hunk}\n```\n\n"
    return text + f"{note}{body.strip() or '(no text)'}\n\n{bounded_text(comment.get('html_url'), 500)}\n"


def review_document(
    ctx: EventContext, *, review: Mapping[str, Any] | None = None, inline: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """One context document for one review: its text and every inline comment of it.

    `review` and `inline` are what GitHub's REST API says of the review (read by the
    handler); without them, what the event's payload carries.
    """
    payload_review, payload_inline = review_of(ctx)
    review = dict(review) if review else payload_review
    inline = inline if inline is not None else payload_inline
    pr = number(dig(ctx.payload, "pull_request", "number"))
    user = dig(review, "user", "login") or (dig(inline[0], "user", "login") if inline else None)
    body, note = _visible(review.get("body"), MAX_DOCUMENT, "this review")
    state = str(review.get("state") or "").lower()
    heading = (
        f"Changes requested by @{user} on pull request #{pr}"
        if state == "changes_requested"
        else f"Review by @{user} on pull request #{pr}"
    )
    text = f"# {heading}\n\n{note}{body.strip() or '(no text)'}\n"
    if inline:
        text = _with_comments(text, "Inline comments", inline, "inline comments")
    url = bounded_text(review.get("html_url"), 500) or (bounded_text(inline[0].get("html_url"), 500) if inline else "")
    review_id = review.get("id")
    safe_id = review_id if isinstance(review_id, int) and not isinstance(review_id, bool) else ctx.delivery_id
    return {
        "filename": f"review-{safe_id}.md",
        "content": f"{text}\n---\n{url}\n",
        "file_type": "context",
        "source": {"github": {"repo": ctx.repo, "pull_request": pr, "url": url, "delivery": ctx.delivery_id}},
    }


def with_review_comments(document: dict[str, Any], comments: list[dict[str, Any]]) -> dict[str, Any]:
    """`document` (a `/orchestrator run` on a pull request) with the pull request's inline review comments."""
    if not comments:
        return document
    text = _with_comments(str(document["content"]), "Review comments on the pull request", comments, "review comments")
    return {**document, "content": text}


def _with_comments(text: str, heading: str, comments: list[dict[str, Any]], what: str) -> str:
    """`text` with a section of review comments, as many as fit in MAX_DOCUMENT (then a line saying so)."""
    text += f"\n## {heading}\n"
    room = MAX_DOCUMENT - len(text)
    for comment in comments:
        part = _inline(comment, max(0, room - 200))
        if len(part) > room:
            return text + f"\n(more {what} than fit; read them on the pull request)\n"
        text += "\n" + part
        room -= len(part) + 1
    return text


def comment_document(ctx: EventContext, text: str) -> dict[str, Any]:
    text, note = _visible(text, MAX_DOCUMENT, "this comment")
    user = dig(ctx.payload, "comment", "user", "login")
    url = bounded_text(dig(ctx.payload, "comment", "html_url"), 500)
    comment_id = dig(ctx.payload, "comment", "id")
    return {
        "filename": f"comment-{comment_id if isinstance(comment_id, int) else ctx.delivery_id}.md",
        "content": f"# Request by @{user}\n\n{text.strip()}\n\n---\n{note}{url}\n",
        "file_type": "context",
        "source": {
            "github": {
                "repo": ctx.repo,
                "issue": number(dig(ctx.payload, "issue", "number")),
                "url": url,
                "delivery": ctx.delivery_id,
            }
        },
    }


# Finding our task ---------------------------------------------------------------------
