"""A task's `env` is an allow-list set by ops: anything that could send the model key elsewhere is a 400."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

from api.app import create_app
from orchestrator import agent_env, runs
from orchestrator.model import Run, Task
from orchestrator.settings import ConfigError, Settings
from orchestrator.store import TaskStore
from tests.support.api import AUTH, route_steps_to, valid_task

# Each would reach the agent beside ANTHROPIC_API_KEY and redirect, intercept or load something.
HOSTILE = ["ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL", "HTTP_PROXY", "HTTPS_PROXY", "https_proxy", "ALL_PROXY",
           "NO_PROXY", "NODE_OPTIONS", "NODE_EXTRA_CA_CERTS", "NODE_TLS_REJECT_UNAUTHORIZED", "SSL_CERT_FILE",
           "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CLAUDE_CONFIG_DIR", "CLAUDE_CODE_USE_BEDROCK", "PERL5OPT",
           "PYTHONHOME", "PYTHONSTARTUP", "PS4", "SHELLOPTS", "GCONV_PATH", "GLIBC_TUNABLES", "BASH_FUNC_x%%",
           "GITHUB_TOKEN", "ORCHESTRATOR_RUN_ID", "GIT_SSH_COMMAND", "LD_PRELOAD"]


@pytest.mark.parametrize("name", HOSTILE)
def test_env_that_could_redirect_the_agent_is_refused_naming_the_key(client: FlaskClient, store: TaskStore,
                                                                     name: str) -> None:
    response = client.post("/api/v1/pm/tasks", json=valid_task(env={name: "http://attacker.example:8080"}),
                           headers=AUTH)
    assert response.status_code == 400, response.get_json()
    body = response.get_json()
    assert body["code"] == "validation_error"
    assert list(body["errors"]) == ["env"] and list(body["errors"]["env"]) == [name]
    assert body["errors"]["env"][name]["key"]
    assert store.get_task("billing", 7) is None


def test_names_outside_the_allow_list_are_refused_and_the_list_is_named(client: FlaskClient) -> None:
    response = client.post("/api/v1/pm/tasks", json=valid_task(env={"MODE": "fast", "APP_COLOUR": "blue"}),
                           headers=AUTH)
    assert response.status_code == 400
    message = response.get_json()["errors"]["env"]["MODE"]["key"][0]
    assert "not allowed" in message and "ORCHESTRATOR_AGENT_ENV_ALLOWED" in message and "APP_*" in message
    assert "APP_COLOUR" not in response.get_json()["errors"]["env"]


def test_the_default_allow_list_accepts_harmless_names(client: FlaskClient, store: TaskStore) -> None:
    env = {"LOG_LEVEL": "debug", "TZ": "UTC", "APP_MODE": "fast", "FEATURE_CSV": "on"}
    response = client.post("/api/v1/pm/tasks", json=valid_task(env=env), headers=AUTH)
    assert response.status_code == 202, response.get_json()
    assert store.get_task("billing", 7).spec["env"] == env


def test_ops_patterns_widen_the_list_but_never_to_reserved_names(settings: Settings,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    wide = settings.replace(agent_env_allowed=("*",))
    celery = route_steps_to(wide, monkeypatch)
    try:
        client = create_app(wide).test_client()
        assert client.post("/api/v1/pm/tasks", json=valid_task(env={"MODE": "x"}), headers=AUTH).status_code == 202
        for name in ("ANTHROPIC_BASE_URL", "HTTPS_PROXY", "NODE_OPTIONS", "CLAUDE_CODE_SSE_PORT"):
            response = client.post("/api/v1/pm/tasks", json=valid_task(id=8, env={name: "x"}), headers=AUTH)
            assert response.status_code == 400 and name in response.get_json()["errors"]["env"]
    finally:
        celery.close()


def test_the_setting_is_parsed_and_checked() -> None:
    assert Settings.from_env({}).agent_env_allowed == ("APP_*", "FEATURE_*", "LOG_LEVEL", "TZ")
    assert Settings.from_env({"ORCHESTRATOR_AGENT_ENV_ALLOWED": "MY_*, TZ"}).agent_env_allowed == ("MY_*", "TZ")
    with pytest.raises(ConfigError, match="ORCHESTRATOR_AGENT_ENV_ALLOWED"):
        Settings.from_env({"ORCHESTRATOR_AGENT_ENV_ALLOWED": "A B"})


def test_a_stored_task_with_env_outside_the_list_fails_at_launch(settings: Settings) -> None:
    """Tasks that did not come through the API (GitHub, pipeline stages, older versions) are checked again."""
    task = Task(service="billing", id=1, agent="claude",
                spec={"agent_name": "claude", "env": {"ANTHROPIC_BASE_URL": "http://attacker.example"}})
    run = Run(run_id="billing-1-v1-a1", service="billing", task_id=1, version=1, attempt=1)
    with pytest.raises(ValueError, match="ANTHROPIC_BASE_URL"):
        runs.build_request(settings, task, run)
    task.spec["env"] = {"APP_MODE": "x"}
    assert runs.build_request(settings, task, run).env == {"APP_MODE": "x"}


def test_the_rules_are_pure() -> None:
    assert agent_env.check({"APP_X": "1", "http_proxy": "x", "OTHER": "y"}, ("APP_*", "*")) == {
        "http_proxy": [agent_env.name_errors("http_proxy", ("*",))[0]]}
    assert agent_env.never_allowed("anthropic_base_url")
