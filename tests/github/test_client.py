"""The GitHub REST client against a local fake GitHub over real HTTP."""

from __future__ import annotations

import time

import pytest

from orchestrator.github.client import GitHubClient, GitHubError
from tests.support.fake_github import FakeGitHub
from tests.support.redis_server import free_port

TOKEN = "ghp_secret_token_value"


def make(github: FakeGitHub, **kwargs) -> tuple[GitHubClient, list[float]]:
    waits: list[float] = []
    client = GitHubClient(TOKEN, github.url, sleep=waits.append, **kwargs)
    return client, waits


def test_create_and_edit_a_comment(github: FakeGitHub) -> None:
    client, _ = make(github)
    comment = client.create_comment("acme/api", 5, "hello")
    client.update_comment("acme/api", comment["id"], "hello again")
    assert github.comments[comment["id"]]["body"] == "hello again"
    first, second = github.requests
    assert (first.method, first.path) == ("POST", "/repos/acme/api/issues/5/comments")
    assert (second.method, second.path) == ("PATCH", f"/repos/acme/api/issues/comments/{comment['id']}")
    assert first.headers["Authorization"] == f"Bearer {TOKEN}"
    assert first.headers["Accept"] == "application/vnd.github+json"


def test_server_errors_are_retried_with_backoff(github: FakeGitHub) -> None:
    github.fail_next(502, times=2)
    client, waits = make(github, backoff=0.01)
    assert client.create_comment("acme/api", 1, "x")["id"]
    assert len(github.requests) == 3 and len(waits) == 2 and waits[1] > 0


def test_retry_after_is_honoured(github: FakeGitHub) -> None:
    github.fail_next(429, {"Retry-After": "3"})
    github.fail_next(403, {"Retry-After": "1"})  # a secondary rate limit
    client, waits = make(github)
    client.create_comment("acme/api", 1, "x")
    assert waits == [3.0, 1.0]


def test_an_exhausted_quota_waits_for_the_reset(github: FakeGitHub) -> None:
    github.fail_next(403, {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "1010"})
    client, waits = make(github, clock=lambda: 1000.0)
    client.create_comment("acme/api", 1, "x")
    assert waits == [10.0]


def test_a_long_wait_is_left_to_the_caller(github: FakeGitHub) -> None:
    github.fail_next(429, {"Retry-After": "120"})
    client, waits = make(github)
    with pytest.raises(GitHubError) as info:
        client.create_comment("acme/api", 1, "x")
    assert info.value.transient and info.value.retry_after == 120 and waits == []


def test_permanent_errors_are_not_retried(github: FakeGitHub) -> None:
    github.fail_next(403)
    client, waits = make(github)
    with pytest.raises(GitHubError) as info:
        client.create_comment("acme/api", 1, "x")
    assert info.value.status == 403 and not info.value.transient and len(github.requests) == 1
    with pytest.raises(GitHubError) as info:
        client.update_comment("acme/api", 424242, "x")
    assert info.value.status == 404


def test_giving_up_after_the_last_attempt(github: FakeGitHub) -> None:
    github.fail_next(503, times=10)
    client, waits = make(github, attempts=3, backoff=0.01)
    with pytest.raises(GitHubError) as info:
        client.create_comment("acme/api", 1, "x")
    assert info.value.transient and len(github.requests) == 3


def test_no_answer_is_transient_and_the_token_never_shows() -> None:
    client = GitHubClient(TOKEN, f"http://127.0.0.1:{free_port()}", attempts=2, backoff=0.01, sleep=lambda s: None)
    with pytest.raises(GitHubError) as info:
        client.create_comment("acme/api", 1, "x")
    assert info.value.transient
    assert TOKEN not in str(info.value) and TOKEN not in repr(client)


def test_repository_names_cannot_escape_the_path(github: FakeGitHub) -> None:
    client, _ = make(github)
    for repo in ("acme/api/../../user", "acme", "acme/api?x=1", "../x"):
        with pytest.raises(GitHubError):
            client.create_comment(repo, 1, "x")
    assert github.requests == []


def test_retry_after_as_an_http_date_is_honoured(github: FakeGitHub) -> None:
    import email.utils

    github.fail_next(503, {"Retry-After": email.utils.formatdate(1030.0, usegmt=True)})
    client, waits = make(github, clock=lambda: 1000.0, max_wait=60)
    client.create_comment("acme/api", 1, "x")
    assert waits == [30.0] and len(github.requests) == 2


def test_5xx_waits_grow_and_a_short_retry_after_is_a_floor(github: FakeGitHub) -> None:
    github.fail_next(500, times=3)
    client, waits = make(github, backoff=1.0, attempts=4)
    client.create_comment("acme/api", 1, "x")
    # Jittered doubling: [0.5, 1), [1, 2), [2, 4).
    assert [int(w >= lo) + int(w <= hi) for w, lo, hi in zip(waits, (0.5, 1, 2), (1, 2, 4))] == [2, 2, 2]
    github.fail_next(502, {"Retry-After": "0"})
    client2, waits2 = make(github, backoff=1.0)
    client2.create_comment("acme/api", 1, "x")
    assert 0.5 <= waits2[0] <= 1.0  # Retry-After 0 does not mean "hammer it"


def test_every_call_has_a_timeout() -> None:
    import socket

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)  # accepts connections (the backlog) and never answers
    try:
        client = GitHubClient(TOKEN, f"http://127.0.0.1:{server.getsockname()[1]}", timeout=0.3, attempts=2,
                              backoff=0.01, sleep=lambda s: None)
        started = time.monotonic()
        with pytest.raises(GitHubError) as info:
            client.create_comment("acme/api", 1, "x")
        assert info.value.transient and "Timeout" in str(info.value)
        assert time.monotonic() - started < 5
    finally:
        server.close()


def test_the_client_sends_json_through_one_session(github: FakeGitHub) -> None:
    client, _ = make(github)
    client.create_comment("acme/api", 1, "x")
    session = client.session
    client.update_comment("acme/api", 1001, "y")
    assert client.session is session
    assert github.requests[0].body == {"body": "x"}
    assert github.requests[0].headers["Content-Type"] == "application/json"
    assert TOKEN not in repr(client)
    client.close()
