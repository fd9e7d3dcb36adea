"""Settings: defaults that work on a laptop, one clear line for a wrong value."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from orchestrator.settings import VARIABLES, ConfigError, Settings

README = Path(__file__).resolve().parent.parent / "README.md"


def test_defaults_work_without_any_environment() -> None:
    settings = Settings.from_env({})
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.runner == "local"
    assert settings.max_active_runs == 10
    assert settings.max_runs_per_service == 4
    assert settings.api_tokens == ()
    assert settings.workspace_root.is_absolute()
    assert settings.broker_visibility_timeout > settings.step_time_limit > settings.step_soft_time_limit


def test_values_are_parsed_and_typed() -> None:
    settings = Settings.from_env({
        "ORCHESTRATOR_API_TOKENS": " a, b ,,c ",
        "ORCHESTRATOR_RUNNER": "KUBERNETES",
        "ORCHESTRATOR_MAX_ACTIVE_RUNS": "25",
        "GITHUB_WEBHOOK_SECRET": "old,new",
        "ORCHESTRATOR_REDIS_URL": "rediss://:pw@redis.example:6380/2",
    })
    assert settings.api_tokens == ("a", "b", "c")
    assert settings.runner == "kubernetes"
    assert settings.max_active_runs == 25
    assert settings.github_webhook_secrets == ("old", "new")


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("ORCHESTRATOR_MAX_ACTIVE_RUNS", "many", "expected an integer"),
        ("ORCHESTRATOR_MAX_RUNS_PER_SERVICE", "0", ">= 1"),
        ("ORCHESTRATOR_RUNNER", "docker", "'local' or 'kubernetes'"),
        ("ORCHESTRATOR_REDIS_URL", "http://localhost:6379", "redis://"),
        ("ORCHESTRATOR_REDIS_URL", "redis://:secretpw@host:port/0", "invalid port"),
        ("ORCHESTRATOR_REDIS_URL", "redis://", "no host"),
        ("ORCHESTRATOR_STEP_TIME_LIMIT", "1.5", "expected an integer"),
        ("ORCHESTRATOR_STUCK_AFTER_SECONDS", "nan", "finite"),
        ("ORCHESTRATOR_STUCK_AFTER_SECONDS", "0", "> 0"),
        ("ORCHESTRATOR_PRIORITY_AGEING_SECONDS", "inf", "finite"),
        ("ORCHESTRATOR_PRIORITY_AGEING_SECONDS", "-1", ">= 0"),
    ],
)
def test_a_wrong_value_names_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as info:
        Settings.from_env({name: value})
    message = str(info.value)
    assert message.startswith(f"{name}: ")
    assert fragment in message
    assert "\n" not in message
    assert "secretpw" not in message


def test_cross_field_rule_visibility_timeout_outlasts_steps() -> None:
    with pytest.raises(ConfigError, match="ORCHESTRATOR_BROKER_VISIBILITY_TIMEOUT"):
        Settings.from_env({"ORCHESTRATOR_BROKER_VISIBILITY_TIMEOUT": "300", "ORCHESTRATOR_STEP_TIME_LIMIT": "400"})


def test_repr_hides_secrets() -> None:
    settings = Settings.from_env({"GITHUB_TOKEN": "ghp_supersecret", "ORCHESTRATOR_API_TOKENS": "tok123"})
    text = repr(settings)
    assert "ghp_supersecret" not in text and "tok123" not in text
    assert set(settings.secret_values()) == {"ghp_supersecret", "tok123"}


def test_worker_start_up_stops_with_one_line_naming_the_variable() -> None:
    proc = subprocess.run(
        [sys.executable, "-c", "import workers.app"],
        env={"ORCHESTRATOR_MAX_ACTIVE_RUNS": "lots", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, cwd=README.parent, timeout=60,
    )
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["orchestrator: configuration error: ORCHESTRATOR_MAX_ACTIVE_RUNS: expected an integer, got 'lots'"]


def test_importing_connects_to_nothing() -> None:
    # A Redis URL that cannot answer: importing must still succeed instantly.
    proc = subprocess.run(
        [sys.executable, "-c", "import workers.app, workers.steps, orchestrator.store, orchestrator.runtime"],
        env={"ORCHESTRATOR_REDIS_URL": "redis://10.255.255.1:1/0", "PATH": "/usr/bin:/bin"},
        capture_output=True, text=True, cwd=README.parent, timeout=30,
    )
    assert proc.returncode == 0, proc.stderr


def test_readme_documents_every_variable_in_one_table() -> None:
    text = README.read_text()
    rows = re.findall(r"^\| `([A-Z0-9_]+)` \| ([^|]*) \|", text, flags=re.M)
    documented = {name: default.strip() for name, default in rows}
    for var in VARIABLES:
        assert var.env in documented, f"{var.env} is missing from the README table"
        expected = f"`{var.default}`" if var.default else "(empty)"
        assert documented[var.env] == expected, f"README default of {var.env} is {documented[var.env]}"
    assert set(documented) == {v.env for v in VARIABLES}
