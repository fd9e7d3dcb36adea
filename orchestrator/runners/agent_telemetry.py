"""The OpenTelemetry environment of an agent run: Claude Code's telemetry, pointed at our collector.

Both runners add it when ORCHESTRATOR_OTEL_EXPORTER_OTLP_ENDPOINT is set, and
nothing otherwise. Pure functions: no OpenTelemetry code is needed to build it.
The exporter headers usually hold a credential, so they are not here: a Job
reads them from the agent Secret (`HEADERS_SECRET_KEY`, by secretKeyRef) and
a local run from the settings.
"""

from __future__ import annotations

from urllib.parse import quote

from orchestrator.runners.base import RunRequest
from orchestrator.settings import Settings

SERVICE_NAME = "orchestrator-agent"
HEADERS_ENV = "OTEL_EXPORTER_OTLP_HEADERS"
HEADERS_SECRET_KEY = "otel-exporter-otlp-headers"

# The OTel spec's OTEL_RESOURCE_ATTRIBUTES takes W3C Baggage's `baggage-octet`s as they are:
# printable ASCII but space, `"`, `,`, `;` and `\`. Everything else, and `%` itself (the
# decoder percent-decodes), is percent-encoded as UTF-8.
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in '"%,;\\')


def encode_attribute(value: str) -> str:
    """A resource attribute value as OTEL_RESOURCE_ATTRIBUTES must carry it (percent-encoded)."""
    return quote(value, safe=_SAFE)


def resource_attributes(request: RunRequest) -> str:
    """`service.name` and the run's identity, so every metric and span of the agent says which run it was."""
    attributes = {
        "service.name": SERVICE_NAME,
        "orchestrator.service": request.service,
        "orchestrator.task_id": str(request.task_id),
        "orchestrator.run_id": request.run_id,
        "orchestrator.agent": request.agent.name,
        "orchestrator.stage": request.stage or "",
    }
    return ",".join(f"{key}={encode_attribute(value)}" for key, value in attributes.items())


def agent_env(request: RunRequest, settings: Settings) -> dict[str, str]:
    """Claude Code's telemetry variables for this run (headers aside); {} when telemetry is off."""
    if not settings.otel_endpoint:
        return {}
    env = {
        "CLAUDE_CODE_ENABLE_TELEMETRY": "1",
        # Traces are Claude Code's beta; with TRACEPARENT its spans join the task's trace.
        "CLAUDE_CODE_ENHANCED_TELEMETRY_BETA": "1",
        "OTEL_METRICS_EXPORTER": "otlp",
        "OTEL_LOGS_EXPORTER": "otlp",
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_ENDPOINT": settings.otel_endpoint,
        "OTEL_EXPORTER_OTLP_PROTOCOL": settings.otel_protocol,
        "OTEL_RESOURCE_ATTRIBUTES": resource_attributes(request),
    }
    if request.traceparent:
        env["TRACEPARENT"] = request.traceparent
    return env
