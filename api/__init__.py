"""The REST API and the GitHub webhook receiver (Flask, served by gunicorn)."""

from api.app import create_app

__all__ = ["create_app"]
