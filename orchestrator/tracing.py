"""Tracing of the orchestrator itself with OpenTelemetry, off unless ORCHESTRATOR_OTEL_EXPORTER_OTLP_ENDPOINT is set.

Each process's entry point calls `setup` (api/wsgi.py, workers/app.py in each
worker process, the watcher command). With the endpoint empty it returns at
once and OpenTelemetry is never imported, so tracing costs nothing when off;
the packages are the optional `otel` extra.

One trace per task. A submission (an API request, or the step that handles
a GitHub delivery) stores its W3C `traceparent` on the task record. Step
messages are mostly pushed by the store's own Lua scripts, and the watcher
sends steps outside any request, so a header on the message cannot carry
the task's trace everywhere: instead a worker looks the task's traceparent
up before each step of a task runs (`task_trace_parent`) and hands it to
Celery's instrumentation as the step's parent. Retries, re-drives and
watcher-initiated steps join the same trace that way. Messages carry the
sender's traceparent as well (orchestrator/celery_dispatch.py), which is what
a step of no single task (a GitHub delivery's) joins. An agent run gets the
launch step's context as `TRACEPARENT`, so its own spans join it too.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

from orchestrator.settings import ConfigError, Settings
from orchestrator.steps import Step

if TYPE_CHECKING:
    from orchestrator.store import TaskStore

log = logging.getLogger("orchestrator.tracing")

# Steps whose first two arguments are (service, task id), and steps whose first is a run id.
TASK_STEPS = frozenset({Step.ADMIT.value, Step.REPORT_STATUS.value})
RUN_STEPS = frozenset(
    {
        Step.PREPARE_WORKSPACE.value,
        Step.LAUNCH_RUN.value,
        Step.DELIVER_RUN.value,
        Step.FINISH_RUN.value,
        Step.CANCEL_RUN.value,
    }
)
STEPS_OF_A_TASK = TASK_STEPS | RUN_STEPS
# Probes and metrics scrapes would be most of the API's traces and tell nothing. The instrumentation
# searches these in the whole URL: anchored, so that no task or service path that contains them is left out.
UNTRACED_PATHS = ("/health", "/api/v1/health", "/ready", "/metrics")
EXCLUDED_URLS = ",".join(rf"^[a-z]+://[^/]+{path}(\?.*)?$" for path in UNTRACED_PATHS)
EXTRA_HINT = "install the optional packages: pip install 'orchestrator[otel]'"

_lock = threading.Lock()
_provider: Any = None  # the process's TracerProvider once tracing is on
_worker_hooked = False


def enabled() -> bool:
    """True once `setup` turned tracing on in this process."""
    return _provider is not None


def parse_headers(raw: str) -> dict[str, str]:
    """`name=value` pairs separated by commas, values percent-decoded (OTEL_EXPORTER_OTLP_HEADERS' format)."""
    headers: dict[str, str] = {}
    for item in raw.split(","):
        if not item.strip():
            continue
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ConfigError("ORCHESTRATOR_OTEL_EXPORTER_OTLP_HEADERS: expected name=value pairs separated by commas")
        headers[name.strip().lower()] = unquote(value.strip())
    return headers


def require(settings: Settings) -> None:
    """Raise ConfigError when tracing is configured but its packages are missing (checked at start, not mid-run)."""
    if not settings.otel_endpoint:
        return
    if importlib.util.find_spec("opentelemetry") is None or importlib.util.find_spec("opentelemetry.sdk") is None:
        raise ConfigError(f"ORCHESTRATOR_OTEL_EXPORTER_OTLP_ENDPOINT is set: {EXTRA_HINT}")
    parse_headers(settings.otel_headers)


def setup(
    settings: Settings, component: str, *, flask_app: Any = None, worker: bool = False, exporter: Any = None
) -> bool:
    """Turn tracing on for this process (once) when the endpoint is set; False, importing nothing, when it is not.

    `component` names the process (`api`, `worker`, `watcher`) in `service.name`.
    `flask_app` is instrumented; `worker` joins each step to its task's trace
    and instruments Celery. `exporter` replaces the OTLP one (tests).
    """
    global _provider, _worker_hooked
    if not settings.otel_endpoint:
        return False
    require(settings)
    with _lock:
        if _provider is None:
            _provider = _build_provider(settings, component, exporter)
            _instrument_clients(_provider)
            _correlate_logs()
        if worker and not _worker_hooked:
            _hook_worker(_provider)
            _worker_hooked = True
    if flask_app is not None:
        from opentelemetry.instrumentation.flask import FlaskInstrumentor

        FlaskInstrumentor.instrument_app(flask_app, tracer_provider=_provider, excluded_urls=EXCLUDED_URLS)
    return True


def _build_provider(settings: Settings, component: str, exporter: Any) -> Any:
    from opentelemetry import trace
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    resource = Resource.create({"service.name": f"orchestrator-{component}", "service.namespace": "orchestrator"})
    provider = TracerProvider(resource=resource, sampler=_sampler())
    provider.add_span_processor(BatchSpanProcessor(exporter or _exporter(settings)))
    trace.set_tracer_provider(provider)
    return provider


def _sampler() -> Any:
    """Every trace a request or a step starts; no trace that is a lone client call.

    Celery polling its queues and the watcher's loop make Redis calls outside
    any request or step, several a second per process: each would otherwise
    be a trace of one span.
    """
    from opentelemetry.sdk.trace.sampling import Decision, ParentBased, Sampler, SamplingResult
    from opentelemetry.trace import SpanKind

    class NoLoneClientCalls(Sampler):
        def should_sample(
            self,
            parent_context: Any,
            trace_id: int,
            name: str,
            kind: Any = None,
            attributes: Any = None,
            links: Any = None,
            trace_state: Any = None,
        ) -> SamplingResult:
            if kind == SpanKind.CLIENT:
                return SamplingResult(Decision.DROP)
            return SamplingResult(Decision.RECORD_AND_SAMPLE, attributes)

        def get_description(self) -> str:
            return "NoLoneClientCalls"

    return ParentBased(root=NoLoneClientCalls())


def _exporter(settings: Settings) -> Any:
    headers = parse_headers(settings.otel_headers)
    if settings.otel_protocol == "grpc":
        try:
            from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter as GrpcExporter
        except ImportError:
            raise ConfigError(
                "ORCHESTRATOR_OTEL_EXPORTER_OTLP_PROTOCOL: grpc needs opentelemetry-exporter-otlp-proto-grpc"
            ) from None
        return GrpcExporter(
            endpoint=settings.otel_endpoint, headers=headers, insecure=settings.otel_endpoint.startswith("http://")
        )
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    # The endpoint is a base URL, as OTEL_EXPORTER_OTLP_ENDPOINT is for the agents: the signal's path is added.
    return OTLPSpanExporter(endpoint=f"{settings.otel_endpoint}/v1/traces", headers=headers)


def _instrument_clients(provider: Any) -> None:
    from opentelemetry.instrumentation.redis import RedisInstrumentor
    from opentelemetry.instrumentation.requests import RequestsInstrumentor

    RedisInstrumentor().instrument(tracer_provider=provider)
    RequestsInstrumentor().instrument(tracer_provider=provider)


def _correlate_logs() -> None:
    """Every log record made inside a span carries `trace_id` and `span_id` (JSON lines show them), so a
    log line leads to its trace. At the record's creation: handlers are installed later, and by others."""
    from opentelemetry import trace

    make_record = logging.getLogRecordFactory()

    def with_trace_ids(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(*args, **kwargs)
        context = trace.get_current_span().get_span_context()
        if context.is_valid:
            record.trace_id = format(context.trace_id, "032x")
            record.span_id = format(context.span_id, "016x")
        return record

    logging.setLogRecordFactory(with_trace_ids)


def _hook_worker(provider: Any) -> None:
    from celery import signals
    from opentelemetry.instrumentation.celery import CeleryInstrumentor

    # Connected before the instrumentation's own handler, which Celery calls after it: by then
    # the step's request names its task's trace as the parent.
    signals.task_prerun.connect(_join_task_trace, weak=False)
    CeleryInstrumentor().instrument(tracer_provider=provider)


def _join_task_trace(task: Any = None, args: Sequence[Any] | None = None, **_: Any) -> None:
    if task is None or task.name not in STEPS_OF_A_TASK:
        return
    from orchestrator.runtime import get_store

    try:
        parent = task_trace_parent(get_store(), task.name, list(args or ()))
    except Exception as exc:  # tracing never fails a step: the step's span starts a trace of its own
        log.debug("no trace context for %s: %s", task.name, exc)
        return
    if parent:
        task.request.traceparent = parent
        task.request.tracestate = None


def task_trace_parent(store: TaskStore, step: str, args: Sequence[Any]) -> str:
    """The stored traceparent of the task a step acts for; "" when it acts for none or none was stored."""
    if step in RUN_STEPS and args:
        _, task, _ = store.get_run_with_task(str(args[0]))
    elif step in TASK_STEPS and len(args) >= 2:
        task = store.get_task(str(args[0]), int(args[1]))
    else:
        return ""
    return task.trace_parent if task is not None else ""


def current_traceparent() -> str:
    """The W3C traceparent of the current span ("" with tracing off or outside any span)."""
    if _provider is None:
        return ""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier.get("traceparent", "")


def shutdown() -> None:
    """Flush and stop the exporter (end of a process)."""
    if _provider is not None:
        _provider.shutdown()
