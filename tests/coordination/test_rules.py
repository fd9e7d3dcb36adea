"""Coordination rules: dependency parsing and state, cycles, admission order, pipelines config, outputs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator.coordination.outputs import read_outputs, run_output_dir
from orchestrator.coordination.rules import (
    DependencyState,
    admission_score,
    dependency_ids,
    dependency_state,
    find_cycle,
)
from orchestrator.coordination.stages import Stage, next_stage, parse_pipelines
from orchestrator.settings import ConfigError, Settings
from orchestrator.store import TaskStore


def test_dependency_ids_accepts_ints_and_numeric_strings_once() -> None:
    assert dependency_ids({"dependencies": [3, "5", 3, " 7 ", True, "3.1", None]}) == [3, 5, 7]
    assert dependency_ids({}) == [] and dependency_ids({"dependencies": None}) == []


def test_dependency_reason_names_unknown_and_failed() -> None:
    state = DependencyState(((1, "Succeeded"), (2, "Running"), (9, "unknown")))
    assert not state.satisfied
    assert state.reason() == "waiting for dependencies: 2, 9 (unknown task)"
    failed = DependencyState(((1, "Failed"), (2, "Cancelled")))
    assert failed.failed == [1, 2]
    assert failed.reason() == "dependency failed or cancelled; waiting for 1 (Failed), 2 (Cancelled)"
    assert DependencyState(()).satisfied


def _task(store: TaskStore, task_id: int, deps: list[int], service: str = "web") -> None:
    store.create_task(service=service, task_id=task_id, agent="claude", spec={"id": task_id, "dependencies": deps})


def test_dependency_state_reads_the_same_service_only(store: TaskStore) -> None:
    _task(store, 1, [])
    _task(store, 2, [], service="api")
    state = dependency_state(store, "web", {"dependencies": [1, 2]})
    assert state.statuses == ((1, "Pending"), (2, "unknown"))


def test_find_cycle(store: TaskStore) -> None:
    _task(store, 1, [2, 3])
    _task(store, 2, [4])
    _task(store, 3, [4])
    _task(store, 4, [])
    assert find_cycle(store, "web", 5, [1]) is None  # a diamond is no cycle
    assert find_cycle(store, "web", 4, [3]) == [4, 3, 4]  # resubmitting 4 to depend on 3
    assert find_cycle(store, "web", 6, [6]) == [6, 6]
    assert find_cycle(store, "web", 9, [8]) is None  # unknown ids end a path
    _task(store, 8, [9])
    assert find_cycle(store, "web", 9, [8]) == [9, 8, 9]
    assert find_cycle(store, "api", 9, [8]) is None


def test_admission_score_orders_priority_then_age() -> None:
    scores = {
        "high-new": admission_score("high", 50), "high-old": admission_score("high", 2),
        "medium-old": admission_score("medium", 1), "low": admission_score("low", 0),
        "unknown": admission_score("whatever", 3), "none": admission_score(None, 4),
    }
    assert sorted(scores, key=scores.get) == ["high-old", "high-new", "medium-old", "unknown", "none", "low"]


def test_with_ageing_a_long_wait_outweighs_a_priority_level() -> None:
    hour = 3600.0
    now = 1_000_000.0

    def score(priority: str, waited: float, seq: int = 0) -> float:
        return admission_score(priority, seq, created_at=now - waited, ageing=hour)

    # Submitted together: priority decides, as without ageing.
    together = {p: score(p, 0) for p in ("low", "medium", "high")}
    assert sorted(together, key=together.get) == ["high", "medium", "low"]
    # An unknown priority (none is accepted) counts as medium.
    assert score("critical", 0) == score("medium", 0)
    # A low task that has waited more than two levels' worth goes before a fresh high one...
    assert score("low", 2 * hour + 1) < score("high", 0)
    # ...but not before one that has waited about as long.
    assert score("high", 2 * hour) < score("low", 2 * hour + 1)
    # Without ageing, priorities are strict however long a task waited.
    assert admission_score("high", 10**6, created_at=now, ageing=0) < admission_score("low", 1, created_at=0, ageing=0)


def test_parse_pipelines_from_json_and_yaml_file(tmp_path: Path) -> None:
    raw = json.dumps({"irf": {"stages": [{"name": "implement", "agent": "claude"},
                                         {"name": "review", "agent": "reviewer", "image": "r:1", "prompt": "p"}]}})
    pipelines = parse_pipelines(raw)
    assert pipelines == {"irf": (Stage("implement", "claude"), Stage("review", "reviewer", "r:1", "p"))}
    assert next_stage(pipelines["irf"], "implement") == Stage("review", "reviewer", "r:1", "p")
    assert next_stage(pipelines["irf"], "review") is None
    path = tmp_path / "pipelines.yaml"
    path.write_text("irf:\n  - name: implement\n    agent: claude\n    prompt: |\n      do it\n")
    assert parse_pipelines(str(path)) == {"irf": (Stage("implement", "claude", "", "do it\n"),)}
    assert parse_pipelines("") == {}


@pytest.mark.parametrize("raw, message", [
    ('{"p": []}', "non-empty list of stages"),
    ('{"p": [{"name": "Bad_Name", "agent": "claude"}]}', "stage name must be a DNS-1123 label"),
    ('{"p": [{"name": "a", "agent": "claude"}, {"name": "a", "agent": "claude"}]}', "appears twice"),
    ('{"p": [{"name": "a", "agent": "claude", "secret": "x"}]}', "unknown stage keys"),
    ('{"p": [{"name": "a"}]}', "agent name must be a non-empty string"),
    ('{"p": [{"name": "a", "agent": "claude", "prompt": 3}]}', "prompt must be a string"),
    ('{"p": [{"name": "averyveryverylongstagename", "agent": "claude"}]}', "at most 20"),
    ("{not json", "not valid JSON or YAML"),
    ("/nonexistent/pipelines.yaml", "cannot read pipelines file"),
])
def test_parse_pipelines_refuses_bad_configuration(raw: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_pipelines(raw)


def test_pipelines_variable_is_parsed_into_settings() -> None:
    settings = Settings.from_env({"ORCHESTRATOR_PIPELINES": '{"p": [{"name": "a", "agent": "claude"}]}'})
    assert settings.pipelines == {"p": (Stage("a", "claude"),)}
    assert Settings.from_env({}).pipelines == {}
    with pytest.raises(ConfigError, match="^ORCHESTRATOR_PIPELINES: "):
        Settings.from_env({"ORCHESTRATOR_PIPELINES": '{"p": 1}'})


def test_read_outputs_keeps_known_string_keys_and_the_handoff(tmp_path: Path) -> None:
    out = tmp_path / run_output_dir("web", 1, "web-1-v1-a1")
    out.mkdir(parents=True)
    (out / "outputs.json").write_text(json.dumps({
        "pull_request_url": "https://github.com/o/r/pull/1", "branch": "task-1", "summary": 3, "token": "x"}))
    (out / "handoff.md").write_text("notes")
    assert read_outputs(tmp_path, "web", 1, "web-1-v1-a1") == {
        "pull_request_url": "https://github.com/o/r/pull/1", "branch": "task-1",
        "handoff_file": ".task/1/runs/web-1-v1-a1/handoff.md"}
    (out / "outputs.json").write_text("[not json")
    assert read_outputs(tmp_path, "web", 1, "web-1-v1-a1") == {"handoff_file": ".task/1/runs/web-1-v1-a1/handoff.md"}
    assert read_outputs(tmp_path, "web", 2, "web-2-v1-a1") == {}


def test_read_outputs_does_not_follow_a_link_out_of_the_workspace(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "outputs.json").write_text(json.dumps({"branch": "stolen"}))
    workspace = tmp_path / "ws"
    (workspace / ".task" / "1" / "runs").mkdir(parents=True)
    (workspace / ".task" / "1" / "runs" / "web-1-v1-a1").symlink_to(outside)
    assert read_outputs(workspace, "web", 1, "web-1-v1-a1") == {}
