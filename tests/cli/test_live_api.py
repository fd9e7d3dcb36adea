"""The PM commands against the real API: gunicorn started by the test, real Redis."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from orchestrator.cli import main
from orchestrator.cli.errors import (
    EXIT_AUTH,
    EXIT_CONFLICT,
    EXIT_INVALID,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
)
from orchestrator.cli.stack import http_ok
from orchestrator.settings import reset_settings_cache
from tests.support.redis_server import free_port

pytest.importorskip("api.tasks", reason="the PM API (issue 3) is not on this branch yet")

EXAMPLE = str(Path(__file__).resolve().parents[2] / "examples" / "tasks.json")
TOKEN = "test-token"


class Gunicorn:
    """`gunicorn -c python:api.gunicorn_conf api.wsgi:app` on a free port."""

    def __init__(self, env: dict[str, str], log: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**env, "GUNICORN_BIND": f"127.0.0.1:{self.port}", "GUNICORN_WORKERS": "1",
                    "GUNICORN_THREADS": "4", "GUNICORN_GRACEFUL_TIMEOUT": "2"}
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 60) -> None:
        with open(self.log, "wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gunicorn", "-c", "python:api.gunicorn_conf", "--no-control-socket",
                 "api.wsgi:app"], env=self.env, stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while not http_ok(f"{self.url}/health"):
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"gunicorn did not start:\n{self.log.read_text()[-3000:]}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture
def live_api(base_env: dict[str, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gunicorn]:
    """The API under gunicorn; this process's environment points the CLI at it."""
    server = Gunicorn(base_env, tmp_path / "gunicorn.log")
    server.start()
    for key, value in base_env.items():
        if key.startswith("ORCHESTRATOR_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("ORCHESTRATOR_API_URL", server.url)
    monkeypatch.setenv("ORCHESTRATOR_API_TOKEN", TOKEN)
    reset_settings_cache()
    yield server
    server.stop()
    reset_settings_cache()


def run(*argv: str) -> int:
    return main(list(argv))


def submit(*extra: str, task_id: str = "1", service: str = "demo") -> int:
    return run("task", "submit", "--task-json", EXAMPLE, "--task-id", task_id, "--service", service,
               "--agent", "claude", *extra)


def test_submit_status_and_list(live_api: Gunicorn, capsys: pytest.CaptureFixture[str]) -> None:
    assert submit() == EXIT_OK
    out, err = capsys.readouterr()
    assert out == f"submitted demo/1: Pending\n  {live_api.url}/api/v1/pm/tasks/demo/1\n"

    assert run("task", "status", "demo/1", "-o", "json") == EXIT_OK
    task = json.loads(capsys.readouterr().out)
    assert task["title"] == "Add a greeting module" and task["priority"] == "high"
    files = {f["file_type"]: f for f in task["markdown_files"]}
    assert files["task"]["content"].startswith("# Task 1: Add a greeting module")
    assert files["acceptance-criteria"]["content"].endswith("greet('PM') returns 'Hello, PM!'; greeting.py exists.\n")
    assert [s["title"] for s in task["subtasks"]] == ["Write greet()", "Document greet()"]

    assert run("task", "status", "demo/1") == EXIT_OK
    out = capsys.readouterr().out
    assert "demo/1  Add a greeting module" in out and "agent:    claude" in out

    assert run("task", "list", "--service", "demo") == EXIT_OK
    assert "demo/1" in capsys.readouterr().out


def test_submit_all_in_dependency_order(live_api: Gunicorn, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    # Listed out of order on purpose: 3 needs 1 and 2, 2 needs 1.
    tasks = json.loads(Path(EXAMPLE).read_text())["master"]["tasks"]
    shuffled = tmp_path / "tasks.json"
    shuffled.write_text(json.dumps([tasks[2], tasks[0], tasks[1]]))
    assert run("task", "submit", "--all", "--task-json", str(shuffled), "--service", "demo",
               "--agent", "claude") == EXIT_OK
    out = capsys.readouterr().out
    assert [line.split()[1] for line in out.splitlines()] == ["demo/1", "demo/2", "demo/3"]
    assert run("task", "list", "--service", "demo", "-o", "json") == EXIT_OK
    listed = json.loads(capsys.readouterr().out)["items"]
    assert [t["id"] for t in listed] == [3, 2, 1]  # newest first: submitted 1, then 2, then 3
    # Running it again skips what is there.
    assert run("task", "submit", "--all", "--task-json", str(shuffled), "--service", "demo",
               "--agent", "claude") == EXIT_OK
    assert capsys.readouterr().out.count("already submitted, skipped") == 3


def test_cancel_and_retry(live_api: Gunicorn, capsys: pytest.CaptureFixture[str]) -> None:
    assert submit() == EXIT_OK
    capsys.readouterr()
    assert run("task", "cancel", "demo/1") == EXIT_OK
    assert capsys.readouterr().out.startswith("cancelled demo/1: Cancelled")
    assert run("task", "cancel", "demo/1") == EXIT_CONFLICT
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already ended" in err and "orchestrator task status demo/1" in err
    assert run("task", "retry", "demo/1") == EXIT_OK
    assert capsys.readouterr().out.startswith("retrying demo/1: ")


def test_context(live_api: Gunicorn, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert submit() == EXIT_OK
    doc = tmp_path / "more.md"
    doc.write_text("Also support German.\n")
    capsys.readouterr()
    assert run("task", "context", "demo/1", "--file", str(doc)) == EXIT_OK
    assert "added context to demo/1 (now v2)" in capsys.readouterr().out


def test_error_paths(live_api: Gunicorn, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                     monkeypatch: pytest.MonkeyPatch) -> None:
    def failure(code: int, *argv: str) -> str:
        assert run(*argv) == code, capsys.readouterr()
        out, err = capsys.readouterr()
        assert out == "" and err.startswith("orchestrator: ")
        return err

    assert "task demo/9" in failure(EXIT_NOT_FOUND, "task", "status", "demo/9")
    assert "orchestrator task list" in failure(EXIT_NOT_FOUND, "task", "cancel", "demo/9")
    assert submit() == EXIT_OK
    capsys.readouterr()
    assert "already" in failure(EXIT_CONFLICT, "task", "submit", "--task-json", EXAMPLE, "--task-id", "1",
                                "--service", "demo", "--agent", "claude")
    err = failure(EXIT_INVALID, "task", "submit", "--task-json", EXAMPLE, "--task-id", "2", "--service", "demo",
                  "--agent", "claude", "--repo", "https://evil.example/o/r.git")
    assert "the API refused the request" in err and "repository.url:" in err and "not in the allowed list" in err
    assert "has no run yet" in failure(EXIT_NOT_FOUND, "task", "logs", "demo/1")
    assert "'--tail': 0 is not in the range x>=1" in failure(EXIT_USAGE, "task", "logs", "demo/1", "--tail", "0")

    monkeypatch.setenv("ORCHESTRATOR_API_TOKEN", "wrong")
    reset_settings_cache()
    assert "refused the token" in failure(EXIT_AUTH, "task", "list")
    monkeypatch.setenv("ORCHESTRATOR_API_TOKEN", "")
    reset_settings_cache()
    assert "no API token: set ORCHESTRATOR_API_TOKEN" in failure(EXIT_AUTH, "task", "list")
    monkeypatch.setenv("ORCHESTRATOR_API_TOKEN", TOKEN)
    reset_settings_cache()
    assert "cannot reach the API" in failure(EXIT_UNREACHABLE, "--api-url", f"http://127.0.0.1:{free_port()}",
                                             "task", "list")


def test_health(live_api: Gunicorn, capsys: pytest.CaptureFixture[str]) -> None:
    assert run("health") == EXIT_OK
    assert capsys.readouterr().out.startswith(f"API {live_api.url}: alive (version ")
