"""The routing table: which deliveries reach which handler, and why the others are ignored."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from orchestrator.github import handlers
from orchestrator.github.routing import ROUTES, GitHubConfig, is_bot, match, pull_request_key, task_id_of_branch
from orchestrator.settings import Settings
from tests.support.github import BOT, REPO, SERVICE, load

CONFIG = GitHubConfig(repositories={REPO.lower(): SERVICE}, trigger_label="orchestrator", bot_login=BOT)


def labeled(label: str = "orchestrator") -> dict[str, Any]:
    payload = load("issues/labeled.payload.json")
    payload["label"]["name"] = label
    return payload


def comment(body: str, *, association: str = "OWNER", login: str = "someone", kind: str = "User") -> dict[str, Any]:
    payload = load("issue_comment/created.payload.json")
    payload["comment"].update(body=body, author_association=association)
    payload["comment"]["user"].update(login=login, type=kind)
    payload["sender"].update(login=login, type=kind)
    return payload


def test_every_route_names_an_existing_handler() -> None:
    assert {route.handler for route in ROUTES} <= set(handlers.HANDLERS)


def test_config_from_settings() -> None:
    settings = Settings.from_env({
        "ORCHESTRATOR_GITHUB_REPOSITORIES": "Acme/Api=api, acme/web=web",
        "ORCHESTRATOR_GITHUB_ALLOWED_ASSOCIATIONS": "owner,member",
    })
    config = GitHubConfig.from_settings(settings)
    assert config.repositories == {"acme/api": "api", "acme/web": "web"}
    assert config.allowed_associations == {"OWNER", "MEMBER"}
    assert config.trigger_label == "orchestrator" and config.command_prefix == "/orchestrator"
    assert config.default_agent == "claude"
    assert config.service_for("ACME/API") == ("api", "")


def test_trigger_label_routes_to_task_creation() -> None:
    assert match("issues", labeled(), CONFIG).handler == "create_task_from_issue"
    assert match("issues", labeled("ORCHESTRATOR"), CONFIG).handler == "create_task_from_issue"
    decision = match("issues", labeled("bug"), CONFIG)
    assert not decision.routed and "trigger label" in decision.reason


def test_opened_with_the_label_needs_a_trusted_author() -> None:
    payload = load("issues/opened.payload.json")
    payload["issue"]["labels"][0]["name"] = "orchestrator"
    assert match("issues", payload, CONFIG).handler == "create_task_from_issue"
    payload["issue"]["author_association"] = "NONE"  # an issue template may add the label for anyone
    assert "association" in match("issues", payload, CONFIG).reason


def test_unmapped_repository_and_invalid_service_are_ignored() -> None:
    other = GitHubConfig(repositories={}, trigger_label="orchestrator")
    assert "not mapped" in match("issues", labeled(), other).reason
    bad = GitHubConfig(repositories={REPO.lower(): "Not_A_Label"}, trigger_label="orchestrator")
    assert "DNS-1123" in match("issues", labeled(), bad).reason


def test_commands_route_only_for_trusted_humans() -> None:
    assert match("issue_comment", comment("/orchestrator run"), CONFIG).handler == "run_command"
    assert "no /orchestrator command" in match("issue_comment", comment("looks good"), CONFIG).reason
    assert "association" in match("issue_comment", comment("/orchestrator run", association="NONE"), CONFIG).reason
    assert "bot" in match("issue_comment", comment("/orchestrator run", login="ci[bot]"), CONFIG).reason
    assert "bot" in match("issue_comment", comment("/orchestrator run", kind="Bot", login="app"), CONFIG).reason


def test_the_systems_own_comment_never_triggers() -> None:
    own = comment("/orchestrator run", login=BOT.upper())
    assert "bot or by this system" in match("issue_comment", own, CONFIG).reason
    # Our status comment quotes the commands; even under another login it is recognised.
    marker = comment("<!-- orchestrator:status hello/1 -->\n/orchestrator run")
    assert "status comments" in match("issue_comment", marker, CONFIG).reason


def test_reviews_route_only_when_changes_are_requested() -> None:
    payload = load("pull_request_review/submitted.payload.json")
    assert "changes_requested" in match("pull_request_review", payload, CONFIG).reason
    payload["review"]["state"] = "changes_requested"
    assert match("pull_request_review", payload, CONFIG).handler == "follow_up_on_review"
    payload["review"]["user"]["type"] = "Bot"
    assert not match("pull_request_review", payload, CONFIG).routed


def test_review_comments_and_closed_pull_requests_route() -> None:
    assert match("pull_request_review_comment", load("pull_request_review_comment/created.payload.json"),
                 CONFIG).handler == "follow_up_on_review"
    assert match("pull_request", load("pull_request/closed.payload.json"), CONFIG).handler == "close_pull_request"


@pytest.mark.parametrize(("event", "payload", "fragment"), [
    ("issues", {"action": "reopened"}, "no route for issues.reopened"),
    ("star", {"action": "created"}, "no route for star.created"),
    ("push", {"ref": "refs/heads/main"}, "no route for push"),
    ("issues", [], "not a JSON object"),
    ("issues", {"action": "labeled", "repository": "x"}, "names no repository"),
    ("issues", {"action": "labeled", "repository": {"full_name": REPO}, "sender": None}, "bot"),
])
def test_everything_else_is_ignored_with_a_reason(event: str, payload: Any, fragment: str) -> None:
    decision = match(event, payload, CONFIG)
    assert decision.handler is None and fragment in decision.reason


def test_hostile_shapes_do_not_crash_the_predicates() -> None:
    base = labeled()
    for path, value in [(("label",), "x"), (("issue",), None), (("label", "name"), None),
                        (("issue", "number"), True), (("sender",), []), (("issue", "state"), 5)]:
        payload = copy.deepcopy(base)
        target = payload
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        assert match("issues", payload, CONFIG).routed is False


def test_helpers() -> None:
    assert task_id_of_branch("task-42") == 42
    assert task_id_of_branch("task-4x") is None and task_id_of_branch(None) is None
    assert pull_request_key("https://github.com/Acme/Api/pull/7") == "acme/api#7"
    assert pull_request_key("https://api.github.com/repos/Acme/Api/pulls/7") == "acme/api#7"
    assert pull_request_key("https://github.com/Acme/Api/issues/7") is None
    assert is_bot(None, CONFIG) and is_bot({"login": "dependabot[bot]"}, CONFIG)
    assert not is_bot({"login": "alice", "type": "User"}, CONFIG)


def test_a_trailing_newline_does_not_sneak_through() -> None:
    assert task_id_of_branch("task-3\n") is None
    assert pull_request_key("https://github.com/Acme/Api/pull/7\n/x") is None
    assert CONFIG.service_for(REPO + "\n")[0] is None
