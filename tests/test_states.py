"""The state machine, as pure logic."""

from __future__ import annotations

from orchestrator.states import TERMINAL, TRANSITIONS, Status, is_legal, sources_of


def test_every_status_has_a_row() -> None:
    assert set(TRANSITIONS) == set(Status)


def test_happy_path_is_legal() -> None:
    path = ["Pending", "Queued", "Preparing", "Launching", "Running", "Succeeded"]
    for current, target in zip(path, path[1:]):
        assert is_legal(current, target)


def test_terminal_states_only_restart_through_pending() -> None:
    for status in TERMINAL:
        assert TRANSITIONS[status] == {Status.PENDING}


def test_illegal_edges() -> None:
    assert not is_legal("Succeeded", "Failed")
    assert not is_legal("Pending", "Running")
    assert not is_legal("Running", "Running")
    assert not is_legal("Cancelled", "Succeeded")


def test_sources_of_is_the_inverse() -> None:
    for target in Status:
        for source in Status:
            assert (source in sources_of(target)) == is_legal(source, target)
