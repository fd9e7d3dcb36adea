"""The chart's Grafana dashboard: every query names only metrics the code exports.

The exported names come from the code itself: the registry of the workers and
the watcher (orchestrator.metrics.registry) and what the API's /metrics answers,
never from a list written here.
"""

from __future__ import annotations

import dataclasses
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
LABELS_BY = re.compile(r"\bby \(([^)]*)\)")
LABEL_MATCH = re.compile(r"[{,]\s*([a-z_]+)\s*[=!~]")


def _queries() -> list[tuple[str, str]]:
    dashboard = json.loads(DASHBOARD.read_text())
    return [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]


@pytest.fixture
def exported(settings: Settings, store: TaskStore) -> dict[str, set[str]]:
    """Every exported series name -> the labels it carries."""
    names: dict[str, set[str]] = {}
    metrics = registry.get()
    for field in dataclasses.fields(metrics):
        metric = getattr(metrics, field.name)
        if field.name == "registry":
            continue
        for family in metric.describe():
            for name in registry.exported_names() & _series_of(family.name):
                names[name] = set(metric._labelnames) | ({"le"} if name.endswith("_bucket") else set())
    client = create_app(settings).test_client()
    client.get("/health")  # the request metrics have a sample once a request was served
    store.redis.lpush("deploy", "m")  # and the queue depths one once a queue holds a message
    store.set_gauge("workspace_disk_bytes:shop", 1)  # and the disk use one once a sweep measured it
    text = client.get("/metrics").get_data(as_text=True)
    for family in text_string_to_metric_families(text):
        names.setdefault(family.name, set())
        for sample in family.samples:
            names.setdefault(sample.name, set()).update(sample.labels)
    return names


def _series_of(family: str) -> set[str]:
    return {family} | {family + suffix for suffix in ("_total", "_created", "_bucket", "_count", "_sum")}


def test_every_query_names_only_exported_metrics_and_their_labels(exported: dict[str, set[str]]) -> None:
    queries = _queries()
    assert queries
    unknown = {(title, name) for title, expr in queries for name in METRIC.findall(expr) if name not in exported}
    assert not unknown, unknown
    assert all(METRIC.search(expr) for _, expr in queries), "a query that names none of our metrics"
    # Labels grouped by or matched on are labels of the metrics the query names.
    for title, expr in queries:
        carried = set().union(*(exported[name] for name in METRIC.findall(expr)))
        used = {label.strip() for group in LABELS_BY.findall(expr) for label in group.split(",")}
        used |= set(LABEL_MATCH.findall(expr))
        assert used <= carried, (title, used - carried)


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
