"""The store's client and scripts, the wait for replicas, and the error mapping every part of it shares."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script

from orchestrator.store.connection import connect  # noqa: F401 - where older imports find it
from orchestrator.store.errors import NotReplicated, StoreUnavailable
from orchestrator.store.keys import GAUGES_KEY, fence_key, lease_key
from orchestrator.store.records import encode_fields, flatten

# Attribute of the store -> its script in lua/<name>.lua.
_SCRIPTS = {
    "_create": "create_task",
    "_claim_delivery": "claim_delivery",
    "_transition": "transition",
    "_run_with_task": "run_with_task",
    "_create_run": "create_run",
    "_acquire": "lease_acquire",
    "_renew": "lease_renew",
    "_update_existing": "update_existing",
    "_release": "lease_release",
    "_slot_acquire": "slot_acquire",
    "_slot_renew": "slot_renew",
    "_slot_release": "slot_release",
    "_waiting_remove": "waiting_remove",
    "_current_runs": "current_runs",
    "_follow_acquire": "follow_acquire",
    "_effect_begin": "effect_begin",
    "_effect_renew": "effect_renew",
    "_effect_complete": "effect_complete",
    "_queued_steps": "queued_steps",
    "_usage_record": "usage_record",
    "_title_scan": "title_scan",
    "_launch_record": "launch_record",
    "_add_context": "add_context",
    "_purge_task": "purge_task",
    "_github_write_take": "github_write_take",
    "_github_write_pause": "github_write_pause",
}

_sources: dict[str, str] = {}


def script_source(name: str) -> str:
    """The text of lua/<name>.lua, read once per process."""
    text = _sources.get(name)
    if text is None:
        text = _sources[name] = resources.files("orchestrator.store").joinpath("lua", f"{name}.lua").read_text("utf-8")
    return text


class StoreBase:
    """The client, the registered scripts and the error mapping every part of the store uses."""

    # The registered scripts, one attribute each (see _SCRIPTS).
    _create: Script
    _claim_delivery: Script
    _transition: Script
    _title_scan: Script
    _run_with_task: Script
    _create_run: Script
    _acquire: Script
    _renew: Script
    _update_existing: Script
    _release: Script
    _slot_acquire: Script
    _slot_renew: Script
    _slot_release: Script
    _waiting_remove: Script
    _current_runs: Script
    _follow_acquire: Script
    _effect_begin: Script
    _effect_renew: Script
    _effect_complete: Script
    _queued_steps: Script
    _usage_record: Script
    _launch_record: Script
    _add_context: Script
    _purge_task: Script
    _github_write_take: Script
    _github_write_pause: Script

    def __init__(
        self,
        client: redis.Redis,
        *,
        history_limit: int = 200,
        wait_replicas: int | None = 0,
        wait_timeout_ms: int = 1000,
        max_tasks_per_service: int = 0,
        max_contexts_per_task: int = 0,
    ):
        self.redis = client
        self.history_limit = history_limit
        # Caps enforced inside the scripts that write (0: none, for tools and tests that build a store).
        self.max_tasks_per_service = max_tasks_per_service
        self.max_contexts_per_task = max_contexts_per_task
        # Replicas that must hold an intake write before it is acknowledged; None: one when the
        # master has any (see _replicas_wanted).
        self.wait_replicas = wait_replicas
        self.wait_timeout_ms = wait_timeout_ms
        self._replicas_seen: tuple[float, int] = (0.0, 0)
        for attribute, name in _SCRIPTS.items():
            setattr(self, attribute, client.register_script(script_source(name)))

    # Health ----------------------------------------------------------------

    def ping(self) -> bool:
        """True when Redis answers."""
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    # Gauges --------------------------------------------------------------------

    def set_gauge(self, name: str, value: float) -> None:
        """Record a measured value (e.g. the workspace's disk use) for the metrics endpoint."""
        self._safe(self.redis.hset, GAUGES_KEY, name, repr(float(value)))

    def gauges(self) -> dict[str, float]:
        """Every recorded gauge by name."""
        return {k: float(v) for k, v in self._safe(self.redis.hgetall, GAUGES_KEY).items()}

    # Helpers -------------------------------------------------------------------

    def _update_existing_hash(
        self,
        key: str,
        fields: Mapping[str, Any],
        *,
        unless_phase: Iterable[str] = (),
        lease: tuple[str, str, int] | None = None,
    ) -> int:
        """update_existing.lua on one record: -1 no record, -2 lease lost, 0 its phase forbade it, 1 written."""
        keys = [key, lease_key(lease[0]), fence_key(lease[0])] if lease else [key]
        holder, token = (lease[1], int(lease[2])) if lease else ("", 0)
        args = [",".join(unless_phase), holder, token, *flatten(encode_fields(fields))]
        return int(self._call(self._update_existing, keys=keys, args=args))

    def _call(self, script: Any, *, keys: Iterable[str], args: Iterable[Any], replicated: bool = False) -> Any:
        """Run a script; `replicated`: an intake write, acknowledged only once enough replicas hold it."""
        try:
            wanted = self._replicas_wanted() if replicated else 0
            if not wanted:
                return script(keys=list(keys), args=list(args))
            # WAIT counts the replicas holding this connection's own writes, so it
            # must follow the script on the same connection: one pipeline.
            with self.redis.pipeline(transaction=False) as pipe:
                script(keys=list(keys), args=list(args), client=pipe)
                pipe.execute_command("WAIT", wanted, self.wait_timeout_ms)
                result, acked = pipe.execute()
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            self._replicas_seen = (0.0, 0)  # a failover may follow: ask the next master afresh
            raise StoreUnavailable("the task store (Redis) does not answer") from exc
        except redis.exceptions.OutOfMemoryError as exc:  # maxmemory with noeviction: writes wait for room
            raise StoreUnavailable("the task store (Redis) is full") from exc
        if int(acked) < wanted:
            self._replicas_seen = (0.0, 0)
            raise NotReplicated(f"the write reached the master but {acked} of {wanted} replicas in time")
        return result

    def _replicas_wanted(self) -> int:
        """How many replicas must acknowledge an intake write.

        A fixed number is the operator's. Auto (None) is one when the master has a
        replica and none when it has not: without a replica Sentinel has nothing to
        promote, so no failover can drop the write (it rests on the AOF, as on a
        standalone Redis), and refusing every submission then would only turn a
        lost replica into an outage. The count is asked at most once a second.
        """
        if self.wait_replicas is not None:
            return self.wait_replicas
        at, count = self._replicas_seen
        now = time.monotonic()
        if now - at < 1.0:
            return count
        try:
            role = self.redis.execute_command("ROLE")
            count = min(1, len(role[2])) if role and role[0] == "master" else 0
        except redis.ResponseError:  # a server without ROLE (a proxy, fakeredis) shows no replicas
            count = 0
        self._replicas_seen = (now, count)
        return count

    @staticmethod
    def _safe(func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable("the task store (Redis) does not answer") from exc
        except redis.exceptions.OutOfMemoryError as exc:
            raise StoreUnavailable("the task store (Redis) is full") from exc
