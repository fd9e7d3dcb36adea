"""Web console sessions: which signed-in sessions are still open, so a signed-out cookie is refused when replayed.

The cookie itself is signed by the API (api/console/session.py) and names a
random session id; the store keeps a digest of that id for as long as the
session may live. Signing out deletes it: the cookie stays validly signed,
but names a session that no longer exists.
"""

from __future__ import annotations

import hashlib

from orchestrator.store.base import StoreBase
from orchestrator.store.keys import console_session_key


def _digest(session_id: str) -> str:
    # Only a digest is stored: whoever reads Redis learns no id a cookie could carry.
    return hashlib.sha256(session_id.encode()).hexdigest()


class ConsoleSessions(StoreBase):
    """Open console sessions."""

    def open_console_session(self, session_id: str, ttl_seconds: int, owner: str = "") -> None:
        """Record a new session for `ttl_seconds` (its lifetime)."""
        self._safe(self.redis.set, console_session_key(_digest(session_id)), owner or "1", ex=max(1, int(ttl_seconds)))

    def console_session_open(self, session_id: str) -> bool:
        """True while the session was opened and neither closed nor expired."""
        return bool(session_id) and bool(self._safe(self.redis.exists, console_session_key(_digest(session_id))))

    def console_sessions_open(self, session_ids: list[str]) -> list[bool]:
        """For each session id, whether it is still open (one round trip)."""
        pipe = self.redis.pipeline(transaction=False)
        for session_id in session_ids:
            pipe.exists(console_session_key(_digest(session_id)))
        return [bool(n) for n in self._safe(pipe.execute)] if session_ids else []

    def close_console_session(self, session_id: str) -> None:
        """End the session everywhere: a replayed cookie naming it is refused from now on."""
        if session_id:
            self._safe(self.redis.delete, console_session_key(_digest(session_id)))
