"""The two images this repository builds, checked against what the chart, compose and settings rely on.

There is no Docker engine here: the Dockerfiles are read, not built. What is
checked is what a deploy depends on: the user id the pods run as, the entry
points, the files COPY takes, and one name (and tag) per image everywhere.
"""

from __future__ import annotations

import configparser
import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

import orchestrator
from orchestrator.kube import jobs
from orchestrator.runners.base import AgentSpec, RunRequest
from orchestrator.settings import Settings
from tests.support.entrypoints import REPO_ROOT
from tests.test_dockerfile import _instructions

ORCHESTRATOR_DOCKERFILE = REPO_ROOT / "Dockerfile"
AGENT_DOCKERFILE = REPO_ROOT / "images" / "agent" / "Dockerfile"
CHART_DIR = REPO_ROOT / "charts" / "orchestrator"
# The agent contract (DESIGN, README): what every agent gets from its Job.
CONTRACT = ("ORCHESTRATOR_SERVICE", "ORCHESTRATOR_TASK_ID", "ORCHESTRATOR_RUN_ID", "ORCHESTRATOR_OUTPUT_DIR",
            "ORCHESTRATOR_HANDOFF_FILE")


def last_stage(path: Path) -> list[tuple[str, str]]:
    stages: list[list[tuple[str, str]]] = []
    for keyword, args in _instructions(path.read_text()):
        if keyword == "FROM":
            stages.append([])
        stages[-1].append((keyword, args))
    return stages[-1]


def argv(args: str) -> list[str]:
    return json.loads(args) if args.startswith("[") else shlex.split(args)


def image_env(stage: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, args in stage:
        if keyword == "ENV":
            env.update(item.split("=", 1) for item in shlex.split(args))
    return env


def defaults() -> Settings:
    return Settings.from_env({})


@pytest.fixture(scope="module")
def agent() -> list[tuple[str, str]]:
    return last_stage(AGENT_DOCKERFILE)


@pytest.fixture(scope="module")
def chart_yaml() -> dict[str, Any]:
    return yaml.safe_load((CHART_DIR / "Chart.yaml").read_text())


@pytest.fixture(scope="module")
def values() -> dict[str, Any]:
    return yaml.safe_load((CHART_DIR / "values.yaml").read_text())


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((REPO_ROOT / "docker-compose.yml").read_text())


# --- the agent image ----------------------------------------------------------

def test_agent_image_is_claude_code_pinned_on_slim_node(agent: list[tuple[str, str]]) -> None:
    assert re.fullmatch(r"node:\d+(-[a-z]+)?-slim", agent[0][1]), agent[0]
    args = dict(arg.split("=", 1) for keyword, arg in agent if keyword == "ARG" and "=" in arg)
    assert re.fullmatch(r"\d+\.\d+\.\d+", args["CLAUDE_CODE_VERSION"]), "an exact version, never a range or latest"
    runs = " ".join(arg for keyword, arg in agent if keyword == "RUN")
    assert '"@anthropic-ai/claude-code@${CLAUDE_CODE_VERSION}"' in runs
    assert re.search(r"install -y --no-install-recommends [^&]*\bgit\b", runs)
    assert "rm -rf /var/lib/apt/lists/*" in runs
    assert image_env(agent)["DISABLE_AUTOUPDATER"] == "1"  # the pinned version stays the version


def test_agent_runs_as_the_jobs_user(agent: list[tuple[str, str]], values: dict[str, Any]) -> None:
    users = [arg for keyword, arg in agent if keyword == "USER"]
    uid, _, gid = users[-1].partition(":")
    assert uid.isdigit(), "numeric, so runAsNonRoot can check it"
    # The Job's runAsUser/runAsGroup is ORCHESTRATOR_JOB_RUN_AS_USER (default 1000); the chart's pods agree.
    assert int(uid) == int(gid) == defaults().job_run_as_user == 1000
    pod = jobs.default_pod_spec(defaults())["securityContext"]
    assert pod["runAsUser"] == pod["runAsGroup"] == int(uid)
    assert values["podSecurityContext"]["runAsUser"] == values["securityContext"]["runAsUser"] == int(uid)
    runs = " ".join(arg for keyword, arg in agent if keyword == "RUN")
    assert f"chown {uid}:{gid} /workspace" in runs


def test_agent_follows_the_workspace_contract(agent: list[tuple[str, str]], tmp_path: Path) -> None:
    (workdir,) = [arg for keyword, arg in agent if keyword == "WORKDIR"]
    assert workdir == jobs.WORKSPACE_MOUNT
    request = RunRequest(run_id="svc-1-v1-a1", service="svc", task_id=1, version=1, attempt=1,
                         agent=AgentSpec(name="claude", image="x", command=("claude",)), workspace_dir=tmp_path)
    job_env = {e["name"]: e.get("value") for e in jobs.container_env(request, defaults(), output_root=workdir)}
    assert image_env(agent)["HOME"] == job_env["HOME"]  # the same HOME with or without a Job
    text = AGENT_DOCKERFILE.read_text()
    for name in CONTRACT:
        assert name in text, f"the agent image does not document {name}"
    assert not any(arg.split("=", 1)[0] in CONTRACT + ("ANTHROPIC_API_KEY", "GITHUB_TOKEN")
                   for keyword, args in agent if keyword == "ENV" for arg in shlex.split(args)), \
        "per-run values and secrets come from the Job, never from the image"


def test_agent_entry_point_is_the_default_agent_command(agent: list[tuple[str, str]]) -> None:
    (entrypoint,) = [argv(arg) for keyword, arg in agent if keyword == "ENTRYPOINT"]
    (cmd,) = [argv(arg) for keyword, arg in agent if keyword == "CMD"]
    assert tuple(entrypoint + cmd) == defaults().agent_command


# --- both images --------------------------------------------------------------

@pytest.mark.parametrize("dockerfile", [ORCHESTRATOR_DOCKERFILE, AGENT_DOCKERFILE], ids=["orchestrator", "agent"])
def test_every_copied_file_exists_and_survives_dockerignore(dockerfile: Path) -> None:
    ignored = {line.strip() for line in (REPO_ROOT / ".dockerignore").read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    for keyword, args in _instructions(dockerfile.read_text()):
        if keyword != "COPY" or args.startswith("--from="):
            continue
        *sources, _ = argv(args)
        for source in sources:
            assert (REPO_ROOT / source).exists(), f"{dockerfile.name}: COPY {source}: no such file"
            assert source.rstrip("/") not in ignored, f"{dockerfile.name}: COPY {source} is in .dockerignore"


def test_the_data_dir_compose_mounts_is_the_image_users(compose: dict[str, Any]) -> None:
    # A new named volume copies the owner of the image's directory: otherwise root owns it and user 1000 cannot write.
    runs = " ".join(args for keyword, args in last_stage(ORCHESTRATOR_DOCKERFILE) if keyword == "RUN")
    env = compose["services"]["worker-deploy"]["environment"]
    for path in (env["ORCHESTRATOR_DATA_DIR"], env["ORCHESTRATOR_WORKSPACE_ROOT"]):
        assert re.search(rf"mkdir -p [^&]*{re.escape(path)}\b", runs), path
        assert re.search(rf"chown 1000:1000 [^&]*{re.escape(path)}\b", runs), path


def test_one_version_everywhere(chart_yaml: dict[str, Any]) -> None:
    setup = configparser.ConfigParser()
    setup.read(REPO_ROOT / "setup.cfg")
    assert chart_yaml["appVersion"] == orchestrator.__version__ == setup["metadata"]["version"]


def test_image_names_are_the_same_in_chart_compose_and_settings(chart_yaml: dict[str, Any], values: dict[str, Any],
                                                               compose: dict[str, Any]) -> None:
    version = chart_yaml["appVersion"]
    assert values["image"]["tag"] == values["agentImage"]["tag"] == "", "the tags follow appVersion"
    server = f"{values['image']['repository']}:{version}"
    agent = f"{values['agentImage']['repository']}:{version}"
    assert server == "ghcr.io/orchestrator/orchestrator:" + version
    assert agent == "ghcr.io/orchestrator/claude-code-agent:" + version
    assert values["config"]["agentImage"] == ""  # no override: the chart's agentImage
    assert defaults().agent_image == agent
    services = compose["services"]
    assert {svc["image"] for svc in services.values() if svc.get("build", {}).get("dockerfile") == "Dockerfile"} \
        == {server}
    assert services["agent-image"]["image"] == agent
    assert services["agent-image"]["build"]["dockerfile"] == str(AGENT_DOCKERFILE.relative_to(REPO_ROOT))
    values_text = (CHART_DIR / "values.yaml").read_text()
    assert "5dlabs" not in values_text and ":latest" not in values_text  # the replaced system's image, a floating tag


def test_the_rendered_chart_runs_these_images(chart_yaml: dict[str, Any], values: dict[str, Any]) -> None:
    helm = pytest.importorskip("helm_python")
    from tests.support.chart import render

    version = chart_yaml["appVersion"]
    with helm.Chart.load(CHART_DIR) as chart:
        rendered = render(chart, {})
        pinned = render(chart, {"agentImage": {"tag": "9.9.9"}, "image": {"tag": "9.9.9"}})
        override = render(chart, {"config": {"agentImage": "registry.example/agent:1"}})
    images = {c["image"] for _, spec in rendered.pod_specs() for c in spec["containers"]}
    assert images == {f"{values['image']['repository']}:{version}"}

    def agent_image(r: Any) -> str:
        (config,) = [cm for cm in r.of_kind("ConfigMap") if "ORCHESTRATOR_REDIS_URL" in cm.get("data", {})
                     or "ORCHESTRATOR_RUNNER" in cm.get("data", {})]
        return config["data"]["ORCHESTRATOR_AGENT_IMAGE"]

    assert agent_image(rendered) == defaults().agent_image
    assert agent_image(pinned) == f"{values['agentImage']['repository']}:9.9.9"
    assert agent_image(override) == "registry.example/agent:1"
