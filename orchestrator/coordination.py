"""Coordination rules: dependencies, admission order, pipelines and run outputs.

Pure functions, plus a few that only read the store. The steps that act on
these rules (admit, finish, re-drive) are in `orchestrator/pipeline.py`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator import names
from orchestrator.states import Status

if TYPE_CHECKING:
    from orchestrator.settings import Settings
    from orchestrator.store import TaskStore


# Dependencies ------------------------------------------------------------------------


def dependency_ids(spec: Mapping[str, Any]) -> list[int]:
    """The task ids a spec depends on, deduplicated, in the order given.

    Task Master writes them as integers; numeric strings are accepted too.
    Anything else (a subtask reference like "3.1") is not a task of ours and
    is ignored here; the API refuses it at submission.
    """
    found: list[int] = []
    for raw in spec.get("dependencies") or ():
        if isinstance(raw, bool):
            continue
        if isinstance(raw, int):
            value = raw
        elif isinstance(raw, str) and raw.strip().isdigit():
            value = int(raw.strip())
        else:
            continue
        if value not in found:
            found.append(value)
    return found


UNKNOWN = "unknown"


@dataclass(frozen=True)
class DependencyState:
    """Where a task's dependencies stand: each dependency id with its status (or 'unknown')."""

    statuses: tuple[tuple[int, str], ...]

    @property
    def satisfied(self) -> bool:
        return all(status == Status.SUCCEEDED.value for _, status in self.statuses)

    @property
    def failed(self) -> list[int]:
        """Dependencies that ended without success (Failed or Cancelled)."""
        return [dep for dep, status in self.statuses if status in (Status.FAILED.value, Status.CANCELLED.value)]

    @property
    def waiting_for(self) -> list[tuple[int, str]]:
        return [(dep, status) for dep, status in self.statuses if status != Status.SUCCEEDED.value]

    def reason(self) -> str:
        """One line naming what the task waits for, e.g. 'waiting for dependencies: 3, 7 (unknown task)'."""
        if self.satisfied:
            return "dependencies succeeded"
        failed = self.failed
        parts = []
        for dep, status in self.waiting_for:
            # Only lasting facts are named; a dependency's progress (Queued,
            # Running...) would be stale by the time anyone reads it.
            if status == UNKNOWN:
                parts.append(f"{dep} (unknown task)")
            elif dep in failed:
                parts.append(f"{dep} ({status})")
            else:
                parts.append(str(dep))
        prefix = "dependency failed or cancelled; waiting for" if failed else "waiting for dependencies:"
        return f"{prefix} {', '.join(parts)}"


def dependency_state(store: TaskStore, service: str, spec: Mapping[str, Any]) -> DependencyState:
    """Read the status of each dependency (same service); unknown ids wait for a task not yet submitted."""
    statuses: list[tuple[int, str]] = []
    for dep in dependency_ids(spec):
        task = store.get_task(service, dep)
        statuses.append((dep, task["status"] if task else UNKNOWN))
    return DependencyState(tuple(statuses))


def find_cycle(store: TaskStore, service: str, task_id: int, dependencies: Iterable[int]) -> list[int] | None:
    """The dependency cycle `task_id` would close with these dependencies, e.g. [3, 5, 3]; None when there is none.

    Walks the stored specs of the same service. Unknown ids end a path (they
    may close a cycle later, and are checked when they are submitted).
    """
    deps_of: dict[int, list[int]] = {task_id: list(dependencies)}

    def edges(node: int) -> list[int]:
        if node not in deps_of:
            task = store.get_task(service, node)
            deps_of[node] = dependency_ids(task["spec"]) if task else []
        return deps_of[node]

    # Iterative depth-first search from task_id, keeping the path to report it.
    path: list[int] = [task_id]
    iters = [iter(edges(task_id))]
    done: set[int] = set()
    while iters:
        nxt = next(iters[-1], None)
        if nxt is None:
            done.add(path.pop())
            iters.pop()
            continue
        if nxt == task_id:
            return [*path, task_id]
        if nxt in done or nxt in path:
            continue  # a cycle not through task_id was refused when it formed
        path.append(nxt)
        iters.append(iter(edges(nxt)))
    return None


def format_cycle(cycle: Iterable[int]) -> str:
    return " -> ".join(str(n) for n in cycle)


# Admission order ----------------------------------------------------------------------

PRIORITY_RANK = {"critical": 0, "high": 1, "medium": 2, "low": 3}
_RANK_SPAN = 1e12  # more tasks than that will never be submitted; scores stay exact doubles


def admission_score(priority: str | None, seq: int, created_at: float | None = None, ageing: float = 0.0) -> float:
    """Lower is admitted first.

    With `ageing` seconds per priority level (and the task's `created_at`): the
    submission time, less `ageing` for each level above `medium` (more for each
    below), so a higher priority goes first unless a lower one has waited that
    much longer; nothing waits for ever behind a stream of urgent work. Without:
    strict priorities, oldest (submission order) first within one.
    """
    rank = PRIORITY_RANK.get((priority or "medium").lower(), PRIORITY_RANK["medium"])
    if ageing > 0 and created_at is not None:
        return float(created_at) + (rank - PRIORITY_RANK["medium"]) * ageing
    return rank * _RANK_SPAN + seq


# Pipelines -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Stage:
    """One stage of a pipeline: a run with its own agent, image and prompt."""

    name: str
    agent: str
    image: str = ""
    prompt: str = ""


MAX_STAGE_LENGTH = 20  # the stage name is part of run ids and Job names


def parse_pipelines(raw: str) -> dict[str, tuple[Stage, ...]]:
    """`ORCHESTRATOR_PIPELINES`: JSON, or the path of a YAML/JSON file, mapping name -> stages.

    Each pipeline is a list of stages or `{"stages": [...]}`; a stage is
    `{"name", "agent", "image"?, "prompt"?}`. Raises ValueError naming the problem.
    """
    text = raw.strip()
    if not text:
        return {}
    if not text.startswith("{"):
        path = Path(text).expanduser()
        try:
            text = path.read_text()
        except OSError as exc:
            raise ValueError(f"cannot read pipelines file {str(path)!r}: {exc.strerror}") from None
    import yaml  # YAML is a superset of JSON, so one parser reads both

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"pipelines are not valid JSON or YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError("pipelines must be a mapping of pipeline name to stages")
    pipelines: dict[str, tuple[Stage, ...]] = {}
    for name, body in data.items():
        names.dns_label(str(name), what="pipeline name", max_length=63)
        stages_raw = body.get("stages") if isinstance(body, dict) else body
        if not isinstance(stages_raw, list) or not stages_raw:
            raise ValueError(f"pipeline {name!r} must have a non-empty list of stages")
        stages: list[Stage] = []
        for item in stages_raw:
            if not isinstance(item, dict):
                raise ValueError(f"pipeline {name!r}: each stage must be a mapping")
            unknown = set(item) - {"name", "agent", "image", "prompt"}
            if unknown:
                raise ValueError(f"pipeline {name!r}: unknown stage keys {sorted(unknown)}")
            stage_name = names.dns_label(str(item.get("name", "")), what=f"pipeline {name!r} stage name",
                                         max_length=MAX_STAGE_LENGTH)
            if any(s.name == stage_name for s in stages):
                raise ValueError(f"pipeline {name!r}: stage {stage_name!r} appears twice")
            agent = names.agent_name(str(item.get("agent", "")))
            for key in ("image", "prompt"):
                if not isinstance(item.get(key, ""), str):
                    raise ValueError(f"pipeline {name!r} stage {stage_name!r}: {key} must be a string")
            stages.append(Stage(stage_name, agent, item.get("image", ""), item.get("prompt", "")))
        pipelines[str(name)] = tuple(stages)
    return pipelines


def stages_of(settings: Settings, task: Mapping[str, Any]) -> tuple[Stage, ...]:
    """The task's pipeline stages; empty for a single-run task (or a pipeline no longer configured)."""
    name = (task.get("spec") or {}).get("pipeline")
    if not name:
        return ()
    return tuple(settings.pipelines.get(name, ()))


def next_stage(stages: tuple[Stage, ...], current: str) -> Stage | None:
    """The stage after `current`, or None when `current` is the last."""
    for index, stage in enumerate(stages):
        if stage.name == current:
            return stages[index + 1] if index + 1 < len(stages) else None
    return None


def find_stage(stages: tuple[Stage, ...], name: str) -> Stage | None:
    return next((s for s in stages if s.name == name), None)


# Run outputs ------------------------------------------------------------------------------

OUTPUTS_FILE = "outputs.json"
HANDOFF_FILE = "handoff.md"
MAX_OUTPUT_BYTES = 64 * 1024
OUTPUT_KEYS = ("pull_request_url", "branch", "summary", "commit")


def run_output_dir(service: str, task_id: int, run_id: str) -> str:
    """Where a run's agent writes `outputs.json` and `handoff.md`, relative to the service's workspace.

    The launch step passes it to the agent as ORCHESTRATOR_OUTPUT_DIR.
    """
    return f".task/{task_id}/runs/{run_id}"


def read_outputs(workspace_dir: Path, service: str, task_id: int, run_id: str) -> dict[str, Any]:
    """What the agent left in its output directory: known keys of outputs.json and the hand-off file's path.

    The agent is an outsider here: only string values of known keys are kept,
    and nothing is followed outside the workspace.
    """
    root = workspace_dir.resolve()
    found: dict[str, Any] = {}
    try:
        resolved = (workspace_dir / run_output_dir(service, task_id, run_id)).resolve()
    except (OSError, RuntimeError):  # a symlink loop
        return found
    if not resolved.is_relative_to(root):
        return found
    try:
        outputs = resolved / OUTPUTS_FILE
        if outputs.is_file() and outputs.stat().st_size <= MAX_OUTPUT_BYTES:
            data = json.loads(outputs.read_text(errors="replace"))
            if isinstance(data, dict):
                found.update({k: v[:2000] for k, v in data.items() if k in OUTPUT_KEYS and isinstance(v, str)})
                if not found.get("pull_request_url", "https://").startswith("https://"):
                    del found["pull_request_url"]  # it is shown and linked: nothing but an https URL
    except (OSError, ValueError):
        pass  # unreadable or malformed outputs are the agent's problem, never the task's outcome
    try:
        handoff = resolved / HANDOFF_FILE
        if handoff.is_file() and handoff.resolve().is_relative_to(root):
            found["handoff_file"] = f"{run_output_dir(service, task_id, run_id)}/{HANDOFF_FILE}"
    except (OSError, RuntimeError):
        pass
    return found
