"""WSGI entry point: `gunicorn api.wsgi:app`."""

from __future__ import annotations

from orchestrator.settings import ConfigError

try:
    from api.app import create_app

    app = create_app()
except ConfigError as exc:
    # One readable line instead of a traceback, then a non-zero exit.
    raise SystemExit(f"orchestrator: configuration error: {exc}") from None
