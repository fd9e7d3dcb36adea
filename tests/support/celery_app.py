"""Point this process's Celery app (the sender side) at the tests' Redis."""

from __future__ import annotations


def point_celery_at(url: str) -> None:
    """`workers.app.app` read the broker URL when first imported; send to `url` from now on."""
    from kombu import pools

    from workers.app import app

    app.conf.broker_url = url
    app.conf.result_backend = url
    pools.reset()  # kombu keeps connection pools per URL, process-wide
    app._pool = None
    app.amqp._producer_pool = None
    from orchestrator import dispatch
    from orchestrator.celery_dispatch import CeleryDispatcher

    # Steps go through that app (the settings fixture's default would send to the test's other Redis).
    dispatch.install(CeleryDispatcher(app))  # uninstalled after the test (tests/conftest.py)
