"""Pure builders of agent Jobs: names, labels, the pod template. No API calls here.

Everything is derived from the RunRequest and the settings, so the same run
always yields the same Job (a redelivered launch step adopts, never duplicates).
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from orchestrator.model import is_reserved_env
from orchestrator.runners import agent_telemetry
from orchestrator.runners.base import RunRequest
from orchestrator.settings import Settings
from orchestrator.store import run_id_for
from orchestrator.workspace.layout import CLONE_DIR, WORKTREES_DIR

MANAGED_BY = "orchestrator"
DOMAIN = "orchestrator.dev"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_NAME = "app.kubernetes.io/name"
LABEL_RUN = f"{DOMAIN}/run"
LABEL_SERVICE = f"{DOMAIN}/service"
LABEL_TASK = f"{DOMAIN}/task-id"
LABEL_AGENT = f"{DOMAIN}/agent"
LABEL_VERSION = f"{DOMAIN}/version"
LABEL_ATTEMPT = f"{DOMAIN}/attempt"
ANNOTATION_RUN_ID = f"{DOMAIN}/run-id"
ANNOTATION_SUBMITTED_BY = f"{DOMAIN}/submitted-by"
ANNOTATION_ORIGIN = f"{DOMAIN}/origin"
# Every Job and pod we create carries this; list, watch and sweep select on it,
# so nothing that is not ours is ever touched.
SELECTOR = f"{LABEL_MANAGED_BY}={MANAGED_BY}"

CONTAINER = "agent"
WORKSPACE_VOLUME = "workspace"
WORKSPACE_MOUNT = "/workspace"
SECRET_KEYS = {"ANTHROPIC_API_KEY": "anthropic-api-key", "GITHUB_TOKEN": "github-token"}
MAX_NAME = 63
_INVALID = re.compile(r"[^a-z0-9-]+")
_LABEL_VALUE_INVALID = re.compile(r"[^A-Za-z0-9_.-]+")


def name_for(run_id: str) -> str:
    """The Job name of a run id: the id itself when it fits, else a cleaned, trimmed, hashed form."""
    cleaned = _INVALID.sub("-", run_id.lower()).strip("-")
    cleaned = re.sub(r"-{2,}", "-", cleaned)
    if cleaned == run_id and len(run_id) <= MAX_NAME:
        return run_id
    # Trimmed or rewritten: a hash of the id keeps distinct runs distinct.
    digest = hashlib.sha256(run_id.encode()).hexdigest()[:8]
    head = cleaned[: MAX_NAME - len(digest) - 1].rstrip("-") or "run"
    return f"{head}-{digest}"


def job_name(service: str, task_id: int, version: int, attempt: int, stage: str | None = None) -> str:
    """A DNS-1123 label of at most 63 characters, the same for the same run; hashed when trimmed."""
    return name_for(run_id_for(service, task_id, version, attempt, stage))


def label_value(value: str) -> str:
    """A valid label value (at most 63 characters, alphanumeric at both ends)."""
    cleaned = _LABEL_VALUE_INVALID.sub("-", str(value))[:MAX_NAME]
    return cleaned.strip("-_.")


def labels(request: RunRequest) -> dict[str, str]:
    """Labels of the Job and its pods."""
    return {
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_NAME: "orchestrator-agent",
        LABEL_RUN: name_for(request.run_id),
        LABEL_SERVICE: label_value(request.service),
        LABEL_TASK: str(request.task_id),
        LABEL_AGENT: label_value(request.agent.name),
        LABEL_VERSION: str(request.version),
        LABEL_ATTEMPT: str(request.attempt),
    }


def annotations_for(request: RunRequest) -> dict[str, str]:
    """Annotations: the run id (labels cannot hold every run id) and who asked."""
    found = {ANNOTATION_RUN_ID: request.run_id}
    if request.submitted_by:
        found[ANNOTATION_SUBMITTED_BY] = request.submitted_by[:256]
    if request.origin:
        found[ANNOTATION_ORIGIN] = request.origin[:1024]
    return found


def bounded_timeout(request: RunRequest, settings: Settings) -> int:
    """The task's timeout, at least a minute and at most the configured maximum."""
    return max(60, min(int(request.timeout_seconds or settings.default_timeout_seconds), settings.max_timeout_seconds))


def container_env(request: RunRequest, settings: Settings, *, output_root: str) -> list[dict[str, Any]]:
    """Non-secret task env, our contract, and secrets only as secretKeyRefs."""
    env: list[dict[str, Any]] = []
    for name in sorted(request.env):
        if is_reserved_env(name):
            raise ValueError(f"task env may not set {name}")
        env.append({"name": name, "value": str(request.env[name])})
    contract = {
        "ORCHESTRATOR_RUN_ID": request.run_id,
        "ORCHESTRATOR_SERVICE": request.service,
        "ORCHESTRATOR_TASK_ID": str(request.task_id),
        "ORCHESTRATOR_CONTEXT_VERSION": str(request.version),
        "ORCHESTRATOR_ATTEMPT": str(request.attempt),
        "ORCHESTRATOR_OUTPUT_DIR": f"{output_root}/{request.output_dir or f'.orchestrator/runs/{request.run_id}'}",
        "HOME": "/tmp/home",
        **request.contract_env,
    }
    if request.stage:
        contract["ORCHESTRATOR_STAGE"] = request.stage
    if request.agent.model:
        contract["ANTHROPIC_MODEL"] = request.agent.model
    contract.update(agent_telemetry.agent_env(request, settings))
    env.extend({"name": k, "value": v} for k, v in contract.items())
    secrets = dict(SECRET_KEYS)
    if settings.otel_endpoint:  # the exporter's headers carry its credential: from the Secret, like the API key
        secrets[agent_telemetry.HEADERS_ENV] = agent_telemetry.HEADERS_SECRET_KEY
    for name, key in secrets.items():
        if name == "GITHUB_TOKEN" and not settings.agent_github_token:
            continue  # delivery pushes and opens pull requests; the agent gets the token only when configured
        env.append(
            {"name": name, "valueFrom": {"secretKeyRef": {"name": settings.agent_secret, "key": key, "optional": True}}}
        )
    return env


def _security_context() -> dict[str, Any]:
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def agent_container(request: RunRequest, settings: Settings) -> dict[str, Any]:
    """The agent container: image and command from configuration, the service's workspace mounted."""
    # The task's worktree at /workspace/worktrees/<task id> and the service clone's .git at
    # /workspace/.clone/.git: the worktree's `.git` file (`gitdir: ../../.clone/.git/worktrees/<id>`)
    # resolves as it does on the volume, and no other task's worktree is mounted.
    checkout = f"{WORKSPACE_MOUNT}/{WORKTREES_DIR}/{request.task_id}"
    workdir = checkout + (f"/{request.working_directory}" if request.working_directory else "")
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": request.agent.image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(request.agent.command),
        "workingDir": workdir,
        "env": container_env(request, settings, output_root=checkout),
        "volumeMounts": [
            # subPaths: the agent sees its own task's worktree and the git metadata it commits through.
            {
                "name": WORKSPACE_VOLUME,
                "mountPath": checkout,
                "subPath": f"{request.service}/{WORKTREES_DIR}/{request.task_id}",
            },
            {
                "name": WORKSPACE_VOLUME,
                "mountPath": f"{WORKSPACE_MOUNT}/{CLONE_DIR}/.git",
                "subPath": f"{request.service}/{CLONE_DIR}/.git",
            },
            {"name": "tmp", "mountPath": "/tmp"},
        ],
        "securityContext": _security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    if request.agent.args:
        container["args"] = list(request.agent.args)
    resources: dict[str, Any] = {}
    if settings.job_requests:
        resources["requests"] = dict(settings.job_requests)
    if settings.job_limits:
        resources["limits"] = dict(settings.job_limits)
    if resources:
        container["resources"] = resources
    return container


def _volumes(settings: Settings) -> list[dict[str, Any]]:
    return [
        {"name": WORKSPACE_VOLUME, "persistentVolumeClaim": {"claimName": settings.workspace_pvc}},
        {"name": "tmp", "emptyDir": {}},
    ]


def default_pod_spec(settings: Settings) -> dict[str, Any]:
    """The pod spec every run shares, before the run's own container is added."""
    uid = settings.job_run_as_user
    spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": uid,
            "runAsGroup": uid,
            "fsGroup": uid,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [],
        "volumes": [],
    }
    if settings.job_service_account:
        spec["serviceAccountName"] = settings.job_service_account
    else:
        # The agent needs no Kubernetes API access: no token in its pod.
        spec["automountServiceAccountToken"] = False
    if settings.job_node_selector:
        spec["nodeSelector"] = dict(settings.job_node_selector)
    if settings.job_tolerations:
        spec["tolerations"] = copy.deepcopy(list(settings.job_tolerations))
    if settings.job_affinity:
        spec["affinity"] = copy.deepcopy(dict(settings.job_affinity))
    if settings.job_image_pull_secrets:
        spec["imagePullSecrets"] = [{"name": name} for name in settings.job_image_pull_secrets]
    return spec


def load_template(path: Path) -> dict[str, Any]:
    """An ops-provided pod template (`metadata` and `spec`) from a YAML file."""
    data = yaml.safe_load(path.read_text())
    if isinstance(data, dict) and data.get("kind") == "PodTemplate":
        data = data.get("template", {})
    if not isinstance(data, dict) or not isinstance(data.get("spec"), dict):
        raise ValueError(f"{path}: expected a pod template with a 'spec' mapping")
    return data


def _apply_pod_floor(spec: dict[str, Any], settings: Settings) -> None:
    """Lay the built-in pod spec under an ops template: hardening cannot be weakened, and the
    configured scheduling, pull secrets and account are added to what the template says."""
    floor = default_pod_spec(settings)
    security = {**floor["securityContext"], **(spec.get("securityContext") or {})}
    security["runAsNonRoot"] = True
    if (security.get("seccompProfile") or {}).get("type") not in {"RuntimeDefault", "Localhost"}:
        security["seccompProfile"] = {"type": "RuntimeDefault"}
    spec["securityContext"] = security
    if settings.job_node_selector:
        spec["nodeSelector"] = {**(spec.get("nodeSelector") or {}), **floor["nodeSelector"]}
    for key in ("tolerations", "imagePullSecrets"):
        if key in floor:
            present = list(spec.get(key) or [])
            spec[key] = present + [item for item in floor[key] if item not in present]
    if "affinity" in floor:
        spec["affinity"] = floor["affinity"]
    if "serviceAccountName" in floor:
        spec["serviceAccountName"] = floor["serviceAccountName"]
    elif not spec.get("serviceAccountName"):
        # No account configured anywhere: the agent needs no Kubernetes API, so no token.
        spec["automountServiceAccountToken"] = False


def _merge_template(template: Mapping[str, Any], container: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Put the run's container and workspace into the ops template; the run's parts win."""
    pod = copy.deepcopy(dict(template))
    spec = pod.setdefault("spec", {})
    spec["restartPolicy"] = "Never"  # the Job's podFailurePolicy requires it
    _apply_pod_floor(spec, settings)
    containers = spec.setdefault("containers", [])
    base = next((c for c in containers if c.get("name") == CONTAINER), None)
    if base is None:
        base = {}
        containers.insert(0, base)
    merged = dict(base)
    merged.update(
        {k: v for k, v in container.items() if k not in {"env", "volumeMounts", "resources", "securityContext"}}
    )
    merged.setdefault("resources", container.get("resources", {}))
    # The template may add to the container's hardening (readOnlyRootFilesystem...), never remove it.
    merged["securityContext"] = {
        **(base.get("securityContext") or {}),
        **container["securityContext"],
        "privileged": False,
    }
    ours = {e["name"] for e in container["env"]}
    merged["env"] = [e for e in base.get("env", []) if e.get("name") not in ours] + container["env"]
    mine = {m["mountPath"] for m in container["volumeMounts"]}
    merged["volumeMounts"] = [m for m in base.get("volumeMounts", []) if m.get("mountPath") not in mine] + container[
        "volumeMounts"
    ]
    if not merged["resources"]:
        del merged["resources"]
    containers[containers.index(base)] = merged
    our_volumes = _volumes(settings)
    names = {v["name"] for v in our_volumes}
    spec["volumes"] = [v for v in spec.get("volumes", []) if v.get("name") not in names] + our_volumes
    return pod


def build_job(request: RunRequest, settings: Settings, template: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The complete Job manifest for one run."""
    name = name_for(request.run_id)
    run_labels = labels(request)
    run_annotations = annotations_for(request)
    container = agent_container(request, settings)
    if template is None and settings.job_template is not None:
        template = load_template(settings.job_template)
    if template is not None:
        pod = _merge_template(template, container, settings)
    else:
        spec = default_pod_spec(settings)
        spec["containers"] = [container]
        spec["volumes"] = _volumes(settings)
        pod = {"spec": spec}
    metadata = pod.setdefault("metadata", {})
    metadata["labels"] = {**dict(metadata.get("labels") or {}), **run_labels}
    metadata["annotations"] = {**dict(metadata.get("annotations") or {}), **run_annotations}
    timeout = bounded_timeout(request, settings)
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": settings.namespace,
            "labels": run_labels,
            "annotations": run_annotations,
        },
        "spec": {
            "backoffLimit": settings.job_backoff_limit,
            "activeDeadlineSeconds": timeout,
            "ttlSecondsAfterFinished": settings.job_ttl_seconds,
            "podFailurePolicy": {
                "rules": [
                    # Evictions, preemption and node drains are not the agent's fault:
                    # they do not count against backoffLimit.
                    {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
                ]
            },
            "template": pod,
        },
    }


def run_id_of(obj: Mapping[str, Any]) -> str | None:
    """The run id a Job or pod of ours belongs to, or None."""
    meta = obj.get("metadata") or {}
    return (meta.get("annotations") or {}).get(ANNOTATION_RUN_ID)
