"""Pure renderers: task.md, context documents, CLAUDE.md, the agent's settings."""

from __future__ import annotations

import json

import pytest

from orchestrator.workspace import documents as docs
from tests.workspace.conftest import task_spec


def test_task_md_holds_every_task_master_field() -> None:
    text = docs.render_task(task_spec(), service="shop", task_id=7, version=2)
    assert text.startswith("# Task 7: Add login\n")
    for fragment in ("Service: `shop`", "Priority: high", "Dependencies: 3, 4", "Context version: 2",
                     "## Description\n\nUsers log in", "## Details\n\nUse the existing", "## Test strategy",
                     "## Subtasks", "### 7.1 Form", "- Status: pending", "**Details**\n\nHTML form"):
        assert fragment in text


def test_task_md_without_optional_fields() -> None:
    text = docs.render_task({"title": "Bare\ntitle"}, service="s", task_id=1, version=1)
    assert text.startswith("# Task 1: Bare title\n")
    assert "Dependencies: none" in text and "## Subtasks" not in text


def test_documents_of_a_version() -> None:
    spec = task_spec(markdown_files=[
        {"filename": "task.md", "content": "mine", "file_type": "task"},
        {"filename": "context-v2.md", "content": "clash", "file_type": "context"},
        {"filename": "notes.md", "content": "n", "file_type": "weird"},
    ])
    contexts = [{"content": "first"}, {"content": "second"}, {"content": "third"}]
    result = docs.task_documents(spec, contexts, service="shop", task_id=7, version=3)
    names = [d.filename for d in result]
    assert names == ["task.md", "submitted-task.md", "submitted-context-v2.md", "notes.md",
                     "context-v2.md", "context-v3.md"]
    assert {d.filename: d.kind for d in result}["notes.md"] == "other"
    assert "second" in result[-1].content


def test_a_bad_file_name_is_refused() -> None:
    with pytest.raises(ValueError):
        docs.task_documents(task_spec(markdown_files=[{"filename": "../x.md", "content": "x"}]), [],
                            service="shop", task_id=7, version=1)


def test_instructions_list_documents_by_kind_with_the_given_links() -> None:
    documents = docs.task_documents(task_spec(), [], service="shop", task_id=7, version=1)
    links = [(d, f"../../.task/7/v1/{d.filename}") for d in documents]
    text = docs.render_instructions(links, service="shop", task_id=7, version=1, title="Add login",
                                    run_id="shop-7-v1-a1", start_dir="services/api", branch="task-7",
                                    base_branch="main")
    assert text.splitlines()[0] == "<!-- orchestrator: service=shop task=7 version=1 run=shop-7-v1-a1 -->"
    assert text.index("## The task") < text.index("## Prompt") < text.index("## Acceptance criteria")
    assert "- [prompt.md](../../.task/7/v1/prompt.md)" in text
    assert "`task-7`" in text and "`services/api`" in text


def test_agent_settings_is_json_with_allowed_tools() -> None:
    data = json.loads(docs.render_agent_settings(("Bash", "Read")))
    assert data["permissions"]["allow"] == ["Bash", "Read"]
