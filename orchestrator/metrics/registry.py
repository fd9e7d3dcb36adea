"""Every metric the core records, and the calls that record them.

The workers and the watcher serve them (server.py); the API serves those its
own processes record (the webhook receipts) with its request metrics.

The metrics are built on first use, not at import: prometheus-client picks
its storage when it is first imported (in memory, or files shared by a
worker's pool processes when PROMETHEUS_MULTIPROC_DIR is set), and a Celery
worker sets that directory only once its modules are imported (server.py).

Recording never fails the caller: a metric is worth less than the step it counts.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from orchestrator.metrics.labels import bounded, reason_class
from orchestrator.steps import Step

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

log = logging.getLogger("orchestrator.metrics")

# Agent runs last from seconds to the hard limit (6 h by default).
RUN_BUCKETS = (10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 21600.0)
RECONCILE_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
TOKEN_KINDS = {
    "input_tokens": "input",
    "output_tokens": "output",
    "cache_read_input_tokens": "cache_read",
    "cache_creation_input_tokens": "cache_creation",
}
STEP_NAMES = frozenset(step.value for step in Step)


@dataclass(frozen=True)
class Metrics:
    """The metric objects of this process, in one registry."""

    registry: CollectorRegistry
    run_duration: Histogram
    runs_ended: Counter
    run_retries: Counter
    steps: Counter
    webhook_deliveries: Counter
    webhook_receipts: Counter
    kube_errors: Counter
    agent_tokens: Counter
    agent_cost: Counter
    stalls: Counter
    rate_limit_pauses: Counter
    budget_holds: Counter
    watcher_leader: Gauge
    reconcile_duration: Histogram
    runs_lost: Counter


def _build() -> Metrics:
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    registry = CollectorRegistry(auto_describe=True)

    def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
        return Counter(name, doc, list(labels), registry=registry)

    return Metrics(
        registry=registry,
        run_duration=Histogram(
            "orchestrator_run_duration_seconds",
            "Run duration from start to end, by service, agent and outcome.",
            ["service", "agent", "outcome"],
            buckets=RUN_BUCKETS,
            registry=registry,
        ),
        runs_ended=counter(
            "orchestrator_runs_ended", "Runs ended, by outcome and class of reason.", ("outcome", "reason")
        ),
        run_retries=counter("orchestrator_run_retries", "Runs tried again, by the class of what failed.", ("cause",)),
        steps=counter(
            "orchestrator_steps", "Pipeline steps run by the workers, by step and result.", ("step", "result")
        ),
        webhook_deliveries=counter(
            "orchestrator_webhook_deliveries",
            "GitHub deliveries handled by the workers, by event and decision.",
            ("event", "decision"),
        ),
        webhook_receipts=counter(
            "orchestrator_webhook_receipts",
            "Signed GitHub deliveries the API answered, by event and decision (pong, ignored, duplicate, queued).",
            ("event", "decision"),
        ),
        kube_errors=counter(
            "orchestrator_kube_api_errors", "Failed Kubernetes API requests (each attempt), by kind.", ("kind",)
        ),
        agent_tokens=counter(
            "orchestrator_agent_tokens",
            "Tokens agents used, by service, agent, model and kind (input, output, cache_read, cache_creation).",
            ("service", "agent", "model", "kind"),
        ),
        agent_cost=counter(
            "orchestrator_agent_cost_usd",
            "What agents cost in US dollars, by service, agent and model.",
            ("service", "agent", "model"),
        ),
        stalls=counter(
            "orchestrator_run_stalls", "Runs stopped for printing nothing too long, by service.", ("service",)
        ),
        rate_limit_pauses=counter(
            "orchestrator_rate_limit_pauses", "Runs that ended on the model API's rate limit, by agent.", ("agent",)
        ),
        budget_holds=counter(
            "orchestrator_budget_holds", "Tasks held Blocked because a daily budget is spent, by service.", ("service",)
        ),
        watcher_leader=Gauge(
            "orchestrator_watcher_leader",
            "1 while this watcher holds the lease and tracks the runs.",
            registry=registry,
            multiprocess_mode="livemax",
        ),
        reconcile_duration=Histogram(
            "orchestrator_reconcile_duration_seconds",
            "Duration of one reconcile of the watcher.",
            buckets=RECONCILE_BUCKETS,
            registry=registry,
        ),
        runs_lost=counter("orchestrator_runs_lost", "Runs whose Job or process disappeared before their end was seen."),
    )


_lock = threading.Lock()
_metrics: Metrics | None = None


def get() -> Metrics:
    """This process's metrics, built on first use (once, whichever thread comes first)."""
    global _metrics
    if _metrics is None:
        with _lock:
            if _metrics is None:
                _metrics = _build()
    return _metrics


def built() -> bool:
    """True once this process's metrics exist (their storage is then chosen)."""
    return _metrics is not None


def exported_names() -> set[str]:
    """The names of every series these metrics export (`_total`, `_bucket`... included)."""
    names: set[str] = set()
    for family in get().registry.collect():
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
        names.update(family.name + suffix for suffix in _SUFFIXES.get(family.type, ()))
    return names


_SUFFIXES = {
    "counter": ("_total", "_created"),
    "histogram": ("_bucket", "_count", "_sum", "_created"),
    "gauge": (),
}


def _safely(record: Callable[..., None]) -> Callable[..., None]:
    @functools.wraps(record)
    def recording(*args: Any, **kwargs: Any) -> None:
        try:
            record(*args, **kwargs)
        except Exception:
            log.debug("metric %s not recorded", record.__name__, exc_info=True)

    return recording


# Recording ---------------------------------------------------------------------------


@_safely
def run_ended(
    service: str, agent: str, outcome: str, reason: str, seconds: float | None, *, retryable: bool = False
) -> None:
    """One run ended with `outcome` (changes, no_changes, failed, cancelled) for `reason`."""
    m = get()
    outcome = bounded("outcome", outcome)
    m.runs_ended.labels(outcome, reason_class(reason, retryable=retryable)).inc()
    if seconds is not None and seconds >= 0:
        m.run_duration.labels(bounded("service", service), bounded("agent", agent), outcome).observe(seconds)


@_safely
def run_retried(reason: str, *, retryable: bool = True) -> None:
    """A failed run is tried again."""
    get().run_retries.labels(reason_class(reason, retryable=retryable)).inc()


@_safely
def step_done(step: str, result: str) -> None:
    """A worker ran a step: `result` is success, failure or retry."""
    get().steps.labels(step if step in STEP_NAMES else "other", bounded("result", result.lower())).inc()


@_safely
def webhook_delivery(event: str, decision: str) -> None:
    """A worker handled a GitHub delivery: changed, ignored, duplicate or expired."""
    get().webhook_deliveries.labels(bounded("event", event), bounded("decision", decision)).inc()


@_safely
def webhook_received(event: str, decision: str) -> None:
    """The API answered a signed GitHub delivery: queued for a worker, or decided at once."""
    get().webhook_receipts.labels(bounded("event", event), bounded("decision", decision)).inc()


@_safely
def kube_error(kind: str) -> None:
    """A Kubernetes API request failed (each attempt counts, retried or not)."""
    get().kube_errors.labels(bounded("kube_kind", kind)).inc()


@_safely
def agent_usage(service: str, agent: str, usage: Mapping[str, Any]) -> None:
    """Add a run's usage (counted once per run by the store) to the token and cost counters.

    Per model when the stream gave per-model figures, else under the run's model.
    """
    m = get()
    service, agent = bounded("service", service), bounded("agent", agent)
    models = usage.get("models") or {}
    if not isinstance(models, Mapping) or not models:
        models = {usage.get("model") or "": usage}
    for model, figures in models.items():
        if not isinstance(figures, Mapping):
            continue
        name = bounded("model", model)
        for key, kind in TOKEN_KINDS.items():
            amount = figures.get(key)
            if isinstance(amount, (int, float)) and amount > 0:
                m.agent_tokens.labels(service, agent, name, kind).inc(amount)
        cost = figures.get("cost_usd")
        if isinstance(cost, (int, float)) and cost > 0:
            m.agent_cost.labels(service, agent, name).inc(cost)


@_safely
def run_stalled(service: str) -> None:
    get().stalls.labels(bounded("service", service)).inc()


@_safely
def rate_limit_paused(agent: str) -> None:
    get().rate_limit_pauses.labels(bounded("agent", agent)).inc()


@_safely
def budget_held(service: str) -> None:
    get().budget_holds.labels(bounded("service", service)).inc()


@_safely
def watcher_leader(leading: bool) -> None:
    get().watcher_leader.set(1 if leading else 0)


@_safely
def reconciled(seconds: float) -> None:
    get().reconcile_duration.observe(seconds)


@_safely
def run_lost() -> None:
    get().runs_lost.inc()
