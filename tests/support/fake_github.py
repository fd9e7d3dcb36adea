"""A local fake of GitHub's REST API (issue comments, pull requests), served over real HTTP from a thread.

Every request is recorded. Pull requests: list (`?head=owner:branch&state=`),
create, get and edit, plus the GraphQL mutation that marks a draft ready.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

_CREATE = re.compile(r"^/repos/([^/]+)/([^/]+)/issues/(\d+)/comments$")
_EDIT = re.compile(r"^/repos/([^/]+)/([^/]+)/issues/comments/(\d+)$")
_PULLS = re.compile(r"^/repos/([^/]+)/([^/]+)/pulls$")
_PULL = re.compile(r"^/repos/([^/]+)/([^/]+)/pulls/(\d+)$")
_PULL_COMMENTS = re.compile(r"^/repos/([^/]+)/([^/]+)/pulls/(\d+)/comments$")
_REVIEW = re.compile(r"^/repos/([^/]+)/([^/]+)/pulls/(\d+)/reviews/(\d+)(/comments)?$")


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: Any


@dataclass
class FakeGitHub:
    """Comments live in memory; `fail_next(status, headers)` scripts errors before normal answers."""

    requests: list[Recorded] = field(default_factory=list)
    comments: dict[int, dict[str, Any]] = field(default_factory=dict)
    pulls: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)  # (owner/repo, number) -> pull
    # (owner/repo, pull number, review id) -> (the review, its inline comments); see `add_review`
    reviews: dict[tuple[str, int, int], tuple[dict[str, Any], list[dict[str, Any]]]] = field(default_factory=dict)
    _script: deque = field(default_factory=deque)
    _next_id: int = 1000
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> FakeGitHub:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:  # keep test output clean
                pass

            def _handle(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                status, headers, answer = fake._answer(self.command, self.path, dict(self.headers.items()), body)
                data = json.dumps(answer).encode()
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PATCH = do_GET = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fail_next(self, status: int, headers: dict[str, str] | None = None, times: int = 1,
                  message: str = "scripted failure") -> None:
        for _ in range(times):
            self._script.append((status, headers or {}, message))

    def secondary_rate_limit(self, *, retry_after: float | None = None, reset_in: float | None = None,
                             times: int = 1) -> None:
        """Answer the next requests 403 as GitHub's secondary rate limit does (Retry-After, or the reset time)."""
        headers: dict[str, str] = {}
        if retry_after is not None:
            headers["Retry-After"] = str(int(retry_after))
        if reset_in is not None:
            headers.update({"x-ratelimit-remaining": "0", "x-ratelimit-reset": str(int(time.time() + reset_in))})
        self.fail_next(403, headers, times, message="You have exceeded a secondary rate limit. Please wait a few "
                                                    "minutes before you try again.")

    def add_review(self, repo: str, pull: int, review: dict[str, Any], comments: list[dict[str, Any]]) -> None:
        """A submitted review and its inline comments, as GET .../pulls/{n}/reviews/{id}[/comments] answer them."""
        self.reviews[(repo.lower(), pull, int(review["id"]))] = (review, comments)

    def writes(self) -> list[Recorded]:
        """Every content-changing request (POST, PATCH), in order."""
        return [r for r in self.requests if r.method in ("POST", "PATCH", "PUT", "DELETE")]

    def _answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, dict, Any]:
        with self._lock:
            self.requests.append(Recorded(method, path, headers, body))
            if self._script:
                status, extra, message = self._script.popleft()
                return status, extra, {"message": message}
            if not headers.get("Authorization", "").startswith("Bearer "):
                return 401, {}, {"message": "Requires authentication"}
            created = _CREATE.match(path)
            if method == "POST" and created:
                self._next_id += 1
                comment = {"id": self._next_id, "body": body["body"], "issue": int(created.group(3)),
                           "repo": f"{created.group(1)}/{created.group(2)}"}
                self.comments[self._next_id] = comment
                return 201, {}, comment
            listed = _CREATE.match(path.split("?", 1)[0])
            if method == "GET" and listed:
                repo, issue = f"{listed.group(1)}/{listed.group(2)}", int(listed.group(3))
                return 200, {}, [c for _, c in sorted(self.comments.items())
                                 if c["repo"] == repo and c["issue"] == issue]
            edited = _EDIT.match(path)
            if method == "PATCH" and edited:
                comment = self.comments.get(int(edited.group(3)))
                if comment is None:
                    return 404, {}, {"message": "Not Found"}
                comment["body"] = body["body"]
                return 200, {}, comment
            return self._pull_requests(method, path, body)

    def pull_requests(self, repo: str | None = None) -> list[dict[str, Any]]:
        """Every pull request created, oldest first (of one `owner/repo` when given)."""
        return [pull for (name, _), pull in sorted(self.pulls.items(), key=lambda item: item[1]["number"])
                if repo is None or name == repo.lower()]

    def requests_to(self, method: str, fragment: str) -> list[Recorded]:
        return [r for r in self.requests if r.method == method and fragment in r.path]

    def _pull_requests(self, method: str, full_path: str, body: Any) -> tuple[int, dict, Any]:
        parts = urlsplit(full_path)
        path, query = parts.path, parse_qs(parts.query)
        if method == "POST" and path == "/graphql":
            node = (body or {}).get("variables", {}).get("id")
            for pull in self.pulls.values():
                if pull["node_id"] == node and "markPullRequestReadyForReview" in body.get("query", ""):
                    pull["draft"] = False
                    return 200, {}, {"data": {"markPullRequestReadyForReview": {"pullRequest": {"isDraft": False}}}}
            return 200, {}, {"errors": [{"message": "not found"}]}
        listed = _PULLS.match(path)
        if listed:
            repo = f"{listed.group(1)}/{listed.group(2)}".lower()
            if method == "GET":
                head = (query.get("head") or [""])[0]
                state = (query.get("state") or ["open"])[0]
                found = [p for p in self.pull_requests(repo)
                         if (not head or f"{p['owner']}:{p['head']['ref']}" == head)
                         and (state == "all" or p["state"] == state)]
                return 200, {}, found
            if method == "POST":
                for p in self.pull_requests(repo):
                    if p["head"]["ref"] == body["head"] and p["state"] == "open":
                        return 422, {}, {"message": "Validation Failed",
                                         "errors": [{"message": f"A pull request already exists for {body['head']}."}]}
                self._next_id += 1
                number = len(self.pull_requests(repo)) + 1
                pull = {"number": number, "id": self._next_id, "node_id": f"PR_{self._next_id}",
                        "html_url": f"https://github.com/{listed.group(1)}/{listed.group(2)}/pull/{number}",
                        "url": f"{self.url}/repos/{listed.group(1)}/{listed.group(2)}/pulls/{number}",
                        "state": "open", "draft": bool(body.get("draft")), "title": body["title"],
                        "body": body.get("body") or "", "head": {"ref": body["head"]}, "base": {"ref": body["base"]},
                        "owner": listed.group(1)}
                self.pulls[(repo, number)] = pull
                return 201, {}, pull
        on_pull = _PULL_COMMENTS.match(path)
        if on_pull and method == "GET":
            repo, pull = f"{on_pull.group(1)}/{on_pull.group(2)}".lower(), int(on_pull.group(3))
            every = [c for (name, number, _), (_, comments) in sorted(self.reviews.items())
                     if (name, number) == (repo, pull) for c in comments]
            page, per_page = int((query.get("page") or ["1"])[0]), int((query.get("per_page") or ["30"])[0])
            return 200, {}, every[(page - 1) * per_page: page * per_page]
        review = _REVIEW.match(path)
        if review and method == "GET":
            key = (f"{review.group(1)}/{review.group(2)}".lower(), int(review.group(3)), int(review.group(4)))
            if key not in self.reviews:
                return 404, {}, {"message": "Not Found"}
            found, comments = self.reviews[key]
            if not review.group(5):
                return 200, {}, found
            page, per_page = int((query.get("page") or ["1"])[0]), int((query.get("per_page") or ["30"])[0])
            return 200, {}, comments[(page - 1) * per_page: page * per_page]
        one = _PULL.match(path)
        if one:
            pull = self.pulls.get((f"{one.group(1)}/{one.group(2)}".lower(), int(one.group(3))))
            if pull is None:
                return 404, {}, {"message": "Not Found"}
            if method == "PATCH":
                for key in ("title", "body", "state", "base"):
                    if key in body:
                        pull[key] = body[key] if key != "base" else {"ref": body[key]}
            return 200, {}, pull
        return 404, {}, {"message": "Not Found"}
