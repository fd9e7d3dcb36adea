"""Decoding stored records into the typed model: types, defaults, old and unknown fields, enums."""

from __future__ import annotations

import json

import pytest

from orchestrator import model
from orchestrator.coordination.rules import admission_score
from orchestrator.model import ENDED_PHASES, PRIORITIES, Outcome, Priority, Run, RunPhase, Status, Task
from orchestrator.store.records import decode_run, decode_task, encode_fields


def test_a_task_record_decodes_with_its_types() -> None:
    raw = {
        "service": "web", "id": "7", "agent": "claude", "priority": "high",
        "spec": json.dumps({"title": "t", "priority": "high"}), "origin": '{"kind":"api"}', "outputs": "{}",
        "status": "Queued", "status_reason": "waiting for capacity", "context_version": "2",
        "created_at": "1700000000.5", "updated_at": "1700000001.25", "submitted_by": "pm", "seq": "12",
        "history_seq": "3", "current_run": "", "next_run": "web-7-v2-a1", "next_version": "2",
        "next_attempt": "1", "stage": "", "retries": "1", "not_before": "1700000100.0",
    }
    task = decode_task(raw)
    assert task == Task(
        service="web", id=7, agent="claude", priority=Priority.HIGH, spec={"title": "t", "priority": "high"},
        origin={"kind": "api"}, outputs={}, status=Status.QUEUED, status_reason="waiting for capacity",
        context_version=2, created_at=1700000000.5, updated_at=1700000001.25, submitted_by="pm", seq=12,
        history_seq=3, current_run=None, next_run="web-7-v2-a1", next_version=2, next_attempt=1, retries=1,
        not_before=1700000100.0,
    )
    assert task.ref == ("web", 7)


def test_an_old_task_record_without_newer_fields_still_decodes() -> None:
    # What the first versions wrote: no priority field (it was only in the spec), no seq, no next run.
    task = decode_task({"service": "web", "id": "1", "agent": "claude", "status": "Succeeded",
                        "spec": '{"priority": "low"}', "created_at": "1.0"})
    assert task.priority == Priority.LOW and task.seq == 0 and task.next_run is None
    assert task.outputs == {} and task.origin == {} and task.context_version == 1 and task.updated_at is None
    assert decode_task({"service": "web", "id": "2", "status": "Pending"}).priority == Priority.MEDIUM


def test_unknown_and_empty_fields_are_left_out() -> None:
    task = decode_task({"service": "web", "id": "1", "status": "Pending", "someday": "x", "current_run": "",
                        "redriven_at": ""})
    assert task.current_run is None and task.redriven_at is None
    assert not hasattr(task, "someday")
    run = decode_run({"run_id": "r", "phase": "Queued", "exit_code": "", "started_at": "", "mystery": "1"})
    assert run.exit_code is None and run.started_at is None and not hasattr(run, "mystery")


def test_a_run_record_decodes_with_its_types() -> None:
    raw = {
        "run_id": "web-7-v1-a2", "service": "web", "task_id": "7", "version": "1", "attempt": "2",
        "stage": "", "job_name": "web-7-v1-a2", "runner": "kubernetes", "phase": "Failed",
        "queued_at": "10.0", "started_at": "11.5", "finished_at": "20.0", "exit_code": "137",
        "failure_reason": "OOMKilled", "retryable": "1", "outputs": '{"branch":"task-7"}',
        "inputs": '{"handoff_file":"h.md"}', "workspace_fence": "4", "finish_sent": "1",
    }
    run = decode_run(raw)
    assert (run.task_id, run.version, run.attempt, run.exit_code, run.workspace_fence) == (7, 1, 2, 137, 4)
    assert (run.queued_at, run.started_at, run.finished_at) == (10.0, 11.5, 20.0)
    assert run.phase is RunPhase.FAILED and run.ended and run.retryable is True
    assert run.outputs == {"branch": "task-7"} and run.inputs == {"handoff_file": "h.md"}
    assert run.outcome is None


@pytest.mark.parametrize("stored, expected", [("1", True), ("true", True), ("True", True), ("yes", True),
                                              ("0", False), ("False", False), ("", False)])
def test_retryable_reads_every_way_it_was_written(stored: str, expected: bool) -> None:
    assert decode_run({"run_id": "r", "retryable": stored}).retryable is expected


def test_what_is_encoded_decodes_back() -> None:
    run = Run(run_id="r", service="web", task_id=3, version=2, attempt=1, phase=RunPhase.RUNNING,
              started_at=5.5, exit_code=0, retryable=True, outputs={"a": [1, 2]}, outcome=Outcome.NO_CHANGES)
    fields = {name: getattr(run, name) for name in run.__slots__}
    assert decode_run(encode_fields(fields)) == run


def test_phases_and_terminal_sets_are_defined_once() -> None:
    assert ENDED_PHASES == {RunPhase.SUCCEEDED, RunPhase.FAILED, RunPhase.CANCELLED}
    assert RunPhase.RUNNING == "Running" and str(RunPhase.LAUNCHED) == "Launched"
    from orchestrator import runs, states

    assert runs.TERMINAL_PHASES is ENDED_PHASES
    assert model.TERMINAL is states.TERMINAL and model.Status is states.Status


def test_priorities_are_the_accepted_ones_with_reachable_ranks() -> None:
    from api import schemas

    assert PRIORITIES == ("high", "medium", "low") == schemas.PRIORITIES
    assert [p.rank for p in Priority] == sorted(p.rank for p in Priority)
    assert Priority.parse("HIGH") is Priority.HIGH and Priority.parse("critical") is Priority.MEDIUM
    # The ranks of scores already in the admission index are kept.
    assert admission_score("high", 5) == 1e12 + 5 and admission_score("low", 5) == 3e12 + 5


def test_outcomes_are_the_documented_words() -> None:
    assert [o.value for o in Outcome] == ["changes", "no_changes", "failed", "cancelled"]
