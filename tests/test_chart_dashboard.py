"""The chart's Grafana dashboard: every query names only metrics the code exports.

The exported names come from the code itself: the registry of the workers and
the watcher (orchestrator.metrics.registry) and what the API's /metrics answers,
never from a list written here.
"""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from api.app import create_app
from orchestrator.metrics import registry
from orchestrator.settings import Settings
from orchestrator.store import TaskStore
from tests.support.chart import CHART_DIR

DASHBOARD = CHART_DIR / "dashboards" / "orchestrator.json"
METRIC = re.compile(r"\b(orchestrator_[a-z0-9_]+)\b")


def _queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


@pytest.fixture
def exported(settings: Settings, store: TaskStore) -> set[str]:
    names = registry.exported_names()
    client = create_app(settings).test_client()
    client.get("/health")  # the request metrics have a sample once a request was served
    text = client.get("/metrics").get_data(as_text=True)
    for family in text_string_to_metric_families(text):
        names.add(family.name)
        names.update(sample.name for sample in family.samples)
    return names


def test_every_query_names_only_exported_metrics(exported: set[str]) -> None:
    queries = _queries()
    assert queries
    unknown = {(title, name) for title, expr in queries for name in METRIC.findall(expr) if name not in exported}
    assert not unknown, unknown
    assert all(METRIC.search(expr) for _, expr in queries), "a query that names none of our metrics"


def test_the_dashboard_shows_what_the_issue_asks_for() -> None:
    exprs = " ".join(expr for _, expr in _queries())
    for wanted in (
        "orchestrator_runs_ended_total",
        "orchestrator_queue_depth",
        "orchestrator_agent_cost_usd_total",
        "orchestrator_run_duration_seconds_bucket",
        "orchestrator_tasks",
    ):
        assert wanted in exprs, wanted
    assert "histogram_quantile(0.95" in exprs


def test_the_chart_ships_the_dashboard_as_a_config_map() -> None:
    helm = pytest.importorskip("helm_python")
    from tests.support.chart import render

    with helm.Chart.load(CHART_DIR) as chart:
        rendered = render(chart, {"grafanaDashboard": {"enabled": True}})
        off = render(chart, {})
    config = rendered.named("ConfigMap", "orchestrator-dashboard")
    assert config["metadata"]["labels"]["grafana_dashboard"] == "1"
    shipped: dict[str, Any] = json.loads(config["data"]["orchestrator.json"])
    assert shipped == json.loads(DASHBOARD.read_text())
    assert not [c for c in off.of_kind("ConfigMap") if c["metadata"]["name"] == "orchestrator-dashboard"]
