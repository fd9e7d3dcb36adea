"""Tracing: off by default with nothing of ours importing OpenTelemetry; each step finds its task's trace."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator import operations, tracing
from orchestrator.settings import ConfigError, Settings
from orchestrator.steps import Step
from orchestrator.store import TaskStore
from tests.support.runs import Sent, launching_task

ROOT = Path(__file__).resolve().parent.parent
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"

# Every entry point imported and every setup call made, as a process would with the endpoint unset.
# With BLOCK=1, OpenTelemetry cannot be imported at all, as when the otel extra is not installed.
ENTRY_POINTS = """
import json, os, sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "opentelemetry":
            raise ImportError(f"{name} is not installed here")
        return None

if os.environ.get("BLOCK") == "1":
    sys.meta_path.insert(0, Block())
import api.wsgi, workers.app, workers.steps
from orchestrator.cli import watcher
from orchestrator import tracing
from orchestrator.settings import get_settings
results = [tracing.setup(get_settings(), "api", flask_app=api.wsgi.app),
           tracing.setup(get_settings(), "worker", worker=True)]
workers.app.trace_worker_process()
workers.app.trace_worker(sender=None)
workers.app.flush_traces()
print(json.dumps({"setup": results, "traceparent": tracing.current_traceparent(),
                  "loaded": sorted(m for m in sys.modules if m.startswith("opentelemetry"))}))
"""


def entry_points(tmp_path: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "OTEL_"))}
    env.update(
        PYTHONPATH=str(ROOT),
        ORCHESTRATOR_REDIS_URL="redis://127.0.0.1:1/0",
        ORCHESTRATOR_DATA_DIR=str(tmp_path / "data"),
        **extra,
    )
    done = subprocess.run(
        [sys.executable, "-c", ENTRY_POINTS], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_off_by_default_it_needs_no_opentelemetry(tmp_path: Path) -> None:
    assert entry_points(tmp_path, BLOCK="1") == {"setup": [False, False], "traceparent": "", "loaded": []}


def test_off_by_default_nothing_of_ours_loads_opentelemetry(tmp_path: Path) -> None:
    seen = entry_points(tmp_path)
    assert seen["setup"] == [False, False] and seen["traceparent"] == ""
    # redis-py 8 imports the OpenTelemetry API itself when it is installed (for its own opt-in metrics);
    # no tracer, exporter or instrumentation is ever loaded.
    ours = ("opentelemetry.sdk.trace", "opentelemetry.exporter", "opentelemetry.instrumentation")
    assert [m for m in seen["loaded"] if m.startswith(ours)] == []


def test_the_endpoint_and_protocol_are_checked(settings: Settings) -> None:
    parsed = Settings.from_env({"ORCHESTRATOR_OTEL_EXPORTER_OTLP_ENDPOINT": "https://otlp.example.com:4318/"})
    assert parsed.otel_endpoint == "https://otlp.example.com:4318" and parsed.otel_protocol == "http/protobuf"
    for bad in ("collector:4318", "ftp://collector", "http://collector:4318?x=1"):
        with pytest.raises(ConfigError, match="ORCHESTRATOR_OTEL_EXPORTER_OTLP_ENDPOINT"):
            Settings.from_env({"ORCHESTRATOR_OTEL_EXPORTER_OTLP_ENDPOINT": bad})
    with pytest.raises(ConfigError, match="ORCHESTRATOR_OTEL_EXPORTER_OTLP_PROTOCOL"):
        Settings.from_env({"ORCHESTRATOR_OTEL_EXPORTER_OTLP_PROTOCOL": "thrift"})


def test_headers_are_parsed_like_otel_exporter_otlp_headers() -> None:
    assert tracing.parse_headers("Authorization=Bearer%20abc, X-Scope-OrgID=team=a,") == {
        "authorization": "Bearer abc",
        "x-scope-orgid": "team=a",
    }
    assert tracing.parse_headers("") == {}
    with pytest.raises(ConfigError, match="ORCHESTRATOR_OTEL_EXPORTER_OTLP_HEADERS"):
        tracing.parse_headers("no-equals-sign")


def test_the_headers_are_a_secret(settings: Settings) -> None:
    configured = settings.replace(otel_headers="Authorization=Bearer otlp-s3cret")
    assert "Authorization=Bearer otlp-s3cret" in configured.secret_values()
    assert "otlp-s3cret" not in repr(configured)


def test_a_submission_stores_the_current_trace_on_the_task(store: TaskStore, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tracing, "current_traceparent", lambda: TRACEPARENT)
    spec = {"id": 3, "service_name": "billing", "agent_name": "claude", "title": "t"}
    operations.submit_task(store, spec, actor="pm", dispatcher=Sent())
    assert store.get_task("billing", 3).trace_parent == TRACEPARENT


def test_each_step_of_a_task_finds_the_task_trace(store: TaskStore) -> None:
    run_id = launching_task(store, "billing", 4)
    assert tracing.task_trace_parent(store, Step.LAUNCH_RUN.value, [run_id]) == ""  # none stored: none joined
    store.update_task("billing", 4, trace_parent=TRACEPARENT)
    for step in (Step.PREPARE_WORKSPACE, Step.LAUNCH_RUN, Step.FINISH_RUN, Step.DELIVER_RUN, Step.CANCEL_RUN):
        assert tracing.task_trace_parent(store, step.value, [run_id]) == TRACEPARENT
    for step in (Step.ADMIT, Step.REPORT_STATUS):
        assert tracing.task_trace_parent(store, step.value, ["billing", 4]) == TRACEPARENT
    # Steps that act for no single task start traces of their own.
    assert tracing.task_trace_parent(store, Step.CLEANUP_WORKSPACE.value, ["billing", 4]) == ""
    assert tracing.task_trace_parent(store, Step.HANDLE_EVENT.value, ["delivery-1", "issues"]) == ""
    assert tracing.task_trace_parent(store, Step.LAUNCH_RUN.value, ["no-such-run"]) == ""


def test_a_task_may_not_redirect_the_agent_telemetry() -> None:
    from orchestrator import agent_env

    for name in ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_LOG_USER_PROMPTS", "TRACEPARENT", "tracestate"):
        assert agent_env.never_allowed(name), name


def test_step_messages_carry_the_sender_trace_only_when_tracing_is_on(
    store: TaskStore, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from orchestrator import dispatch
    from tests.support.api import route_steps_to

    route_steps_to(settings, monkeypatch)
    dispatch.send(Step.HANDLE_EVENT, "delivery-1", "issues")
    monkeypatch.setattr(tracing, "current_traceparent", lambda: TRACEPARENT)
    dispatch.send(Step.HANDLE_EVENT, "delivery-2", "issues")
    dispatch.send(Step.HANDLE_EVENT, "delivery-3", "issues", countdown=5)  # built by Celery itself
    with_eta, plain, off = (json.loads(raw) for raw in store.redis.lrange("events", 0, -1))  # LPUSH: newest first
    assert "traceparent" not in off["headers"]
    assert plain["headers"]["traceparent"] == with_eta["headers"]["traceparent"] == TRACEPARENT


def test_probes_and_scrapes_are_not_traced_but_every_other_path_is() -> None:
    from opentelemetry.util.http import ExcludeList

    excluded = ExcludeList(tracing.EXCLUDED_URLS.split(","))
    for url in ("http://h:8080/health", "http://h/api/v1/health?x=1", "http://h/ready", "https://h/metrics"):
        assert excluded.url_disabled(url), url
    for url in (
        "http://h/api/v1/pm/tasks",
        "http://h/api/v1/pm/tasks/health/1",
        "http://h/api/v1/services/metrics/usage",
    ):
        assert not excluded.url_disabled(url), url


def test_a_lone_client_call_starts_no_trace_but_requests_and_steps_do() -> None:
    from opentelemetry.sdk.trace.sampling import Decision
    from opentelemetry.trace import SpanKind

    sampler = tracing._sampler()
    assert sampler.should_sample(None, 1, "BRPOP", kind=SpanKind.CLIENT).decision == Decision.DROP
    for kind in (SpanKind.SERVER, SpanKind.CONSUMER, SpanKind.INTERNAL):
        assert sampler.should_sample(None, 1, "root", kind=kind).decision == Decision.RECORD_AND_SAMPLE


def test_a_real_worker_joins_the_sender_trace_or_else_the_task_trace(
    store: TaskStore, settings: Settings, monkeypatch: pytest.MonkeyPatch, worker_factory
) -> None:
    from orchestrator import dispatch
    from tests.support.api import route_steps_to
    from tests.support.otlp_receiver import OtlpReceiver
    from tests.support.wait import wait_for

    sender = "00-11111111111111111111111111111111-2222222222222222-01"
    receiver = OtlpReceiver().start()
    try:
        route_steps_to(settings, monkeypatch)
        # The solo pool: the worker traces in its own process (worker_init), not in a prefork child.
        worker_factory(
            queues=("events", "coordination"),
            pool="solo",
            env={"ORCHESTRATOR_OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url, "OTEL_BSP_SCHEDULE_DELAY": "100"},
        )
        store.create_task(
            service="billing",
            task_id=5,
            agent="claude",
            trace_parent=TRACEPARENT,
            spec={"id": 5, "service_name": "billing", "agent_name": "claude", "title": "t"},
        )
        monkeypatch.setattr(tracing, "current_traceparent", lambda: sender)
        dispatch.send(Step.PROBE)  # acts for no task: the message's header is its parent
        dispatch.send(Step.REPORT_STATUS, "billing", 5)  # a task's step: the task's trace wins over the header

        def both() -> dict | None:
            found = {s.name: s for s in receiver.received()}
            names = (f"run/{Step.PROBE.value}", f"run/{Step.REPORT_STATUS.value}")
            return found if all(name in found for name in names) else None

        spans = wait_for(both, "the worker's step spans", timeout=30)
    finally:
        receiver.stop()
    probe, report = spans[f"run/{Step.PROBE.value}"], spans[f"run/{Step.REPORT_STATUS.value}"]
    assert (probe.trace_id, probe.parent_span_id) == (sender.split("-")[1], sender.split("-")[2])
    assert (report.trace_id, report.parent_span_id) == (TRACEPARENT.split("-")[1], TRACEPARENT.split("-")[2])
    assert probe.service == report.service == "orchestrator-worker"


# Tracing on in a process of its own (it sets process-wide state), spans kept in memory.
TRACED = """
import json, logging
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from orchestrator import logs, tracing
from orchestrator.settings import Settings

exporter = InMemorySpanExporter()
settings = Settings.from_env({"ORCHESTRATOR_OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"})
assert tracing.setup(settings, "api", exporter=exporter) and tracing.enabled()
assert tracing.setup(settings, "api", exporter=exporter)  # a second call changes nothing
logs.configure("INFO")
with trace.get_tracer("test").start_as_current_span("request", kind=trace.SpanKind.SERVER) as span:
    logging.getLogger("orchestrator.test").info("inside")
    traceparent = tracing.current_traceparent()
logging.getLogger("orchestrator.test").info("outside")
tracing.shutdown()
context = span.get_span_context()
print(json.dumps({"traceparent": traceparent, "trace_id": format(context.trace_id, "032x"),
                  "span_id": format(context.span_id, "016x"),
                  "spans": [s.name for s in exporter.get_finished_spans()]}))
"""


def test_tracing_on_names_the_current_span_and_puts_its_ids_on_log_lines(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ORCHESTRATOR_", "OTEL_"))}
    env.update(PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, "-c", TRACED], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["traceparent"].split("-")[1:3] == [seen["trace_id"], seen["span_id"]]
    assert seen["spans"] == ["request"]
    lines = [json.loads(line) for line in done.stderr.splitlines() if line.startswith("{")]
    inside, outside = (next(line for line in lines if line.get("message") == m) for m in ("inside", "outside"))
    assert (inside["trace_id"], inside["span_id"]) == (seen["trace_id"], seen["span_id"])
    assert "trace_id" not in outside
