"""The web console in a real browser (Debian's chromium through Playwright) against the whole stack.

gunicorn, a Celery worker, the watcher and Redis run as separate processes
(tests/support/stack.py) with the local runner; the agent is a shell loop whose
length depends on the task id, so some runs end at once and others stay
Running long enough to be watched, cancelled and retried.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.stack import REPO_ROOT, Stack

CHROMIUM = os.environ.get("ORCHESTRATOR_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# Screenshots go to a temporary directory; ORCHESTRATOR_TEST_SCREENSHOTS=docs refreshes the README's.
SCREENSHOTS = os.environ.get("ORCHESTRATOR_TEST_SCREENSHOTS", "")
TOKEN = "browser-token"
# Task ids from 100 up run for two minutes; the others print a few lines and end.
# Every run leaves a file in its checkout, so a task with a repository is delivered with changes.
AGENT = ("sh -c 'echo \"agent starts on task $ORCHESTRATOR_TASK_ID\"; n=3; "
         "echo hello > \"greeting-$ORCHESTRATOR_TASK_ID.txt\"; "
         "if [ \"$ORCHESTRATOR_TASK_ID\" -ge 100 ]; then n=240; fi; i=1; "
         "while [ $i -le $n ]; do echo \"step $i of $n\"; i=$((i+1)); sleep 0.5; done; echo finished'")
ENDED = re.compile(r"^(Succeeded|Failed)$")

try:
    from playwright.sync_api import Browser, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None  # type: ignore[assignment]
try:  # axe-core (axe.min.js, vendored by the package), injected by the test: the app never serves it
    from axe_playwright_python.sync_playwright import Axe
except ImportError:  # pragma: no cover - the test extra installs it
    Axe = None  # type: ignore[assignment,misc]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(sync_playwright is None, reason="playwright is not installed (pip install -e '.[test]')"),
    pytest.mark.skipif(not (Path(CHROMIUM).exists() or shutil.which("chromium")),
                       reason=f"no chromium at {CHROMIUM} (apt-get install chromium; .ci/run does)"),
]


def task(task_id: int, service: str = "demo", dependencies: list[int] | None = None, title: str = "",
         repository: Path | None = None) -> dict:
    return {
        **({"repository": {"url": str(repository), "branch": "main"}} if repository else {}),
        "id": task_id, "title": title or f"Task {task_id}", "description": "Say **hello**", "priority": "medium",
        "dependencies": dependencies or [], "service_name": service, "agent_name": "claude",
        "markdown_files": [{"filename": "task.md", "content": f"# Task {task_id}\n\n- greet\n- exit",
                            "file_type": "task"}],
    }


@pytest.fixture(scope="module")
def local_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A git repository on disk that the demo tasks deliver to (ORCHESTRATOR_ALLOW_LOCAL_REPOS)."""
    repo = tmp_path_factory.mktemp("repos") / "demo"
    repo.mkdir()
    for args in (["init", "--quiet", "-b", "main"], ["add", "-A"],
                 ["-c", "user.name=t", "-c", "user.email=t@example.test", "commit", "--quiet", "-m", "first"]):
        if args[0] == "add":
            (repo / "README.md").write_text("# demo\n")
        subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return repo


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, local_repo: Path) -> Iterator[Stack]:
    env = {"ORCHESTRATOR_RECONCILE_SECONDS": "1", "ORCHESTRATOR_SESSION_SECRET": "browser-test-session-secret",
           "ORCHESTRATOR_ALLOW_LOCAL_REPOS": "true",
           "ORCHESTRATOR_LOCAL_AGENT_COMMAND": AGENT, "GUNICORN_WORKERS": "2", "GUNICORN_THREADS": "8"}
    running = Stack(tmp_path_factory.mktemp("console"), token=TOKEN, env=env)
    try:
        running.up()
        yield running
    finally:
        running.down()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots are written."""
    if SCREENSHOTS:
        target = Path(SCREENSHOTS) if Path(SCREENSHOTS).is_absolute() else REPO_ROOT / SCREENSHOTS
        target.mkdir(parents=True, exist_ok=True)
        return target
    return tmp_path_factory.mktemp("screenshots")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM if Path(CHROMIUM).exists()
                                              else shutil.which("chromium"), args=CHROMIUM_ARGS)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser, stack: Stack) -> Iterator[Page]:
    context = browser.new_context(base_url=stack.api_url, viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    opened = context.new_page()
    violations: list[str] = []
    opened.on("console", lambda msg: violations.append(msg.text) if "Content Security Policy" in msg.text else None)
    yield opened
    context.close()
    assert not violations, violations


def sign_in(page: Page, token: str = TOKEN) -> None:
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/sign-in"))
    page.get_by_label("API token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def submit(stack: Stack, body: dict) -> None:
    status, answer = stack.request("POST", "/api/v1/pm/tasks", body)
    assert status == 202, answer


def test_sign_in_submit_and_watch_a_task_end_live(page: Page, stack: Stack, shots: Path, local_repo: Path) -> None:
    sign_in(page, "wrong-token")
    expect(page.get_by_role("alert")).to_contain_text("not accepted")
    page.get_by_label("API token").fill(TOKEN)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Tasks")).to_be_visible()

    submit(stack, task(1, repository=local_repo))
    submit(stack, task(3, dependencies=[2], title="Announce the greeting", repository=local_repo))
    page.get_by_role("link", name="Submit").click()
    form = page.locator("form.submit")
    form.get_by_label("Service").fill("demo")
    form.get_by_label("Task id", exact=True).fill("2")
    form.get_by_label("Agent").fill("claude")
    form.get_by_label("Dependencies").fill("1, x")
    page.get_by_role("button", name="Submit task").click()
    # The API's schema errors, beside their fields; what was typed is still there.
    expect(page.locator("#title-error")).to_be_visible()
    expect(page.locator("#document-error")).to_be_visible()
    expect(page.locator("#dependencies-error")).to_be_visible()
    expect(form.get_by_label("Service")).to_have_value("demo")

    form.get_by_label("Title").fill("Greet <b>everyone</b>")
    form.get_by_label("Dependencies").fill("1")
    form.get_by_label("Description").fill("Print a *friendly* greeting.")
    form.get_by_label("Repository URL").fill(str(local_repo))
    form.get_by_label("Task document").fill("# Greeting\n\nSay hello to `everyone`.\n\n<script>alert(1)</script>")
    page.get_by_role("button", name="Submit task").click()
    expect(page).to_have_url(re.compile(r"/tasks/demo/2$"))
    expect(page.locator("main > h1")).to_contain_text("Greet <b>everyone</b>")  # shown as text
    expect(page.locator(".doc h1")).to_have_text("Greeting")
    expect(page.locator(".doc").last).to_contain_text("<script>alert(1)</script>")

    # The status changes on the page without a reload, through Succeeded or Failed.
    page.evaluate("window.__notReloaded = true")
    badge = page.locator(".status-card [data-field=status]")
    expect(badge).to_have_text(ENDED, timeout=120_000)
    assert page.evaluate("window.__notReloaded") is True
    expect(page.locator("#log")).to_contain_text("finished", timeout=30_000)
    expect(page.locator("table.runs tbody tr")).to_have_count(1)
    # What delivery recorded: the outcome, the task's branch, its commit and what changed.
    run_row = page.locator("table.runs tbody tr").first
    expect(run_row).to_contain_text("changes", timeout=30_000)
    expect(run_row).to_contain_text("task-2")
    expect(run_row).to_contain_text("+1")
    expect(page.locator("svg.graph .node")).to_have_count(3)
    page.screenshot(path=str(shots / "console-task.png"), full_page=True)

    stack.wait_status("demo", 3, {"Succeeded", "Failed"})
    page.get_by_role("link", name="Tasks", exact=True).click()
    expect(page.locator("tr[data-task]")).to_have_count(3)
    expect(page.locator('tr[data-task="demo/2"] td').first).to_have_text("demo/2")
    expect(page.locator('tr[data-task="demo/2"]')).to_contain_text("changes")  # the latest run's outcome
    page.screenshot(path=str(shots / "console-tasks.png"), full_page=True)


def test_cancel_and_retry_a_running_task_while_its_log_follows(page: Page, stack: Stack) -> None:
    submit(stack, task(100, service="slow", title="A long run"))
    sign_in(page)
    page.goto("/tasks/slow/100")
    badge = page.locator(".status-card [data-field=status]")
    expect(badge).to_have_text("Running", timeout=90_000)
    expect(page.locator("#log")).to_contain_text("step 2 of 240", timeout=30_000)

    page.get_by_role("button", name="Cancel").click()
    expect(badge).to_have_text("Cancelled")
    expect(page.get_by_role("status")).to_contain_text("Cancel requested")
    page.get_by_role("button", name="Retry").click()
    expect(page.get_by_role("status")).to_contain_text("Retry requested")
    expect(badge).to_have_text("Running", timeout=90_000)  # live again
    view = stack.request("GET", "/api/v1/pm/tasks/slow/100")[1]
    assert view["context_version"] == 1 and len(view["runs"]) == 2
    # The log panel showed the cancelled run's last lines, and now follows the new run.
    expect(page.locator("#log-hint")).to_have_text(f"Following run {view['runs'][-1]['run_id']}.", timeout=30_000)
    expect(page.locator("#log")).to_contain_text("agent starts on task 100")

    # A refused action shows the API's message: cancel in another tab first, then here.
    stack.request("POST", "/api/v1/pm/tasks/slow/100/cancel", {})
    expect(badge).to_have_text("Cancelled")
    page.goto("/tasks/slow/100")
    assert page.get_by_role("button", name="Cancel").count() == 0


def test_a_task_picked_from_an_uploaded_task_master_file(page: Page, stack: Stack) -> None:
    sign_in(page)
    page.goto("/submit")
    upload = page.locator("form[enctype]")
    upload.get_by_label("Task Master tasks.json").set_input_files(str(REPO_ROOT / "examples" / "tasks.json"))
    upload.get_by_label("Service").fill("upload")
    upload.get_by_label("Agent").fill("claude")
    upload.get_by_role("button", name="Read the file").click()
    expect(page.get_by_role("heading", name="Pick a task of the file")).to_be_visible()
    page.locator('input[name="task_id"][value="1"]').check()
    page.get_by_role("button", name="Submit the chosen task").click()
    expect(page).to_have_url(re.compile(r"/tasks/upload/1$"))
    expect(page.locator(".doc h1").first).to_be_visible()


def test_the_tasks_list_follows_status_changes_and_fits_a_phone(browser: Browser, stack: Stack,
                                                                shots: Path) -> None:
    submit(stack, task(101, service="phone", title="Watched from a phone"))
    context = browser.new_context(base_url=stack.api_url, viewport={"width": 390, "height": 844},
                                  device_scale_factor=2, is_mobile=True, has_touch=True)
    context.set_default_timeout(20_000)
    page = context.new_page()
    try:
        sign_in(page)
        row_badge = page.locator('tr[data-task="phone/101"] [data-field=status]')
        expect(row_badge).to_be_visible()
        stack.request("POST", "/api/v1/pm/tasks/phone/101/cancel", {"reason": "seen on a phone"})
        expect(row_badge).to_have_text("Cancelled", timeout=30_000)
        expect(page.locator('tr[data-task="phone/101"] .reason')).to_be_hidden()  # the narrow layout drops it
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"the page is {width}px wide at a 390px viewport"
        page.screenshot(path=str(shots / "console-tasks-phone.png"), full_page=True)
        page.goto("/tasks/phone/101")
        expect(page.locator(".status-card [data-field=status]")).to_have_text("Cancelled")
        assert page.evaluate("document.documentElement.scrollWidth") <= 390
    finally:
        context.close()


def test_sign_out_then_pages_and_events_are_refused(page: Page, stack: Stack) -> None:
    sign_in(page)
    expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    page.get_by_role("button", name="Sign out").click()
    expect(page.get_by_label("API token")).to_be_visible()
    page.goto("/tasks/demo/1")
    expect(page).to_have_url(re.compile(r"/sign-in\?next=/tasks/demo/1"))
    response = page.request.get("/console/events?task=demo/1")
    assert response.status == 401


def test_a_browser_opening_the_cli_task_url_lands_on_the_task_page(page: Page, stack: Stack) -> None:
    submit(stack, task(4))
    sign_in(page)
    page.goto("/api/v1/pm/tasks/demo/4")
    expect(page).to_have_url(re.compile(r"/tasks/demo/4$"))
    expect(page.locator("main > h1")).to_contain_text("Task 4")


def accessibility_problems(page: Page) -> list[str]:
    """axe-core's serious and critical violations on the page as it is now (WCAG 2.x A and AA rules, best practices)."""
    results = Axe().run(page, options={"resultTypes": ["violations"]})
    return [
        f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
        for v in results.response["violations"]
        if v["impact"] in {"serious", "critical"}
    ]


@pytest.mark.skipif(Axe is None, reason="axe-playwright-python is not installed (pip install -e '.[test]')")
def test_pages_pass_an_automated_accessibility_scan(page: Page, stack: Stack) -> None:
    submit(stack, task(5, service="a11y", title="Scanned for accessibility"))
    found: dict[str, list[str]] = {}
    page.goto("/sign-in")
    found["sign-in"] = accessibility_problems(page)
    sign_in(page)
    expect(page.get_by_role("heading", name="Tasks")).to_be_visible()
    found["tasks"] = accessibility_problems(page)
    page.goto("/?service=nothing-here")
    found["tasks, empty"] = accessibility_problems(page)
    page.goto("/tasks/a11y/5")
    expect(page.locator("main > h1")).to_contain_text("Scanned for accessibility")
    found["task"] = accessibility_problems(page)
    page.goto("/submit")
    found["submit"] = accessibility_problems(page)
    page.get_by_role("button", name="Submit task").click()  # the same form with its field errors
    found["submit, with errors"] = accessibility_problems(page)
    page.goto("/services")
    found["services"] = accessibility_problems(page)
    assert not {name: problems for name, problems in found.items() if problems}
