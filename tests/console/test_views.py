"""The web console through Flask's test client, against a real Redis."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from api.app import create_app
from api.console.session import COOKIE_NAME
from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.store import TaskStore
from tests.support.api import AUTH, TOKEN, route_steps_to, valid_task

REPO_EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HOSTILE = '<script>alert("owned")</script>'


@pytest.fixture
def console_settings(settings: Settings) -> Settings:
    return settings.replace(session_secret="console-test-secret", api_tokens=(TOKEN, "other-token"))


@pytest.fixture
def app(console_settings: Settings, monkeypatch: pytest.MonkeyPatch) -> Iterator[Flask]:
    celery = route_steps_to(console_settings, monkeypatch)
    yield create_app(console_settings)
    celery.close()


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def post_sign_in(client: FlaskClient, data: dict, **kwargs):
    """POST the sign-in form as a browser does: after loading it (its CSRF token)."""
    page = client.get("/sign-in", **kwargs).get_data(as_text=True)
    return client.post("/sign-in", data={"csrf_token": csrf_of(page), **data}, **kwargs)


def sign_in(client: FlaskClient, token: str = TOKEN) -> str:
    """Sign in; returns the CSRF token of the session."""
    response = post_sign_in(client, {"token": token})
    assert response.status_code == 303, response.get_data(as_text=True)
    return csrf_of(client.get("/").get_data(as_text=True))


def submit_api(client: FlaskClient, **changes) -> None:
    response = client.post("/api/v1/pm/tasks", json=valid_task(**changes), headers=AUTH)
    assert response.status_code == 202, response.get_json()


def test_sign_in_page_asks_for_the_api_token(client: FlaskClient) -> None:
    response = client.get("/sign-in")
    html = response.get_data(as_text=True)
    assert response.status_code == 200
    assert '<label for="token">API token</label>' in html


def test_pages_send_a_visitor_to_sign_in(client: FlaskClient) -> None:
    response = client.get("/tasks/billing/7")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/sign-in?next=/tasks/billing/7")
    assert client.get("/console/events?task=billing/7").status_code == 401


def test_a_bad_token_is_refused_and_starts_no_session(client: FlaskClient) -> None:
    response = post_sign_in(client, {"token": "not-a-token"})
    assert response.status_code == 401
    assert "not accepted" in response.get_data(as_text=True)
    assert client.get("/").status_code == 302


def test_the_sign_in_form_is_csrf_checked_too(client: FlaskClient) -> None:
    response = client.post("/sign-in", data={"token": TOKEN})
    assert response.status_code == 400
    assert client.get("/").status_code == 302


def test_a_valid_token_starts_a_strict_http_only_session_without_the_token(client: FlaskClient) -> None:
    response = post_sign_in(client, {"token": TOKEN, "next": "/submit"})
    assert response.status_code == 303
    assert response.headers["Location"] == "/submit"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(COOKIE_NAME + "=")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain HTTP here
    assert "Expires=" in cookie
    assert TOKEN not in cookie
    assert client.get("/").status_code == 200


def test_the_cookie_is_secure_over_https(client: FlaskClient) -> None:
    response = post_sign_in(client, {"token": TOKEN}, base_url="https://console.example")
    assert "Secure" in response.headers["Set-Cookie"]


def test_sign_in_never_redirects_to_another_site(client: FlaskClient) -> None:
    for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
        response = post_sign_in(client.application.test_client(), {"token": TOKEN, "next": target})
        assert response.headers["Location"] == "/"


def test_posts_without_the_csrf_token_are_refused(client: FlaskClient, store: TaskStore) -> None:
    submit_api(client)
    csrf = sign_in(client)
    for path in ("/tasks/billing/7/cancel", "/sign-out", "/submit", "/tasks/billing/7/context"):
        response = client.post(path, data={"csrf_token": "forged", "content": "x"})
        assert response.status_code == 400, path
    assert store.get_task("billing", 7).status != Status.CANCELLED.value
    assert client.post("/tasks/billing/7/cancel", data={"csrf_token": csrf}).status_code == 303
    assert store.get_task("billing", 7).status == Status.CANCELLED.value


def test_sign_out_ends_the_session(client: FlaskClient) -> None:
    csrf = sign_in(client)
    response = client.post("/sign-out", data={"csrf_token": csrf})
    assert response.status_code == 303 and response.headers["Location"] == "/sign-in"
    assert client.get("/").status_code == 302


def test_a_signed_out_cookie_replayed_is_refused(app: Flask, client: FlaskClient, store: TaskStore) -> None:
    """The cookie is validly signed forever after: the store's record of its session is what sign-out ends."""
    csrf = sign_in(client)
    stolen = client.get_cookie(COOKIE_NAME).value
    other_tab = app.test_client()
    other_tab.set_cookie(COOKIE_NAME, stolen)
    assert other_tab.get("/").status_code == 200  # the same session, as a copied cookie
    assert client.post("/sign-out", data={"csrf_token": csrf}).status_code == 303
    replay = app.test_client()
    replay.set_cookie(COOKIE_NAME, stolen)
    assert replay.get("/").status_code == 302
    assert replay.get("/console/events?task=billing/7").status_code == 401
    assert replay.post("/tasks/billing/7/cancel", data={"csrf_token": csrf}).status_code == 401
    assert other_tab.get("/").status_code == 302
    assert not store.redis.keys("orch:console-session:*")  # nothing left of it


def test_each_sign_in_is_its_own_session(app: Flask) -> None:
    first, second = app.test_client(), app.test_client()
    csrf = sign_in(first)
    sign_in(second)
    first.post("/sign-out", data={"csrf_token": csrf})
    assert first.get("/").status_code == 302
    assert second.get("/").status_code == 200  # signing out one browser leaves the other signed in


def test_revoking_the_token_ends_its_sessions(app: Flask, client: FlaskClient,
                                             console_settings: Settings) -> None:
    sign_in(client, "other-token")
    assert client.get("/").status_code == 200
    app.extensions["orchestrator"].settings = console_settings.replace(api_tokens=(TOKEN,))
    assert client.get("/").status_code == 302


def test_a_session_ends_after_its_lifetime(app: Flask, client: FlaskClient, console_settings: Settings,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import time as time_module

    sign_in(client)
    later = time_module.time() + console_settings.session_lifetime_seconds + 5
    monkeypatch.setattr("api.console.session.time.time", lambda: later)
    assert client.get("/").status_code == 302


def test_console_pages_carry_the_security_headers(client: FlaskClient) -> None:
    for path in ("/sign-in", "/console/static/console.css"):
        headers = client.get(path).headers
        csp = headers["Content-Security-Policy"]
        assert "default-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert headers["X-Frame-Options"] == "DENY"
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] in {"same-origin", "no-referrer"}


def test_pages_have_no_inline_script_or_style(client: FlaskClient) -> None:
    submit_api(client)
    sign_in(client)
    for path in ("/", "/tasks/billing/7", "/submit", "/services", "/sign-in"):
        html = client.get(path).get_data(as_text=True)
        assert not re.search(r"<script(?![^>]*\bsrc=)", html), path
        assert "<style" not in html and " style=" not in html and " on" + "click=" not in html, path


def test_hostile_text_is_escaped_everywhere(client: FlaskClient, store: TaskStore) -> None:
    doc = f"# Title\n\n{HOSTILE}\n\n[click](javascript:alert(1))\n"
    submit_api(client, title=HOSTILE, description=HOSTILE,
               markdown_files=[{"filename": "task.md", "content": doc, "file_type": "task"}])
    store.transition("billing", 7, Status.CANCELLED, reason=HOSTILE, actor="test")
    sign_in(client)
    for path in ("/", "/tasks/billing/7", "/tasks/billing/7/parts"):
        html = client.get(path).get_data(as_text=True)
        assert HOSTILE not in html, path
        assert "&lt;script&gt;" in html, path
        assert "javascript:alert" not in html.replace("[click](javascript:alert(1))", ""), path


def test_tasks_page_filters_and_shows_rows(client: FlaskClient) -> None:
    submit_api(client)
    submit_api(client, id=8, title="Refund flow", dependencies=[7])
    submit_api(client, id=9, service_name="search", title="Ranking")
    sign_in(client)
    html = client.get("/").get_data(as_text=True)
    assert html.index("search/9") < html.index("billing/8") < html.index("billing/7")  # newest first
    html = client.get("/?service=billing&q=refund").get_data(as_text=True)
    assert "billing/8" in html and "billing/7" not in html and "search/9" not in html
    html = client.get("/?status=NotAStatus").get_data(as_text=True)
    assert "status:" in html  # the API's schema error, shown


def test_tasks_page_pages_with_the_api_cursor(client: FlaskClient) -> None:
    for i in range(1, 4):
        submit_api(client, id=i, dependencies=[])
    sign_in(client)
    html = client.get("/?limit=2").get_data(as_text=True)
    assert "billing/3" in html and "billing/2" in html and "billing/1" not in html
    older = re.search(r'href="(/\?[^"]*cursor=[^"]+)"', html).group(1).replace("&amp;", "&")
    assert "limit=2" in older
    html = client.get(older).get_data(as_text=True)
    assert "billing/1" in html and "billing/3" not in html


def test_task_page_shows_documents_graph_history_and_actions(client: FlaskClient) -> None:
    submit_api(client, dependencies=[3])
    submit_api(client, id=8, title="Refund flow", dependencies=[7])
    sign_in(client)
    html = client.get("/tasks/billing/7").get_data(as_text=True)
    assert "<h1>Export</h1>" in html  # task.md rendered as Markdown
    assert "<svg" in html and "billing/3" in html and "billing/8" in html and "not submitted" in html
    assert "submitted" in html and ">Cancel<" in html and ">Retry<" not in html
    assert client.get("/tasks/billing/99").status_code == 404


def test_actions_do_what_the_api_does_and_show_its_errors(client: FlaskClient, store: TaskStore) -> None:
    submit_api(client, dependencies=[])
    csrf = sign_in(client)
    client.post("/tasks/billing/7/cancel", data={"csrf_token": csrf, "reason": "not now"})
    assert store.get_task("billing", 7).status == Status.CANCELLED.value
    page = client.post("/tasks/billing/7/cancel", data={"csrf_token": csrf}, follow_redirects=True)
    assert "already ended" in page.get_data(as_text=True)  # the API's 409 message
    client.post("/tasks/billing/7/retry", data={"csrf_token": csrf})
    assert store.get_task("billing", 7).status != Status.CANCELLED.value
    page = client.post("/tasks/billing/7/context", data={"csrf_token": csrf, "content": ""}, follow_redirects=True)
    assert "content" in page.get_data(as_text=True) and "invalid" in page.get_data(as_text=True)
    client.post("/tasks/billing/7/context", data={"csrf_token": csrf, "content": "More detail", "title": "Note"})
    assert store.get_task("billing", 7).context_version == 2
    assert store.history("billing", 7)[-1]["actor"].startswith("console:")


def test_submit_form_stores_the_task_or_shows_field_errors(client: FlaskClient, store: TaskStore) -> None:
    csrf = sign_in(client)
    bad = client.post("/submit", data={"csrf_token": csrf, "service_name": "Bad Name!", "id": "x", "title": "",
                                       "agent_name": "claude", "priority": "medium", "document": ""})
    html = bad.get_data(as_text=True)
    assert bad.status_code == 400
    for field in ("service_name", "id", "title", "document"):
        assert f'id="{field}-error"' in html, field
    assert 'value="Bad Name!"' in html  # what was typed is kept
    good = client.post("/submit", data={"csrf_token": csrf, "service_name": "billing", "id": "12",
                                        "title": "From the console", "agent_name": "claude", "priority": "high",
                                        "dependencies": "", "document": "# Do it\n"})
    assert good.status_code == 303 and good.headers["Location"] == "/tasks/billing/12"
    task = store.get_task("billing", 12)
    assert task.spec["title"] == "From the console" and task.origin == {"kind": "console"}
    again = client.post("/submit", data={"csrf_token": csrf, "service_name": "billing", "id": "12",
                                         "title": "Again", "agent_name": "claude", "document": "x"})
    assert again.status_code == 409 and 'id="id-error"' in again.get_data(as_text=True)


def test_events_stream_the_status_of_the_tasks_asked_for(client: FlaskClient, monkeypatch) -> None:
    import api.console.views as views

    monkeypatch.setattr(views, "EVENTS_SECONDS", 0.5)
    monkeypatch.setattr(views, "EVENTS_POLL_SECONDS", 0.1)
    submit_api(client)
    sign_in(client)
    response = client.get("/console/events?task=billing/7&task=bad ref&task=billing/404")
    assert response.mimetype == "text/event-stream"
    body = response.get_data(as_text=True)
    assert body.startswith("retry: 1000")
    assert body.count("event: status") == 1 and '"ref":"billing/7"' in body and '"status":"' in body


def test_browsers_opening_an_api_task_url_land_on_the_console(client: FlaskClient) -> None:
    submit_api(client)
    html_accept = {"Accept": "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"}
    response = client.get("/api/v1/pm/tasks/billing/7", headers=html_accept)
    assert response.status_code == 303 and response.headers["Location"] == "/tasks/billing/7"
    # The API itself is unchanged: bearer clients get JSON, and a cookie is no credential for it.
    assert client.get("/api/v1/pm/tasks/billing/7", headers={**AUTH, **html_accept}).status_code == 200
    assert client.get("/api/v1/pm/tasks/billing/7").status_code == 401
    sign_in(client)
    assert client.get("/api/v1/pm/tasks/billing/7", headers={"Accept": "application/json"}).status_code == 401


def test_services_page_shows_caps_and_queues(client: FlaskClient) -> None:
    sign_in(client)
    html = client.get("/services").get_data(as_text=True)
    assert "Active runs" in html and "coordination" in html


def test_event_streams_are_not_read_to_their_end_before_they_are_sent(client: FlaskClient, monkeypatch) -> None:
    import api.console.data as console_data

    polls: list[int] = []
    real = console_data.statuses
    monkeypatch.setattr(console_data, "statuses", lambda refs: polls.append(1) or real(refs))
    submit_api(client)
    sign_in(client)
    response = client.get("/console/events?task=billing/7", buffered=False)
    assert polls == []  # the response left the app (access log and all) before the first poll
    first = next(iter(response.response))
    assert b"retry:" in (first if isinstance(first, bytes) else first.encode())
    response.close()


def test_a_task_master_file_is_uploaded_and_one_task_picked(client: FlaskClient, store: TaskStore) -> None:
    import io

    csrf = sign_in(client)
    document = (REPO_EXAMPLES / "tasks.json").read_bytes()
    picker = client.post("/submit/taskmaster", data={
        "csrf_token": csrf, "service_name": "demo", "agent_name": "claude",
        "tasks_file": (io.BytesIO(document), "tasks.json")}, content_type="multipart/form-data")
    html = picker.get_data(as_text=True)
    assert picker.status_code == 200 and 'name="task_id" value="1"' in html
    raw = re.search(r'name="tasks_json" value="([^"]*)"', html).group(1)
    import html as html_module

    chosen = client.post("/submit/taskmaster", data={"csrf_token": csrf, "service_name": "demo",
                                                     "agent_name": "claude", "task_id": "1",
                                                     "tasks_json": html_module.unescape(raw)})
    assert chosen.status_code == 303 and chosen.headers["Location"] == "/tasks/demo/1"
    files = {f["filename"] for f in store.get_task("demo", 1).spec["markdown_files"]}
    assert "task.md" in files
    bad = client.post("/submit/taskmaster", data={"csrf_token": csrf, "service_name": "Not Valid",
                                                  "agent_name": "claude", "task_id": "1",
                                                  "tasks_json": html_module.unescape(raw)})
    assert bad.status_code == 400 and 'id="service_name-error"' in bad.get_data(as_text=True)
    broken = client.post("/submit/taskmaster", data={"csrf_token": csrf, "tasks_json": "{not json"})
    assert broken.status_code == 400 and 'id="tasks_file-error"' in broken.get_data(as_text=True)


def test_a_full_cap_is_shown_on_the_field_it_concerns(console_settings: Settings, store: TaskStore,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """#16 finding 7: the caps answer the console as they answer the API, naming their variable."""
    small = console_settings.replace(max_tasks_per_service=1, max_contexts_per_task=1)
    celery = route_steps_to(small, monkeypatch)
    try:
        client = create_app(small).test_client()
        submit_api(client, dependencies=[])
        csrf = sign_in(client)
        full = client.post("/submit", data={"csrf_token": csrf, "service_name": "billing", "id": "12",
                                            "title": "One too many", "agent_name": "claude", "document": "x"})
        html = full.get_data(as_text=True)
        assert full.status_code == 409 and 'id="service_name-error"' in html
        assert "ORCHESTRATOR_MAX_TASKS_PER_SERVICE=1" in html and store.get_task("billing", 12) is None
        client.post("/tasks/billing/7/context", data={"csrf_token": csrf, "content": "first"})
        page = client.post("/tasks/billing/7/context", data={"csrf_token": csrf, "content": "second"},
                           follow_redirects=True)
        assert "ORCHESTRATOR_MAX_CONTEXTS_PER_TASK=1" in page.get_data(as_text=True)
        assert [c["content"] for c in store.contexts("billing", 7)] == ["first"]
    finally:
        celery.close()
