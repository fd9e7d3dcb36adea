"""Runs: one record per attempt of a task, read alone, with their task, or many at once."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from typing import Any

from orchestrator.model import Run, RunPhase, Status, Task
from orchestrator.store.base import StoreBase
from orchestrator.store.errors import LeaseNotHeld, StoreError
from orchestrator.store.keys import (
    contexts_key,
    run_id_for,
    run_key,
    task_key,
    task_runs_key,
)
from orchestrator.store.records import decode_run, decode_task, encode_fields, flatten


class Runs(StoreBase):
    """Runs of tasks."""

    # Runs --------------------------------------------------------------------

    def create_run(
        self,
        service: str,
        task_id: int,
        *,
        version: int,
        attempt: int,
        stage: str | None = None,
        job_name: str = "",
        runner: str = "",
        now: float | None = None,
    ) -> Run:
        """Record a run; a second call for the same run returns the first record."""
        run_id = run_id_for(service, task_id, version, attempt, stage)
        key = run_key(run_id)
        now = time.time() if now is None else now
        record = {
            "run_id": run_id,
            "service": service,
            "task_id": str(task_id),
            "version": str(version),
            "attempt": str(attempt),
            "stage": stage or "",
            "job_name": job_name,
            "runner": runner,
            "phase": "Queued",
            "queued_at": repr(now),
            "started_at": "",
            "finished_at": "",
            "exit_code": "",
            "failure_reason": "",
            "outputs": "{}",
        }
        raw = self._call(
            self._create_run,
            keys=[key, task_runs_key(service, task_id)],
            args=[run_id, repr(now), *(item for pair in record.items() for item in pair)],
        )
        return decode_run(dict(zip(raw[::2], raw[1::2])))

    def get_run(self, run_id: str) -> Run | None:
        raw = self._safe(self.redis.hgetall, run_key(run_id))
        return decode_run(raw) if raw else None

    def get_run_with_task(
        self, run_id: str, *, contexts: bool = False
    ) -> tuple[Run | None, Task | None, list[dict[str, Any]]]:
        """(run, its task, the task's context documents if asked) in one round trip; None for what is missing.

        The steps that act on a run read both first; two round trips each was a
        good part of a step's own time.
        """
        # The script builds the task's keys from the run's fields, as task_key and contexts_key do.
        found = self._call(
            self._run_with_task,
            keys=[run_key(run_id)],
            args=[task_key("", "")[:-1], contexts_key("", "")[len(task_key("", "")) :] if contexts else ""],
        )
        if not found:
            return None, None, []
        run_raw, task_raw, docs = found
        run = decode_run(dict(zip(run_raw[::2], run_raw[1::2])))
        task = decode_task(dict(zip(task_raw[::2], task_raw[1::2]))) if task_raw else None
        return run, task, [json.loads(d) for d in docs] if task else []

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set fields of an existing run (phase, timestamps, exit code, outputs...)."""
        if self._update_existing_hash(run_key(run_id), fields) < 0:
            raise StoreError(f"no run {run_id}")

    def update_unended_run(
        self, run_id: str, ended: Iterable[str], *, lease: tuple[str, str, int] | None = None, **fields: Any
    ) -> bool:
        """Set fields of a run unless its phase is one of `ended`; False (nothing written) when it is.

        `lease=(name, holder, token)` makes the write also conditional on that
        lease still being held with that fencing token (LeaseNotHeld otherwise).
        """
        written = self._update_existing_hash(run_key(run_id), fields, unless_phase=ended, lease=lease)
        if written == -2:
            raise LeaseNotHeld(f"the lease {lease[0] if lease else ''} passed to another holder")
        if written < 0:
            raise StoreError(f"no run {run_id}")
        return bool(written)

    def record_launch(
        self,
        run: Run,
        ended: Iterable[str],
        launchable: Iterable[Status | str],
        *,
        phase: RunPhase = RunPhase.LAUNCHED,
        **fields: Any,
    ) -> bool:
        """Write a launched run's fields only while it is its task's current run, the task in one of
        `launchable` and the run's phase none of `ended`; False (nothing written) otherwise.

        `phase` is written only over a phase not yet observed (Queued): what the
        watcher saw meanwhile (Pending, Running) stays."""
        written = int(
            self._call(
                self._launch_record,
                keys=[run_key(run.run_id), task_key(run.service, run.task_id)],
                args=[
                    run.run_id,
                    ",".join(ended),
                    ",".join(Status(s).value for s in launchable),
                    RunPhase(phase).value,
                    RunPhase.QUEUED.value,
                    *flatten(encode_fields(fields)),
                ],
            )
        )
        if written == -1:
            raise StoreError(f"no run {run.run_id}")
        return written == 1

    def list_runs(self, service: str, task_id: int) -> list[Run]:
        """Every run of the task, oldest first."""
        ids = self._safe(self.redis.zrange, task_runs_key(service, task_id), 0, -1)
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for run_id in ids:
            pipe.hgetall(run_key(run_id))
        return [decode_run(raw) for raw in self._safe(pipe.execute) if raw]

    def get_runs(self, run_ids: Iterable[str], *fields: str, batch: int = 1000) -> list[Run | None]:
        """Many runs (None for one that is gone), in pipelined batches.

        With `fields`, only those are read (HMGET; `run_id` always): a list
        showing a run's outcome and cost does not load its prompt.
        """
        run_ids = list(run_ids)
        names = ["run_id", *fields] if fields else []
        out: list[Run | None] = []
        for start in range(0, len(run_ids), batch):
            pipe = self.redis.pipeline(transaction=False)
            for run_id in run_ids[start : start + batch]:
                if names:
                    pipe.hmget(run_key(run_id), names)
                else:
                    pipe.hgetall(run_key(run_id))
            for raw in self._safe(pipe.execute):
                if names:
                    raw = {k: v for k, v in zip(names, raw) if v is not None}
                out.append(decode_run(raw) if raw else None)
        return out

    def current_runs(
        self, refs: Iterable[tuple[str, int]], *fields: str, batch: int = 1000
    ) -> list[tuple[Status, str, Run | None] | None]:
        """(task status, current run id, that run with only the named fields read) for many tasks.

        One script per `batch` tasks reads them. None for a task that is gone;
        the run is None when the task has no current run or its run record is
        gone (a run hash always holds `run_id`: ask for it to tell). The fields
        not asked for keep their defaults.
        """
        refs = list(refs)
        out: list[tuple[Status, str, Run | None] | None] = []
        prefix = run_key("")
        for start in range(0, len(refs), batch):
            keys = [task_key(service, task_id) for service, task_id in refs[start : start + batch]]
            for row in self._call(self._current_runs, keys=keys, args=[prefix, *fields]):
                if not row:
                    out.append(None)
                    continue
                values = row[2:]
                found = values and any(v is not None for v in values)
                run = decode_run(dict(zip(fields, values))) if found else None
                out.append((Status(row[0]), row[1], run))
        return out
