"""Render the Helm chart offline with Helm's Go SDK (helm-python-sdk), no helm binary."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "orchestrator"
CI_DIR = CHART_DIR / "ci"
RELEASE = "orchestrator"
NAMESPACE = "orchestrator"


@dataclass
class Rendered:
    """One rendering of the chart: its objects, NOTES.txt and the values used."""

    values: dict[str, Any]
    objects: list[dict[str, Any]] = field(default_factory=list)
    notes: str = ""

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        """Every object of one kind."""
        return [obj for obj in self.objects if obj["kind"] == kind]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        """The one object of this kind and name."""
        found = [obj for obj in self.of_kind(kind) if obj["metadata"]["name"] == name]
        assert len(found) == 1, f"{kind}/{name}: found {len(found)}"
        return found[0]

    def pod_specs(self) -> list[tuple[str, dict[str, Any]]]:
        """(object name, pod spec) of every workload and bare pod."""
        specs = []
        for obj in self.objects:
            if obj["kind"] in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
                specs.append((f"{obj['kind']}/{obj['metadata']['name']}", obj["spec"]["template"]["spec"]))
            elif obj["kind"] == "Pod":
                specs.append((f"Pod/{obj['metadata']['name']}", obj["spec"]))
        return specs


def load_values(path: Path) -> dict[str, Any]:
    """A values file as a dict (an empty file is no values)."""
    return yaml.safe_load(path.read_text()) or {}


def ci_values_files() -> list[Path]:
    """The values files under charts/orchestrator/ci/."""
    return sorted(CI_DIR.glob("*.yaml"))


def render(chart: Any, values: dict[str, Any]) -> Rendered:
    """Render `chart` (a loaded helm_python.Chart) with `values` on top of its defaults."""
    manifests = chart.render(values=values, name=RELEASE, namespace=NAMESPACE, is_install=True)
    result = Rendered(values=chart.merge_values(values))
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            result.notes = text
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                result.objects.append(doc)
    return result
