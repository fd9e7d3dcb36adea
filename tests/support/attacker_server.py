"""An HTTP server standing in for an attacker's host: it records every request and asks for credentials.

It answers 401 with a Basic challenge, so a git that would hand the token to
this host does send it, and the test sees the `Authorization` header arrive.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class AttackerServer:
    """Records (method, path, Authorization header) of every request it gets.

    With `redirect_to`, it answers every request with a redirect there instead
    (a repository host that sends git on to another host).
    """

    def __init__(self, redirect_to: str = "") -> None:
        self.redirect_to = redirect_to
        self.requests: list[tuple[str, str, str]] = []
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    @property
    def authorizations(self) -> list[str]:
        return [auth for _, _, auth in self.requests if auth]

    def start(self) -> None:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def _record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                owner.requests.append((self.command, self.path, self.headers.get("Authorization", "")))
                body = b"who are you?\n"
                if owner.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", owner.redirect_to.rstrip("/") + self.path)
                else:
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="attacker"')
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _record

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
