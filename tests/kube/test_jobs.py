"""The Job builder: names, labels, secrets, workspace, limits; every buildable Job validates strictly."""

from __future__ import annotations

import json
import re
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from orchestrator.kube import jobs
from orchestrator.runners.base import AgentSpec, RunRequest
from orchestrator.settings import Settings
from orchestrator.store import run_id_for

VERSIONS = ("1.30.0", latest_version())
DNS = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def request(service: str = "billing", task_id: int = 7, version: int = 2, attempt: int = 1,
            stage: str | None = None, **changes) -> RunRequest:
    base = dict(
        run_id=run_id_for(service, task_id, version, attempt, stage), service=service, task_id=task_id,
        version=version, attempt=attempt,
        agent=AgentSpec(name="claude", image="ghcr.io/example/agent:1", command=("claude", "-p", "go"),
                        model="claude-sonnet-4-5"),
        workspace_dir=Path("/data/billing"), working_directory="src/api", stage=stage,
        env={"LOG_LEVEL": "debug", "FEATURE": "x"}, timeout_seconds=1800, submitted_by="pm@example.com",
        origin='{"kind": "api"}',
    )
    base.update(changes)
    return RunRequest(**base)


def settings(**env: str) -> Settings:
    return Settings.from_env(env)


def validate(job: dict) -> None:
    for version in VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)


@pytest.mark.parametrize(("service", "task_id", "version", "attempt", "stage"), [
    ("billing", 7, 2, 1, None),
    ("a", 1, 1, 1, None),
    ("x" * 30, 999999999, 12345, 99, None),
    ("payments", 3, 1, 2, "review"),
    ("payments", 3, 1, 2, "Review_Stage.With.Odd_Characters-and-a-very-long-name-indeed"),
])
def test_names_are_dns_labels_deterministic_and_distinct(service, task_id, version, attempt, stage) -> None:
    name = jobs.job_name(service, task_id, version, attempt, stage)
    assert len(name) <= 63 and DNS.match(name)
    assert name == jobs.job_name(service, task_id, version, attempt, stage)
    assert name != jobs.job_name(service, task_id, version, attempt + 1, stage)
    assert name != jobs.job_name(service, task_id, version + 1, attempt, stage)


def test_short_names_read_naturally_and_long_ones_get_a_hash_suffix() -> None:
    assert jobs.job_name("billing", 7, 2, 1) == "billing-7-v2-a1"
    long_a = jobs.job_name("x" * 30, 123456789, 99999, 1, "stage-" + "s" * 30)
    long_b = jobs.job_name("x" * 30, 123456789, 99999, 1, "stage-" + "s" * 29 + "t")
    assert long_a != long_b and len(long_a) == len(long_b) <= 63
    assert re.search(r"-[0-9a-f]{8}$", long_a)


def test_labels_annotations_and_container() -> None:
    job = jobs.build_job(request(), settings())
    meta = job["metadata"]
    assert meta["name"] == "billing-7-v2-a1" and meta["namespace"] == "default"
    assert meta["labels"][jobs.LABEL_MANAGED_BY] == "orchestrator"
    assert meta["labels"][jobs.LABEL_RUN] == "billing-7-v2-a1"
    assert meta["labels"][jobs.LABEL_SERVICE] == "billing" and meta["labels"][jobs.LABEL_TASK] == "7"
    assert meta["annotations"][jobs.ANNOTATION_RUN_ID] == "billing-7-v2-a1"
    assert meta["annotations"][jobs.ANNOTATION_SUBMITTED_BY] == "pm@example.com"
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"] == meta["labels"]  # pods are found by the same selector
    assert pod["metadata"]["annotations"][jobs.ANNOTATION_RUN_ID] == "billing-7-v2-a1"
    (container,) = pod["spec"]["containers"]
    assert container["image"] == "ghcr.io/example/agent:1" and container["command"] == ["claude", "-p", "go"]
    assert container["workingDir"] == "/workspace/worktrees/7/src/api"
    env = {e["name"]: e for e in container["env"]}
    assert env["LOG_LEVEL"]["value"] == "debug" and env["ANTHROPIC_MODEL"]["value"] == "claude-sonnet-4-5"
    assert env["ORCHESTRATOR_RUN_ID"]["value"] == "billing-7-v2-a1"


def test_secrets_are_only_secret_key_refs_never_values() -> None:
    cfg = settings(ANTHROPIC_API_KEY="sk-ant-secret", GITHUB_TOKEN="ghp_secret", ORCHESTRATOR_AGENT_SECRET="agent-keys")
    job = jobs.build_job(request(), cfg)
    text = json.dumps(job)
    assert "sk-ant-secret" not in text and "ghp_secret" not in text
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["ANTHROPIC_API_KEY"] == {"name": "ANTHROPIC_API_KEY", "valueFrom": {"secretKeyRef": {
        "name": "agent-keys", "key": "anthropic-api-key", "optional": True}}}
    assert "GITHUB_TOKEN" not in env  # delivery pushes; agents get the token only when configured


def test_agent_github_token_is_referenced_only_when_configured() -> None:
    cfg = settings(GITHUB_TOKEN="ghp_secret", ORCHESTRATOR_AGENT_SECRET="agent-keys",
                   ORCHESTRATOR_AGENT_GITHUB_TOKEN="true")
    job = jobs.build_job(request(), cfg)
    assert "ghp_secret" not in json.dumps(job)
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GITHUB_TOKEN"] == {"name": "GITHUB_TOKEN", "valueFrom": {"secretKeyRef": {
        "name": "agent-keys", "key": "github-token", "optional": True}}}


@pytest.mark.parametrize("name", ["ANTHROPIC_API_KEY", "GITHUB_TOKEN", "ORCHESTRATOR_RUN_ID", "HOME"])
def test_task_env_cannot_override_secrets_or_the_contract(name: str) -> None:
    with pytest.raises(ValueError, match=name):
        jobs.build_job(request(env={name: "x"}), settings())


def test_workspace_is_the_tasks_worktree_and_the_clones_git_metadata_only() -> None:
    job = jobs.build_job(request(), settings(ORCHESTRATOR_WORKSPACE_PVC="shared-ws"))
    validate(job)
    spec = job["spec"]["template"]["spec"]
    assert {"name": "workspace", "persistentVolumeClaim": {"claimName": "shared-ws"}} in spec["volumes"]
    (container,) = spec["containers"]
    mounts = [m for m in container["volumeMounts"] if m["name"] == "workspace"]
    # Task 7's worktree, and the clone's .git where the worktree's relative `.git` file points
    # (gitdir: ../../.clone/.git/worktrees/7); never the service directory, other worktrees or the clone's files.
    assert mounts == [
        {"name": "workspace", "mountPath": "/workspace/worktrees/7", "subPath": "billing/worktrees/7"},
        {"name": "workspace", "mountPath": "/workspace/.clone/.git", "subPath": "billing/.clone/.git"},
    ]
    assert container["workingDir"].startswith("/workspace/worktrees/7")
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["ORCHESTRATOR_OUTPUT_DIR"].startswith("/workspace/worktrees/7/")  # inside its own worktree
    other = jobs.build_job(request(task_id=8), settings(ORCHESTRATOR_WORKSPACE_PVC="shared-ws"))
    validate(other)
    paths = {m["subPath"] for m in other["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
             if m["name"] == "workspace"}
    assert paths == {"billing/worktrees/8", "billing/.clone/.git"}


def test_job_policy_defaults_and_restricted_security() -> None:
    job = jobs.build_job(request(timeout_seconds=10 ** 9), settings())
    spec = job["spec"]
    assert spec["backoffLimit"] == 0 and spec["ttlSecondsAfterFinished"] == 86400
    assert spec["activeDeadlineSeconds"] == 21600  # bounded by ORCHESTRATOR_MAX_TIMEOUT_SECONDS
    assert spec["podFailurePolicy"]["rules"][0] == {
        "action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]}
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = pod["containers"][0]["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"},
                                                 "limits": {"memory": "4Gi"}}
    assert jobs.build_job(request(timeout_seconds=5), settings())["spec"]["activeDeadlineSeconds"] == 60


FULL = dict(
    ORCHESTRATOR_JOB_NODE_SELECTOR="pool=agents,disk=ssd",
    ORCHESTRATOR_JOB_TOLERATIONS='[{"key": "agents", "operator": "Exists", "effect": "NoSchedule"}]',
    ORCHESTRATOR_JOB_AFFINITY=json.dumps({"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [{"key": "pool", "operator": "In", "values": ["agents"]}]}]}}}),
    ORCHESTRATOR_JOB_IMAGE_PULL_SECRETS="regcred,other",
    ORCHESTRATOR_JOB_SERVICE_ACCOUNT="agent-runner",
    ORCHESTRATOR_JOB_REQUESTS="cpu=1,memory=2Gi,ephemeral-storage=1Gi",
    ORCHESTRATOR_JOB_LIMITS="cpu=4,memory=8Gi",
    ORCHESTRATOR_JOB_BACKOFF_LIMIT="2", ORCHESTRATOR_JOB_TTL_SECONDS="600",
    ORCHESTRATOR_NAMESPACE="agents",
)


def test_scheduling_settings_reach_the_pod() -> None:
    pod = jobs.build_job(request(), settings(**FULL))["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"pool": "agents", "disk": "ssd"}
    assert pod["tolerations"][0]["key"] == "agents"
    assert "nodeAffinity" in pod["affinity"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}, {"name": "other"}]
    assert pod["serviceAccountName"] == "agent-runner" and "automountServiceAccountToken" not in pod


TEMPLATE = """
metadata:
  labels:
    team: platform
  annotations:
    cluster-autoscaler.kubernetes.io/safe-to-evict: "false"
spec:
  priorityClassName: agents
  containers:
    - name: agent
      image: ignored:latest
      env:
        - name: HTTP_PROXY
          value: http://proxy:3128
      resources:
        limits:
          memory: 16Gi
    - name: sidecar
      image: busybox:1.36
      command: ["sleep", "infinity"]
  volumes:
    - name: cache
      emptyDir: {}
"""


def test_an_ops_template_replaces_the_pod_but_keeps_the_run_parts(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(TEMPLATE)
    job = jobs.build_job(request(), settings(ORCHESTRATOR_JOB_TEMPLATE=str(path)))
    pod = job["spec"]["template"]
    assert pod["metadata"]["labels"]["team"] == "platform"
    assert pod["metadata"]["labels"][jobs.LABEL_MANAGED_BY] == "orchestrator"
    spec = pod["spec"]
    assert spec["priorityClassName"] == "agents" and spec["restartPolicy"] == "Never"
    agent = next(c for c in spec["containers"] if c["name"] == "agent")
    assert agent["image"] == "ghcr.io/example/agent:1"
    assert agent["resources"] == {"limits": {"memory": "16Gi"}}  # ops' choice wins
    names = [e["name"] for e in agent["env"]]
    assert "HTTP_PROXY" in names and "ANTHROPIC_API_KEY" in names
    assert {v["name"] for v in spec["volumes"]} == {"cache", "workspace", "tmp"}
    validate(job)


def test_a_bad_template_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(yaml.safe_dump(["not", "a", "template"]))
    with pytest.raises(ValueError, match="pod template"):
        jobs.build_job(request(), settings(ORCHESTRATOR_JOB_TEMPLATE=str(path)))


@pytest.mark.parametrize("env", [{}, FULL, {"ORCHESTRATOR_JOB_REQUESTS": "", "ORCHESTRATOR_JOB_LIMITS": ""}])
@pytest.mark.parametrize("req", [
    request(),
    request(stage="review", working_directory="", env={}),
    request(service="x" * 30, task_id=10 ** 9, version=10 ** 4, attempt=50, stage="s" * 40,
            agent=AgentSpec(name="codex", image="img", command=("run",), args=("--fast",))),
])
def test_every_buildable_job_validates_strictly_for_130_and_the_newest(env, req) -> None:
    validate(jobs.build_job(req, settings(**env)))


def test_validation_is_strict_enough_to_catch_a_typo() -> None:
    job = jobs.build_job(request(), settings())
    job["spec"]["template"]["spec"]["restartPolcy"] = "Never"
    with pytest.raises(kubernetes_validate.ValidationError):
        validate(job)


# An ops template that says nothing about hardening, scheduling or the account:
# the built-in pod's floor must survive the merge.
BARE_TEMPLATE = """
spec:
  containers:
    - name: agent
      securityContext:
        readOnlyRootFilesystem: true
"""


def test_an_ops_template_keeps_the_built_in_hardening(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(BARE_TEMPLATE)
    job = jobs.build_job(request(), settings(ORCHESTRATOR_JOB_TEMPLATE=str(path),
                                            ORCHESTRATOR_JOB_RUN_AS_USER="4242"))
    spec = job["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["runAsUser"] == 4242
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    agent = next(c for c in spec["containers"] if c["name"] == "agent")
    sc = agent["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["capabilities"] == {"drop": ["ALL"]}
    assert sc["runAsNonRoot"] is True and sc["seccompProfile"] == {"type": "RuntimeDefault"}
    assert sc["readOnlyRootFilesystem"] is True  # the template's own stricter choice is kept
    validate(job)


WEAK_TEMPLATE = """
spec:
  automountServiceAccountToken: true
  securityContext:
    runAsNonRoot: false
    seccompProfile:
      type: Unconfined
  containers:
    - name: agent
      securityContext:
        allowPrivilegeEscalation: true
        privileged: true
        runAsNonRoot: false
        capabilities:
          add: ["NET_ADMIN"]
"""


def test_an_ops_template_cannot_weaken_the_hardening(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(WEAK_TEMPLATE)
    spec = jobs.build_job(request(), settings(ORCHESTRATOR_JOB_TEMPLATE=str(path)))["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False  # no service account configured: no token
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sc = spec["containers"][0]["securityContext"]
    assert sc["allowPrivilegeEscalation"] is False and sc["privileged"] is False
    assert sc["runAsNonRoot"] is True and sc["capabilities"] == {"drop": ["ALL"]}


SCHEDULED_TEMPLATE = """
spec:
  nodeSelector:
    zone: a
  tolerations:
    - key: gpu
      operator: Exists
      effect: NoSchedule
  imagePullSecrets:
    - name: regcred
  containers:
    - name: agent
"""


def test_an_ops_template_honours_the_configured_scheduling_and_account(tmp_path: Path) -> None:
    path = tmp_path / "template.yaml"
    path.write_text(SCHEDULED_TEMPLATE)
    job = jobs.build_job(request(), settings(ORCHESTRATOR_JOB_TEMPLATE=str(path), **FULL))
    spec = job["spec"]["template"]["spec"]
    # Settings add to what the template says; neither is dropped.
    assert spec["nodeSelector"] == {"zone": "a", "pool": "agents", "disk": "ssd"}
    assert [t["key"] for t in spec["tolerations"]] == ["gpu", "agents"]
    assert spec["imagePullSecrets"] == [{"name": "regcred"}, {"name": "other"}]
    assert "nodeAffinity" in spec["affinity"]
    assert spec["serviceAccountName"] == "agent-runner" and "automountServiceAccountToken" not in spec
    validate(job)
