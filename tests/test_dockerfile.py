"""The Dockerfile: a small non-root image, no build tools at run time, a real entry point."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from tests.support.entrypoints import REPO_ROOT, check_command

DOCKERFILE = REPO_ROOT / "Dockerfile"
DOCKERIGNORE = REPO_ROOT / ".dockerignore"


def _instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    joined = re.sub(r"\\\n", " ", "\n".join(line for line in text.splitlines()
                                            if not line.lstrip().startswith("#")))
    result = []
    for line in joined.splitlines():
        if line.strip():
            keyword, _, rest = line.strip().partition(" ")
            result.append((keyword.upper(), rest.strip()))
    return result


@pytest.fixture(scope="module")
def stages() -> list[list[tuple[str, str]]]:
    """Instructions grouped by build stage."""
    result: list[list[tuple[str, str]]] = []
    for keyword, args in _instructions(DOCKERFILE.read_text()):
        if keyword == "FROM":
            result.append([])
        if result:
            result[-1].append((keyword, args))
    return result


def test_multi_stage_on_slim_python(stages: list[list[tuple[str, str]]]) -> None:
    assert len(stages) >= 2
    for stage in stages:
        assert re.match(r"python:3\.11-slim\b", stage[0][1]), stage[0]


def test_runtime_has_no_build_tools(stages: list[list[tuple[str, str]]]) -> None:
    runtime = " ".join(args for keyword, args in stages[-1] if keyword == "RUN")
    for tool in ("build-essential", "gcc", "g++", "make ", "python3-dev", "libffi-dev"):
        assert tool not in runtime, f"{tool} in the runtime stage"
    assert "rm -rf /var/lib/apt/lists/*" in runtime
    assert "--no-install-recommends" in runtime
    copies = [args for keyword, args in stages[-1] if keyword == "COPY"]
    assert all(args.startswith("--from=") for args in copies), "the runtime stage takes only built wheels"


def test_runs_as_non_root(stages: list[list[tuple[str, str]]]) -> None:
    users = [args for keyword, args in stages[-1] if keyword == "USER"]
    assert users, "no USER in the runtime stage"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root id (runAsNonRoot checks it)"
    assert uid == "1000"  # the chart's runAsUser


def test_installs_the_package_with_flower_and_otel(stages: list[list[tuple[str, str]]]) -> None:
    runtime = " ".join(args for keyword, args in stages[-1] if keyword == "RUN")
    assert '"orchestrator[flower,otel]"' in runtime
    assert "--no-index" in runtime  # only the wheels built in the first stage


def test_default_command_is_a_real_entry_point(stages: list[list[tuple[str, str]]]) -> None:
    (cmd,) = [args for keyword, args in stages[-1] if keyword == "CMD"]
    argv = json.loads(cmd) if cmd.startswith("[") else shlex.split(cmd)
    assert argv == ["gunicorn", "-c", "python:api.gunicorn_conf", "api.wsgi:app"]
    check_command(argv)


def test_listens_where_the_chart_expects(stages: list[list[tuple[str, str]]]) -> None:
    runtime = dict(stages[-1])
    assert "8080" in runtime["EXPOSE"].split()
    assert "GUNICORN_BIND=0.0.0.0:8080" in runtime["ENV"]


def test_dockerignore_keeps_the_context_small() -> None:
    ignored = {line.strip() for line in DOCKERIGNORE.read_text().splitlines()
               if line.strip() and not line.startswith("#")}
    assert {".git", "tests", "charts", ".orchestrator", ".env"} <= ignored
    # The build needs these: never ignore them.
    assert not ignored & {"api", "workers", "orchestrator", "setup.cfg", "pyproject.toml", "README.md"}
