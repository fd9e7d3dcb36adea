"""The Flask application factory."""

from __future__ import annotations

from typing import Any

from flask import Flask

from orchestrator import dispatch
from orchestrator.dispatch import Dispatcher
from orchestrator.runtime import new_store
from orchestrator.settings import Settings, get_settings
from orchestrator.store import TaskStore


class Resources:
    """What the views need, created lazily on first use (never at import)."""

    def __init__(self, settings: Settings, dispatcher: Dispatcher | None = None):
        self.settings = settings
        self._dispatcher = dispatcher
        self._store: TaskStore | None = None
        self._runner: Any = None

    def dispatcher(self) -> Dispatcher:
        """What queues steps: the one given to create_app, else this process's (`orchestrator.dispatch.current`)."""
        if self._dispatcher is None:
            self._dispatcher = dispatch.current()
        return self._dispatcher

    def store(self) -> TaskStore:
        if self._store is None:
            self._store = new_store(self.settings, timeout=2.0)
        return self._store

    def runner(self) -> Any:
        """The runner that holds run logs (a Kubernetes or local runner), built on first use."""
        if self._runner is None:
            from orchestrator.runners import get_runner

            self._runner = get_runner(self.settings)
        return self._runner


def create_app(settings: Settings | None = None, *, dispatcher: Dispatcher | None = None, **config: Any) -> Flask:
    """Build the API app; `settings` defaults to the environment's.

    `dispatcher` queues the steps the API sends (`api.wsgi` passes the
    Celery-backed one); without one, this process's (`orchestrator.dispatch.current`).
    """
    settings = settings or get_settings()
    app = Flask(__name__)
    app.config.update(JSON_SORT_KEYS=False, **config)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.extensions["orchestrator"] = Resources(settings, dispatcher)

    from api.access_log import init_access_log
    from api.console import init_console
    from api.errors import register_error_handlers
    from api.health import bp as health_bp
    from api.metrics import bp as metrics_bp
    from api.metrics import init_metrics
    from api.openapi import bp as openapi_bp
    from api.tasks import bp as tasks_bp
    from api.usage import bp as usage_bp
    from api.webhooks import bp as webhooks_bp

    register_error_handlers(app)
    init_metrics(app)
    init_access_log(app)
    app.register_blueprint(health_bp)
    app.register_blueprint(metrics_bp)
    app.register_blueprint(openapi_bp)
    app.register_blueprint(tasks_bp)
    app.register_blueprint(usage_bp)
    app.register_blueprint(webhooks_bp)
    init_console(app)  # the web console under /
    return app
