"""Console sign-in: a signed session cookie that names which API token signed in, never the token.

The cookie is Flask's signed session (itsdangerous), HttpOnly, SameSite=Strict,
Secure whenever the request arrived over HTTPS (gunicorn sets the scheme from
X-Forwarded-Proto for the proxies in FORWARDED_ALLOW_IPS). It carries an HMAC
of the token under the session secret: every request checks that HMAC against
the tokens configured now, so removing a token from ORCHESTRATOR_API_TOKENS
ends its sessions. The lifetime counts from sign-in.

A signed cookie stays valid wherever a copy of it went, so each sign-in also
gets a random session id, recorded in the store for the session's lifetime
(orchestrator/store/sessions.py) and deleted on sign-out: a signed-out cookie,
replayed, names a session that is gone and is refused.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import time
from datetime import timedelta

from flask import Flask, Request, abort, current_app, g, request, session
from flask.sessions import SecureCookieSessionInterface

from api.auth import token_accepted
from orchestrator.settings import Settings
from orchestrator.store import TaskStore

log = logging.getLogger("orchestrator.api")

COOKIE_NAME = "orchestrator_session"
CSRF_FIELD = "csrf_token"


class ConsoleSessionInterface(SecureCookieSessionInterface):
    """Flask's signed cookie session, Secure exactly when the request came over HTTPS."""

    def get_cookie_secure(self, app: Flask) -> bool:
        return bool(request) and request.is_secure


def init_session(app: Flask, settings: Settings) -> None:
    """Configure the app's session cookie from the settings."""
    secret = settings.session_secret
    if not secret:
        secret = secrets.token_urlsafe(32)
        log.warning(
            "ORCHESTRATOR_SESSION_SECRET is not set: web console sessions use a random key of this "
            "process and end when it restarts; with several API processes a sign-in works in one only"
        )
    app.secret_key = secret
    app.session_interface = ConsoleSessionInterface()
    app.permanent_session_lifetime = timedelta(seconds=settings.session_lifetime_seconds)
    app.config.update(
        SESSION_COOKIE_NAME=COOKIE_NAME,
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_PATH="/",
        SESSION_REFRESH_EACH_REQUEST=False,  # the lifetime counts from sign-in
    )


def _settings() -> Settings:
    return current_app.extensions["orchestrator"].settings


def _store() -> TaskStore:
    return current_app.extensions["orchestrator"].store()


def token_id(token: str) -> str:
    """Which token signed in: an HMAC under the session secret (the cookie is signed, not encrypted)."""
    key = str(current_app.secret_key).encode()
    return hmac.new(key, token.encode("utf-8", "surrogateescape"), hashlib.sha256).hexdigest()


def actor_for(token: str) -> str:
    """The history's actor, the same digest the API writes (`api:xxxxxxxx`), marked as the console's."""
    return "console:" + hashlib.sha256(token.encode("utf-8", "surrogateescape")).hexdigest()[:8]


def sign_in(presented: str) -> bool:
    """Start a session when `presented` is a configured API token."""
    presented = presented.strip()
    if not token_accepted(presented, _settings().api_tokens):
        return False
    session_id = secrets.token_urlsafe(24)
    _store().open_console_session(session_id, _settings().session_lifetime_seconds)
    session.clear()
    session.permanent = True
    session["tid"] = token_id(presented)
    session["iat"] = int(time.time())
    session["sid"] = session_id
    session[CSRF_FIELD] = secrets.token_urlsafe(32)
    return True


def sign_out() -> None:
    """End the session in the store too, so the cookie is refused wherever a copy of it is replayed."""
    session_id = session.get("sid")
    if isinstance(session_id, str) and session_id:
        _store().close_console_session(session_id)
    session.clear()
    g.pop("console_signed_in", None)


def session_id() -> str:
    """The signed-in session's id (as recorded in the store), '' when none."""
    sid = session.get("sid")
    return sid if isinstance(sid, str) else ""


def forget() -> None:
    """Drop the cookie of a session that is not signed in (nothing to end in the store)."""
    session.clear()


def signed_in() -> bool:
    """True while the session is young enough, still open in the store, and its token still configured."""
    if "console_signed_in" not in g:
        g.console_signed_in = _signed_in()
    return bool(g.console_signed_in)


def _signed_in() -> bool:
    g.console_actor = g.console_owner = ""
    tid, iat, sid = session.get("tid"), session.get("iat"), session.get("sid")
    if not isinstance(tid, str) or not isinstance(iat, int) or not isinstance(sid, str):
        return False
    if time.time() - iat > _settings().session_lifetime_seconds:
        return False
    if not _store().console_session_open(sid):  # signed out (here or in another tab), or expired
        return False
    matched = ""
    for token in _settings().api_tokens:  # every token compared: timing says nothing about which
        if hmac.compare_digest(tid, token_id(token)):
            matched = token
    g.console_actor = actor_for(matched) if matched else ""
    # Whose log follows these are in the store: the digest the API uses for the same token,
    # so a token's follows from the console and from the command line share one cap.
    g.console_owner = hashlib.sha256(matched.encode("utf-8", "surrogateescape")).hexdigest()[:32] if matched else ""
    return bool(matched)


def actor() -> str:
    """Who acts, for the history: derived from the token the session names (not taken from the cookie)."""
    if "console_actor" not in g:
        signed_in()
    return g.console_actor or "console"


def ensure_csrf_token() -> None:
    """A CSRF token before sign-in too, so the sign-in form is checked like every other."""
    if not session.get(CSRF_FIELD):
        session[CSRF_FIELD] = secrets.token_urlsafe(32)


def token_owner() -> str:
    """The signed-in token's owner digest (as api.tasks._token_owner computes it from a bearer token)."""
    if "console_owner" not in g:
        signed_in()
    return str(g.console_owner)


def csrf_token() -> str:
    return str(session.get(CSRF_FIELD, ""))


def check_csrf(req: Request | None = None) -> None:
    """Refuse (400) a state-changing request whose form does not carry this session's CSRF token."""
    req = req or request
    sent = req.form.get(CSRF_FIELD, "") or req.headers.get("X-CSRF-Token", "")
    expected = csrf_token()
    if not expected or not hmac.compare_digest(sent.encode(), expected.encode()):
        abort(400, description="the form is stale or was not sent from this console; reload the page and try again")
