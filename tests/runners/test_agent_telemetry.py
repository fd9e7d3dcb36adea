"""The OpenTelemetry environment of agent runs: on a Job (through the emulated API server) and on a local run."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

from orchestrator.runners import agent_telemetry
from orchestrator.runners.base import AgentSpec, RunRequest
from orchestrator.runners.kubernetes import KubernetesRunner
from orchestrator.runners.local import LocalRunner
from orchestrator.settings import Settings
from tests.support.kube_emulator import KubeEmulator
from tests.support.wait import wait_for

ENDPOINT = "http://collector.observability:4318"
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
HEADERS = "Authorization=Bearer otlp-s3cret"


def request(workspace: Path, run_id: str = "billing-7-v1-a1", **changes) -> RunRequest:
    base = dict(
        run_id=run_id,
        service="billing",
        task_id=7,
        version=1,
        attempt=1,
        agent=AgentSpec(name="claude", image="img:1", command=("claude",)),
        workspace_dir=workspace,
        stage="review",
        traceparent=TRACEPARENT,
    )
    base.update(changes)
    return RunRequest(**base)


def parse_attributes(raw: str) -> dict[str, str]:
    """OTEL_RESOURCE_ATTRIBUTES read back the way the OTel SDKs read it."""
    pairs = (item.split("=", 1) for item in raw.split(","))
    return {key: unquote(value) for key, value in pairs}


def test_attribute_values_are_percent_encoded_outside_baggage_octets() -> None:
    assert agent_telemetry.encode_attribute("billing-api_v2.1") == "billing-api_v2.1"
    assert agent_telemetry.encode_attribute('a b,c;d"e\\f%g') == "a%20b%2Cc%3Bd%22e%5Cf%25g"
    assert agent_telemetry.encode_attribute("données") == "donn%C3%A9es"
    # What the separators would split stays inside the value.
    tricky = "x,service.name=evil;y=1"
    encoded = agent_telemetry.encode_attribute(tricky)
    assert "," not in encoded and ";" not in encoded and unquote(encoded) == tricky


def test_resource_attributes_name_the_run(tmp_path: Path) -> None:
    raw = agent_telemetry.resource_attributes(request(tmp_path, service="billing api", stage="re,view"))
    assert parse_attributes(raw) == {
        "service.name": "orchestrator-agent",
        "orchestrator.service": "billing api",
        "orchestrator.task_id": "7",
        "orchestrator.run_id": "billing-7-v1-a1",
        "orchestrator.agent": "claude",
        "orchestrator.stage": "re,view",
    }


def test_nothing_is_added_when_telemetry_is_off(settings: Settings, tmp_path: Path) -> None:
    assert settings.otel_endpoint == ""
    assert agent_telemetry.agent_env(request(tmp_path), settings) == {}
    env = LocalRunner(settings.replace(otel_headers=HEADERS)).environment(request(tmp_path))
    assert not any(name.startswith(("OTEL_", "CLAUDE_CODE_")) or name == "TRACEPARENT" for name in env)


def test_a_job_gets_the_otel_env_and_its_headers_only_by_secret_ref(
    kube_settings: Settings, kube_client, emulator: KubeEmulator, tmp_path: Path
) -> None:
    settings = kube_settings.replace(otel_endpoint=ENDPOINT, otel_protocol="grpc", otel_headers=HEADERS)
    KubernetesRunner(settings, kube_client).launch(request(tmp_path))
    job = emulator.get("jobs", "billing-7-v1-a1")
    assert job is not None
    env = job["spec"]["template"]["spec"]["containers"][0]["env"]
    values = {e["name"]: e.get("value") for e in env if "value" in e}
    assert values["CLAUDE_CODE_ENABLE_TELEMETRY"] == "1"
    assert values["OTEL_METRICS_EXPORTER"] == "otlp" and values["OTEL_LOGS_EXPORTER"] == "otlp"
    assert values["OTEL_EXPORTER_OTLP_ENDPOINT"] == ENDPOINT
    assert values["OTEL_EXPORTER_OTLP_PROTOCOL"] == "grpc"
    assert values["TRACEPARENT"] == TRACEPARENT
    attributes = parse_attributes(values["OTEL_RESOURCE_ATTRIBUTES"])
    assert attributes["service.name"] == "orchestrator-agent"
    assert attributes["orchestrator.run_id"] == "billing-7-v1-a1" and attributes["orchestrator.stage"] == "review"
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env if "valueFrom" in e}
    assert refs["OTEL_EXPORTER_OTLP_HEADERS"] == {
        "name": settings.agent_secret,
        "key": "otel-exporter-otlp-headers",
        "optional": True,
    }
    assert "OTEL_EXPORTER_OTLP_HEADERS" not in values
    assert "otlp-s3cret" not in str(job)  # never a literal secret in a Job spec


def test_a_job_without_telemetry_has_none_of_it(
    kube_runner: KubernetesRunner, emulator: KubeEmulator, tmp_path: Path
) -> None:
    kube_runner.launch(request(tmp_path))
    env = emulator.get("jobs", "billing-7-v1-a1")["spec"]["template"]["spec"]["containers"][0]["env"]
    names = {e["name"] for e in env}
    assert not {n for n in names if n.startswith(("OTEL_", "CLAUDE_CODE_"))} and "TRACEPARENT" not in names


def test_a_local_run_gets_the_otel_env_with_its_headers(settings: Settings, tmp_path: Path) -> None:
    runner = LocalRunner(settings.replace(otel_endpoint=ENDPOINT, otel_headers=HEADERS))
    workspace = settings.workspace_root / "billing"
    workspace.mkdir(parents=True, exist_ok=True)
    runner.launch(
        request(workspace, run_id="r-otel", agent=AgentSpec(name="claude", image="", command=("/bin/sh", "-c", "env")))
    )
    try:
        wait_for(lambda: (o := runner.observe("r-otel")) and o.phase == "Succeeded")
        seen = dict(line.split("=", 1) for line in runner.logs("r-otel") if "=" in line)
    finally:
        runner.cancel("r-otel", wait=3)
    assert seen["CLAUDE_CODE_ENABLE_TELEMETRY"] == "1"
    assert seen["OTEL_EXPORTER_OTLP_ENDPOINT"] == ENDPOINT
    assert seen["OTEL_EXPORTER_OTLP_PROTOCOL"] == "http/protobuf"
    assert seen["OTEL_METRICS_EXPORTER"] == "otlp" and seen["OTEL_LOGS_EXPORTER"] == "otlp"
    assert seen["OTEL_EXPORTER_OTLP_HEADERS"] == HEADERS
    assert seen["TRACEPARENT"] == TRACEPARENT
    attributes = parse_attributes(seen["OTEL_RESOURCE_ATTRIBUTES"])
    assert attributes["orchestrator.task_id"] == "7" and attributes["orchestrator.service"] == "billing"
    assert attributes["orchestrator.agent"] == "claude"
