"""Hostile input through the real API (gunicorn over HTTP) and straight into the workspace code.

Git URLs and branch names built to inject options or shell, path traversal in
markdown file names, working directories and URL path segments. Through the
API each is refused with a 400 that names the field, nothing is stored, and no
command ran (the payloads try to create a canary file). Stored directly in a
task's spec (as if the API had been bypassed), the workspace code refuses them
again before git runs.
The Flask-level validation of every field is in tests/test_api_schemas.py and
the validators' properties in tests/test_names*.py; this adds the real server,
shell and option payloads, and the defence in depth below the API.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.settings import Settings
from orchestrator.store import TaskStore
from orchestrator.workspace.layout import PathEscape
from orchestrator.workspace.prepare import PreparationError, prepare_workspace
from tests.support.faults import FaultStack, assert_no_secret_leaked, task_body
from tests.workspace.conftest import start_run, task_spec

CANARY = Path("/tmp/orchestrator-hostile-canary")
GOOD_URL = "https://github.com/acme/shop.git"

HOSTILE_URLS = [
    f"--upload-pack=touch {CANARY}",
    f"-u touch {CANARY}",
    f"{GOOD_URL} --upload-pack=touch {CANARY}",
    f"ext::sh -c touch% {CANARY}",
    f"{GOOD_URL}; touch {CANARY}",
    f"{GOOD_URL} && touch {CANARY}",
    f"https://github.com/acme/$(touch {CANARY}).git",
    f"https://github.com/acme/`touch {CANARY}`.git",
    f"git@github.com:-oProxyCommand=touch {CANARY}/shop.git",
    f"ssh://-oProxyCommand=touch%20{CANARY}/acme/shop.git",
    f"{GOOD_URL}\n--upload-pack=touch {CANARY}",
    "https://github.com/../../etc/passwd",
    "file:///etc/passwd",
    "https://x-access-token:abc@github.com/acme/shop.git",
    "https://github.com.evil.example/acme/shop.git",
    "https://github.com@evil.example/acme/shop.git",
]
HOSTILE_BRANCHES = [
    f"--upload-pack=touch {CANARY}",
    "-f",
    f"main; touch {CANARY}",
    f"$(touch {CANARY})",
    f"`touch {CANARY}`",
    "main\n--force",
    "main && rm -rf /",
    "../../etc",
    "refs/heads/../x",
    "main:refs/heads/evil",
    "@{-1}",
    "HEAD~1",
    "a..b",
]
HOSTILE_FILENAMES = ["../task.md", "../../etc/passwd.md", "/etc/task.md", "a/../b.md", "..\\task.md",
                     "%2e%2e%2ftask.md", ".git.md", "task.md\x00.sh", "~/task.md", "$(id).md"]
HOSTILE_DIRECTORIES = ["..", "../other", "a/../../b", "/etc", "a/./../..", "..\\..", "-rf", "a\nb", "a\x00b",
                       "$(touch /tmp/x)"]


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultStack]:
    """Redis and gunicorn only: nothing must get as far as a worker."""
    running = FaultStack(tmp_path_factory.mktemp("hostile"))
    try:
        running.start_redis()
        running.start_api()
        yield running
    finally:
        running.down()


def refused(api: FaultStack, body: dict[str, Any], *path: Any) -> None:
    status, answer = api.request("POST", "/api/v1/pm/tasks", body)
    assert status == 400, answer
    assert answer["code"] == "validation_error", answer
    node: Any = answer["errors"]
    for part in path:
        node = node[str(part)] if isinstance(node, dict) and str(part) in node else node[part]
    assert node, answer
    status, _ = api.request("GET", f"/api/v1/pm/tasks/{body['service_name']}/{body['id']}")
    assert status == 404  # nothing stored
    assert not CANARY.exists()


@pytest.mark.parametrize("url", HOSTILE_URLS)
def test_hostile_repository_urls_are_refused_by_the_api(api: FaultStack, url: str) -> None:
    refused(api, task_body(1, "hostile", repository={"url": url}), "repository", "url")


@pytest.mark.parametrize("branch", HOSTILE_BRANCHES)
def test_hostile_branches_are_refused_by_the_api(api: FaultStack, branch: str) -> None:
    refused(api, task_body(2, "hostile", repository={"url": GOOD_URL, "branch": branch}), "repository", "branch")


@pytest.mark.parametrize("filename", HOSTILE_FILENAMES)
def test_traversal_in_markdown_file_names_is_refused_by_the_api(api: FaultStack, filename: str) -> None:
    body = task_body(3, "hostile", markdown_files=[{"filename": filename, "content": "x", "file_type": "task"}])
    refused(api, body, "markdown_files", 0, "filename")


@pytest.mark.parametrize("directory", HOSTILE_DIRECTORIES)
def test_traversal_in_working_directories_is_refused_by_the_api(api: FaultStack, directory: str) -> None:
    refused(api, task_body(4, "hostile", working_directory=directory), "working_directory")


@pytest.mark.parametrize("segment", ["..", "..%2F..%2Fetc", "%2e%2e", "a%00b", "UPPER", "a;rm"])
def test_traversal_in_the_url_path_never_reaches_the_store(api: FaultStack, segment: str) -> None:
    for method, suffix, body in (("GET", "", None), ("POST", "/cancel", {}), ("POST", "/context", {"content": "x"}),
                                 ("GET", "/logs", None)):
        status, answer = api.request(method, f"/api/v1/pm/tasks/{segment}/1{suffix}", body)
        assert status in (400, 404, 405), (segment, method, suffix, status, answer)
        assert isinstance(answer, dict) and answer.get("code"), answer


# A PM token could otherwise point the agent (which holds ANTHROPIC_API_KEY) at its own server.
HOSTILE_ENV = {"ANTHROPIC_BASE_URL": "http://attacker.example/", "HTTPS_PROXY": "http://attacker.example:3128",
               "ALL_PROXY": "socks5://attacker.example", "NODE_OPTIONS": f"--require {CANARY}",
               "NODE_EXTRA_CA_CERTS": "/tmp/attacker-ca.pem", "SSL_CERT_FILE": "/tmp/attacker-ca.pem",
               "CLAUDE_CONFIG_DIR": "/tmp/attacker", "PERL5OPT": f"-Mtouch={CANARY}", "PYTHONHOME": "/tmp/x",
               "PS4": f"$(touch {CANARY})", "SHELLOPTS": "xtrace", "GCONV_PATH": "/tmp/x",
               "ANTHROPIC_MODEL": "claude-nonexistent"}


@pytest.mark.parametrize(("name", "value"), list(HOSTILE_ENV.items()), ids=list(HOSTILE_ENV))
def test_env_that_could_redirect_the_agent_is_refused_by_the_api(api: FaultStack, name: str, value: str) -> None:
    refused(api, task_body(5, "hostile", env={name: value}), "env", name)


def test_no_secret_in_hostile_input_answers_or_logs(api: FaultStack) -> None:
    api.down()
    assert_no_secret_leaked(api)


# Below the API: the workspace code refuses them again ---------------------------------------


@pytest.fixture
def hostile_settings(settings: Settings, tmp_path: Path) -> Settings:
    return settings.replace(workspace_root=tmp_path / "ws", git_timeout_seconds=10,
                            allowed_git_hosts=("github.com",))


@pytest.mark.parametrize("repository", [{"url": url, "branch": "main"} for url in HOSTILE_URLS]
                         + [{"url": GOOD_URL, "branch": branch} for branch in HOSTILE_BRANCHES])
def test_hostile_urls_and_branches_are_refused_before_git_runs(hostile_settings: Settings, store: TaskStore,
                                                               repository: dict[str, str]) -> None:
    run_id = start_run(store, task_spec(repository=repository))
    with pytest.raises(PreparationError):
        prepare_workspace(store, hostile_settings, run_id)
    assert not (hostile_settings.workspace_root / "shop" / ".git").exists()
    assert not CANARY.exists()


@pytest.mark.parametrize("filename", HOSTILE_FILENAMES)
def test_traversal_in_stored_file_names_writes_nothing_outside(hostile_settings: Settings, store: TaskStore,
                                                               filename: str) -> None:
    spec = task_spec(repository=None, markdown_files=[{"filename": filename, "content": "x", "file_type": "task"}])
    run_id = start_run(store, spec)
    with pytest.raises((PreparationError, PathEscape, ValueError)):
        prepare_workspace(store, hostile_settings, run_id)
    written = [p for p in hostile_settings.workspace_root.rglob("*") if p.is_file()]
    assert all(p.resolve().is_relative_to(hostile_settings.workspace_root.resolve()) for p in written)
    assert not any(p.name.endswith(".md") and "task" in p.name for p in written)


@pytest.mark.parametrize("directory", HOSTILE_DIRECTORIES)
def test_traversal_in_stored_working_directories_is_refused(hostile_settings: Settings, store: TaskStore,
                                                            directory: str) -> None:
    run_id = start_run(store, task_spec(repository=None, working_directory=directory))
    with pytest.raises((PreparationError, PathEscape, ValueError)):
        prepare_workspace(store, hostile_settings, run_id)
    assert not any(hostile_settings.workspace_root.parent.glob("other"))
