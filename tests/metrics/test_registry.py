"""What the code records: counted where it happens, once, with bounded labels."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client as k8s

from orchestrator.github import handlers
from orchestrator.kube.client import KubeClient, TransientKubeError
from orchestrator.metrics import registry
from orchestrator.settings import Settings
from orchestrator.store import TaskStore
from orchestrator.usage.stream import parse_lines
from tests.support.kube_emulator import Fault, KubeEmulator
from tests.usage.test_record import claude_settings, run_scenario, sent  # noqa: F401 (fixtures)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "claude_stream"


def value(name: str, **labels: str) -> float:
    return registry.get().registry.get_sample_value(name, labels) or 0.0


def test_every_metric_is_exported_even_before_anything_is_recorded() -> None:
    names = registry.exported_names()
    for name in (
        "orchestrator_run_duration_seconds_bucket",
        "orchestrator_runs_ended_total",
        "orchestrator_run_retries_total",
        "orchestrator_steps_total",
        "orchestrator_webhook_deliveries_total",
        "orchestrator_kube_api_errors_total",
        "orchestrator_agent_tokens_total",
        "orchestrator_agent_cost_usd_total",
        "orchestrator_run_stalls_total",
        "orchestrator_rate_limit_pauses_total",
        "orchestrator_budget_holds_total",
        "orchestrator_watcher_leader",
        "orchestrator_reconcile_duration_seconds_count",
    ):
        assert name in names, name


def test_usage_counts_tokens_and_cost_per_model() -> None:
    usage = parse_lines((FIXTURES / "success.jsonl").read_text().splitlines()).usage()
    assert usage is not None
    before = value(
        "orchestrator_agent_tokens_total",
        service="billing",
        agent="claude",
        model="claude-haiku-4-5-20251001",
        kind="output",
    )
    cost = value(
        "orchestrator_agent_cost_usd_total", service="billing", agent="claude", model="claude-sonnet-4-5-20250929"
    )
    registry.agent_usage("billing", "claude", usage)
    assert (
        value(
            "orchestrator_agent_tokens_total",
            service="billing",
            agent="claude",
            model="claude-haiku-4-5-20251001",
            kind="output",
        )
        == before + 100
    )
    assert value(
        "orchestrator_agent_cost_usd_total", service="billing", agent="claude", model="claude-sonnet-4-5-20250929"
    ) == pytest.approx(cost + 0.1200567)


def test_a_finished_run_counts_its_end_duration_and_usage_once(
    store: TaskStore,
    claude_settings: Settings,
    sent,  # noqa: F811
) -> None:
    ended = value("orchestrator_runs_ended_total", outcome="no_changes", reason="none")
    runs = value("orchestrator_run_duration_seconds_count", service="billing", agent="claude", outcome="no_changes")
    tokens = value(
        "orchestrator_agent_tokens_total",
        service="billing",
        agent="claude",
        model="claude-sonnet-4-5-20250929",
        kind="output",
    )
    done, run = run_scenario(store, claude_settings, sent, "success")
    assert value("orchestrator_runs_ended_total", outcome="no_changes", reason="none") == ended + 1
    assert (
        value("orchestrator_run_duration_seconds_count", service="billing", agent="claude", outcome="no_changes")
        == runs + 1
    )
    assert (
        value(
            "orchestrator_agent_tokens_total",
            service="billing",
            agent="claude",
            model="claude-sonnet-4-5-20250929",
            kind="output",
        )
        == tokens + 2211
    )
    # A redelivered finish counts nothing again.
    from orchestrator.coordination import outcome

    outcome.finish(store, claude_settings, run.run_id)
    assert value("orchestrator_runs_ended_total", outcome="no_changes", reason="none") == ended + 1
    assert (
        value(
            "orchestrator_agent_tokens_total",
            service="billing",
            agent="claude",
            model="claude-sonnet-4-5-20250929",
            kind="output",
        )
        == tokens + 2211
    )


def test_a_model_rate_limit_is_a_pause_not_a_retry(store: TaskStore, claude_settings: Settings, sent) -> None:  # noqa: F811
    pauses = value("orchestrator_rate_limit_pauses_total", agent="claude")
    ended = value("orchestrator_runs_ended_total", outcome="failed", reason="rate_limit")
    retries = sum(value("orchestrator_run_retries_total", cause=c) for c in ("rate_limit", "other", "platform"))
    run_scenario(store, claude_settings, sent, "rate_limited")
    assert value("orchestrator_rate_limit_pauses_total", agent="claude") == pauses + 1
    assert value("orchestrator_runs_ended_total", outcome="failed", reason="rate_limit") == ended + 1
    assert sum(value("orchestrator_run_retries_total", cause=c) for c in ("rate_limit", "other", "platform")) == retries


def test_webhook_deliveries_by_event_and_decision(store: TaskStore, settings: Settings) -> None:
    ignored = value("orchestrator_webhook_deliveries_total", event="ping", decision="ignored")
    duplicate = value("orchestrator_webhook_deliveries_total", event="ping", decision="duplicate")
    handlers.handle_event(store, settings, "metrics-d1", "ping", payload={"zen": "Keep it logically awesome."})
    handlers.handle_event(store, settings, "metrics-d1", "ping", payload={"zen": "Keep it logically awesome."})
    assert value("orchestrator_webhook_deliveries_total", event="ping", decision="ignored") == ignored + 1
    assert value("orchestrator_webhook_deliveries_total", event="ping", decision="duplicate") == duplicate + 1


def test_kubernetes_errors_count_every_attempt_by_kind(kube_client: KubeClient, emulator: KubeEmulator) -> None:
    throttled = value("orchestrator_kube_api_errors_total", kind="throttled")
    server = value("orchestrator_kube_api_errors_total", kind="server_error")
    emulator.faults.append(Fault(status=429, times=1))
    emulator.faults.append(Fault(status=503, times=100))
    with pytest.raises(TransientKubeError):
        kube_client.list_jobs("app=x")
    assert value("orchestrator_kube_api_errors_total", kind="throttled") == throttled + 1
    assert value("orchestrator_kube_api_errors_total", kind="server_error") == server + kube_client.retries


def test_a_client_that_cannot_connect_counts_connection_errors() -> None:
    configuration = k8s.Configuration()
    configuration.host = "http://127.0.0.1:1"
    configuration.retries = False
    client = KubeClient(k8s.ApiClient(configuration), "default", timeout=1, retries=1, sleep=lambda s: None)
    before = value("orchestrator_kube_api_errors_total", kind="connection")
    with pytest.raises(TransientKubeError):
        client.get_job("nope")
    assert value("orchestrator_kube_api_errors_total", kind="connection") == before + 2


def test_recording_never_fails_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken() -> registry.Metrics:
        raise RuntimeError("no metrics today")

    monkeypatch.setattr(registry, "get", broken)
    registry.run_ended("billing", "claude", "failed", "stalled: no output", 3.0)
    registry.step_done("orchestrator.admit", "SUCCESS")


def test_the_api_counts_what_it_decided_about_each_signed_delivery(github_settings: Settings) -> None:
    import json

    from prometheus_client.parser import text_string_to_metric_families

    from api.app import create_app
    from tests.support.github import load, signed_headers

    client = create_app(github_settings).test_client()

    def post(payload: str, event: str, delivery: str | None = None) -> None:
        body = json.dumps(load(payload)).encode()
        client.post("/webhooks/github", data=body, headers=signed_headers(body, event, delivery))

    before = {
        d: value("orchestrator_webhook_receipts_total", event=e, decision=d)
        for e, d in (("ping", "pong"), ("star", "ignored"), ("issues", "queued"), ("issues", "duplicate"))
    }
    post("ping/payload.json", "ping")
    post("star/created.payload.json", "star")
    post("issues/labeled.payload.json", "issues", "metrics-delivery-1")
    post("issues/labeled.payload.json", "issues", "metrics-delivery-1")
    assert value("orchestrator_webhook_receipts_total", event="ping", decision="pong") == before["pong"] + 1
    assert value("orchestrator_webhook_receipts_total", event="star", decision="ignored") == before["ignored"] + 1
    assert value("orchestrator_webhook_receipts_total", event="issues", decision="queued") == before["queued"] + 1
    assert value("orchestrator_webhook_receipts_total", event="issues", decision="duplicate") == before["duplicate"] + 1
    # The API's /metrics shows them (one process here; gunicorn's merge them through its directory).
    text = client.get("/metrics").get_data(as_text=True)
    assert "orchestrator_webhook_receipts" in {family.name for family in text_string_to_metric_families(text)}


def test_a_budget_hold_is_counted_when_the_task_is_held_not_while_it_stays_held(
    store: TaskStore, settings: Settings
) -> None:
    from orchestrator.coordination import admission
    from tests.support.runs import Sent
    from tests.usage.test_budget import SERVICE, spend, submit

    Sent().install()
    limited = settings.replace(service_daily_budgets={SERVICE: 1.0})
    spend(store, 1.5)
    held = value("orchestrator_budget_holds_total", service=SERVICE)
    submit(store, 1)
    assert admission.admit(store, limited, SERVICE, 1) == "Blocked"
    assert admission.reevaluate(store, limited, SERVICE, 1) == "Blocked"
    assert value("orchestrator_budget_holds_total", service=SERVICE) == held + 1


def test_a_stall_is_counted_with_its_end_and_its_retry(
    store: TaskStore, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import os
    import time

    from orchestrator import runs
    from orchestrator.coordination import outcome
    from orchestrator.runners import get_runner
    from orchestrator.watcher import Watcher
    from orchestrator.workspace.layout import checkout_dir
    from tests.support.runs import Sent, launching_task
    from tests.support.wait import wait_for

    sent = Sent().install()
    monkeypatch.setattr(outcome, "notify", lambda *a: None)
    quiet = settings.replace(
        stall_seconds=60, retry_backoff_seconds=1, local_agent_command=("/bin/sh", "-c", "echo started; sleep 30")
    )
    stalls = value("orchestrator_run_stalls_total", service="billing")
    ended = value("orchestrator_runs_ended_total", outcome="failed", reason="stalled")
    retries = value("orchestrator_run_retries_total", cause="stalled")
    run_id = launching_task(store)
    checkout_dir(quiet.workspace_root, "billing", 1).mkdir(parents=True, exist_ok=True)
    runner = get_runner(quiet)
    runs.launch(store, quiet, runner, run_id, send=sent)
    watcher = Watcher(store, quiet, runner, send=sent)
    log = runner.run_dir(run_id) / "output.log"
    wait_for(lambda: watcher.reconcile() is not None and log.exists() and log.stat().st_size > 0)
    old = time.time() - 120
    os.utime(log, (old, old))
    store.update_run(run_id, started_at=old)
    assert run_id in watcher.reconcile().finished
    assert outcome.finish(store, quiet, run_id) == "Queued"
    assert value("orchestrator_run_stalls_total", service="billing") == stalls + 1
    assert value("orchestrator_runs_ended_total", outcome="failed", reason="stalled") == ended + 1
    assert value("orchestrator_run_retries_total", cause="stalled") == retries + 1
