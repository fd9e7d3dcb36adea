"""gunicorn settings: `gunicorn -c python:api.gunicorn_conf api.wsgi:app`.

Sized for the machine: gthread workers (a followed log stream holds a thread,
not a whole worker, and the worker's heartbeat goes on while it streams). The
console's live status streams hold no thread at all: the worker class hands
them to its process's live hub (api/live_hub.py), so open pages never count
against `threads` or `worker_connections`.
Everything can be changed with GUNICORN_* variables. Logs are JSON on stdout
(one line per request, written by the app with its request id), so gunicorn's
own access log is off to avoid a second line per request.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import shutil
import tempfile
from typing import Any


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    return int(raw) if raw else default


_cpus = multiprocessing.cpu_count()

bind = os.environ.get("GUNICORN_BIND", "0.0.0.0:8080")
# gthread, with request heads and bodies read in the worker's event loop under read
# deadlines (GUNICORN_HEADER_TIMEOUT, GUNICORN_BODY_TIMEOUT): a slow client holds no thread.
worker_class = "api.gunicorn_worker.ReadAheadWorker"
# Requests are short and mostly wait on Redis; two processes per core keep the
# cores busy while one waits, threads cover the waiting and the log streams.
workers = _int("GUNICORN_WORKERS", max(2, _cpus * 2))
threads = _int("GUNICORN_THREADS", 4)
# How many connections one worker holds at once (in progress, waiting for a thread,
# or idle keep-alive, which gunicorn caps at this minus `threads`). gunicorn's
# default, 1000, lets a busy worker accept connections it cannot serve yet while
# another worker idles; they queue behind its threads (or behind followed log
# streams, indefinitely). Twice the threads leaves the rest in the listen
# backlog, where whichever worker frees up first takes them: the webhook bench's
# p99 fell by about a third for the receiver and the bare endpoint alike.
worker_connections = _int("GUNICORN_WORKER_CONNECTIONS", threads * 2)
backlog = 2048
timeout = _int("GUNICORN_TIMEOUT", 30)  # a silent worker is restarted after this
graceful_timeout = _int("GUNICORN_GRACEFUL_TIMEOUT", 30)
keepalive = _int("GUNICORN_KEEPALIVE", 5)
max_requests = _int("GUNICORN_MAX_REQUESTS", 0)
max_requests_jitter = max_requests // 10
limit_request_line = 8190
limit_request_fields = 100
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")

accesslog = None
errorlog = "-"
loglevel = os.environ.get("ORCHESTRATOR_LOG_LEVEL", "info").lower()
logconfig_dict: dict[str, Any] = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"json": {"()": "orchestrator.logs.JsonFormatter"}},
    "handlers": {
        "stdout": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stdout"},
        "stderr": {"class": "logging.StreamHandler", "formatter": "json", "stream": "ext://sys.stderr"},
    },
    "loggers": {
        "orchestrator": {"handlers": ["stdout"], "level": loglevel.upper(), "propagate": False},
        "gunicorn.error": {"handlers": ["stderr"], "level": loglevel.upper(), "propagate": False},
    },
    "root": {"handlers": ["stderr"], "level": "WARNING"},
}

# Several workers: Prometheus metrics are merged through files in one directory,
# which must exist before any worker imports prometheus_client.
_own_metrics_dir = not os.environ.get("PROMETHEUS_MULTIPROC_DIR")
if _own_metrics_dir:
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="orchestrator-metrics-")


def post_worker_init(worker: Any) -> None:
    """Scrub configured secrets from every log line of the worker (the app has read its settings)."""
    import logging

    from orchestrator.logs import SecretFilter
    from orchestrator.settings import get_settings

    # Every handler here writes JSON lines (orchestrator.logs.JsonFormatter), which show
    # no caller, thread or process: don't collect them for each record (the logging
    # HOWTO's "Optimization" switches; the caller lookup walks the stack every line).
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    # A followed log holds a thread while it streams: half the threads at most, so
    # the rest answer /health, /ready and webhooks whatever clients follow (api/log_follow.py).
    from api.log_follow import limit_per_process

    limit_per_process(worker.cfg.threads // 2)
    secret_filter = SecretFilter(get_settings().secret_values())
    for name in ("orchestrator", "gunicorn.error", ""):
        for handler in logging.getLogger(name).handlers:
            handler.addFilter(secret_filter)
    # Everything the app imported lives as long as the worker: take it out of the
    # garbage collector's view, so a full collection (which stops every thread of
    # the worker) walks only what requests created, not the whole import graph.
    gc.freeze()


def child_exit(server: Any, worker: Any) -> None:
    """Drop a dead worker's live gauges from the merged metrics."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def on_exit(server: Any) -> None:
    """Remove the metrics directory this configuration created."""
    if _own_metrics_dir:
        shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)
