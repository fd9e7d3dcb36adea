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
