"""Side effects recorded twice: an intent before acting and a completion after it.

One record per (kind, subject), e.g. ("job", run id) or ("push", run id):
a hash with `state` (`intent` or `done`), the `holder` that acts, `until`
(when a live intent lapses: its holder renews it while acting), `result`
(what the effect produced: a Job name, a sha, a URL) and `how` (acted,
found outside, ...). Whoever acts uses `orchestrator.effects.once`; this
module only keeps the record, one Lua script per change so that two
executions of one step never both find the way clear.

Which step messages still wait in a queue is answered here too: the
reconcile loop re-sends a stuck step only when its message is not queued
any more, so a re-drive never overlaps a delivery still on its way.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from orchestrator.store.base import StoreBase
from orchestrator.store.broker import queue_keys
from orchestrator.store.keys import effect_key

# How long an effect's record is kept: longer than any retry of its step or re-drive of its run.
EFFECT_KEEP_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class EffectClaim:
    """What effect_begin.lua answered: `state` is done, busy, new or stale (see the script)."""

    state: str
    holder: str
    result: str = ""


class Effects(StoreBase):
    """Intent and completion records of side effects, and which steps are still queued."""

    def begin_effect(
        self, kind: str, subject: str, holder: str, lease_seconds: float, now: float | None = None
    ) -> EffectClaim:
        """Record the intent to act (unless done, or another holder's intent is live)."""
        now = time.time() if now is None else now
        state, who, result = self._call(
            self._effect_begin,
            keys=[effect_key(kind, subject)],
            args=[holder, repr(now), repr(float(lease_seconds)), EFFECT_KEEP_SECONDS],
        )
        return EffectClaim(_text(state), _text(who), _text(result))

    def renew_effect(
        self, kind: str, subject: str, holder: str, lease_seconds: float, now: float | None = None
    ) -> bool:
        """Keep a live intent live (lease 0: lapse it now, so the next try asks the outside world)."""
        now = time.time() if now is None else now
        return bool(
            self._call(
                self._effect_renew,
                keys=[effect_key(kind, subject)],
                args=[holder, repr(now), repr(float(lease_seconds))],
            )
        )

    def complete_effect(
        self, kind: str, subject: str, holder: str, result: str, how: str, now: float | None = None
    ) -> bool:
        """Record the effect done with what it produced; False when it was recorded done already."""
        now = time.time() if now is None else now
        return bool(
            self._call(
                self._effect_complete,
                keys=[effect_key(kind, subject)],
                args=[holder, repr(now), result, how, EFFECT_KEEP_SECONDS],
            )
        )

    def effect(self, kind: str, subject: str) -> dict[str, str]:
        """The effect's record as stored (empty when none)."""
        raw = self._safe(self.redis.hgetall, effect_key(kind, subject))
        return {_text(k): _text(v) for k, v in raw.items()}

    def forget_effect(self, kind: str, subject: str) -> None:
        self._safe(self.redis.delete, effect_key(kind, subject))

    def queued_steps(self, queue: str, wanted: Sequence[tuple[str, str]]) -> list[bool]:
        """For each (step name, run id): does a message of that step for that run wait in `queue`?"""
        if not wanted:
            return []
        args: list[str] = []
        for step, run_id in wanted:
            args += [str(step), repr([run_id])]  # the message's argsrepr: repr() of its arguments
        found = self._call(self._queued_steps, keys=queue_keys(queue), args=args)
        return [bool(int(flag)) for flag in found]

    def queued_any(self, wanted: Iterable[tuple[str, str, str]]) -> set[tuple[str, str]]:
        """The (step name, run id) pairs of `wanted` (queue, step name, run id) whose message is queued."""
        by_queue: dict[str, list[tuple[str, str]]] = {}
        for queue, step, run_id in wanted:
            by_queue.setdefault(queue, []).append((step, run_id))
        queued: set[tuple[str, str]] = set()
        for queue, pairs in by_queue.items():
            queued.update(pair for pair, flag in zip(pairs, self.queued_steps(queue, pairs)) if flag)
        return queued


def _text(value: object) -> str:
    if value is None:
        return ""
    return value.decode() if isinstance(value, bytes) else str(value)
