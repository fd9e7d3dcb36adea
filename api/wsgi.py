"""WSGI entry point: `gunicorn api.wsgi:app`.

The API's composition root: the one module of api/ that imports the worker
layer, to build the Celery-backed dispatcher (workers/dispatcher.py) and hand
it to the app factory. Everything else in api/ and orchestrator/ knows only
the `Dispatcher` protocol (orchestrator/dispatch.py), as tests/test_layers.py
checks. Building it connects to nothing.
"""

from __future__ import annotations

from orchestrator.settings import ConfigError

try:
    from api.app import create_app
    from workers.dispatcher import default as celery_dispatcher

    app = create_app(dispatcher=celery_dispatcher())
except ConfigError as exc:
    # One readable line instead of a traceback, then a non-zero exit.
    raise SystemExit(f"orchestrator: configuration error: {exc}") from None
