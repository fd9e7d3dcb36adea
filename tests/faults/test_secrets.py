"""Configured secrets stay out of Job specs, the chart's non-Secret objects and every process's log.

The end-to-end fault suites scan each process's log, every response body and
every file they produced (tests/support/faults.py: assert_no_secret_leaked);
these are the pieces that do not need a running stack.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from orchestrator import logs
from orchestrator.kube import jobs
from orchestrator.runners.base import AgentSpec, RunRequest
from orchestrator.settings import Settings
from orchestrator.store import run_id_for
from tests.support.faults import ALL_SECRETS, API_TOKEN, SECOND_API_TOKEN, SECRETS, leaks_in_text


def secret_settings(**extra: str) -> Settings:
    return Settings.from_env({**SECRETS, "ORCHESTRATOR_API_TOKENS": f"{API_TOKEN},{SECOND_API_TOKEN}",
                              "ORCHESTRATOR_RUNNER": "kubernetes", **extra})


def test_every_configured_secret_is_known_as_one() -> None:
    assert set(secret_settings().secret_values()) == set(ALL_SECRETS)


@pytest.mark.parametrize("stage", [None, "review"])
def test_no_secret_in_a_job_spec(stage: str | None) -> None:
    settings = secret_settings()
    request = RunRequest(
        run_id=run_id_for("billing", 7, 1, 1, stage), service="billing", task_id=7, version=1, attempt=1,
        agent=AgentSpec(name="claude", image="agent:1", command=("claude", "-p"), model="claude-sonnet-4-5"),
        workspace_dir=Path("/data/billing"), working_directory="", stage=stage, env={"MODE": "fast"},
        timeout_seconds=600, submitted_by="api:1234abcd", origin="", output_dir=".orchestrator/runs/x",
        contract_env={"ORCHESTRATOR_STAGE_PROMPT": "review it"},
    )
    job = jobs.build_job(request, settings)
    assert not leaks_in_text(json.dumps(job))
    env = {e["name"]: e for c in job["spec"]["template"]["spec"]["containers"] for e in c.get("env", [])}
    for name in ("ANTHROPIC_API_KEY", "GITHUB_TOKEN"):
        if name in env:
            assert "value" not in env[name] and "secretKeyRef" in env[name]["valueFrom"], env[name]


def test_no_secret_in_a_rendered_config_map_or_any_non_secret_object() -> None:
    helm = pytest.importorskip("helm_python")
    from tests.support.chart import CHART_DIR, render

    values = {"secrets": {"anthropicApiKey": SECRETS["ANTHROPIC_API_KEY"], "githubToken": SECRETS["GITHUB_TOKEN"],
                          "githubWebhookSecret": SECRETS["GITHUB_WEBHOOK_SECRET"],
                          "apiTokens": f"{API_TOKEN},{SECOND_API_TOKEN}"}}
    with helm.Chart.load(CHART_DIR) as chart:
        rendered = render(chart, values)
    assert rendered.of_kind("ConfigMap")
    for obj in rendered.objects:
        if obj["kind"] == "Secret":
            continue  # the one place they belong (base64 in data)
        assert not leaks_in_text(json.dumps(obj)), f"{obj['kind']}/{obj['metadata']['name']}"
    assert not leaks_in_text(rendered.notes)


def test_worker_log_handlers_scrub_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    from orchestrator.settings import reset_settings_cache
    from workers.app import scrub_worker_logs

    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("ORCHESTRATOR_API_TOKENS", API_TOKEN)
    reset_settings_cache()
    try:
        stream = io.StringIO()
        logger = logging.getLogger("test.faults.worker")
        handler = logging.StreamHandler(stream)
        logger.addHandler(handler)
        logger.propagate = False
        scrub_worker_logs(logger=logger)
        scrub_worker_logs(logger=logger)  # Celery may send the signal twice: one filter only
        assert len(handler.filters) == 1
        logger.warning("git said: https://x:%s@github.com failed with %s", SECRETS["GITHUB_TOKEN"], API_TOKEN)
        assert not leaks_in_text(stream.getvalue()) and logs.REDACTED in stream.getvalue()
    finally:
        logger.removeHandler(handler)
        reset_settings_cache()
