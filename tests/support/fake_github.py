"""A local fake of GitHub's REST API (issue comments), served over real HTTP from a thread."""

from __future__ import annotations

import json
import re
import threading
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

_CREATE = re.compile(r"^/repos/([^/]+)/([^/]+)/issues/(\d+)/comments$")
_EDIT = re.compile(r"^/repos/([^/]+)/([^/]+)/issues/comments/(\d+)$")


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

    def fail_next(self, status: int, headers: dict[str, str] | None = None, times: int = 1) -> None:
        for _ in range(times):
            self._script.append((status, headers or {}))

    def _answer(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, dict, Any]:
        with self._lock:
            self.requests.append(Recorded(method, path, headers, body))
            if self._script:
                status, extra = self._script.popleft()
                return status, extra, {"message": "scripted failure"}
            if not headers.get("Authorization", "").startswith("Bearer "):
                return 401, {}, {"message": "Requires authentication"}
            created = _CREATE.match(path)
            if method == "POST" and created:
                self._next_id += 1
                comment = {"id": self._next_id, "body": body["body"], "issue": int(created.group(3)),
                           "repo": f"{created.group(1)}/{created.group(2)}"}
                self.comments[self._next_id] = comment
                return 201, {}, comment
            edited = _EDIT.match(path)
            if method == "PATCH" and edited:
                comment = self.comments.get(int(edited.group(3)))
                if comment is None:
                    return 404, {}, {"message": "Not Found"}
                comment["body"] = body["body"]
                return 200, {}, comment
            return 404, {}, {"message": "Not Found"}
