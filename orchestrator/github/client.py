"""A small GitHub REST client: issue comments, with retries that honour Retry-After.

Writes (POST, PATCH, PUT, DELETE) take one unit of the shared write budget
first (`orchestrator.github.budget`, when the client is given one), and a
secondary rate limit answer pauses every writer for as long as GitHub asked.

On `requests`: one Session per client (its connection pool and our headers),
a timeout on every call, errors typed by whether trying later may help
(`GitHubError.transient`). The token goes in one header and nowhere else: not
in an exception message, a log line or `repr()`.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import requests

from orchestrator import __version__, backoff
from orchestrator.backoff import retry_after_seconds
from orchestrator.github.budget import SECONDARY_LIMIT_WAIT, BudgetSpent, WriteBudget

log = logging.getLogger("orchestrator.github")

_REPO = re.compile(r"^[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+$")
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
WRITES = frozenset({"POST", "PATCH", "PUT", "DELETE"})


class GitHubError(Exception):
    """GitHub refused or did not answer. `transient`: trying later may work."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        transient: bool = False,
        retry_after: float | None = None,
        rate_limited: bool = False,
    ):
        super().__init__(message)
        self.status = status
        self.transient = transient
        self.retry_after = retry_after
        # GitHub (or our shared budget) said "not now": waiting is the fix, not a failure to count.
        self.rate_limited = rate_limited


def _retry_after(headers: Mapping[str, str], now: float) -> float | None:
    """Seconds GitHub asks us to wait: Retry-After (seconds or a date), or the rate limit reset."""
    seconds = retry_after_seconds(headers.get("Retry-After"), now)
    if seconds is not None:
        return seconds
    if headers.get("X-RateLimit-Remaining") == "0" and (headers.get("X-RateLimit-Reset") or "").isdigit():
        return max(0.0, float(headers["X-RateLimit-Reset"]) - now)
    return None


class GitHubClient:
    """Issue comments over GitHub's REST API."""

    def __init__(
        self,
        token: str,
        base_url: str = "https://api.github.com",
        *,
        timeout: float = 10.0,
        attempts: int = 4,
        backoff: float = 0.5,
        max_wait: float = 20.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        session: requests.Session | None = None,
        budget: WriteBudget | None = None,
    ):
        self._token = token
        self.budget = budget
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.attempts = attempts
        self.backoff = backoff
        self.max_wait = max_wait
        self.sleep = sleep
        self.clock = clock
        self._session = session

    @classmethod
    def from_settings(cls, settings: Any, *, store: Any = None, **kwargs: Any) -> GitHubClient:
        """A client with GITHUB_TOKEN and ORCHESTRATOR_GITHUB_API_URL; with `store`, on the shared write budget."""
        if store is not None and "budget" not in kwargs:
            kwargs["budget"] = WriteBudget(
                store,
                settings.github_writes_per_minute,
                max_wait=kwargs.get("max_wait", 20.0),
                sleep=kwargs.get("sleep", time.sleep),
            )
        return cls(settings.github_token, settings.github_api_url, **kwargs)

    def __repr__(self) -> str:
        return f"GitHubClient(base_url={self.base_url!r}, token=***)"

    @property
    def session(self) -> requests.Session:
        # Built on first use: constructing a client contacts nothing.
        if self._session is None:
            session = requests.Session()
            session.headers.update(
                {
                    "Accept": "application/vnd.github+json",
                    "Authorization": f"Bearer {self._token}",
                    "X-GitHub-Api-Version": "2022-11-28",
                    "User-Agent": f"orchestrator/{__version__}",
                }
            )
            self._session = session
        return self._session

    def close(self) -> None:
        """Close the connection pool (a later call opens a new one)."""
        if self._session is not None:
            self._session.close()
            self._session = None

    # API --------------------------------------------------------------------------

    def create_comment(self, repo: str, issue: int, body: str) -> dict[str, Any]:
        """Comment on an issue or pull request; returns the comment (with its `id`)."""
        return self.request("POST", f"/repos/{_repo(repo)}/issues/{int(issue)}/comments", {"body": body})

    def find_comment(self, repo: str, issue: int, marker: str, *, pages: int = 10) -> dict[str, Any] | None:
        """The first comment of an issue whose body contains `marker` (at most `pages` pages of 100), or None."""
        for page in range(1, pages + 1):
            found = self.request("GET", f"/repos/{_repo(repo)}/issues/{int(issue)}/comments?per_page=100&page={page}")
            for comment in found or []:
                if marker in str(comment.get("body") or ""):
                    return comment
            if not found or len(found) < 100:
                return None
        return None

    def review_comments(self, repo: str, pull: int, review_id: int, *, pages: int = 3) -> list[dict[str, Any]]:
        """The inline comments of one pull request review, oldest first (at most `pages` pages of 100)."""
        found: list[dict[str, Any]] = []
        for page in range(1, pages + 1):
            path = f"/repos/{_repo(repo)}/pulls/{int(pull)}/reviews/{int(review_id)}/comments?per_page=100&page={page}"
            batch = self.request("GET", path) or []
            found += [c for c in batch if isinstance(c, dict)]
            if len(batch) < 100:
                break
        return found

    def pull_request_comments(self, repo: str, pull: int, *, pages: int = 3) -> list[dict[str, Any]]:
        """Every inline review comment of a pull request, oldest first (at most `pages` pages of 100)."""
        found: list[dict[str, Any]] = []
        for page in range(1, pages + 1):
            batch = self.request("GET", f"/repos/{_repo(repo)}/pulls/{int(pull)}/comments?per_page=100&page={page}")
            found += [c for c in batch or [] if isinstance(c, dict)]
            if len(batch or []) < 100:
                break
        return found

    def update_comment(self, repo: str, comment_id: int, body: str) -> dict[str, Any]:
        """Replace the text of an issue comment."""
        return self.request("PATCH", f"/repos/{_repo(repo)}/issues/comments/{int(comment_id)}", {"body": body})

    # Transport ----------------------------------------------------------------------

    def request(self, method: str, path: str, payload: Any = None) -> Any:
        """One API call, retried on 429, 5xx, secondary rate limits and network errors."""
        write = method.upper() in WRITES
        for attempt in range(self.attempts):
            try:
                if self.budget is not None:
                    self.budget.take(write=write)
                return self._once(method, path, payload)
            except BudgetSpent as spent:
                raise GitHubError(str(spent), transient=True, retry_after=spent.wait, rate_limited=True) from None
            except GitHubError as exc:
                if exc.rate_limited and self.budget is not None:
                    # Every writer of every worker holds off, not only this one.
                    exc.retry_after = self.budget.pause(exc.retry_after)
                if not exc.transient or attempt == self.attempts - 1:
                    raise
                wait = backoff.delay(attempt, base=self.backoff, retry_after=exc.retry_after)
                if wait > self.max_wait:
                    raise  # too long to wait inside a step; the caller retries later
                log.info("GitHub %s %s: %s; retrying in %.1fs", method, path, exc, wait)
                self.sleep(wait)
        raise AssertionError("unreachable")

    def _once(self, method: str, path: str, payload: Any) -> Any:
        try:
            response = self.session.request(method, self.base_url + path, json=payload, timeout=self.timeout)
        except requests.RequestException as exc:
            # The exception's text may hold the URL, never the token; name its type only.
            raise GitHubError(f"GitHub did not answer: {type(exc).__name__}", transient=True) from None
        status = response.status_code
        if status >= 400:
            try:
                detail = response.json().get("message", "")
            except (ValueError, AttributeError):
                detail = ""
            retry_after = _retry_after(response.headers, self.clock())
            # 403 with Retry-After, an exhausted quota or GitHub's own words is a (secondary) rate limit;
            # so is every 429. Without a stated wait, GitHub asks for at least a minute.
            rate_limited = status == 429 or (
                status == 403 and (retry_after is not None or "rate limit" in str(detail).lower())
            )
            if rate_limited and retry_after is None:
                retry_after = SECONDARY_LIMIT_WAIT
            raise GitHubError(
                f"GitHub answered {status} {str(detail)[:200]}".strip(),
                status=status,
                transient=status in RETRY_STATUSES or rate_limited,
                retry_after=retry_after,
                rate_limited=rate_limited,
            )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise GitHubError(f"GitHub answered {status} with a body that is not JSON", status=status) from None


def _repo(repo: str) -> str:
    if not isinstance(repo, str) or not _REPO.fullmatch(repo) or ".." in repo:
        raise GitHubError(f"not a repository name: {repo!r}")
    return repo
