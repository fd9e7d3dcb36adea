"""Usage: what finished runs consumed, counted once per run into per-day, per-service, per-agent totals."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from orchestrator.store.base import StoreBase
from orchestrator.store.errors import StoreError
from orchestrator.store.keys import USAGE_TTL_SECONDS, run_key, usage_day, usage_service_day

# The counters kept per day; `runs` counts runs with a known usage, `priced_runs` those with a known cost.
USAGE_METRICS = (
    "runs",
    "priced_runs",
    "cost_usd",
    "input_tokens",
    "output_tokens",
    "cache_read_input_tokens",
    "cache_creation_input_tokens",
    "num_turns",
)


def _amounts(usage: Mapping[str, Any]) -> list[str]:
    flat: list[str] = ["runs", "1"]
    cost = usage.get("cost_usd")
    if isinstance(cost, (int, float)):
        flat += ["priced_runs", "1", "cost_usd", repr(float(cost))]
    for metric in USAGE_METRICS[3:]:
        value = usage.get(metric)
        if isinstance(value, (int, float)) and value:
            flat += [metric, str(int(value))]
    return flat


def _number(raw: str) -> float | int:
    value = float(raw)
    return int(value) if value.is_integer() else value


class Usage(StoreBase):
    """Usage counters."""

    def record_usage(self, run_id: str, service: str, agent: str, usage: Mapping[str, Any], *, day: str) -> bool:
        """Store `usage` on the run and add it to `day`'s counters, once per run; True when counted now."""
        args = [
            json.dumps(usage, separators=(",", ":"), sort_keys=True),
            agent or "?",
            USAGE_TTL_SECONDS,
            *_amounts(usage),
        ]
        done = int(
            self._call(
                self._usage_record, keys=[run_key(run_id), usage_service_day(service, day), usage_day(day)], args=args
            )
        )
        if done < 0:
            raise StoreError(f"no run {run_id}")
        return bool(done)

    def service_usage(self, service: str, days: Iterable[str]) -> dict[str, dict[str, dict[str, float | int]]]:
        """day -> agent -> metric -> amount, for the days that have any."""
        days = list(days)
        pipe = self.redis.pipeline(transaction=False)
        for day in days:
            pipe.hgetall(usage_service_day(service, day))
        out: dict[str, dict[str, dict[str, float | int]]] = {}
        for day, raw in zip(days, self._safe(pipe.execute), strict=True):
            for field, value in (raw or {}).items():
                agent, _, metric = field.rpartition("|")
                out.setdefault(day, {}).setdefault(agent, {})[metric] = _number(value)
        return out

    def spent_usd(self, day: str, service: str | None = None) -> float:
        """The day's recorded cost: of one service (every agent), or of all services."""
        if service is None:
            return float(self._safe(self.redis.hget, usage_day(day), "cost_usd") or 0)
        raw = self._safe(self.redis.hgetall, usage_service_day(service, day)) or {}
        return sum(float(v) for k, v in raw.items() if k.endswith("|cost_usd"))
