"""The Flask application factory."""

from __future__ import annotations

from typing import Any

from flask import Flask

from orchestrator.settings import Settings, get_settings
from orchestrator.store import TaskStore, connect


class Resources:
    """What the views need, created lazily on first use (never at import)."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._store: TaskStore | None = None

    def store(self) -> TaskStore:
        if self._store is None:
            self._store = TaskStore(connect(self.settings.redis_url, timeout=2.0),
                                    history_limit=self.settings.status_history_limit)
        return self._store


def create_app(settings: Settings | None = None, **config: Any) -> Flask:
    """Build the API app; `settings` defaults to the environment's."""
    settings = settings or get_settings()
    app = Flask(__name__)
    app.config.update(JSON_SORT_KEYS=False, **config)
    app.extensions["orchestrator"] = Resources(settings)

    from api.errors import register_error_handlers
    from api.health import bp as health_bp
    from api.webhooks import bp as webhooks_bp

    register_error_handlers(app)
    app.register_blueprint(health_bp)
    app.register_blueprint(webhooks_bp)
    return app
