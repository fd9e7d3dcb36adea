"""Event routing: a table of (event, action, predicate) -> handler name.

Pure: a predicate sees only the payload and the configuration, so the
webhook request can decide "queue or ignore" without touching Redis. Facts
that need the store (is this pull request one of ours?) are checked by the
handler when the queued event is processed.
"""

from __future__ import annotations

import re
import string
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from orchestrator.github.commands import parse_command
from orchestrator.validation import service_name

# Marks the status comments the reporter writes, so they never trigger anything.
STATUS_MARKER = "<!-- orchestrator:status"

DEFAULT_BRANCH_TEMPLATE = "task-{task_id}"
_PR_HTML = re.compile(r"^https?://[^/]+/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)/pull/([0-9]{1,9})/?$")
_PR_API = re.compile(r"^https?://[^/]+/(?:api/v3/)?repos/([A-Za-z0-9_.-]+)/([A-Za-z0-9_.-]+)/pulls/([0-9]{1,9})/?$")
_REPO_NAME = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class GitHubConfig:
    """What routing needs from the settings."""

    repositories: Mapping[str, str]
    trigger_label: str = "orchestrator"
    command_prefix: str = "/orchestrator"
    allowed_associations: frozenset[str] = frozenset({"OWNER", "MEMBER", "COLLABORATOR"})
    bot_login: str = ""
    default_agent: str = "claude"
    branch_template: str = DEFAULT_BRANCH_TEMPLATE
    trusted_authors_only: bool = True

    @classmethod
    def from_settings(cls, settings: Any) -> GitHubConfig:
        """Build from an `orchestrator.settings.Settings`."""
        return cls(
            repositories={k.lower(): v for k, v in settings.github_repositories.items()},
            trigger_label=settings.github_trigger_label,
            command_prefix=settings.github_command_prefix,
            allowed_associations=frozenset(a.upper() for a in settings.github_allowed_associations),
            bot_login=settings.github_bot_login,
            default_agent=settings.default_agent,
            branch_template=getattr(settings, "branch_template", DEFAULT_BRANCH_TEMPLATE),
            trusted_authors_only=settings.github_trusted_authors_only,
        )

    def service_for(self, full_name: Any) -> tuple[str | None, str]:
        """(service, "") for a mapped repository, else (None, why not)."""
        if not isinstance(full_name, str) or not _REPO_NAME.fullmatch(full_name):
            return None, "the payload names no repository"
        service = self.repositories.get(full_name.lower())
        if service is None:
            return None, f"repository {full_name} is not mapped to a service"
        try:
            service_name(service)
        except ValueError as exc:
            return None, f"repository {full_name} maps to {service!r}, which is refused: {exc}"
        return service, ""


@dataclass(frozen=True)
class Route:
    """One row of the table: which deliveries it takes and who handles them."""

    event: str
    action: str
    predicate: Callable[[Mapping[str, Any], GitHubConfig], str | None]  # None: take it; else why not
    handler: str


@dataclass(frozen=True)
class Decision:
    """The routing answer: a handler name, or None and the reason it is ignored."""

    handler: str | None
    reason: str

    @property
    def routed(self) -> bool:
        return self.handler is not None


# Payload access -------------------------------------------------------------------


def dig(payload: Any, *path: str) -> Any:
    """payload[a][b]... or None when any step is missing or not an object."""
    for key in path:
        if not isinstance(payload, Mapping):
            return None
        payload = payload.get(key)
    return payload


def number(value: Any) -> int | None:
    """A positive issue or pull request number, or None."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value < 10**9:
        return value
    return None


def is_bot(user: Any, config: GitHubConfig) -> bool:
    """GitHub Apps, `[bot]` accounts and our own account never trigger work."""
    if not isinstance(user, Mapping):
        return True  # an actor we cannot identify is not trusted to trigger anything
    login = user.get("login")
    if not isinstance(login, str) or not login:
        return True
    if user.get("type") == "Bot" or login.lower().endswith("[bot]"):
        return True
    return bool(config.bot_login) and login.lower() == config.bot_login.lower()


def task_id_of_branch(ref: Any, template: str = DEFAULT_BRANCH_TEMPLATE, service: str | None = None) -> int | None:
    """The task id of a branch named by ORCHESTRATOR_BRANCH_TEMPLATE (`task-<id>` by default), else None."""
    if not isinstance(ref, str):
        return None
    pattern = ""
    for literal, name, _spec, _conv in string.Formatter().parse(template):
        pattern += re.escape(literal)
        if name == "task_id":
            pattern += "([0-9]{1,9})"
        elif name == "service":
            pattern += re.escape(service) if service else "[a-z0-9-]+"
        elif name is not None:
            return None
    match = re.fullmatch(pattern, ref)
    return int(match.group(1)) if match else None


def pull_request_key(url: Any) -> str | None:
    """`owner/repo#n` (lower case) for a pull request's web or API URL, else None."""
    if not isinstance(url, str):
        return None
    match = _PR_HTML.fullmatch(url.strip()) or _PR_API.fullmatch(url.strip())
    if not match:
        return None
    owner, repo, num = match.groups()
    return f"{owner}/{repo}#{int(num)}".lower()


# Checks: each returns None when satisfied, else the reason ---------------------

Check = Callable[[Mapping[str, Any], GitHubConfig], "str | None"]


def _repository_mapped(p: Mapping[str, Any], c: GitHubConfig) -> str | None:
    service, why = c.service_for(dig(p, "repository", "full_name"))
    return None if service else why


def _sender_not_bot(p: Mapping[str, Any], c: GitHubConfig) -> str | None:
    return f"sent by a bot or by this system ({dig(p, 'sender', 'login')})" if is_bot(p.get("sender"), c) else None


def _plain_issue(p: Mapping[str, Any], c: GitHubConfig) -> str | None:
    if number(dig(p, "issue", "number")) is None:
        return "the payload has no issue number"
    return "the issue is a pull request" if dig(p, "issue", "pull_request") is not None else None


def _issue_open(p: Mapping[str, Any], c: GitHubConfig) -> str | None:
    return None if dig(p, "issue", "state") == "open" else "the issue is not open"


def _label_is_trigger(p: Mapping[str, Any], c: GitHubConfig) -> str | None:
    name = dig(p, "label", "name")
    if isinstance(name, str) and name.casefold() == c.trigger_label.casefold():
        return None
    return f"label {name!r} is not the trigger label {c.trigger_label!r}"


def _issue_has_trigger_label(p: Mapping[str, Any], c: GitHubConfig) -> str | None:
    labels = dig(p, "issue", "labels")
    names = [dig(label, "name") for label in labels] if isinstance(labels, list) else []
    if any(isinstance(n, str) and n.casefold() == c.trigger_label.casefold() for n in names):
        return None
    return f"the issue does not carry the trigger label {c.trigger_label!r}"


def _allowed(association: Any, c: GitHubConfig, who: str) -> str | None:
    if isinstance(association, str) and association.upper() in c.allowed_associations:
        return None
    return f"{who} association {association!r} may not trigger work"


def _issue_author_allowed(p: Mapping[str, Any], c: GitHubConfig) -> str | None:
    return _allowed(dig(p, "issue", "author_association"), c, "issue author")


def _issue_author_or_labeller_allowed(p: Mapping[str, Any], c: GitHubConfig) -> str | None:
    """Anyone may open an issue, and its body becomes the agent's task: a label alone (which a bot
    or a triage role may add) is not enough unless the author, or the labeller, is trusted.

    GitHub's payload carries the author's association but not the labeller's; the labeller counts
    only when the payload says (or the labeller is the author). This client has no permission
    lookup, so an unknown labeller is refused, with the reason.
    """
    if not c.trusted_authors_only:
        return None
    author = dig(p, "issue", "author_association")
    if _allowed(author, c, "issue author") is None:
        return None
    labeller = dig(p, "sender", "author_association")
    if labeller is not None and _allowed(labeller, c, "labeller") is None:
        return None
    return (
        f"issue author association {author!r} may not trigger work, and the labeller's association is "
        f"{'unknown' if labeller is None else repr(labeller)} "
        "(ORCHESTRATOR_GITHUB_TRUSTED_AUTHORS_ONLY)"
    )


def _comment_not_ours(p: Mapping[str, Any], c: GitHubConfig) -> str | None:
    if is_bot(dig(p, "comment", "user"), c) or is_bot(p.get("sender"), c):
        return "comment by a bot or by this system"
    body = dig(p, "comment", "body")
    if isinstance(body, str) and STATUS_MARKER in body:
        return "the comment is one of this system's status comments"
    return None


def _comment_has_command(p: Mapping[str, Any], c: GitHubConfig) -> str | None:
    if parse_command(dig(p, "comment", "body"), c.command_prefix) is None:
        return f"the comment holds no {c.command_prefix} command"
    if number(dig(p, "issue", "number")) is None:
        return "the payload has no issue number"
    return None


def _comment_author_allowed(p: Mapping[str, Any], c: GitHubConfig) -> str | None:
    return _allowed(dig(p, "comment", "author_association"), c, "commenter")


def _changes_requested(p: Mapping[str, Any], c: GitHubConfig) -> str | None:
    state = dig(p, "review", "state")
    if isinstance(state, str) and state.lower() == "changes_requested":
        return None
    return f"review state {state!r} is not changes_requested"


def _review_not_bot(p: Mapping[str, Any], c: GitHubConfig) -> str | None:
    return "review by a bot or by this system" if is_bot(dig(p, "review", "user"), c) else None


def _review_author_allowed(p: Mapping[str, Any], c: GitHubConfig) -> str | None:
    return _allowed(dig(p, "review", "author_association"), c, "reviewer")


def _has_pull_request(p: Mapping[str, Any], c: GitHubConfig) -> str | None:
    if number(dig(p, "pull_request", "number")) is None:
        return "the payload has no pull request number"
    return None


def all_of(*checks: Check) -> Callable[[Mapping[str, Any], GitHubConfig], str | None]:
    """A predicate that runs checks in order and reports the first refusal."""

    def predicate(payload: Mapping[str, Any], config: GitHubConfig) -> str | None:
        for check in checks:
            reason = check(payload, config)
            if reason:
                return reason
        return None

    return predicate


ROUTES: tuple[Route, ...] = (
    Route(
        "issues",
        "labeled",
        all_of(
            _repository_mapped,
            _sender_not_bot,
            _label_is_trigger,
            _plain_issue,
            _issue_open,
            _issue_author_or_labeller_allowed,
        ),
        "create_task_from_issue",
    ),
    Route(
        "issues",
        "opened",
        all_of(_repository_mapped, _sender_not_bot, _plain_issue, _issue_has_trigger_label, _issue_author_allowed),
        "create_task_from_issue",
    ),
    Route(
        "issue_comment",
        "created",
        all_of(_repository_mapped, _comment_not_ours, _comment_has_command, _comment_author_allowed),
        "run_command",
    ),
    Route(
        "pull_request_review",
        "submitted",
        all_of(_repository_mapped, _has_pull_request, _changes_requested, _review_not_bot, _review_author_allowed),
        "follow_up_on_review",
    ),
    Route(
        "pull_request_review_comment",
        "created",
        all_of(_repository_mapped, _has_pull_request, _comment_not_ours, _comment_author_allowed),
        "follow_up_on_review",
    ),
    Route("pull_request", "closed", all_of(_repository_mapped, _has_pull_request), "close_pull_request"),
)


# Where the id of the thing an event is about sits, for the events whose replay
# would act again (a comment or review starts a run each time): the same comment
# or review sent again under a new delivery id is the same event. The other
# routed events are idempotent by themselves (a task created from an issue
# exists once; a closed pull request is recorded once).
_IDENTITY: Mapping[tuple[str, str], tuple[tuple[str, ...], ...]] = {
    ("issue_comment", "created"): (("comment", "id"),),
    ("pull_request_review", "submitted"): (("review", "id"),),
    ("pull_request_review_comment", "created"): (("comment", "id"),),
}
_IDENTITY_PART = re.compile(r"^[A-Za-z0-9 ._:+-]{1,100}$")


def event_identity(event: str, payload: Any) -> str | None:
    """What identifies the event itself, whatever delivery carried it (`issue_comment.created:123`), or None."""
    action = payload.get("action") if isinstance(payload, Mapping) else None
    paths = _IDENTITY.get((event, action)) if isinstance(action, str) else None
    if not paths:
        return None
    parts = []
    for path in paths:
        value = dig(payload, *path)
        if isinstance(value, bool) or not isinstance(value, (int, str)) or not _IDENTITY_PART.fullmatch(str(value)):
            return None
        parts.append(str(value))
    return f"{event}.{action}:" + "/".join(parts)


def match(event: str, payload: Any, config: GitHubConfig, routes: Iterable[Route] = ROUTES) -> Decision:
    """Which handler takes this delivery, or why none does."""
    if not isinstance(payload, Mapping):
        return Decision(None, "the payload is not a JSON object")
    action = payload.get("action")
    candidates = [r for r in routes if r.event == event and r.action == action]
    if not candidates:
        shown = f"{event}.{action}" if isinstance(action, str) else event
        return Decision(None, f"no route for {shown[:120]}")
    reasons: list[str] = []
    for route in candidates:
        reason = route.predicate(payload, config)
        if reason is None:
            return Decision(route.handler, "")
        reasons.append(reason)
    return Decision(None, "; ".join(reasons))
