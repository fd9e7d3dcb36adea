"""docker-compose.yml: valid against the Compose Specification, every command a real entry point."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml

jsonschema = pytest.importorskip("jsonschema")

from tests.support.entrypoints import REPO_ROOT, check_command  # noqa: E402
from workers.app import QUEUES  # noqa: E402

COMPOSE_FILE = REPO_ROOT / "docker-compose.yml"
# The shared schema lives beside the repository (a fresh clone in CI) or at /work/shared.
SCHEMA_CANDIDATES = (REPO_ROOT.parent / "shared" / "schemas" / "compose-spec.json",
                     Path("/work/shared/schemas/compose-spec.json"))


def compose_schema_path() -> Path:
    for path in SCHEMA_CANDIDATES:
        if path.is_file():
            return path
    raise AssertionError(f"compose-spec.json not found in {[str(p) for p in SCHEMA_CANDIDATES]}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE_FILE.read_text())


def _image_services(compose: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The services that run the orchestrator image (not the agent image's build-only entry)."""
    return {name: svc for name, svc in compose["services"].items()
            if svc.get("build") and svc["build"]["dockerfile"] == "Dockerfile"}


def test_compose_file_matches_the_compose_spec(compose: dict[str, Any]) -> None:
    schema = json.loads(compose_schema_path().read_text())
    validator = jsonschema.Draft7Validator(schema, format_checker=jsonschema.Draft7Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


def test_the_components_are_there(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert {"redis", "api", "watcher", "flower"} <= set(services)
    images = {svc.get("image") for svc in _image_services(compose).values()}
    assert len(images) == 1, "every component runs the image the Dockerfile builds"
    assert set(_image_services(compose)) == set(services) - {"redis", "agent-image"}


def test_the_agent_image_is_built_only_when_asked(compose: dict[str, Any]) -> None:
    agent = compose["services"]["agent-image"]
    assert agent["profiles"] == ["images"]  # `docker compose up` never starts it
    assert (REPO_ROOT / agent["build"]["context"] / agent["build"]["dockerfile"]).is_file()


def test_every_queue_has_a_worker(compose: dict[str, Any]) -> None:
    served = set()
    for svc in compose["services"].values():
        command = svc.get("command") or []
        if command[:4] == ["celery", "-A", "workers.app", "worker"]:
            served.update(command[command.index("-Q") + 1].split(","))
    assert served == set(QUEUES)


@pytest.mark.parametrize("service", ["api", "watcher", "flower", "worker-events", "worker-coordination",
                                     "worker-workspace", "worker-deploy"])
def test_every_command_names_a_real_entry_point(compose: dict[str, Any], service: str) -> None:
    notes = check_command(compose["services"][service]["command"])
    for note in notes:
        warnings.warn(f"{service}: {note}", stacklevel=1)


def test_redis_keeps_its_data(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = redis["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert any(volume.endswith(":/data") for volume in redis["volumes"])
    assert "redis-data" in compose["volumes"]


def test_start_order_and_health_checks(compose: dict[str, Any]) -> None:
    assert compose["services"]["redis"]["healthcheck"]["test"] == ["CMD", "redis-cli", "ping"]
    for name, svc in _image_services(compose).items():
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy", name
        if name != "watcher":
            assert svc.get("healthcheck"), f"{name} has no health check"
    assert "/ready" in " ".join(compose["services"]["api"]["healthcheck"]["test"])
    for name, svc in compose["services"].items():
        if name.startswith("worker-"):
            # The probe reads the heartbeat file the worker writes, and a failing worker is
            # stopped (Docker never restarts an unhealthy container) so the restart policy acts.
            check, _, act = svc["healthcheck"]["test"][1].partition(" || ")
            heartbeat = svc["command"][svc["command"].index("--heartbeat-file") + 1]
            assert check.split()[:2] == ["orchestrator", "worker-alive"], name
            assert f"--heartbeat-file {heartbeat}" in check, name
            assert act == "kill -TERM 1" and svc["init"] is True and svc["restart"] == "unless-stopped", name


def test_workers_shut_down_warm(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        if name.startswith("worker-"):
            assert svc["stop_grace_period"] == "7m", name  # longer than the 360 s step time limit


def test_shared_workspace_and_runner_by_configuration(compose: dict[str, Any]) -> None:
    for name, svc in _image_services(compose).items():
        assert "workspace:/workspace" in svc["volumes"], name
        env = svc["environment"]
        assert env["ORCHESTRATOR_WORKSPACE_ROOT"] == "/workspace"
        assert env["ORCHESTRATOR_RUNNER"] == "${ORCHESTRATOR_RUNNER:-local}"
        assert env["KUBECONFIG"] == "${ORCHESTRATOR_KUBECONFIG_FILE:+/kube/config}"
        assert "${ORCHESTRATOR_KUBECONFIG_FILE:-/dev/null}:/kube/config:ro" in svc["volumes"]


RUN_STATE_READERS = ("api", "worker-coordination", "worker-deploy", "watcher")


def test_run_state_is_on_one_volume_for_every_service_that_reads_it(compose: dict[str, Any]) -> None:
    # The deploy worker's supervisors write it; the watcher judges liveness from it,
    # the API streams logs from it, the coordination worker reads the log tail.
    mounts = set()
    for name in RUN_STATE_READERS:
        svc = compose["services"][name]
        data_dir = svc["environment"]["ORCHESTRATOR_DATA_DIR"]
        assert data_dir.startswith("/"), f"{name}: a relative data dir lands in the container's own /tmp"
        (volume,) = [v.split(":")[0] for v in svc["volumes"] if v.split(":")[1] == data_dir]
        assert volume in compose["volumes"], f"{name}: {data_dir} is not on a named volume"
        mounts.add((volume, data_dir))
    assert len(mounts) == 1, mounts
    assert compose["services"]["worker-deploy"]["init"] is True  # detached supervisors get reaped


SECRETS = ("ORCHESTRATOR_API_TOKENS", "GITHUB_TOKEN", "GITHUB_WEBHOOK_SECRET", "ANTHROPIC_API_KEY",
           "ORCHESTRATOR_SESSION_SECRET", "FLOWER_BASIC_AUTH", "ORCHESTRATOR_OTEL_EXPORTER_OTLP_HEADERS")
OTLP = "ORCHESTRATOR_OTEL_EXPORTER_OTLP_HEADERS"  # every traced process exports its spans
SECRETS_USED = {
    # ANTHROPIC_API_KEY where agents' output is read: masked only where known (#16 finding 9).
    "api": {"ORCHESTRATOR_API_TOKENS", "GITHUB_WEBHOOK_SECRET", "ORCHESTRATOR_SESSION_SECRET", "ANTHROPIC_API_KEY",
            OTLP},
    "worker-events": {"GITHUB_TOKEN", OTLP},  # handles deliveries, reports status to GitHub
    "worker-coordination": {"GITHUB_TOKEN", "ANTHROPIC_API_KEY", OTLP},  # status reports; the run's log excerpt
    "worker-workspace": {"GITHUB_TOKEN", OTLP},  # clones and fetches
    "worker-deploy": {"GITHUB_TOKEN", "ANTHROPIC_API_KEY", OTLP},  # the local runner hands them to its agents
    "watcher": {"ANTHROPIC_API_KEY", OTLP},  # records the excerpt of agents' output a run keeps
    "flower": {"FLOWER_BASIC_AUTH"},
}


def test_each_service_gets_only_the_secrets_it_uses(compose: dict[str, Any]) -> None:
    assert set(SECRETS_USED) == set(_image_services(compose))
    for name, used in SECRETS_USED.items():
        env = compose["services"][name]["environment"]
        assert {var for var in SECRETS if var in env} == used, name


def test_no_secret_is_written_in_the_file(compose: dict[str, Any]) -> None:
    for name, svc in _image_services(compose).items():
        env = svc["environment"]
        for var in SECRETS:
            # No value: compose passes the variable through from the shell or .env, or leaves it unset.
            assert env.get(var) is None, f"{name}: {var} has a value in the file"


def test_ports_are_local_only(compose: dict[str, Any]) -> None:
    for name, svc in compose["services"].items():
        for port in svc.get("ports", []):
            assert str(port).startswith("127.0.0.1:"), f"{name} publishes {port} beyond this machine"
