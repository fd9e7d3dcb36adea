"""charts/redis-values.yaml: the Bitnami Redis release the chart connects to by default."""

from __future__ import annotations

import yaml

from tests.support.chart import CHART_DIR

REDIS_VALUES = CHART_DIR.parent / "redis-values.yaml"


def test_auth_from_the_secret_the_chart_reads() -> None:
    redis = yaml.safe_load(REDIS_VALUES.read_text())
    chart = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["redis"]
    assert redis["auth"]["enabled"] is True
    assert redis["auth"]["existingSecret"] == chart["auth"]["existingSecret"]
    assert redis["auth"]["existingSecretPasswordKey"] == chart["auth"]["existingSecretPasswordKey"]
    assert "password" not in redis["auth"]
    # A Bitnami release named `redis` in standalone mode serves `redis-master`.
    assert redis["architecture"] == "standalone" and chart["host"] == "redis-master"


def test_aof_persistence_and_resources() -> None:
    redis = yaml.safe_load(REDIS_VALUES.read_text())
    config = redis["commonConfiguration"].splitlines()
    assert "appendonly yes" in config
    assert "maxmemory-policy noeviction" in config
    assert redis["master"]["persistence"]["enabled"] is True
    assert redis["master"]["resources"]["limits"] and redis["master"]["resources"]["requests"]


SENTINEL_VALUES = CHART_DIR.parent / "redis-sentinel-values.yaml"


def test_the_sentinel_variant_matches_the_charts_sentinel_defaults() -> None:
    sentinel = yaml.safe_load(SENTINEL_VALUES.read_text())
    chart = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["redis"]
    assert sentinel["architecture"] == "replication" and sentinel["sentinel"]["enabled"] is True
    assert sentinel["sentinel"]["masterSet"] == chart["sentinel"]["masterSet"]
    # The chart names one Sentinel per Bitnami node pod (redis-node-N.redis-headless).
    nodes = sentinel["replica"]["replicaCount"]
    assert chart["sentinel"]["hosts"] == [f"redis-node-{i}.redis-headless:26379" for i in range(nodes)]
    # A failover needs a quorum below the node count, and a replica left to hold writes.
    assert 2 <= sentinel["sentinel"]["quorum"] < nodes
    # The chart's default (a minute) would keep intake answering 503 that long.
    assert sentinel["sentinel"]["downAfterMilliseconds"] <= 10000
    # A split vote is retried after twice the failover timeout (the chart's default: 6 minutes).
    assert sentinel["sentinel"]["failoverTimeout"] <= 30000


def test_the_sentinel_variant_keeps_the_standalone_auth_and_persistence() -> None:
    standalone = yaml.safe_load(REDIS_VALUES.read_text())
    sentinel = yaml.safe_load(SENTINEL_VALUES.read_text())
    chart = yaml.safe_load((CHART_DIR / "values.yaml").read_text())["redis"]
    assert sentinel["auth"]["existingSecret"] == chart["auth"]["existingSecret"]
    assert sentinel["auth"]["existingSecretPasswordKey"] == chart["auth"]["existingSecretPasswordKey"]
    assert sentinel["auth"]["sentinel"] is True and chart["sentinel"]["usePassword"] is True
    assert "password" not in sentinel["auth"]
    assert sentinel["commonConfiguration"] == standalone["commonConfiguration"]
    assert sentinel["replica"]["persistence"]["enabled"] is True
    assert sentinel["replica"]["resources"] == standalone["master"]["resources"]
    # The NetworkPolicy lets the orchestrator (and KEDA) ask the Sentinels.
    ports = {p["port"] for p in sentinel["networkPolicy"]["extraIngress"][0]["ports"]}
    assert ports == {6379, 26379} and sentinel["networkPolicy"]["allowExternal"] is False
