"""What a Job and its pods say about a run: one pure function, shared by watch and reconcile."""

from __future__ import annotations

import datetime
from collections.abc import Iterable, Mapping
from typing import Any

from orchestrator.runners.base import FAILED, PENDING, RUNNING, SUCCEEDED, RunObservation

IMAGE_PULL_REASONS = frozenset({"ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull"})
# Waiting reasons that never heal by themselves: fail the run at once.
BROKEN_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError", "InvalidImageName"})


def parse_time(value: str | None) -> float | None:
    """An RFC 3339 timestamp as epoch seconds."""
    if not value:
        return None
    try:
        return datetime.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None


def _false_condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind and cond.get("status") == "False":
            return cond
    return None


def _created(obj: Mapping[str, Any]) -> float:
    return parse_time((obj.get("metadata") or {}).get("creationTimestamp")) or 0.0


def _agent_status(pod: Mapping[str, Any]) -> Mapping[str, Any]:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    for status in statuses:
        if status.get("name") == "agent":
            return status
    return statuses[0] if statuses else {}


def _terminated(pod: Mapping[str, Any]) -> Mapping[str, Any] | None:
    state = _agent_status(pod).get("state") or {}
    return state.get("terminated")


def _evicted(pod: Mapping[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("reason") == "Evicted" or _condition(pod, "DisruptionTarget") is not None


def newest_pod(pods: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The most recent pod (the one whose logs and state matter after retries)."""
    ordered = sorted(pods, key=lambda p: (_created(p), (p.get("metadata") or {}).get("name", "")))
    return ordered[-1] if ordered else None


def _failure_from_pods(pods: list[Mapping[str, Any]]) -> tuple[str, int | None, bool]:
    """(reason, exit code, retryable) of a failed Job, read from its newest terminated pod."""
    for pod in sorted(pods, key=_created, reverse=True):
        if _evicted(pod):
            return "Evicted", None, True
        terminated = _terminated(pod)
        if terminated:
            reason = terminated.get("reason") or "Error"
            code = terminated.get("exitCode")
            if reason == "OOMKilled":
                return "OOMKilled", code, False
            return (f"{reason}: exit code {code}" if code is not None else reason), code, False
    return "", None, False


def observe(
    run_id: str, job: Mapping[str, Any] | None, pods: Iterable[Mapping[str, Any]], *, now: float, pending_timeout: float
) -> RunObservation | None:
    """The run's state from its Job and pods; None when neither exists."""
    pods = list(pods)
    if job is None and not pods:
        return None
    job = job or {}
    status = job.get("status") or {}
    started = parse_time(status.get("startTime"))
    finished = parse_time(status.get("completionTime"))
    succeeded = _condition(job, "Complete") or _condition(job, "SuccessCriteriaMet")
    if succeeded:
        return RunObservation(
            run_id,
            SUCCEEDED,
            reason="Completed",
            exit_code=0,
            started_at=started,
            finished_at=finished or parse_time(succeeded.get("lastTransitionTime")) or now,
        )
    failed = _condition(job, "Failed") or _condition(job, "FailureTarget")
    if failed:
        at = parse_time(failed.get("lastTransitionTime")) or now
        job_reason = failed.get("reason") or "Failed"
        pod_reason, code, retryable = _failure_from_pods(pods)
        if job_reason == "DeadlineExceeded":
            return RunObservation(
                run_id,
                FAILED,
                reason="DeadlineExceeded: the run exceeded its timeout",
                exit_code=code,
                started_at=started,
                finished_at=at,
            )
        reason = pod_reason or job_reason
        if failed.get("message") and not pod_reason:
            reason = f"{job_reason}: {failed['message']}"
        return RunObservation(
            run_id, FAILED, reason=reason, exit_code=code, started_at=started, finished_at=at, retryable=retryable
        )
    # Not finished: what its newest pod is doing.
    pod = newest_pod(pods)
    if pod is None:
        return RunObservation(run_id, PENDING, reason="waiting for a pod", started_at=started)
    pod_status = pod.get("status") or {}
    phase = pod_status.get("phase") or "Pending"
    age = now - (_created(pod) or now)
    waiting = ((_agent_status(pod).get("state") or {}).get("waiting")) or {}
    reason = waiting.get("reason") or ""
    if reason == "CrashLoopBackOff":
        return RunObservation(
            run_id,
            FAILED,
            reason=f"CrashLoopBackOff: {waiting.get('message', '')}".strip(": "),
            started_at=started,
            finished_at=now,
        )
    if reason in BROKEN_REASONS:
        return RunObservation(
            run_id,
            FAILED,
            reason=f"{reason}: {waiting.get('message', '')}".strip(": "),
            started_at=started,
            finished_at=now,
        )
    if reason in IMAGE_PULL_REASONS:
        if age >= pending_timeout:
            return RunObservation(
                run_id,
                FAILED,
                reason=f"ImagePullBackOff: {waiting.get('message', '')}".strip(": "),
                started_at=started,
                finished_at=now,
                retryable=True,
            )
        return RunObservation(run_id, PENDING, reason=reason, started_at=started)
    unscheduled = _false_condition(pod, "PodScheduled")
    if phase == "Pending" and unscheduled and unscheduled.get("reason") == "Unschedulable":
        if age >= pending_timeout:
            return RunObservation(
                run_id,
                FAILED,
                reason=f"Unschedulable: {unscheduled.get('message', '')}".strip(": "),
                started_at=started,
                finished_at=now,
                retryable=True,
            )
        return RunObservation(run_id, PENDING, reason="Unschedulable", started_at=started)
    if phase == "Running":
        pod_started = parse_time(pod_status.get("startTime"))
        return RunObservation(run_id, RUNNING, reason="Running", started_at=started or pod_started)
    if phase in {"Failed", "Succeeded"} or _evicted(pod):
        # The pod ended but the Job has not decided yet (a replacement may follow).
        why = "Evicted; waiting for a replacement pod" if _evicted(pod) else f"pod {phase}; waiting for the Job"
        return RunObservation(run_id, RUNNING if started else PENDING, reason=why, started_at=started)
    return RunObservation(run_id, PENDING, reason=reason or "Pending", started_at=started)


def is_finished(job: Mapping[str, Any]) -> bool:
    """True when the Job has a final Complete or Failed condition."""
    return bool(_condition(job, "Complete") or _condition(job, "Failed"))


def finished_at(job: Mapping[str, Any]) -> float | None:
    """When the Job finished (completion time or its final condition's time)."""
    status = job.get("status") or {}
    at = parse_time(status.get("completionTime"))
    if at:
        return at
    cond = _condition(job, "Complete") or _condition(job, "Failed")
    return parse_time(cond.get("lastTransitionTime")) if cond else None
