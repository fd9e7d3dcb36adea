"""The Celery application's configuration: queues, routes and delivery guarantees, read from settings.

The core defines the steps and their queues (orchestrator/steps.py), so it also
says how Celery carries them. Building an app connects to nothing. The workers
build theirs with the steps registered (workers/app.py); the API builds one
only to send steps through (api/wsgi.py), with the same routes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from celery import Celery
from kombu import Queue

from orchestrator.runtime import redis_target
from orchestrator.settings import Settings, get_settings
from orchestrator.steps import DEFAULT_QUEUE, QUEUES, routes


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery settings derived from ours; pure, so tests can inspect it."""
    # Redis redelivers a message that was taken but not acknowledged once the
    # visibility timeout passes. With acks_late a step is acknowledged only when
    # it ends, so the timeout must outlast the longest step (its hard time
    # limit), or a slow but healthy step would be delivered a second time.
    target = redis_target(settings)
    # With Sentinels: kombu's and Celery's `sentinel://` transports, told the
    # master's name, ask the Sentinels again after a failover.
    transport_options = {"visibility_timeout": settings.broker_visibility_timeout, **target.transport_options()}
    return {
        "broker_url": target.broker_url(),
        "result_backend": target.broker_url(),
        "broker_transport_options": transport_options,
        "result_backend_transport_options": transport_options,
        "broker_connection_retry_on_startup": True,
        "broker_connection_retry": True,
        "broker_connection_max_retries": None,
        # A step whose connection dropped is cancelled and redelivered rather
        # than acknowledged on a channel that no longer exists.
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        # Every step is idempotent, so redelivery after a crash is safe and
        # preferable to losing the step.
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_ignore_result": True,
        "result_expires": 3600,
        "task_soft_time_limit": settings.step_soft_time_limit,
        "task_time_limit": settings.step_time_limit,
        "task_queues": [Queue(name) for name in QUEUES],
        # Each step's queue comes from orchestrator.steps.Step; a name missing there goes to
        # `coordination`, the queue every worker group is expected to serve.
        "task_default_queue": DEFAULT_QUEUE,
        "task_routes": {name: {"queue": queue} for name, queue in routes().items()},
        # Flower shows every step, not only the workers: each step's received,
        # started and succeeded/failed events come from the worker. No "sent"
        # event: it would be a second publish per step (and
        # orchestrator.celery_dispatch publishes without send_task anyway).
        "worker_send_task_events": True,
        "task_send_sent_event": False,
        "worker_hijack_root_logger": False,
        "timezone": "UTC",
        "enable_utc": True,
    }


def create_celery(settings: Settings | None = None, *, include: Sequence[str] = ()) -> Celery:
    """Build the Celery app from settings (the environment's when not given); `include`: modules of steps."""
    settings = settings or get_settings()
    celery = Celery("orchestrator", include=list(include))
    celery.conf.update(celery_config(settings))
    return celery
