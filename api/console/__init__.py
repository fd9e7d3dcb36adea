"""The web console: server-rendered pages for PMs and ops under `/` (issue #20)."""

from __future__ import annotations

import re

from flask import Flask, redirect, request, url_for
from werkzeug.wrappers import Response

from api.console.session import init_session
from api.console.views import bp
from api.tasks import PREFIX

_API_TASK = re.compile(rf"^{re.escape(PREFIX)}/([^/]+)/([0-9]+)/?$")


def _browser_to_console() -> Response | None:
    """A browser opening a task's API URL (as `task submit` prints it) gets the task's console page.

    Only a GET without credentials that prefers HTML: scripts and the command
    line (bearer token, JSON) see the API exactly as before.
    """
    if request.method != "GET" or "Authorization" in request.headers:
        return None
    match = _API_TASK.match(request.path)
    if not match:
        return None
    best = request.accept_mimetypes.best_match(["application/json", "text/html"])
    if best != "text/html" or request.accept_mimetypes["text/html"] <= request.accept_mimetypes["application/json"]:
        return None
    return redirect(url_for("console.task", service=match.group(1), task_id=int(match.group(2))), 303)


def init_console(app: Flask) -> None:
    """Register the console's session handling, its pages and the browser redirect of task URLs."""
    init_session(app, app.extensions["orchestrator"].settings)
    app.before_request(_browser_to_console)
    app.register_blueprint(bp)
