"""Task Master parsing, task.md rendering, acceptance criteria and dependency order."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from orchestrator import taskmaster

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "tasks.json"


def write(tmp_path: Path, data: object) -> Path:
    path = tmp_path / "tasks.json"
    path.write_text(json.dumps(data))
    return path


def test_reads_the_tagged_shape_and_a_plain_list(tmp_path: Path) -> None:
    tasks = [{"id": 1, "title": "a"}, {"id": "2", "title": "b"}]
    assert [t["title"] for t in taskmaster.load_tasks(write(tmp_path, {"master": {"tasks": tasks}}))] == ["a", "b"]
    assert len(taskmaster.load_tasks(write(tmp_path, tasks))) == 2
    assert len(taskmaster.load_tasks(write(tmp_path, {"tasks": tasks}))) == 2
    assert len(taskmaster.load_tasks(write(tmp_path, {"feature": {"tasks": tasks}}))) == 2  # the only tag
    other = {"master": {"tasks": tasks[:1]}, "feature": {"tasks": tasks}}
    assert len(taskmaster.load_tasks(write(tmp_path, other), tag="feature")) == 2


def test_the_example_file_parses() -> None:
    tasks = taskmaster.load_tasks(EXAMPLE)
    assert [t["id"] for t in taskmaster.dependency_order(tasks)] == [1, 2, 3]


@pytest.mark.parametrize(("content", "message"), [
    ("{not json", r"is not valid JSON \(line 1"),
    ('{"other": 1}', "has no task list"),
    ('"text"', "must hold a JSON list"),
    ('[{"title": "no id"}]', "entry 1 of the task list has no integer id"),
    ('[3]', "entry 1 of the task list is not an object"),
])
def test_bad_files_are_usage_errors_that_say_why(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "tasks.json"
    path.write_text(content)
    with pytest.raises(taskmaster.TaskFileError, match=message):
        taskmaster.load_tasks(path)


def test_missing_file_and_missing_task(tmp_path: Path) -> None:
    with pytest.raises(taskmaster.TaskFileError, match="does not exist"):
        taskmaster.load_tasks(tmp_path / "nope.json")
    with pytest.raises(taskmaster.TaskFileError, match=r"task 9 is not in x \(ids present: 1, 2\)"):
        taskmaster.find_task([{"id": 1}, {"id": 2}], 9, source="x")
    with pytest.raises(taskmaster.TaskFileError, match="under tag 'nope'"):
        taskmaster.tasks_from_document({"master": {"tasks": []}}, tag="nope")


@pytest.mark.parametrize(("strategy", "expected"), [
    ("Run the tests. ACCEPTANCE CRITERIA: it works\n- and is fast", "it works\n- and is fast"),
    ("acceptance criteria:   lower case too", "lower case too"),
    ("No marker at all", "No marker at all"),
    ("Marker with nothing after ACCEPTANCE CRITERIA:", "Marker with nothing after ACCEPTANCE CRITERIA:"),
    ("", ""),
])
def test_acceptance_criteria(strategy: str, expected: str) -> None:
    assert taskmaster.acceptance_criteria({"testStrategy": strategy}) == expected
    assert taskmaster.acceptance_criteria({"test_strategy": strategy}) == expected


def test_task_markdown_has_every_part() -> None:
    task = taskmaster.find_task(taskmaster.load_tasks(EXAMPLE), 1)
    text = taskmaster.render_task_markdown(task)
    assert text.startswith("# Task 1: Add a greeting module\n")
    for part in ("- Priority: high", "## Description", "## Details", "## Test strategy", "## Subtasks",
                 "### 1.1: Write greet() (pending)", "**Depends on:** 1.1"):
        assert part in text
    assert text.endswith("\n") and not text.endswith("\n\n")
    second = taskmaster.render_task_markdown(taskmaster.find_task(taskmaster.load_tasks(EXAMPLE), 2))
    assert "- Depends on: task 1" in second


def test_submission_body() -> None:
    task = taskmaster.find_task(taskmaster.load_tasks(EXAMPLE), 1)
    task["complexity"] = 7  # a field Task Master tools add; it must not reach the API
    body = taskmaster.build_submission(task, service="demo", agent="claude", design_spec="# Spec\n",
                                       prompt="Be brief.\n", repository={"url": "https://github.com/o/r.git",
                                                                         "branch": "main"})
    assert body["id"] == 1 and body["service_name"] == "demo" and body["agent_name"] == "claude"
    assert body["test_strategy"].startswith("Import greeting")
    assert body["priority"] == "high" and body["status"] == "pending" and body["dependencies"] == []
    assert body["subtasks"][1] == {"id": 2, "title": "Document greet()", "description": "A docstring with an example.",
                                   "status": "pending", "dependencies": [1]}
    assert "complexity" not in body
    files = {f["file_type"]: f for f in body["markdown_files"]}
    assert set(files) == {"task", "acceptance-criteria", "design-spec", "prompt"}
    assert files["task"]["filename"] == "task.md"
    assert "greet('PM') returns 'Hello, PM!'" in files["acceptance-criteria"]["content"]
    assert "Import greeting" not in files["acceptance-criteria"]["content"]
    assert body["repository"] == {"url": "https://github.com/o/r.git", "branch": "main"}
    minimal = taskmaster.build_submission({"id": 5, "priority": "urgent", "dependencies": ["1", "2.1", 0]},
                                          service="s", agent="a")
    assert "repository" not in minimal and "priority" not in minimal  # unknown priority: the server default
    assert minimal["dependencies"] == [1]
    assert [f["file_type"] for f in minimal["markdown_files"]] == ["task"]


def test_dependency_order_is_topological_with_ties_by_id() -> None:
    tasks = [{"id": 4, "dependencies": [2]}, {"id": 3, "dependencies": []}, {"id": 2, "dependencies": [3, 99]},
             {"id": 1, "dependencies": [4, 3]}]
    assert [t["id"] for t in taskmaster.dependency_order(tasks)] == [3, 2, 4, 1]


def test_dependency_cycle_and_duplicates_are_named() -> None:
    with pytest.raises(taskmaster.TaskFileError, match=r"cycle \(1 -> 2 -> 1\)"):
        taskmaster.dependency_order([{"id": 1, "dependencies": [2]}, {"id": 2, "dependencies": [1]},
                                     {"id": 3, "dependencies": []}])
    with pytest.raises(taskmaster.TaskFileError, match="task id 1 appears twice"):
        taskmaster.dependency_order([{"id": 1}, {"id": 1}])


def test_documents(tmp_path: Path) -> None:
    (tmp_path / "empty.md").write_text("  \n")
    with pytest.raises(taskmaster.TaskFileError, match="is empty"):
        taskmaster.read_document(tmp_path / "empty.md", "prompt")
    with pytest.raises(taskmaster.TaskFileError, match="design spec file .* does not exist"):
        taskmaster.read_document(tmp_path / "missing.md", "design spec")
