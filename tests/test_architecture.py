"""The house's shape: rooms import only what the README's map allows, no cycles, no oversized modules."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("orchestrator", "api", "workers")
MAX_LINES = 400


def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    return "TYPE_CHECKING" in ast.unparse(node.test)


def _imported(name: str, path: Path) -> Iterator[str]:
    """Every module of ours that `name` imports anywhere (functions included), except for type checking."""
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]

    def visit(nodes: list[ast.stmt]) -> Iterator[str]:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node):
                yield from visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                yield from (alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
                for alias in node.names:
                    yield f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    yield from visit([child for child in children if isinstance(child, ast.stmt)])
                    for handler in children:
                        if isinstance(handler, ast.ExceptHandler):
                            yield from visit(handler.body)

    for target in visit(ast.parse(path.read_text()).body):
        while target and target not in MODULES:
            target = target.rpartition(".")[0]
        if target and target != name:
            yield target


GRAPH = {name: set(_imported(name, path)) for name, path in MODULES.items()}


def _room(module: str) -> str:
    """A module's room: its package under orchestrator/, or the top-level module itself."""
    parts = module.split(".")
    if parts[0] != "orchestrator" or len(parts) == 1:
        return parts[0]
    return ".".join(parts[:2])


# What each room may import besides itself: the README's architecture map. A new
# dependency between rooms is a decision, made here and in that map together.
FOUNDATION = {"orchestrator", "orchestrator.config_values", "orchestrator.model", "orchestrator.states", "orchestrator.validation",
              "orchestrator.agent_env", "orchestrator.steps", "orchestrator.backoff", "orchestrator.logs",
              "orchestrator.taskmaster", "orchestrator.settings", "orchestrator.variables",
              "orchestrator.heartbeat", "orchestrator.metrics"}
SENDING = {"orchestrator.store", "orchestrator.dispatch", "orchestrator.celery_app", "orchestrator.celery_dispatch",
           "orchestrator.runtime", "orchestrator.effects", "orchestrator.tracing"}
EDGES = {"orchestrator.kube", "orchestrator.runners", "orchestrator.github"}
DOMAIN = {"orchestrator.workspace", "orchestrator.delivery", "orchestrator.coordination", "orchestrator.usage",
          "orchestrator.runs", "orchestrator.operations", "orchestrator.watcher"}
BELOW_DOMAIN = FOUNDATION | SENDING | EDGES
ALLOWED: dict[str, set[str]] = {
    "orchestrator": set(),
    "orchestrator.config_values": {"orchestrator.validation", "orchestrator.agent_env"},
    "orchestrator.model": {"orchestrator.states"},
    "orchestrator.states": set(),
    "orchestrator.steps": set(),
    "orchestrator.backoff": set(),
    "orchestrator.logs": set(),
    "orchestrator.heartbeat": set(),  # the worker's consumer heartbeat file: written by workers/, read by cli/
    "orchestrator.metrics": {"orchestrator.steps"},  # step names bound a label; nothing else of ours
    "orchestrator.validation": {"orchestrator.model"},
    "orchestrator.agent_env": {"orchestrator.validation"},
    "orchestrator.taskmaster": {"orchestrator.model"},
    # pipelines are parsed with the settings; stages.py imports nothing of coordination
    "orchestrator.settings": {"orchestrator.config_values", "orchestrator.variables"},
    "orchestrator.variables": {"orchestrator.config_values", "orchestrator.validation", "orchestrator.agent_env",
                               "orchestrator.coordination"},
    "orchestrator.store": {"orchestrator.model", "orchestrator.states"},
    "orchestrator.dispatch": {"orchestrator.steps", "orchestrator.store"},
    # where Redis is (a URL or Sentinels) is decided once, in runtime.redis_target, for the broker too
    "orchestrator.celery_app": {"orchestrator.settings", "orchestrator.steps", "orchestrator.runtime"},
    "orchestrator.celery_dispatch": {"orchestrator.celery_app", "orchestrator.dispatch", "orchestrator.steps",
                                     "orchestrator.store", "orchestrator.tracing"},
    "orchestrator.runtime": {"orchestrator.settings", "orchestrator.store"},
    "orchestrator.effects": {"orchestrator.store"},  # intent and completion of side effects, kept in the store
    # a step's task trace is read from the store by the process's own store (runtime)
    "orchestrator.tracing": {"orchestrator.settings", "orchestrator.steps", "orchestrator.store", "orchestrator.runtime"},
    # the runners and their Kubernetes edge know where a run's worktree is, nothing else of the workspace
    "orchestrator.kube": FOUNDATION | {"orchestrator.store", "orchestrator.runners", "orchestrator.workspace"},
    "orchestrator.runners": FOUNDATION | {"orchestrator.kube", "orchestrator.workspace"},
    "orchestrator.github": FOUNDATION | SENDING | {"orchestrator.operations"},
    **{room: BELOW_DOMAIN | DOMAIN for room in DOMAIN},
    "orchestrator.cli": BELOW_DOMAIN | {"orchestrator.watcher"},
    "orchestrator.agents": set(),
    "api": BELOW_DOMAIN | DOMAIN - {"orchestrator.watcher"},
    "workers": BELOW_DOMAIN | DOMAIN,
}


def test_every_room_imports_only_what_the_map_allows() -> None:
    refused = sorted(
        f"{name} imports {other}"
        for name, deps in GRAPH.items()
        for other in deps
        if _room(other) != _room(name) and _room(other) not in ALLOWED[_room(name)]
    )
    assert not refused, "\n".join(refused)


def test_the_map_names_every_room() -> None:
    assert {_room(name) for name in MODULES} <= set(ALLOWED)


def test_no_import_cycle() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def strong(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in GRAPH[node]:
            if other not in index:
                strong(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                other = stack.pop()
                component.append(other)
                if other == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in GRAPH:
        if node not in index:
            strong(node)
    assert not cycles, f"import cycles: {cycles}"


@pytest.mark.parametrize("name", sorted(n for n in MODULES if n.startswith("orchestrator")))
def test_no_module_of_the_core_is_over_the_limit(name: str) -> None:
    lines = len(MODULES[name].read_text().splitlines())
    assert lines <= MAX_LINES, f"{MODULES[name].relative_to(ROOT)} has {lines} lines"
