"""Validation of outsider-controlled names (examples; property tests live with the proof suites)."""

from __future__ import annotations

import pytest

from orchestrator import validation

HOSTS = ("github.com",)


@pytest.mark.parametrize("good", ["web", "a", "my-service-1", "x" * 30])
def test_service_names_accepted(good: str) -> None:
    assert validation.service_name(good) == good


@pytest.mark.parametrize("bad", ["", "Web", "-web", "web-", "we_b", "x" * 31, "a.b", "../x", "a b"])
def test_service_names_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="service name"):
        validation.service_name(bad)


@pytest.mark.parametrize("good", ["main", "feature/login", "release-1.2", "task-7"])
def test_git_refs_accepted(good: str) -> None:
    assert validation.git_ref(good) == good


@pytest.mark.parametrize("bad", ["--upload-pack=x", "-b", "a..b", "a b", "a;rm -rf /", "x.lock", "a~1",
                                 "refs/@{0}", "/abs", "a//b", ".hidden", "a/.b", "$(id)x:y", "a\\b"])
def test_git_refs_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        validation.git_ref(bad)


@pytest.mark.parametrize("good", ["https://github.com/o/r.git", "https://github.com/o/r", "git@github.com:o/r.git"])
def test_git_urls_accepted(good: str) -> None:
    assert validation.git_url(good, HOSTS) == good


@pytest.mark.parametrize("bad", [
    "file:///etc/passwd", "http://github.com/o/r.git", "https://evil.com/o/r.git", "--upload-pack=touch /tmp/x",
    "https://user:pw@github.com/o/r.git", "git@evil.com:o/r.git", "ext::sh -c touch% /tmp/pwned",
    "https://github.com/o/r.git?x=1", "https://github.com:8443/o/r.git", "https://github.com/o/r;rm -rf",
    "https://github.com/../../etc", "ssh://git@github.com/o/r.git", "https://github.com/o/$(id)",
])
def test_git_urls_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        validation.git_url(bad, HOSTS)


@pytest.mark.parametrize("bad", ["../x", "a/../../b", "/etc", "a\\b", "-rf", "a\nb", "$(id)", "a b", "a;b", "`id`", "a&&b"])
def test_relative_paths_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        validation.relative_path(bad)


def test_relative_paths_normalised() -> None:
    assert validation.relative_path("src/app/") == "src/app"
    assert validation.relative_path(".") == ""


@pytest.mark.parametrize("bad", ["../a.md", "a/b.md", ".md", "a.txt", ".hidden.md", "a b.md"])
def test_markdown_filenames_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        validation.markdown_filename(bad)


def test_env_names() -> None:
    assert validation.env_name("FOO_1") == "FOO_1"
    for bad in ("1A", "A-B", "A B", ""):
        with pytest.raises(ValueError):
            validation.env_name(bad)


@pytest.mark.parametrize("url", ["https://github.com/../x.git", "https://github.com/a/..", "https://github.com/./x",
                                 "https://github.com/a/...git"])
def test_repository_paths_of_dots_are_refused(url: str) -> None:
    # Owner and repository become GitHub API paths (/repos/{owner}/{repo}/pulls): `..` would climb out.
    with pytest.raises(ValueError, match="owner/repository"):
        validation.git_url(url, ("github.com",))
