"""Pipelines: named sequences of agent stages, read from `ORCHESTRATOR_PIPELINES`.

Imports nothing else of coordination, so the settings module can parse them
without an import cycle.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from orchestrator import validation

if TYPE_CHECKING:
    from orchestrator.model import Task
    from orchestrator.settings import Settings


@dataclass(frozen=True)
class Stage:
    """One stage of a pipeline: a run with its own agent, image and prompt."""

    name: str
    agent: str
    image: str = ""
    prompt: str = ""
    exclusive: bool = False  # the stage's run has the service to itself (see the README's Workspace)


MAX_STAGE_LENGTH = 20  # the stage name is part of run ids and Job names


def parse_pipelines(raw: str) -> dict[str, tuple[Stage, ...]]:
    """`ORCHESTRATOR_PIPELINES`: JSON, or the path of a YAML/JSON file, mapping name -> stages.

    Each pipeline is a list of stages or `{"stages": [...]}`; a stage is
    `{"name", "agent", "image"?, "prompt"?, "exclusive"?}`. Raises ValueError naming the problem.
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
        validation.dns_label(str(name), what="pipeline name", max_length=63)
        stages_raw = body.get("stages") if isinstance(body, dict) else body
        if not isinstance(stages_raw, list) or not stages_raw:
            raise ValueError(f"pipeline {name!r} must have a non-empty list of stages")
        stages: list[Stage] = []
        for item in stages_raw:
            if not isinstance(item, dict):
                raise ValueError(f"pipeline {name!r}: each stage must be a mapping")
            unknown = set(item) - {"name", "agent", "image", "prompt", "exclusive"}
            if unknown:
                raise ValueError(f"pipeline {name!r}: unknown stage keys {sorted(unknown)}")
            stage_name = validation.dns_label(
                str(item.get("name", "")), what=f"pipeline {name!r} stage name", max_length=MAX_STAGE_LENGTH
            )
            if any(s.name == stage_name for s in stages):
                raise ValueError(f"pipeline {name!r}: stage {stage_name!r} appears twice")
            agent = validation.agent_name(str(item.get("agent", "")))
            for key in ("image", "prompt"):
                if not isinstance(item.get(key, ""), str):
                    raise ValueError(f"pipeline {name!r} stage {stage_name!r}: {key} must be a string")
            if not isinstance(item.get("exclusive", False), bool):
                raise ValueError(f"pipeline {name!r} stage {stage_name!r}: exclusive must be true or false")
            stages.append(
                Stage(stage_name, agent, item.get("image", ""), item.get("prompt", ""), item.get("exclusive", False))
            )
        pipelines[str(name)] = tuple(stages)
    return pipelines


def stages_of(settings: Settings, task: Task) -> tuple[Stage, ...]:
    """The task's pipeline stages; empty for a single-run task (or a pipeline no longer configured)."""
    name = task.spec.get("pipeline")
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
