"""Liveness and readiness: open to everyone, no authentication."""

from __future__ import annotations

from datetime import UTC, datetime

from flask import Blueprint, Response, current_app, jsonify

from orchestrator import __version__

bp = Blueprint("health", __name__)


@bp.get("/health")
@bp.get("/api/v1/health")
def health() -> Response:
    """Liveness: the process answers; touches no dependency."""
    return jsonify({"status": "ok", "version": __version__, "timestamp": datetime.now(UTC).isoformat()})


@bp.get("/ready")
def ready() -> tuple[Response, int]:
    """Readiness: 200 only while Redis answers."""
    if current_app.extensions["orchestrator"].store().ping():
        return jsonify({"status": "ready"}), 200
    return jsonify({"status": "unavailable", "reason": "redis does not answer"}), 503
