"""Property tests: whatever a name validator accepts is safe where it is used."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from orchestrator import validation

ANY_TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=80)
NAMEISH = st.text(alphabet="abcxyz019-_.:/@~^ \\$;`'\"()\n\t*?[]{}", max_size=40)


def _accepts(func, value) -> bool:
    try:
        func(value)
        return True
    except ValueError:
        return False


@settings(max_examples=400, deadline=None)
@given(st.one_of(ANY_TEXT, NAMEISH))
def test_accepted_service_names_are_dns_labels(value: str) -> None:
    if _accepts(validation.service_name, value):
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", value) and len(value) <= 30


@settings(max_examples=400, deadline=None)
@given(st.one_of(ANY_TEXT, NAMEISH))
def test_accepted_relative_paths_stay_confined(value: str) -> None:
    if _accepts(validation.relative_path, value):
        root = Path("/srv/ws/web")
        resolved = (root / validation.relative_path(value)).resolve()
        assert resolved == root or root in resolved.parents


@settings(max_examples=400, deadline=None)
@given(st.one_of(ANY_TEXT, NAMEISH))
def test_accepted_branches_cannot_pose_as_options_or_shell(value: str) -> None:
    if _accepts(validation.git_ref, value):
        assert not value.startswith("-")
        assert not any(c in value for c in " \t\n;`$()'\"\\~^:?*[")


@settings(max_examples=400, deadline=None)
@given(st.one_of(ANY_TEXT, NAMEISH, st.builds(lambda s: "https://github.com/" + s, NAMEISH)))
def test_accepted_git_urls_are_https_or_scp_form_on_allowed_hosts(value: str) -> None:
    if _accepts(lambda v: validation.git_url(v, ("github.com",)), value):
        assert value.startswith(("https://github.com/", "git@github.com:"))
        assert not any(c in value for c in " \t\n;`$()'\"\\")


@settings(max_examples=300, deadline=None)
@given(st.one_of(ANY_TEXT, NAMEISH))
def test_accepted_markdown_names_are_plain_files(value: str) -> None:
    if _accepts(validation.markdown_filename, value):
        assert "/" not in value and "\\" not in value and value.endswith(".md") and not value.startswith(".")
