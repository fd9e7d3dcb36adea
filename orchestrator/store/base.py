"""The store's connection to Redis, its scripts, and what every part of it shares."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from importlib import resources
from typing import Any

import redis
from redis.commands.core import Script

from orchestrator.store.errors import StoreUnavailable
from orchestrator.store.keys import GAUGES_KEY, fence_key, lease_key
from orchestrator.store.records import encode_fields, flatten


class _OneWrite:
    """Sends each packed command in one write.

    redis-py packs a command holding a large value (a webhook body, a task
    document) as separate pieces and writes each with its own `sendall`; over
    loopback every write costs a system call that also delivers to Redis, so
    one write is cheaper on the intake path (bench/webhooks.py shows it).
    Joining them costs one copy, up to a bound, past which the copy would cost
    more than the writes it saves.
    """

    _JOIN_BELOW = 1 << 20

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if isinstance(command, list) and len(command) > 1 and sum(map(len, command)) < self._JOIN_BELOW:
            command = [b"".join(command)]
        super().send_packed_command(command, check_health)  # type: ignore[misc]


_one_write_classes: dict[type, type] = {}


def connect(url: str, *, timeout: float = 5.0) -> redis.Redis:
    """A Redis client for the store. Connects lazily, on the first command."""
    client = redis.Redis.from_url(
        url,
        decode_responses=True,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        health_check_interval=15,
        retry_on_timeout=False,
    )
    # The URL chose the connection class (TCP, TLS or Unix socket): keep it, write once.
    pool = client.connection_pool
    base = pool.connection_class
    one_write = _one_write_classes.get(base)
    if one_write is None:
        one_write = _one_write_classes[base] = type(f"OneWrite{base.__name__}", (_OneWrite, base), {})
    pool.connection_class = one_write
    return client


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

    def __init__(
        self,
        client: redis.Redis,
        *,
        history_limit: int = 200,
        max_tasks_per_service: int = 0,
        max_contexts_per_task: int = 0,
    ):
        self.redis = client
        self.history_limit = history_limit
        # Caps enforced inside the scripts that write (0: none, for tools and tests that build a store).
        self.max_tasks_per_service = max_tasks_per_service
        self.max_contexts_per_task = max_contexts_per_task
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

    def _call(self, script: Any, *, keys: Iterable[str], args: Iterable[Any]) -> Any:
        try:
            return script(keys=list(keys), args=list(args))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable("the task store (Redis) does not answer") from exc
        except redis.exceptions.OutOfMemoryError as exc:  # maxmemory with noeviction: writes wait for room
            raise StoreUnavailable("the task store (Redis) is full") from exc

    @staticmethod
    def _safe(func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable("the task store (Redis) does not answer") from exc
        except redis.exceptions.OutOfMemoryError as exc:
            raise StoreUnavailable("the task store (Redis) is full") from exc
