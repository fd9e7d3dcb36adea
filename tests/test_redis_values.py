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
