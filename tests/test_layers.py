"""The core never imports the worker layer: nothing under orchestrator/ or api/ imports `workers`.

The composition roots (api/wsgi.py, the watcher command) build the
Celery-backed dispatcher over a Celery app configured by orchestrator/celery_app.py.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _imported_modules(tree: ast.AST) -> list[tuple[int, str]]:
    found = []
    for node in ast.walk(tree):  # every import, also inside functions (the lazy ones)
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def test_neither_the_core_nor_the_api_imports_the_worker_layer() -> None:
    offenders = []
    for package in ("orchestrator", "api"):
        for path in sorted((ROOT / package).rglob("*.py")):
            relative = path.relative_to(ROOT)
            for line, module in _imported_modules(ast.parse(path.read_text(), str(path))):
                if module == "workers" or module.startswith("workers."):
                    offenders.append(f"{relative}:{line} imports {module}")
    assert offenders == []


def test_the_walk_sees_lazy_imports() -> None:
    tree = ast.parse("def f():\n    from workers.app import app\n    import workers.steps\n")
    assert [m for _, m in _imported_modules(tree)] == ["workers.app", "workers.steps"]


def test_the_api_composition_root_builds_the_celery_dispatcher() -> None:
    modules = [m for _, m in _imported_modules(ast.parse((ROOT / "api/wsgi.py").read_text()))]
    assert "orchestrator.celery_dispatch" in modules
