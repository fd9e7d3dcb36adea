"""The Helm chart: lint, render every values set, validate every object against Kubernetes' schema.

No helm binary and no cluster: helm-python-sdk carries Helm's Go SDK, and
kubernetes-validate carries the Kubernetes JSON schemas. Each values set is
rendered once per module.
"""

from __future__ import annotations

import base64
import json
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

helm = pytest.importorskip("helm_python")
kubernetes_validate = pytest.importorskip("kubernetes_validate")

from tests.support.chart import (  # noqa: E402
    CHART_DIR,
    NAMESPACE,
    Rendered,
    ci_values_files,
    load_values,
    render,
)
from workers.app import QUEUES  # noqa: E402

# The oldest Kubernetes we support and the newest kubernetes-validate ships.
KUBE_VERSIONS = ("1.30", kubernetes_validate.latest_version())
# Kinds from CRDs (KEDA, Prometheus Operator): Kubernetes ships no schema for them.
CRD_KINDS = {"ScaledObject", "TriggerAuthentication", "ServiceMonitor"}

VALUE_SETS: dict[str, Path | None] = {"default": None}
VALUE_SETS.update({path.stem: path for path in ci_values_files()})


@pytest.fixture(scope="module")
def chart() -> Iterator[Any]:
    with helm.Chart.load(CHART_DIR) as loaded:
        yield loaded


@pytest.fixture(scope="module")
def renders(chart: Any) -> dict[str, Rendered]:
    """Every values set rendered once."""
    return {name: render(chart, load_values(path) if path else {}) for name, path in VALUE_SETS.items()}


@pytest.fixture(scope="module")
def default(renders: dict[str, Rendered]) -> Rendered:
    return renders["default"]


def _containers(spec: dict[str, Any]) -> list[dict[str, Any]]:
    return spec.get("initContainers", []) + spec["containers"]


def _env(container: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {item["name"]: item for item in container.get("env", [])}


def _worker_deployments(rendered: Rendered) -> dict[str, dict[str, Any]]:
    prefix = "orchestrator-worker-"
    return {d["metadata"]["name"][len(prefix):]: d for d in rendered.of_kind("Deployment")
            if d["metadata"]["name"].startswith(prefix)}


def test_ci_values_files_exist() -> None:
    assert {"production-values", "minimal-values", "all-on-values", "keda-values",
            "external-redis-values", "sentinel-values"} <= set(VALUE_SETS)


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_lint_strict(name: str) -> None:
    path = VALUE_SETS[name]
    report = helm.lint(CHART_DIR, load_values(path) if path else {}, strict=True, namespace=NAMESPACE,
                       kube_version="v1.30.0")
    problems = [m for m in report["messages"] if m["severity"] >= 2]
    assert not problems and not report["errors"], report


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_object_is_valid_kubernetes(renders: dict[str, Rendered], name: str) -> None:
    rendered = renders[name]
    assert rendered.objects
    for obj in rendered.objects:
        if obj["kind"] in CRD_KINDS:
            continue  # checked by the structural tests below
        for version in KUBE_VERSIONS:
            try:
                kubernetes_validate.validate(obj, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name}: {obj['kind']}/{obj['metadata']['name']} invalid for {version}: {exc.message}")


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_names_are_unique_and_short(renders: dict[str, Rendered], name: str) -> None:
    seen = set()
    for obj in renders[name].objects:
        key = (obj["kind"], obj["metadata"]["name"])
        assert key not in seen, key
        seen.add(key)
        assert len(obj["metadata"]["name"]) <= 63


def test_default_renders_the_components(default: Rendered) -> None:
    names = {d["metadata"]["name"] for d in default.of_kind("Deployment")}
    assert names == {"orchestrator-api", "orchestrator-watcher", "orchestrator-worker-events",
                     "orchestrator-worker-coordination", "orchestrator-worker-workspace",
                     "orchestrator-worker-deploy"}
    assert not default.of_kind("HorizontalPodAutoscaler")
    assert not [o for o in default.objects if o["kind"] in CRD_KINDS]
    assert default.named("Service", "orchestrator")["spec"]["ports"][0]["port"] == 80
    assert not default.of_kind("Ingress")


def test_old_defaults_are_kept(chart: Any) -> None:
    values = chart.values
    assert values["replicaCount"] == 1
    assert values["service"] == {"type": "ClusterIP", "port": 80, "targetPort": 8080, "name": "http"}
    assert values["ingress"]["className"] == "nginx"
    assert values["rbac"] == {"create": True, "namespaced": True}
    assert values["claudeCodeChart"]["mountPath"] == "/infra"
    workspace = values["sharedWorkspace"]
    assert (workspace["name"], workspace["size"], workspace["enabled"]) == ("shared-workspace-pvc", "50Gi", False)
    assert values["healthCheck"]["path"] == "/health"
    assert values["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert values["podSecurityContext"]["runAsNonRoot"] is True


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_every_container_has_resources_and_a_security_context(renders: dict[str, Rendered], name: str) -> None:
    for owner, spec in renders[name].pod_specs():
        assert spec["securityContext"]["runAsNonRoot"] is True, owner
        assert spec["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", owner
        for container in _containers(spec):
            where = f"{name}: {owner} container {container['name']}"
            assert container["resources"].get("limits") and container["resources"].get("requests"), where
            context = container["securityContext"]
            assert context["allowPrivilegeEscalation"] is False, where
            assert context["capabilities"]["drop"] == ["ALL"], where
            assert context["runAsNonRoot"] is True, where


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_no_secret_value_in_a_config_map(renders: dict[str, Rendered], name: str) -> None:
    rendered = renders[name]
    secrets = rendered.values["secrets"]
    sensitive = [secrets[key] for key in ("anthropicApiKey", "githubToken", "githubWebhookSecret", "apiTokens",
                                          "sessionSecret")]
    sensitive += [rendered.values["flower"]["basicAuth"]["password"]]
    sensitive = [value for value in sensitive if value]
    for config_map in rendered.of_kind("ConfigMap"):
        text = json.dumps(config_map)
        for value in sensitive:
            assert value not in text, f"{name}: a secret value is in ConfigMap {config_map['metadata']['name']}"
    # Credentials reach pods only from Secrets: no literal value for a credential variable.
    for owner, spec in rendered.pod_specs():
        for container in _containers(spec):
            for var in ("ORCHESTRATOR_API_TOKENS", "ORCHESTRATOR_SESSION_SECRET", "GITHUB_TOKEN",
                        "GITHUB_WEBHOOK_SECRET", "ANTHROPIC_API_KEY", "FLOWER_BASIC_AUTH", "REDIS_PASSWORD"):
                entry = _env(container).get(var)
                if entry is not None:
                    assert "secretKeyRef" in entry.get("valueFrom", {}), f"{name}: {owner} {var}"


def test_secret_values_land_in_the_secret(renders: dict[str, Rendered]) -> None:
    rendered = renders["all-on-values"]
    secret = rendered.named("Secret", "orchestrator-secrets")
    decoded = {key: base64.b64decode(value).decode() for key, value in secret["data"].items()}
    assert decoded == {"anthropic-api-key": "ci-anthropic-key", "github-token": "ci-github-token",
                       "github-webhook-secret": "ci-webhook-secret", "api-tokens": "ci-token-a,ci-token-b",
                       "session-secret": "ci-session-secret",
                       "otel-exporter-otlp-headers": "Authorization=Bearer ci-otlp-token"}
    flower = rendered.named("Secret", "orchestrator-flower")
    assert base64.b64decode(flower["data"]["flower-basic-auth"]).decode() == "ops:ci-flower-password"


def test_the_api_believes_the_ingress_about_https_and_gets_the_session_secret(default: Rendered) -> None:
    api = default.named("Deployment", "orchestrator-api")["spec"]["template"]["spec"]["containers"][0]
    env = _env(api)
    assert env["FORWARDED_ALLOW_IPS"]["value"] == "*"  # so the console's cookie is Secure behind TLS
    assert env["ORCHESTRATOR_SESSION_SECRET"]["valueFrom"]["secretKeyRef"]["key"] == "session-secret"


def test_every_process_reading_agent_logs_knows_the_model_key_to_mask_it(default: Rendered) -> None:
    """#16 finding 9: the API and the workers serve and keep excerpts of pod logs, where an agent may print its key."""
    readers = [default.named("Deployment", "orchestrator-api"), default.named("Deployment", "orchestrator-watcher"),
               *_worker_deployments(default).values()]
    for deployment in readers:
        env = _env(deployment["spec"]["template"]["spec"]["containers"][0])
        ref = env["ANTHROPIC_API_KEY"]["valueFrom"]["secretKeyRef"]
        assert ref["key"] == "anthropic-api-key", deployment["metadata"]["name"]


def test_config_values_reach_every_process_and_parse(renders: dict[str, Rendered], default: Rendered) -> None:
    from orchestrator.settings import Settings

    config = renders["all-on-values"].named("ConfigMap", "orchestrator-config")["data"]
    assert config["ORCHESTRATOR_GITHUB_REPOSITORIES"] == "acme/shop=shop,acme/billing=billing"
    assert config["ORCHESTRATOR_AGENT_IMAGE"] == "registry.example.com/agents/claude-code:2.1"
    # What the chart renders is what the processes accept at start-up.
    settings = Settings.from_env({k: v for k, v in config.items() if k != "ORCHESTRATOR_JOB_TEMPLATE"})
    assert settings.max_retries == 3 and settings.github_trigger_label == "agent"
    assert settings.github_writes_per_minute == 40
    assert set(settings.pipelines) == {"review"}
    assert settings.otel_endpoint == "http://otel-collector.observability:4318" and settings.otel_protocol == "grpc"
    # The exporter's headers are a credential: every process reads them from the Secret.
    for name in ("orchestrator-api", "orchestrator-watcher"):
        container = renders["all-on-values"].named("Deployment", name)["spec"]["template"]["spec"]["containers"][0]
        ref = _env(container)["ORCHESTRATOR_OTEL_EXPORTER_OTLP_HEADERS"]["valueFrom"]["secretKeyRef"]
        assert ref["key"] == "otel-exporter-otlp-headers"
    assert "ORCHESTRATOR_PIPELINES" not in default.named("ConfigMap", "orchestrator-config")["data"]


def test_existing_secret_replaces_the_chart_secret(renders: dict[str, Rendered]) -> None:
    rendered = renders["keda-values"]
    assert not rendered.of_kind("Secret")
    config = rendered.named("ConfigMap", "orchestrator-config")["data"]
    assert config["ORCHESTRATOR_AGENT_SECRET"] == "orchestrator-credentials"
    api = rendered.named("Deployment", "orchestrator-api")["spec"]["template"]
    assert "checksum/secret" not in api["metadata"]["annotations"]
    tokens = _env(api["spec"]["containers"][0])["ORCHESTRATOR_API_TOKENS"]
    assert tokens["valueFrom"]["secretKeyRef"]["name"] == "orchestrator-credentials"


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_rbac_kind_follows_namespaced(renders: dict[str, Rendered], name: str) -> None:
    rendered = renders[name]
    rbac = rendered.values["rbac"]
    kinds = {o["kind"] for o in rendered.objects if o["apiVersion"].startswith("rbac.authorization.k8s.io")}
    if not rbac["create"]:
        assert kinds == set()
    elif rbac["namespaced"]:
        assert kinds == {"Role", "RoleBinding"}
    else:
        assert kinds == {"ClusterRole", "ClusterRoleBinding"}


def _rbac(rendered: Rendered, kinds: set[str], name: str) -> dict[str, Any]:
    (found,) = [o for o in rendered.objects if o["kind"] in kinds and o["metadata"]["name"] == name]
    return found


@pytest.mark.parametrize("name", ["default", "all-on-values"])
def test_rbac_is_least_privilege(renders: dict[str, Rendered], name: str) -> None:
    rendered = renders[name]
    role = _rbac(rendered, {"Role", "ClusterRole"}, "orchestrator-jobs")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    assert rules == {
        (("batch",), ("jobs",)): {"create", "get", "list", "watch", "delete"},
        (("",), ("pods", "pods/log")): {"get", "list", "watch"},
        (("",), ("events",)): {"list", "watch"},
    }
    binding = _rbac(rendered, {"RoleBinding", "ClusterRoleBinding"}, "orchestrator-jobs")
    assert binding["roleRef"]["kind"] == role["kind"]
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "orchestrator", "namespace": NAMESPACE}]


@pytest.mark.parametrize("name", ["default", "all-on-values"])
def test_the_api_account_may_only_read_pods_and_their_logs(renders: dict[str, Rendered], name: str) -> None:
    rendered = renders[name]
    account = rendered.named("ServiceAccount", "orchestrator-api")
    assert account["metadata"]["name"] != "orchestrator"
    role = _rbac(rendered, {"Role", "ClusterRole"}, "orchestrator-pod-logs")
    rules = {(tuple(r["apiGroups"]), tuple(r["resources"])): set(r["verbs"]) for r in role["rules"]}
    # KubernetesRunner.logs: list the run's pods, then read the newest one's log.
    assert rules == {(("",), ("pods",)): {"get", "list"}, (("",), ("pods/log",)): {"get"}}
    binding = _rbac(rendered, {"RoleBinding", "ClusterRoleBinding"}, "orchestrator-pod-logs")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": role["kind"],
                                  "name": "orchestrator-pod-logs"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "orchestrator-api", "namespace": NAMESPACE}]
    api = rendered.named("Deployment", "orchestrator-api")["spec"]["template"]["spec"]
    assert api["serviceAccountName"] == "orchestrator-api"
    assert api.get("automountServiceAccountToken", True) is True


def _kubernetes_access(rendered: Rendered, owner: str) -> str:
    """What a pod of the chart does with the Kubernetes API, read from the code's behaviour:
    the watcher and the `deploy` steps create, watch and delete Jobs; the API and the
    `coordination` steps (finish: the log-tail fallback) read pod logs; nothing else calls it.
    The local runner never calls Kubernetes at all."""
    if rendered.values["config"]["runner"] != "kubernetes":
        return "none"
    name = owner.split("/", 1)[1]
    if name == "orchestrator-watcher":
        return "jobs"
    if name == "orchestrator-api":
        return "logs"
    if name.startswith("orchestrator-worker-"):
        queues = rendered.values["workers"][name[len("orchestrator-worker-"):]]["queues"]
        return "jobs" if "deploy" in queues else "logs" if "coordination" in queues else "none"
    return "none"  # Flower, the helm test pod


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_service_account_tokens_only_where_kubernetes_is_called(renders: dict[str, Rendered], name: str) -> None:
    rendered = renders[name]
    jobs_account = "orchestrator" if rendered.values["serviceAccount"]["create"] else "default"
    api_account = "orchestrator-api" if rendered.values["api"]["serviceAccount"]["create"] else "default"
    seen = set()
    for owner, spec in rendered.pod_specs():
        access = _kubernetes_access(rendered, owner)
        seen.add(access)
        mounted = spec.get("automountServiceAccountToken", True)
        if access == "none":
            assert mounted is False, f"{name}: {owner} gets a token it never uses"
            if jobs_account != "default":
                assert spec.get("serviceAccountName") != jobs_account, f"{name}: {owner} runs as the Job manager"
        else:
            assert mounted is True, f"{name}: {owner} needs its token"
            expected = jobs_account if access == "jobs" else api_account
            assert spec.get("serviceAccountName", "default") == expected, f"{name}: {owner}"
    if rendered.values["config"]["runner"] == "kubernetes":
        assert {"jobs", "logs", "none"} <= seen, name  # every case is exercised


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_worker_deployments_follow_values(renders: dict[str, Rendered], name: str) -> None:
    rendered = renders[name]
    groups = {g: w for g, w in rendered.values["workers"].items() if w["enabled"]}
    deployments = _worker_deployments(rendered)
    assert set(deployments) == set(groups)
    served = set()
    for group, worker in groups.items():
        deployment = deployments[group]
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        command = container["command"]
        assert command[:4] == ["celery", "-A", "workers.app", "worker"]
        queues = command[command.index("-Q") + 1].split(",")
        assert queues == worker["queues"]
        served.update(queues)
        assert command[command.index("-c") + 1] == str(worker["concurrency"])
        assert container["resources"] == worker["resources"]
        scaled = worker["autoscaling"]["enabled"] or worker["autoscaling"]["keda"]["enabled"]
        assert deployment["spec"].get("replicas") == (None if scaled else worker["replicas"])
    assert served == set(QUEUES), f"{name}: some queue has no worker"


def test_replicas_follow_values(renders: dict[str, Rendered]) -> None:
    workers = _worker_deployments(renders["external-redis-values"])
    assert set(workers) == {"coordination"}
    assert workers["coordination"]["spec"]["replicas"] == 2
    all_on = renders["all-on-values"]
    hpas = {h["metadata"]["name"]: h["spec"] for h in all_on.of_kind("HorizontalPodAutoscaler")}
    assert hpas["orchestrator-worker-deploy"]["maxReplicas"] == 20
    assert hpas["orchestrator-worker-events"]["minReplicas"] == 2
    assert hpas["orchestrator-api"]["maxReplicas"] == 6


def test_keda_scaled_objects_replace_the_hpa(renders: dict[str, Rendered]) -> None:
    rendered = renders["keda-values"]
    scaled = {s["metadata"]["name"]: s["spec"] for s in rendered.of_kind("ScaledObject")}
    assert set(scaled) == {"orchestrator-worker-events", "orchestrator-worker-deploy"}
    assert not rendered.of_kind("HorizontalPodAutoscaler")
    events = scaled["orchestrator-worker-events"]
    assert events["scaleTargetRef"]["name"] == "orchestrator-worker-events"
    assert events["minReplicaCount"] == 0
    trigger = events["triggers"][0]
    assert trigger["type"] == "redis"
    assert trigger["metadata"]["listName"] == "events" and trigger["metadata"]["listLength"] == "50"
    assert trigger["metadata"]["address"] == "redis-master:6379"
    auth = rendered.named("TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert auth["spec"]["secretTargetRef"] == [{"parameter": "password", "name": "redis-auth",
                                               "key": "redis-password"}]
    assert "replicas" not in rendered.named("Deployment", "orchestrator-worker-events")["spec"]
    assert rendered.named("Deployment", "orchestrator-worker-coordination")["spec"]["replicas"] == 1


def test_service_monitor_scrapes_the_api_every_worker_group_and_the_watcher(renders: dict[str, Rendered]) -> None:
    rendered = renders["all-on-values"]
    (monitor,) = rendered.of_kind("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    assert monitor["metadata"]["labels"]["release"] == "prometheus"
    assert monitor["spec"]["endpoints"] == [
        {"port": "http", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"},
        {"port": "metrics", "path": "/metrics", "interval": "30s", "scrapeTimeout": "10s"},
    ]
    ports = {e["port"] for e in monitor["spec"]["endpoints"]}
    scraped = {s["metadata"]["name"] for s in rendered.of_kind("Service")
               if _selects(monitor["spec"]["selector"], s["metadata"]["labels"])
               and ports & {p["name"] for p in s["spec"]["ports"]}}
    # Every Deployment but Flower is scraped, each through a Service whose port its container names.
    deployments = {d["metadata"]["name"]: d for d in rendered.of_kind("Deployment")}
    assert scraped == {"orchestrator"} | set(deployments) - {"orchestrator-api", "orchestrator-flower"}
    port = rendered.values["metrics"]["port"]
    for name in scraped - {"orchestrator"}:
        service = rendered.named("Service", name)
        assert service["spec"]["clusterIP"] == "None" and service["spec"]["ports"][0]["port"] == port
        (container,) = deployments[name]["spec"]["template"]["spec"]["containers"]
        assert {"name": "metrics", "containerPort": port, "protocol": "TCP"} in container["ports"]
    config = rendered.named("ConfigMap", "orchestrator-config")["data"]
    assert config["ORCHESTRATOR_METRICS_PORT"] == str(port)


def test_metrics_can_be_turned_off(chart: Any) -> None:
    rendered = render(chart, {"metrics": {"enabled": False}, "serviceMonitor": {"enabled": True}})
    (monitor,) = rendered.of_kind("ServiceMonitor")
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["http"]
    assert [s["metadata"]["name"] for s in rendered.of_kind("Service")] == ["orchestrator"]
    assert "ORCHESTRATOR_METRICS_PORT" not in rendered.named("ConfigMap", "orchestrator-config")["data"]


def test_only_the_metrics_port_of_workers_and_watcher_is_reachable(chart: Any) -> None:
    rendered = render(chart, {"networkPolicy": {"enabled": True}})
    policy = rendered.named("NetworkPolicy", "orchestrator-internal")
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": 9100, "protocol": "TCP"}]
    assert rule["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    closed = render(chart, {"networkPolicy": {"enabled": True}, "metrics": {"enabled": False}})
    assert closed.named("NetworkPolicy", "orchestrator-internal")["spec"]["ingress"] == []


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_services_and_pdbs_select_pods(renders: dict[str, Rendered], name: str) -> None:
    rendered = renders[name]
    pod_labels = [d["spec"]["template"]["metadata"]["labels"] for d in rendered.of_kind("Deployment")]
    for obj in rendered.of_kind("Service") + rendered.of_kind("PodDisruptionBudget"):
        selector = obj["spec"]["selector"]
        selector = selector.get("matchLabels", selector)
        matches = [labels for labels in pod_labels if selector.items() <= labels.items()]
        assert len(matches) == 1, f"{name}: {obj['kind']}/{obj['metadata']['name']} selects {len(matches)}"


def test_pdbs_cover_every_component(default: Rendered) -> None:
    pdbs = {p["metadata"]["name"] for p in default.of_kind("PodDisruptionBudget")}
    assert pdbs == {d["metadata"]["name"] for d in default.of_kind("Deployment")}
    assert all(p["spec"]["maxUnavailable"] == 1 for p in default.of_kind("PodDisruptionBudget"))


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_workers_shut_down_warm(renders: dict[str, Rendered], name: str) -> None:
    rendered = renders[name]
    grace = rendered.values["workerSettings"]["terminationGracePeriodSeconds"]
    assert grace > rendered.values["config"]["stepTimeLimit"]
    for deployment in _worker_deployments(rendered).values():
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] == grace


def test_worker_liveness_reads_the_consumer_heartbeat_the_worker_writes(default: Rendered) -> None:
    for deployment in _worker_deployments(default).values():
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        probe = container["livenessProbe"]
        written = container["command"][container["command"].index("--heartbeat-file") + 1]
        read = shlex.split(probe["exec"]["command"][-1])
        assert read[:2] == ["orchestrator", "worker-alive"]
        assert read[read.index("--heartbeat-file") + 1] == written and written.startswith("/tmp/")
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]  # writable, kept across restarts
        max_age = float(read[read.index("--max-age") + 1])
        assert max_age == default.values["workerSettings"]["livenessProbe"]["maxAgeSeconds"]
        # A 10 s Redis restart and Celery's reconnect fit well inside what the probe allows.
        assert max_age + probe["periodSeconds"] * probe["failureThreshold"] >= 120


def test_api_runs_gunicorn_with_health_probes(default: Rendered) -> None:
    spec = default.named("Deployment", "orchestrator-api")["spec"]["template"]["spec"]
    container = spec["containers"][0]
    assert container["command"] == ["gunicorn", "-c", "python:api.gunicorn_conf", "api.wsgi:app"]
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert container["ports"][0]["containerPort"] == 8080
    # Its token is the pod-logs one (GET .../logs), never the Job manager's.
    assert spec["serviceAccountName"] == "orchestrator-api"
    config = default.named("ConfigMap", "orchestrator-config")["data"]
    assert config["GUNICORN_BIND"] == "0.0.0.0:8080"


def test_watcher_is_a_singleton_control_loop(renders: dict[str, Rendered]) -> None:
    watcher = renders["default"].named("Deployment", "orchestrator-watcher")
    assert watcher["spec"]["replicas"] == 1
    assert watcher["spec"]["template"]["spec"]["containers"][0]["command"] == ["orchestrator", "watcher"]
    assert renders["all-on-values"].named("Deployment", "orchestrator-watcher")["spec"]["replicas"] == 2
    assert not [d for d in renders["minimal-values"].of_kind("Deployment") if "watcher" in d["metadata"]["name"]]


def test_flower_is_optional_and_authenticated(renders: dict[str, Rendered]) -> None:
    assert not [d for d in renders["default"].of_kind("Deployment") if "flower" in d["metadata"]["name"]]
    flower = renders["all-on-values"].named("Deployment", "orchestrator-flower")["spec"]["template"]["spec"]
    container = flower["containers"][0]
    assert container["command"] == ["celery", "-A", "workers.app", "flower", "--port=5555"]
    ref = _env(container)["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"]
    assert ref == {"name": "orchestrator-flower", "key": "flower-basic-auth"}
    external = renders["external-redis-values"].named("Deployment", "orchestrator-flower")
    ref = _env(external["spec"]["template"]["spec"]["containers"][0])["FLOWER_BASIC_AUTH"]["valueFrom"]
    assert ref["secretKeyRef"] == {"name": "flower-auth", "key": "basic-auth"}


def test_flower_without_credentials_is_refused(chart: Any) -> None:
    with pytest.raises(helm.HelmRenderError, match="flower.basicAuth.password"):
        chart.render(values={"flower": {"enabled": True}}, name="orchestrator", namespace=NAMESPACE)


def test_redis_url_from_release_or_external_secret(renders: dict[str, Rendered]) -> None:
    api = renders["default"].named("Deployment", "orchestrator-api")["spec"]["template"]["spec"]["containers"][0]
    env = _env(api)
    assert env["REDIS_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "redis-auth", "key": "redis-password"}
    assert env["ORCHESTRATOR_REDIS_URL"]["value"] == "redis://:$(REDIS_PASSWORD)@redis-master:6379/0"
    names = [item["name"] for item in api["env"]]
    assert names.index("REDIS_PASSWORD") < names.index("ORCHESTRATOR_REDIS_URL")  # needed for $(...) expansion
    external = renders["external-redis-values"].named("Deployment", "orchestrator-worker-coordination")
    env = _env(external["spec"]["template"]["spec"]["containers"][0])
    assert env["ORCHESTRATOR_REDIS_URL"]["valueFrom"]["secretKeyRef"] == {"name": "managed-redis", "key": "url"}
    assert "REDIS_PASSWORD" not in env
    minimal = renders["minimal-values"].named("Deployment", "orchestrator-api")["spec"]["template"]["spec"]
    assert _env(minimal["containers"][0])["ORCHESTRATOR_REDIS_URL"]["value"] == "redis://redis-master:6379/0"


def test_redis_through_sentinel_reaches_every_process(renders: dict[str, Rendered]) -> None:
    from orchestrator.celery_app import celery_config
    from orchestrator.settings import Settings

    rendered = renders["sentinel-values"]
    sentinels = "redis-node-0.redis-headless:26379,redis-node-1.redis-headless:26379,redis-node-2.redis-headless:26379"
    for name, spec in rendered.pod_specs():
        for container in spec["containers"]:
            env = _env(container)
            if "ORCHESTRATOR_REDIS_URL" not in env:
                continue
            assert env["ORCHESTRATOR_REDIS_SENTINELS"]["value"] == sentinels, name
            assert env["ORCHESTRATOR_REDIS_SENTINEL_MASTER"]["value"] == "mymaster"
            # The Sentinels' password is Redis's own, from the same Secret, never a literal.
            assert env["ORCHESTRATOR_REDIS_SENTINEL_PASSWORD"]["valueFrom"]["secretKeyRef"] == {
                "name": "redis-auth", "key": "redis-password"}
            assert env["ORCHESTRATOR_REDIS_URL"]["value"] == "redis://:$(REDIS_PASSWORD)@mymaster:6379/0"
            assert env["ORCHESTRATOR_REDIS_WAIT_REPLICAS"]["value"] == "2"
    # What the chart renders is what the processes accept: Celery on the sentinel:// transport.
    api = _env(rendered.named("Deployment", "orchestrator-api")["spec"]["template"]["spec"]["containers"][0])
    settings = Settings.from_env({
        "ORCHESTRATOR_REDIS_URL": api["ORCHESTRATOR_REDIS_URL"]["value"].replace("$(REDIS_PASSWORD)", "pw"),
        "ORCHESTRATOR_REDIS_SENTINEL_PASSWORD": "pw",
        **{k: v["value"] for k, v in api.items()
           if k.startswith("ORCHESTRATOR_REDIS_") and "value" in v and k != "ORCHESTRATOR_REDIS_URL"},
    })
    assert settings.redis_wait_replicas == 2 and settings.redis_wait_timeout_ms == 500
    config = celery_config(settings)
    assert config["broker_url"].startswith("sentinel://:pw@redis-node-0.redis-headless:26379/0;")
    assert config["broker_transport_options"]["master_name"] == "mymaster"
    # KEDA asks the Sentinels too, with both passwords from the Secret.
    (scaled,) = rendered.of_kind("ScaledObject")
    trigger = scaled["spec"]["triggers"][0]
    assert trigger["type"] == "redis-sentinel"
    assert trigger["metadata"]["addresses"] == sentinels and trigger["metadata"]["sentinelMaster"] == "mymaster"
    auth = rendered.named("TriggerAuthentication", trigger["authenticationRef"]["name"])
    assert {ref["parameter"] for ref in auth["spec"]["secretTargetRef"]} == {"password", "sentinelPassword"}
    # Without Sentinel nothing of it is rendered, and the wait stays automatic.
    default = _env(renders["default"].named("Deployment", "orchestrator-api")["spec"]["template"]["spec"]["containers"][0])
    assert "ORCHESTRATOR_REDIS_SENTINELS" not in default
    assert default["ORCHESTRATOR_REDIS_WAIT_REPLICAS"]["value"] == "auto"


def test_anthropic_key_only_where_the_agent_runs_or_its_logs_are_read(renders: dict[str, Rendered]) -> None:
    # The API, the watcher and the workers read agents' logs and mask the key in them (see above); no other pod.
    readers = ("orchestrator-api", "orchestrator-watcher", "orchestrator-worker-")
    for owner, spec in renders["default"].pod_specs():
        if not any(name in str(owner) for name in readers):
            assert "ANTHROPIC_API_KEY" not in _env(spec["containers"][0]), owner
    local = renders["external-redis-values"].named("Deployment", "orchestrator-worker-coordination")
    assert "ANTHROPIC_API_KEY" in _env(local["spec"]["template"]["spec"]["containers"][0])


def test_shared_workspace_and_job_template_are_wired(renders: dict[str, Rendered]) -> None:
    rendered = renders["production-values"]
    pvc = rendered.named("PersistentVolumeClaim", "shared-workspace-pvc")
    assert pvc["spec"]["resources"]["requests"]["storage"] == "100Gi"
    assert pvc["spec"]["storageClassName"] == "fast-ssd"
    assert pvc["spec"]["accessModes"] == ["ReadWriteOnce"]
    config = rendered.named("ConfigMap", "orchestrator-config")["data"]
    assert config["ORCHESTRATOR_WORKSPACE_PVC"] == "shared-workspace-pvc"
    assert config["ORCHESTRATOR_WORKSPACE_ROOT"] == "/workspace"
    assert config["ORCHESTRATOR_JOB_TEMPLATE"] == "/infra/job-template.yaml"
    assert config["ORCHESTRATOR_RUNNER"] == "kubernetes"
    assert config["ORCHESTRATOR_NAMESPACE"] == NAMESPACE
    worker = rendered.named("Deployment", "orchestrator-worker-deploy")["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in worker["volumes"]}
    assert volumes["workspace"]["persistentVolumeClaim"]["claimName"] == "shared-workspace-pvc"
    assert volumes["job-template"]["configMap"]["name"] == "orchestrator-job-template"
    mounts = {m["name"]: m["mountPath"] for m in worker["containers"][0]["volumeMounts"]}
    assert mounts == {"tmp": "/tmp", "workspace": "/workspace", "job-template": "/infra"}
    existing = renders["external-redis-values"]
    assert not existing.of_kind("PersistentVolumeClaim")
    assert existing.named("ConfigMap", "orchestrator-config")["data"]["ORCHESTRATOR_WORKSPACE_PVC"] == "team-workspace"
    minimal = renders["minimal-values"].named("ConfigMap", "orchestrator-config")["data"]
    assert "ORCHESTRATOR_WORKSPACE_PVC" not in minimal and "ORCHESTRATOR_JOB_TEMPLATE" not in minimal


def test_job_template_is_a_valid_pod_template(default: Rendered) -> None:
    config_map = default.named("ConfigMap", "orchestrator-job-template")
    template = yaml.safe_load(config_map["data"]["job-template.yaml"])
    job = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "probe"},
           "spec": {"template": template}}
    template["spec"]["containers"][0].setdefault("image", "agent:test")
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_agent_pods_from_the_chart_template_are_hardened(renders: dict[str, Rendered], name: str,
                                                         tmp_path: Path) -> None:
    """What the chart's job template becomes once the Job builder merges a run into it."""
    from orchestrator.kube import jobs
    from orchestrator.runners.base import AgentSpec, RunRequest
    from orchestrator.settings import Settings

    rendered = renders[name]
    if not rendered.values["claudeCodeChart"]["enabled"]:
        pytest.skip("no job template in this values set")
    text = rendered.named("ConfigMap", "orchestrator-job-template")["data"]["job-template.yaml"]
    template = yaml.safe_load(text)
    # The template itself says it: ops editing the ConfigMap see the hardening.
    assert template["spec"]["automountServiceAccountToken"] is False
    path = tmp_path / "job-template.yaml"
    path.write_text(text)
    config = dict(rendered.named("ConfigMap", "orchestrator-config")["data"], ORCHESTRATOR_JOB_TEMPLATE=str(path),
                  ORCHESTRATOR_JOB_NODE_SELECTOR="pool=agents",
                  ORCHESTRATOR_JOB_TOLERATIONS='[{"key": "agents", "operator": "Exists"}]',
                  ORCHESTRATOR_JOB_IMAGE_PULL_SECRETS="agent-registry", ORCHESTRATOR_JOB_RUN_AS_USER="4242")
    settings = Settings.from_env(config)
    request = RunRequest(run_id="billing-7-v1-a1", service="billing", task_id=7, version=1, attempt=1,
                         agent=AgentSpec(name="claude", image="agent:test", command=("claude",)),
                         workspace_dir=Path("/workspace/billing"))
    job = jobs.build_job(request, settings)
    spec = job["spec"]["template"]["spec"]
    assert spec["automountServiceAccountToken"] is False and "serviceAccountName" not in spec
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] == 4242
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    assert spec["nodeSelector"] == {"pool": "agents"}
    assert {"key": "agents", "operator": "Exists"} in spec["tolerations"]
    assert {"name": "agent-registry"} in spec["imagePullSecrets"]
    (agent,) = spec["containers"]
    context = agent["securityContext"]
    assert context["allowPrivilegeEscalation"] is False and context["capabilities"] == {"drop": ["ALL"]}
    assert context["runAsNonRoot"] is True and context["seccompProfile"] == {"type": "RuntimeDefault"}
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(job, version, strict=True)


def test_job_namespace_apart_from_a_shared_claim_is_refused(chart: Any) -> None:
    values = {"config": {"jobNamespace": "agents"}, "sharedWorkspace": {"enabled": True}}
    with pytest.raises(helm.HelmRenderError, match="jobNamespace"):
        chart.render(values=values, name="orchestrator", namespace=NAMESPACE)


def test_checksums_roll_pods_when_config_changes(chart: Any, default: Rendered) -> None:
    changed = render(chart, {"config": {"maxActiveRuns": 99}, "secrets": {"githubToken": "rotated"}})

    def annotations(rendered: Rendered) -> dict[str, str]:
        return rendered.named("Deployment", "orchestrator-worker-deploy")["spec"]["template"]["metadata"][
            "annotations"]

    before, after = annotations(default), annotations(changed)
    assert {"checksum/config", "checksum/secret", "checksum/job-template"} <= before.keys()
    assert before["checksum/config"] != after["checksum/config"]
    assert before["checksum/secret"] != after["checksum/secret"]
    assert before["checksum/job-template"] == after["checksum/job-template"]


def test_helm_test_hook_calls_ready(default: Rendered) -> None:
    (pod,) = default.of_kind("Pod")
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"
    assert pod["spec"]["containers"][0]["command"][-1] == "http://orchestrator:80/ready"


def test_notes_tell_how_to_reach_api_and_flower(renders: dict[str, Rendered]) -> None:
    default = renders["default"].notes
    assert "port-forward svc/orchestrator 8080:80" in default and "orchestrator.local" not in default
    assert "Flower is off" in default
    all_on = renders["all-on-values"].notes
    assert "https://orchestrator.example.com/api/v1/pm" in all_on
    assert "https://orchestrator.example.com/webhooks/github" in all_on
    assert "port-forward svc/orchestrator-flower 5555:5555" in all_on


@pytest.mark.parametrize("values, where", [
    ({"bogus": 1}, "bogus"),
    ({"replicaCount": "two"}, "/replicaCount"),
    ({"workers": {"evnets": {"replicas": 2}}}, "evnets"),
    ({"workers": {"events": {"queues": ["nope"]}}}, "/workers/events/queues/0"),
    ({"workers": {"deploy": {"concurrency": 0}}}, "/workers/deploy/concurrency"),
    ({"ingress": {"hosts": [{"host": "a", "paths": [{"path": "/", "pathType": "Prefix", "x": 1}]}]}}, "x"),
    ({"sharedWorkspace": {"accessMode": "ReadWriteAll"}}, "/sharedWorkspace/accessMode"),
    ({"config": {"runner": "docker"}}, "/config/runner"),
    ({"ingress": {"enabled": True}}, "/ingress/tls"),
])
def test_schema_rejects_unknown_keys_and_wrong_types(chart: Any, values: dict[str, Any], where: str) -> None:
    with pytest.raises(helm.HelmValuesError, match=re.escape(where)):
        chart.validate_schema(values)


# Objects whose keys are Kubernetes' (or free maps), not the chart's: the schema
# leaves them open; kubernetes-validate checks what they become.
OPEN_OBJECTS = {"global", "podSecurityContext", "securityContext", "affinity", "tolerations",
                "claudeCodeChart.jobTemplate", "config.extraEnv", "podAnnotations", "nodeSelector",
                "serviceAccount.annotations", "ingress.annotations", "serviceMonitor.labels", "limits", "requests",
                "networkPolicy.agents.dns", "networkPolicy.agents.extraEgress", "networkPolicy.api.from",
                "networkPolicy.flower.from", "networkPolicy.metrics.from", "grafanaDashboard.labels"}


def _schema_nodes(schema: dict[str, Any], root: dict[str, Any], path: str = "") -> Iterator[tuple[str, dict]]:
    if "$ref" in schema:
        schema = root["definitions"][schema["$ref"].rsplit("/", 1)[1]]
    yield path, schema
    for key, sub in schema.get("properties", {}).items():
        yield from _schema_nodes(sub, root, f"{path}.{key}" if path else key)
    if isinstance(schema.get("items"), dict):
        yield from _schema_nodes(schema["items"], root, f"{path}[]")


def _is_open(path: str) -> bool:
    return any(path == p or path.endswith("." + p) or path.startswith(p + ".") for p in OPEN_OBJECTS)


def test_schema_closes_every_object_of_the_chart() -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    for path, node in _schema_nodes(schema, schema):
        if node.get("type") == "object" and not _is_open(path):
            assert node.get("additionalProperties") is False, f"{path or '<root>'} accepts unknown keys"


def _value_paths(value: Any, path: str = "") -> Iterator[str]:
    if isinstance(value, dict):
        for key, sub in value.items():
            child = f"{path}.{key}" if path else key
            yield child
            if not _is_open(child):
                yield from _value_paths(sub, child)
    elif isinstance(value, list):
        for item in value:
            yield from _value_paths(item, f"{path}[]")


def test_schema_covers_every_value(chart: Any) -> None:
    schema = json.loads((CHART_DIR / "values.schema.json").read_text())
    known = {path for path, _ in _schema_nodes(schema, schema)}
    values = yaml.safe_load((CHART_DIR / "values.yaml").read_text())
    missing = [path for path in _value_paths(values) if path not in known and not _is_open(path.rsplit(".", 1)[0])]
    assert not missing
    chart.validate_schema(values)


def test_every_value_is_commented() -> None:
    """Each key of the chart's own objects has a comment right above it (list items and
    open Kubernetes objects excepted: their keys are Kubernetes')."""
    lines = (CHART_DIR / "values.yaml").read_text().splitlines()
    stack: list[tuple[int, str]] = []  # (indent, key or "[]") of what encloses the line
    uncommented = []
    for number, line in enumerate(lines):
        stripped = line.lstrip()
        if not stripped or stripped.startswith("#"):
            continue
        indent = len(line) - len(stripped)
        while stack and stack[-1][0] >= indent:
            stack.pop()
        if stripped.startswith("-"):
            stack.append((indent, "[]"))
            continue
        match = re.match(r"^([A-Za-z][\w.\-/]*):", stripped)
        if not match:
            continue
        keys = [key for _, key in stack]
        parent = ".".join(keys)
        if "[]" not in keys and not (parent and _is_open(parent)):
            if not lines[number - 1].strip().startswith("#"):
                uncommented.append(f"{number + 1}: {stripped}")
        stack.append((indent, match.group(1)))
    assert not uncommented, uncommented


@pytest.mark.parametrize("name", ["default", "all-on-values", "external-redis-values"])
def test_every_chart_command_names_a_real_entry_point(renders: dict[str, Rendered], name: str) -> None:
    from tests.support.entrypoints import check_command

    for deployment in renders[name].of_kind("Deployment"):
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        check_command(container["command"])
        probe = container.get("livenessProbe", {}).get("exec")
        if probe:
            check_command(shlex.split(probe["command"][-1]))


def test_grace_period_shorter_than_a_step_is_refused(chart: Any) -> None:
    values = {"workerSettings": {"terminationGracePeriodSeconds": 300}, "config": {"stepTimeLimit": 360}}
    with pytest.raises(helm.HelmRenderError, match="terminationGracePeriodSeconds"):
        chart.render(values=values, name="orchestrator", namespace=NAMESPACE)


# --- Graceful upgrades (issue #19, item 8; tests/faults/test_rolling_upgrade.py runs the roll) ---


@pytest.mark.parametrize("name", sorted(VALUE_SETS))
def test_a_rolling_upgrade_starts_the_new_pod_before_an_old_one_goes(renders: dict[str, Rendered], name: str) -> None:
    rendered = renders[name]
    rolled = [d for d in rendered.of_kind("Deployment")
              if d["metadata"]["name"] == "orchestrator-api" or d["metadata"]["name"] == "orchestrator-watcher"
              or d["metadata"]["name"].startswith("orchestrator-worker-")]
    assert rolled
    for deployment in rolled:
        strategy = deployment["spec"]["strategy"]
        assert strategy == {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}, \
            deployment["metadata"]["name"]


def test_api_pods_drain_before_gunicorn_stops(default: Rendered) -> None:
    spec = default.named("Deployment", "orchestrator-api")["spec"]["template"]["spec"]
    api = spec["containers"][0]
    pause = api["lifecycle"]["preStop"]["sleep"]["seconds"]
    graceful = int(_env(api)["GUNICORN_GRACEFUL_TIMEOUT"]["value"])
    assert pause >= 5 and graceful == 30
    assert spec["terminationGracePeriodSeconds"] > pause + graceful
    assert api["readinessProbe"]["httpGet"]["path"] == "/ready"  # no traffic until Redis answers


def test_workers_outlast_a_step_and_the_watcher_lets_go_of_its_lease(default: Rendered) -> None:
    config = default.named("ConfigMap", "orchestrator-config")["data"]
    soft, hard = int(config["ORCHESTRATOR_STEP_SOFT_TIME_LIMIT"]), int(config["ORCHESTRATOR_STEP_TIME_LIMIT"])
    assert soft < hard
    for deployment in _worker_deployments(default).values():
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] > hard
    watcher = default.named("Deployment", "orchestrator-watcher")["spec"]["template"]["spec"]
    assert watcher["terminationGracePeriodSeconds"] >= 30


def test_api_grace_period_shorter_than_its_drain_is_refused(chart: Any) -> None:
    values = {"api": {"terminationGracePeriodSeconds": 30, "preStopSeconds": 5, "gracefulTimeoutSeconds": 30}}
    with pytest.raises(helm.HelmRenderError, match="api.terminationGracePeriodSeconds"):
        chart.render(values=values, name="orchestrator", namespace=NAMESPACE)


# --- Exposure: the Ingress (issue #16, item 11) ---

PUBLIC_TLS = {"tls": [{"secretName": "orchestrator-tls", "hosts": ["orchestrator.local"]}]}


def test_ingress_is_off_by_default(default: Rendered) -> None:
    assert default.values["ingress"]["enabled"] is False
    assert not default.of_kind("Ingress")


@pytest.mark.parametrize("ingress", [{"enabled": True}, {"enabled": True, "tls": []}])
def test_ingress_without_tls_is_refused(chart: Any, ingress: dict[str, Any]) -> None:
    with pytest.raises((helm.HelmRenderError, helm.HelmValuesError), match="ingress.tls"):
        chart.render(values={"ingress": ingress}, name="orchestrator", namespace=NAMESPACE)


@pytest.mark.parametrize("annotations", [{}, {"nginx.ingress.kubernetes.io/ssl-redirect": "false"},
                                         {"nginx.ingress.kubernetes.io/force-ssl-redirect": "false"}])
def test_ingress_always_redirects_http_to_https(chart: Any, annotations: dict[str, str]) -> None:
    rendered = render(chart, {"ingress": {"enabled": True, "annotations": annotations, **PUBLIC_TLS}})
    ingress = rendered.named("Ingress", "orchestrator")
    assert ingress["spec"]["tls"] == [{"hosts": ["orchestrator.local"], "secretName": "orchestrator-tls"}]
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/ssl-redirect"] == "true"
    assert ingress["metadata"]["annotations"]["nginx.ingress.kubernetes.io/force-ssl-redirect"] == "true"


def _routed_paths(rendered: Rendered) -> set[str]:
    return {path["path"] for ingress in rendered.of_kind("Ingress") for rule in ingress["spec"]["rules"]
            for path in rule["http"]["paths"]}


def test_ingress_routes_only_the_api_and_webhooks_by_default(chart: Any, renders: dict[str, Rendered]) -> None:
    rendered = render(chart, {"ingress": {"enabled": True, **PUBLIC_TLS}})
    assert _routed_paths(rendered) == {"/api/v1/pm", "/webhooks/github"}
    for name, values_set in renders.items():
        routed = _routed_paths(values_set)
        # Neither the metrics, the docs nor Flower are routed by a values set of ours.
        assert not {"/", "/metrics", "/api/v1/docs"} & routed, name
        for ingress in values_set.of_kind("Ingress"):
            for rule in ingress["spec"]["rules"]:
                for path in rule["http"]["paths"]:
                    assert path["backend"]["service"]["name"] == "orchestrator", name


@pytest.mark.parametrize("name", list(VALUE_SETS))
def test_no_pod_tolerates_the_control_plane_taint(renders: dict[str, Rendered], name: str) -> None:
    for owner, spec in renders[name].pod_specs():
        keys = {t.get("key") for t in spec.get("tolerations", [])}
        assert not keys & {"node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/master"}, owner


# --- NetworkPolicies (issue #16, item 11) ---

def _agent_labels() -> dict[str, str]:
    """The labels the Job builder really puts on agent pods."""
    from orchestrator.kube import jobs
    from orchestrator.runners.base import AgentSpec, RunRequest

    request = RunRequest(run_id="billing-7-v1-a1", service="billing", task_id=7, version=1, attempt=1,
                         agent=AgentSpec(name="claude", image="agent:test", command=("claude",)),
                         workspace_dir=Path("/workspace/billing"))
    return jobs.labels(request)


def _selects(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expression in selector.get("matchExpressions", []):
        value = labels.get(expression["key"])
        if expression["operator"] == "In" and value not in expression["values"]:
            return False
        if expression["operator"] == "NotIn" and value in expression["values"]:
            return False
        if expression["operator"] == "Exists" and value is None:
            return False
        if expression["operator"] == "DoesNotExist" and value is not None:
            return False
    return True


def _policies_for(rendered: Rendered, labels: dict[str, str], namespace: str) -> list[dict[str, Any]]:
    return [p for p in rendered.of_kind("NetworkPolicy")
            if p["metadata"].get("namespace", NAMESPACE) == namespace and _selects(p["spec"]["podSelector"], labels)]


def _egress_allows(policies: list[dict[str, Any]], ip: str, port: int) -> bool:
    """Whether any of these policies lets a pod send TCP to ip:port (address peers only)."""
    import ipaddress

    address = ipaddress.ip_address(ip)
    for policy in policies:
        for rule in policy["spec"].get("egress", []):
            ports = rule.get("ports")
            if ports and not any(p.get("port") == port and p.get("protocol", "TCP") == "TCP" for p in ports):
                continue
            peers = rule.get("to")
            if not peers:
                return True
            for peer in peers:
                block = peer.get("ipBlock")
                if block and address in ipaddress.ip_network(block["cidr"]) and not any(
                        address in ipaddress.ip_network(e) for e in block.get("except", [])):
                    return True
    return False


def test_network_policies_are_on_by_default(chart: Any, default: Rendered) -> None:
    assert default.values["networkPolicy"]["enabled"] is True
    assert default.of_kind("NetworkPolicy")
    off = render(chart, {"networkPolicy": {"enabled": False}})
    assert not off.of_kind("NetworkPolicy")


@pytest.mark.parametrize("name", [n for n in VALUE_SETS if n != "minimal-values"])
def test_agent_pods_take_no_connections_and_reach_only_dns_and_public_https(renders: dict[str, Rendered],
                                                                              name: str) -> None:
    rendered = renders[name]
    namespace = rendered.values["config"]["jobNamespace"] or NAMESPACE
    policies = _policies_for(rendered, _agent_labels(), namespace)
    assert policies, f"{name}: no NetworkPolicy selects agent pods"
    for policy in policies:
        assert set(policy["spec"]["policyTypes"]) == {"Ingress", "Egress"}
        assert not policy["spec"].get("ingress"), "agent pods take no connection"
    # The git hosts and the model API: public addresses on 443.
    assert _egress_allows(policies, "140.82.112.3", 443)     # github.com
    assert _egress_allows(policies, "160.79.104.10", 443)    # api.anthropic.com
    assert not _egress_allows(policies, "140.82.112.3", 22)
    assert not _egress_allows(policies, "140.82.112.3", 80)
    # Never the cloud metadata service, nor anything inside the cluster (Redis, the API, Flower).
    for ip in ("169.254.169.254", "169.254.170.2", "10.0.0.12", "172.20.1.5", "192.168.1.9", "100.64.3.4"):
        for port in (80, 443, 6379, 8080, 5555):
            assert not _egress_allows(policies, ip, port), f"{name}: agents reach {ip}:{port}"
    # DNS, to the cluster's resolver only.
    dns = [rule for policy in policies for rule in policy["spec"]["egress"]
           if {p["port"] for p in rule.get("ports", [])} == {53}]
    assert dns and all(rule.get("to") for rule in dns)
    assert {p["protocol"] for rule in dns for p in rule["ports"]} == {"UDP", "TCP"}
    assert not any("ipBlock" in peer for rule in dns for peer in rule["to"])


def test_agent_egress_is_configurable(chart: Any) -> None:
    values = {"networkPolicy": {"agents": {"egress": [{"cidr": "203.0.113.0/24", "ports": [443, 22]}],
                                           "extraEgress": [{"to": [{"podSelector": {"matchLabels": {
                                               "app": "proxy"}}}], "ports": [{"port": 3128}]}]}}}
    rendered = render(chart, values)
    policies = _policies_for(rendered, _agent_labels(), NAMESPACE)
    assert _egress_allows(policies, "203.0.113.7", 22)
    assert not _egress_allows(policies, "140.82.112.3", 443)
    assert any(rule.get("ports") == [{"port": 3128}] for p in policies for rule in p["spec"]["egress"])
    for obj in rendered.of_kind("NetworkPolicy"):
        for version in KUBE_VERSIONS:
            kubernetes_validate.validate(obj, version, strict=True)


def _pod_labels(rendered: Rendered, deployment: str) -> dict[str, str]:
    return rendered.named("Deployment", deployment)["spec"]["template"]["metadata"]["labels"]


def _ingress_rules(rendered: Rendered, labels: dict[str, str]) -> list[dict[str, Any]]:
    policies = [p for p in _policies_for(rendered, labels, NAMESPACE) if "Ingress" in p["spec"]["policyTypes"]]
    assert policies, labels
    return [rule for p in policies for rule in p["spec"].get("ingress", [])]


def test_workers_and_the_watcher_take_no_connections_but_scrapes(default: Rendered) -> None:
    monitoring = [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    for deployment in default.of_kind("Deployment"):
        name = deployment["metadata"]["name"]
        if name.startswith("orchestrator-worker-") or name == "orchestrator-watcher":
            # Only their metrics port, only from Prometheus' namespace.
            rules = _ingress_rules(default, _pod_labels(default, name))
            assert rules == [{"from": monitoring, "ports": [{"port": 9100, "protocol": "TCP"}]}], name
            # Their egress (Redis, the Kubernetes API, GitHub) is not restricted by the chart.
            for policy in _policies_for(default, _pod_labels(default, name), NAMESPACE):
                assert policy["spec"]["policyTypes"] == ["Ingress"], name


def test_the_api_is_reachable_only_as_configured(chart: Any, renders: dict[str, Rendered]) -> None:
    default = renders["default"]
    rules = _ingress_rules(default, _pod_labels(default, "orchestrator-api"))
    assert rules and all(rule["ports"] == [{"port": 8080, "protocol": "TCP"}] for rule in rules)
    peers = [peer for rule in rules for peer in rule["from"]]
    # The ingress controller, Prometheus (ServiceMonitor) and this release's own pods (helm test).
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}} in peers
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}} in peers
    assert not any("ipBlock" in peer for peer in peers)
    own = [peer["podSelector"] for peer in peers if "namespaceSelector" not in peer]
    (test_pod,) = default.of_kind("Pod")
    assert own and all(_selects(selector, test_pod["metadata"]["labels"]) for selector in own)
    assert not any(_selects(selector, _pod_labels(default, "orchestrator-worker-deploy")) for selector in own)
    assert not any(_selects(selector, _agent_labels()) for selector in own)
    # A LoadBalancer Service is a public door by choice: the policy lets it through.
    external = renders["external-redis-values"]
    rules = _ingress_rules(external, _pod_labels(external, "orchestrator-api"))
    assert any("from" not in rule for rule in rules)
    custom = render(chart, {"networkPolicy": {"api": {"from": [{"ipBlock": {"cidr": "203.0.113.0/24"}}]}}})
    peers = [peer for rule in _ingress_rules(custom, _pod_labels(custom, "orchestrator-api")) for peer in rule["from"]]
    assert {"ipBlock": {"cidr": "203.0.113.0/24"}} in peers
    assert {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}} not in peers


def test_flower_is_reachable_only_as_configured(chart: Any, renders: dict[str, Rendered]) -> None:
    rendered = renders["all-on-values"]
    # Nobody by default: ops reach it with a port-forward, which NetworkPolicies do not filter.
    assert _ingress_rules(rendered, _pod_labels(rendered, "orchestrator-flower")) == []
    values = {"flower": {"enabled": True, "basicAuth": {"password": "x"}},
              "networkPolicy": {"flower": {"from": [{"namespaceSelector": {"matchLabels": {"team": "ops"}}}]}}}
    custom = render(chart, values)
    rules = _ingress_rules(custom, _pod_labels(custom, "orchestrator-flower"))
    assert rules == [{"from": [{"namespaceSelector": {"matchLabels": {"team": "ops"}}}],
                      "ports": [{"port": 5555, "protocol": "TCP"}]}]


def test_redis_admits_only_the_orchestrator(default: Rendered) -> None:
    """charts/redis-values.yaml turns on the Bitnami chart's own NetworkPolicy with no external access:
    Redis takes connections from its own pods, the orchestrator's and KEDA's operator, never agents."""
    redis_values = load_values(CHART_DIR.parent / "redis-values.yaml")
    policy = redis_values["networkPolicy"]
    assert policy["enabled"] is True and policy["allowExternal"] is False
    peers = [peer for rule in policy["extraIngress"] for peer in rule["from"]]
    assert all(rule["ports"] == [{"port": 6379, "protocol": "TCP"}] for rule in policy["extraIngress"])
    ours = [peer for peer in peers if "namespaceSelector" not in peer]
    for deployment in default.of_kind("Deployment"):  # every component talks to Redis
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert any(_selects(peer["podSelector"], labels) for peer in ours), deployment["metadata"]["name"]
    assert not any(_selects(peer["podSelector"], _agent_labels()) for peer in peers)


# --- Redis memory (issue #16, item 7) ---

_REDIS_UNITS = {"": 1, "b": 1, "k": 1000, "kb": 1024, "m": 1000 ** 2, "mb": 1024 ** 2, "g": 1000 ** 3, "gb": 1024 ** 3}
_KUBE_UNITS = {"": 1, "Ki": 1024, "Mi": 1024 ** 2, "Gi": 1024 ** 3, "k": 1000, "M": 1000 ** 2, "G": 1000 ** 3}


def _redis_directives(text: str) -> dict[str, str]:
    lines = [line.split("#", 1)[0].split(None, 1) for line in text.splitlines()]
    return {parts[0].lower(): parts[1].strip() for parts in lines if len(parts) == 2}


def test_redis_has_a_maxmemory_below_its_limit_and_never_evicts() -> None:
    values = load_values(CHART_DIR.parent / "redis-values.yaml")
    directives = _redis_directives(values["commonConfiguration"])
    # The store and the queue must never lose a key: a full Redis refuses writes instead (503 from the API).
    assert directives["maxmemory-policy"] == "noeviction"
    number, unit = re.fullmatch(r"(\d+)\s*([a-z]*)", directives["maxmemory"].lower()).groups()
    maxmemory = int(number) * _REDIS_UNITS[unit]
    for role in ("master", "replica"):
        limit = values.get(role, {}).get("resources", {}).get("limits", {}).get("memory")
        if role == "replica" and not values["replica"]["replicaCount"]:
            continue
        number, unit = re.fullmatch(r"(\d+)([A-Za-z]*)", limit).groups()
        limit_bytes = int(number) * _KUBE_UNITS[unit]
        # Headroom for the AOF rewrite's copy-on-write, client buffers and fragmentation:
        # Redis refuses writes before the kernel kills it.
        assert maxmemory <= 0.8 * limit_bytes, (role, directives["maxmemory"], limit)
        assert maxmemory >= 0.5 * limit_bytes, (role, directives["maxmemory"], limit)


def test_readme_deploy_section_documents_the_hardening() -> None:
    readme = (CHART_DIR.parents[1] / "README.md").read_text()
    for words in ("maxmemory", "noeviction", "NetworkPolic", "ingress.tls", "automountServiceAccountToken"):
        assert words in readme, words
