"""WSGI entry point: `gunicorn api.wsgi:app`.

The API's composition root: it builds the Celery-backed dispatcher over a
Celery app configured like the workers' (orchestrator/celery_app.py) and
hands it to the app factory. Nothing in api/ or orchestrator/ imports the
worker layer, as tests/test_layers.py checks. Building it connects to nothing.
"""

from __future__ import annotations

from orchestrator.settings import ConfigError

try:
    from api.app import create_app
    from orchestrator import tracing
    from orchestrator.celery_dispatch import default as celery_dispatcher
    from orchestrator.settings import get_settings

    app = create_app(dispatcher=celery_dispatcher())
    # Off (and nothing of OpenTelemetry imported) unless ORCHESTRATOR_OTEL_EXPORTER_OTLP_ENDPOINT is set.
    tracing.setup(get_settings(), "api", flask_app=app)
except ConfigError as exc:
    # One readable line instead of a traceback, then a non-zero exit.
    raise SystemExit(f"orchestrator: configuration error: {exc}") from None
