"""Pure renderers of the files an agent reads: task.md, context documents, CLAUDE.md, its settings.

Nothing here touches the disk; `prepare.py` writes what these functions return.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from orchestrator import validation

TASK_FILE = "task.md"
CONTEXT_FILE = re.compile(r"^context-v\d+\.md$")
# Names the orchestrator generates; a submitted file with one of them is kept
# under a prefixed name so neither hides the other.
SUBMITTED_PREFIX = "submitted-"

# Order and headings of document kinds in CLAUDE.md.
KIND_HEADINGS: tuple[tuple[str, str], ...] = (
    ("taskmaster", "The task"),
    ("prompt", "Prompt"),
    ("task", "Task description"),
    ("acceptance-criteria", "Acceptance criteria"),
    ("design-spec", "Design specs"),
    ("context", "Context added after submission"),
    ("other", "Other documents"),
)
KNOWN_KINDS = frozenset(kind for kind, _ in KIND_HEADINGS)


@dataclass(frozen=True)
class Document:
    """One file of a task's version directory."""

    filename: str
    content: str
    kind: str


def _line(value: Any) -> str:
    """A value on one line (titles end up in headings)."""
    return " ".join(str(value).split())


def _text(value: Any) -> str:
    return str(value).strip() if value not in (None, "") else ""


def _ids(values: Any) -> str:
    if not values:
        return "none"
    return ", ".join(_line(v) for v in values)


def render_task(spec: Mapping[str, Any], *, service: str, task_id: int, version: int) -> str:
    """task.md: the Task Master fields of the task, as markdown."""
    title = _line(spec.get("title") or f"Task {task_id}")
    out = [f"# Task {task_id}: {title}", ""]
    out.append(f"- Service: `{service}`")
    if spec.get("agent_name"):
        out.append(f"- Agent: `{_line(spec['agent_name'])}`")
    out.append(f"- Priority: {_line(spec.get('priority') or 'medium')}")
    out.append(f"- Dependencies: {_ids(spec.get('dependencies'))}")
    if spec.get("status"):
        out.append(f"- Submitted status: {_line(spec['status'])}")
    out.append(f"- Context version: {version}")
    out.append("")
    for heading, key in (("Description", "description"), ("Details", "details"), ("Test strategy", "test_strategy")):
        body = _text(spec.get(key))
        if body:
            out += [f"## {heading}", "", body, ""]
    subtasks = spec.get("subtasks") or []
    if subtasks:
        out += ["## Subtasks", ""]
        for sub in subtasks:
            sub = sub if isinstance(sub, Mapping) else {"title": sub}
            sub_id = _line(sub.get("id", "?"))
            out.append(f"### {task_id}.{sub_id} {_line(sub.get('title') or '')}".rstrip())
            out.append("")
            if sub.get("status"):
                out.append(f"- Status: {_line(sub['status'])}")
            out.append(f"- Dependencies: {_ids(sub.get('dependencies'))}")
            out.append("")
            for heading, key in (
                ("Description", "description"),
                ("Details", "details"),
                ("Test strategy", "test_strategy"),
            ):
                body = _text(sub.get(key))
                if body:
                    out += [f"**{heading}**", "", body, ""]
    return "\n".join(out).rstrip() + "\n"


def context_version_of(document: Mapping[str, Any], index: int) -> int:
    """The context version a document created: its own `version`, else its position (the first is v2)."""
    version = document.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version >= 2:
        return version
    return index + 2


def render_context(document: Mapping[str, Any], version: int) -> str:
    """context-v<N>.md: one context document added after submission."""
    out = [f"# Context (version {version})", ""]
    meta = []
    if document.get("added_by"):
        meta.append(f"added by {_line(document['added_by'])}")
    added_at = document.get("added_at") or document.get("created_at")
    if isinstance(added_at, (int, float)):
        added_at = datetime.fromtimestamp(added_at, tz=UTC).isoformat(timespec="seconds")
    if added_at:
        meta.append(f"at {_line(added_at)}")
    if meta:
        out += [f"_{' '.join(meta)}_", ""]
    if document.get("title"):
        out += [f"## {_line(document['title'])}", ""]
    body = _text(document.get("content"))
    if body:
        out += [body, ""]
    for item in document.get("markdown_files") or []:
        if isinstance(item, Mapping) and _text(item.get("content")):
            out += [f"## {_line(item.get('filename') or 'document')}", "", _text(item["content"]), ""]
    return "\n".join(out).rstrip() + "\n"


def task_documents(
    spec: Mapping[str, Any],
    contexts: Sequence[Mapping[str, Any]],
    *,
    service: str,
    task_id: int,
    version: int,
) -> list[Document]:
    """Every document of one context version: task.md, the submitted files, context-v<N>.md."""
    docs = [Document(TASK_FILE, render_task(spec, service=service, task_id=task_id, version=version), "taskmaster")]
    taken = {TASK_FILE}
    for item in spec.get("markdown_files") or []:
        filename = validation.markdown_filename(item.get("filename", ""))
        if filename == TASK_FILE or CONTEXT_FILE.match(filename):
            filename = validation.markdown_filename(SUBMITTED_PREFIX + filename)
        if filename in taken:
            continue  # the API refuses duplicates; keep the first here too
        taken.add(filename)
        kind = str(item.get("file_type") or "other")
        docs.append(Document(filename, str(item.get("content") or ""), kind if kind in KNOWN_KINDS else "other"))
    for index, document in enumerate(contexts):
        context_version = context_version_of(document, index)
        if context_version > version:
            continue  # newer than this run: the run of that version will show it
        filename = f"context-v{context_version}.md"
        if filename in taken:
            continue
        taken.add(filename)
        docs.append(Document(filename, render_context(document, context_version), "context"))
    return docs


def render_instructions(
    documents: Iterable[tuple[Document, str]],
    *,
    service: str,
    task_id: int,
    version: int,
    title: str,
    run_id: str,
    start_dir: str,
    branch: str | None,
    base_branch: str | None,
    output_dir: str | None = None,
) -> str:
    """CLAUDE.md: what the agent works on and where each document is, relative to where it starts.

    `documents` pairs each document with its path relative to `start_dir` (the
    directory the agent starts in), so every link resolves from there.
    """
    out = [
        f"<!-- orchestrator: service={service} task={task_id} version={version} run={run_id} -->",
        f"# Task {task_id}: {_line(title)}",
        "",
        f"You are working on task {task_id} of service `{service}` (context version {version}).",
    ]
    if branch:
        out.append(
            f"Work on the git branch `{branch}` (created from `{base_branch}`), which is checked out: "
            "commit your work on it as you go. Do not switch branches, do not push and do not open a pull "
            "request: when you finish, the orchestrator commits anything you left uncommitted, pushes the "
            "branch and opens (or updates) the task's pull request."
        )
    where = f"`{start_dir}` (inside the service directory)" if start_dir else "the service directory"
    out += [
        "",
        f"Your working directory is {where}; every path below is relative to it.",
        "",
    ]
    grouped: dict[str, list[tuple[Document, str]]] = {}
    for doc, rel in documents:
        grouped.setdefault(doc.kind, []).append((doc, rel))
    for kind, heading in KIND_HEADINGS:
        items = grouped.get(kind)
        if not items:
            continue
        out += [f"## {heading}", ""]
        for doc, rel in items:
            out.append(f"- [{doc.filename}]({rel}) (`{rel}`)")
        out.append("")
    out += _contract(output_dir)
    out += [
        "## Notes",
        "",
        "- Read every document above before you change anything; later context versions take precedence.",
        "- This file, `.claude/settings.local.json` and the `.task/` directory are written by the orchestrator "
        "before every run; they are not part of the repository, so do not commit or edit them (your output "
        "directory under `.task/` is yours to write).",
        "",
    ]
    return "\n".join(out)


# The keys of outputs.json the orchestrator reads (all strings; anything else is ignored).
OUTPUTS_SCHEMA: tuple[tuple[str, str], ...] = (
    ("summary", "what you did and why, in a few sentences; it goes into the pull request description"),
    ("branch", "only if you worked on another branch than the one checked out (you should not)"),
    ("commit", "the commit you consider final, if not the branch's head"),
    ("pull_request_url", "only if you opened a pull request yourself (you should not)"),
)


def _contract(output_dir: str | None) -> list[str]:
    """The 'When you are done' section: where the agent's summary and hand-off go."""
    where = f"`{output_dir}`" if output_dir else "the directory in `$ORCHESTRATOR_OUTPUT_DIR`"
    out = [
        "## When you are done",
        "",
        f"Write your results to {where} (also in the environment as `ORCHESTRATOR_OUTPUT_DIR`; "
        "create it if it is missing):",
        "",
        "- `outputs.json`: a JSON object with these string keys (all optional):",
    ]
    out += [f"  - `{key}`: {meaning}" for key, meaning in OUTPUTS_SCHEMA]
    out += [
        "- `handoff.md`: notes for whoever works on the task next (the next pipeline stage reads them).",
        "",
        "If `ORCHESTRATOR_HANDOFF_FILE` is set, it names the previous stage's `handoff.md` (relative to the "
        "service directory): read it first.",
        "",
    ]
    return out


def render_agent_settings(allowed_tools: Sequence[str]) -> str:
    """The agent's settings file: the tools it may use without asking."""
    settings = {"permissions": {"allow": list(allowed_tools), "deny": []}}
    return json.dumps(settings, indent=2, sort_keys=True) + "\n"
