"""A real git remote over HTTP for tests: `git http-backend` behind a tiny threaded server.

Every request must carry Basic auth whose password is the token, so a clone
only works when git gets the token from our credential helper. Tests point a
validated https URL at it with a `url.<base>.insteadOf` rule in git's
environment configuration (GIT_CONFIG_COUNT...), which the workspace code
never writes to disk.
"""

from __future__ import annotations

import base64
import os
import subprocess
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

PUBLIC_BASE = "https://git.example.test/"


def _run_git(*args: str, cwd: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env.update({"GIT_AUTHOR_NAME": "Test", "GIT_AUTHOR_EMAIL": "test@example.test",
                "GIT_COMMITTER_NAME": "Test", "GIT_COMMITTER_EMAIL": "test@example.test",
                "GIT_CONFIG_NOSYSTEM": "1", "HOME": str(cwd or Path.cwd())})
    return subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True, text=True).stdout.strip()


git = _run_git


class GitHttpServer:
    """Serves bare repositories under `project_root` at http://127.0.0.1:<port>/<owner>/<repo>.git."""

    def __init__(self, project_root: Path, token: str):
        self.project_root = project_root
        self.token = token
        self.fail_status: int | None = None  # answer every request with this status (e.g. 503)
        self.delay = 0.0  # seconds every request waits first (a slow remote)
        self.requests: list[tuple[str, str, bool]] = []  # method, path, authorized
        self.auth_headers: list[str] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:  # keep test output quiet
                pass

            def do_GET(self) -> None:
                self._serve()

            def do_POST(self) -> None:
                self._serve()

            def _authorized(self) -> bool:
                header = self.headers.get("Authorization", "")
                if header:
                    owner.auth_headers.append(header)
                if not header.startswith("Basic "):
                    return False
                try:
                    _user, _, password = base64.b64decode(header[6:]).decode().partition(":")
                except ValueError:
                    return False
                return password == owner.token

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().strip().split(b";")[0], 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                    return b"".join(chunks)
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _reply(self, status: int, headers: dict[str, str], body: bytes) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def _serve(self) -> None:
                body = self._body() if self.command == "POST" else b""
                authorized = self._authorized()
                owner.requests.append((self.command, self.path, authorized))
                if owner.delay:
                    time.sleep(owner.delay)
                if owner.fail_status:
                    self._reply(owner.fail_status, {"Content-Type": "text/plain"}, b"unavailable\n")
                    return
                if not authorized:
                    self._reply(401, {"WWW-Authenticate": 'Basic realm="git"', "Content-Type": "text/plain"},
                                b"authentication required\n")
                    return
                parts = urlsplit(self.path)
                env = {
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "GIT_PROJECT_ROOT": str(owner.project_root),
                    "GIT_HTTP_EXPORT_ALL": "1",
                    "PATH_INFO": parts.path,
                    "QUERY_STRING": parts.query,
                    "REQUEST_METHOD": self.command,
                    "CONTENT_TYPE": self.headers.get("Content-Type", ""),
                    "CONTENT_LENGTH": str(len(body)),
                    "REMOTE_USER": "tester",
                    "REMOTE_ADDR": "127.0.0.1",
                    "GIT_CONFIG_NOSYSTEM": "1",
                }
                if self.headers.get("Git-Protocol"):
                    env["GIT_PROTOCOL"] = self.headers["Git-Protocol"]
                if self.headers.get("Content-Encoding"):
                    env["HTTP_CONTENT_ENCODING"] = self.headers["Content-Encoding"]
                result = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True)
                raw = result.stdout
                head, sep, payload = raw.partition(b"\r\n\r\n")
                if not sep:
                    head, sep, payload = raw.partition(b"\n\n")
                status, headers = 200, {}
                for line in head.decode("latin-1").splitlines():
                    key, _, value = line.partition(":")
                    if key.lower() == "status":
                        status = int(value.strip().split()[0])
                    elif key:
                        headers[key.strip()] = value.strip()
                self._reply(status, headers, payload)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def git_env(self, base: str = PUBLIC_BASE) -> dict[str, str]:
        """Environment variables that send `base` URLs to this server (git's environment config)."""
        return {"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": f"url.{self.url}.insteadOf",
                "GIT_CONFIG_VALUE_0": base}

    def create_repository(self, owner_repo: str, work: Path, *, branches: dict[str, dict[str, str]]) -> Path:
        """A bare repository with one commit per branch holding `files`; returns its path."""
        bare = self.project_root / f"{owner_repo}.git"
        bare.parent.mkdir(parents=True, exist_ok=True)
        git("init", "--bare", "--quiet", "-b", "main", str(bare))
        work.mkdir(parents=True, exist_ok=True)
        git("init", "--quiet", "-b", "main", str(work))
        first = True
        for branch, files in branches.items():
            if not first:
                git("checkout", "--quiet", "-b", branch, "main", cwd=work)
            for name, content in files.items():
                path = work / name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_text(content)
            git("add", "-A", cwd=work)
            git("commit", "--quiet", "-m", f"{branch} commit", cwd=work)
            git("push", "--quiet", str(bare), f"{branch}:{branch}", cwd=work)
            if first:
                first = False
        git("checkout", "--quiet", "main", cwd=work)
        return bare
