"""The task store: tasks, runs, status history, indexes and dedupe keys in Redis.

This is the only module that knows Redis key names. Every status change goes
through one Lua script, so it is atomic: two workers racing to move the same
task both read Running, and exactly one of them may write Succeeded.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from orchestrator.states import Status, sources_of

PREFIX = "orch"


class StoreError(Exception):
    """Base of the store's own errors."""


class StoreUnavailable(StoreError):
    """Redis does not answer; callers answer 503 and retry later."""


class TaskNotFound(StoreError):
    """No task with that (service, id)."""


class TaskExists(StoreError):
    """A task with that (service, id) was already submitted."""


class LeaseNotHeld(StoreError):
    """A change conditioned on holding a lease was refused: the lease passed to another holder."""


class IllegalTransition(StoreError):
    """The state machine forbids the change; nothing was written."""

    def __init__(self, service: str, task_id: int, current: str, target: str, *, conflict: bool = False):
        self.service, self.task_id, self.current, self.target = service, task_id, current, target
        self.conflict = conflict
        why = "the task moved on meanwhile" if conflict else "that transition is not allowed"
        super().__init__(f"task {service}/{task_id} is {current}; cannot move to {target}: {why}")


class _OneWrite:
    """Sends each packed command in one write.

    redis-py packs a command holding a large value (a webhook body, a task
    document) as separate pieces and writes each with its own `sendall`; over
    loopback every write costs a system call that also delivers to Redis: one
    write took a webhook claim from about 155 to 105 microseconds of client CPU.
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


def task_ref(service: str, task_id: int | str) -> str:
    """The index member naming one task."""
    return f"{service}/{task_id}"


def split_ref(ref: str) -> tuple[str, int]:
    service, _, task_id = ref.rpartition("/")
    return service, int(task_id)


def run_id_for(service: str, task_id: int, version: int, attempt: int, stage: str | None = None) -> str:
    """A run's id: one per (task, context version, stage, attempt), never random."""
    stage_part = f"-{stage}" if stage else ""
    return f"{service}-{task_id}-v{version}{stage_part}-a{attempt}"


@dataclass(frozen=True)
class Transition:
    """What a successful status change did."""

    service: str
    task_id: int
    source: str
    target: str
    seq: int


# Keys --------------------------------------------------------------------------

def _task_key(service: str, task_id: int | str) -> str:
    return f"{PREFIX}:task:{service}:{task_id}"


def _history_key(service: str, task_id: int | str) -> str:
    return f"{PREFIX}:task:{service}:{task_id}:history"


def _task_runs_key(service: str, task_id: int | str) -> str:
    return f"{PREFIX}:task:{service}:{task_id}:runs"


def _contexts_key(service: str, task_id: int | str) -> str:
    return f"{PREFIX}:task:{service}:{task_id}:contexts"


def _run_key(run_id: str) -> str:
    return f"{PREFIX}:run:{run_id}"


_SEQ_KEY = f"{PREFIX}:seq"
_GAUGES_KEY = f"{PREFIX}:gauges"
_IDX_ALL = f"{PREFIX}:idx:all"
_IDX_PREFIX = f"{PREFIX}:idx"


def _idx_service(service: str) -> str:
    return f"{_IDX_PREFIX}:service:{service}"


def _idx_agent(agent: str) -> str:
    return f"{_IDX_PREFIX}:agent:{agent}"


def _idx_status(status: str) -> str:
    return f"{_IDX_PREFIX}:status:{status}"


def _idem_key(key: str) -> str:
    return f"{PREFIX}:idem:{key}"


def _delivery_key(delivery_id: str) -> str:
    return f"{PREFIX}:delivery:{delivery_id}"


def _event_handled_key(delivery_id: str) -> str:
    return f"{PREFIX}:event-handled:{delivery_id}"


def _event_pending_key(delivery_id: str) -> str:
    return f"{PREFIX}:event-pending:{delivery_id}"


# Accepted deliveries whose event was not acted on yet: delivery id -> when last queued.
_EVENTS_PENDING = f"{PREFIX}:events:pending"


def _pull_request_key(key: str) -> str:
    return f"{PREFIX}:github:pr:{key}"


def _lease_key(name: str) -> str:
    return f"{PREFIX}:lease:{name}"


def _fence_key(name: str) -> str:
    return f"{PREFIX}:fence:{name}"


# Kombu's Redis transport: the default priority steps are 0, 3, 6, 9; step 0 is
# the plain queue name, the others get a separator and the step appended.
_QUEUE_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")


def _queue_keys(name: str) -> list[str]:
    return [name + suffix for suffix in _QUEUE_PRIORITY_SUFFIXES]
# Capacity slots: sorted sets of run ids scored by lease expiry (ms, Redis clock),
# one global and one per service, plus a hash run id -> service.
_SLOTS_GLOBAL = f"{PREFIX}:slots:global"
_SLOTS_SERVICE_PREFIX = f"{PREFIX}:slots:service:"
_SLOTS_HOLDERS = f"{PREFIX}:slots:holders"
# Tasks waiting for capacity, scored by admission order (priority, then age).
_WAITING = f"{PREFIX}:waiting"


def _slots_service(service: str) -> str:
    return f"{_SLOTS_SERVICE_PREFIX}{service}"


def _dependents_key(service: str, task_id: int | str) -> str:
    return f"{PREFIX}:dependents:{service}:{task_id}"


# Scripts -------------------------------------------------------------------------

# Creates a task with its indexes, first history entry and idempotency record,
# or reports the one that exists. KEYS: task, history, all-index, service-index,
# agent-index, status-index, seq, idem (or a dummy), queue list (or a dummy),
# dependents sets... ARGV: status, member, now, actor, reason, idem ttl (0: none),
# idem value, message ('' for none), task id, then the task's fields as name, value...
_CREATE_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  return {0, redis.call('HGET', KEYS[1], 'seq') or ''}
end
local seq = redis.call('INCR', KEYS[7])
redis.call('HSET', KEYS[1], 'seq', seq, 'history_seq', 1, unpack(ARGV, 10))
redis.call('ZADD', KEYS[3], seq, ARGV[2])
redis.call('ZADD', KEYS[4], seq, ARGV[2])
redis.call('ZADD', KEYS[5], seq, ARGV[2])
redis.call('ZADD', KEYS[6], seq, ARGV[2])
redis.call('RPUSH', KEYS[2], cjson.encode({seq = 1, at = tonumber(ARGV[3]), from = cjson.null,
  to = ARGV[1], reason = ARGV[5], actor = ARGV[4]}))
if tonumber(ARGV[6]) > 0 then
  redis.call('SET', KEYS[8], ARGV[7], 'EX', tonumber(ARGV[6]))
end
for i = 10, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[9])
end
if ARGV[8] ~= '' then
  redis.call('LPUSH', KEYS[9], ARGV[8])
end
return {1, seq}
"""

# Claims a webhook delivery and, only when the claim is new, keeps its pending
# copy and queues its message.
# KEYS: delivery claim, queue list, pending event hash, pending events zset.
# ARGV: ttl, message ('' to only claim), event ('' for no pending copy), body, now, delivery id.
_CLAIM_DELIVERY_LUA = """
if not redis.call('SET', KEYS[1], '1', 'NX', 'EX', tonumber(ARGV[1])) then
  return 0
end
if ARGV[3] ~= '' then
  redis.call('HSET', KEYS[3], 'event', ARGV[3], 'body', ARGV[4], 'resent', 0)
  redis.call('EXPIRE', KEYS[3], tonumber(ARGV[1]))
  redis.call('ZADD', KEYS[4], ARGV[5], ARGV[6])
end
if ARGV[2] ~= '' then
  redis.call('LPUSH', KEYS[2], ARGV[2])
end
return 1
"""

# Moves a task to a new status when the state machine allows it; only then, in
# the same step, sets fields of a run (when it exists), pushes a queue message
# and drops the task from the admission index.
# KEYS: task, history, then optionally run, queue list, admission index.
# ARGV: target, reason, actor, now, allowed sources (csv), expected current
# status ('' for any), history limit, status index prefix, member, extra fields
# json, expected field values json, then with the optional keys: run fields
# json, message ('' for none), '1' to drop from the admission index, score to
# add to it with ('' for none); and with a lease and its fence as KEYS 6 and 7,
# its holder and token, which must still be current for the move.
_TRANSITION_LUA = """
local current = redis.call('HGET', KEYS[1], 'status')
if not current then return {-1, ''} end
if ARGV[6] ~= '' and ARGV[6] ~= current then return {0, current, 'conflict'} end
for k, v in pairs(cjson.decode(ARGV[11])) do
  if (redis.call('HGET', KEYS[1], k) or '') ~= v then return {0, current, 'conflict'} end
end
local allowed = false
for src in string.gmatch(ARGV[5], '[^,]+') do
  if src == current then allowed = true end
end
if not allowed then return {0, current, 'illegal'} end
if #KEYS >= 7 and (redis.call('GET', KEYS[6]) ~= ARGV[16]
    or tonumber(redis.call('GET', KEYS[7]) or '0') ~= tonumber(ARGV[17])) then
  return {0, current, 'lease'}
end
local seq = redis.call('HINCRBY', KEYS[1], 'history_seq', 1)
redis.call('HSET', KEYS[1], 'status', ARGV[1], 'status_reason', ARGV[2], 'updated_at', ARGV[4])
local extra = cjson.decode(ARGV[10])
for k, v in pairs(extra) do redis.call('HSET', KEYS[1], k, v) end
if current ~= ARGV[1] then
  local score = redis.call('HGET', KEYS[1], 'seq')
  redis.call('ZREM', ARGV[8] .. current, ARGV[9])
  redis.call('ZADD', ARGV[8] .. ARGV[1], score, ARGV[9])
end
redis.call('RPUSH', KEYS[2], cjson.encode({seq = seq, at = tonumber(ARGV[4]), from = current,
  to = ARGV[1], reason = ARGV[2], actor = ARGV[3]}))
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[7]), -1)
if #KEYS >= 5 then
  if ARGV[12] ~= '{}' and redis.call('EXISTS', KEYS[3]) == 1 then
    for k, v in pairs(cjson.decode(ARGV[12])) do redis.call('HSET', KEYS[3], k, v) end
  end
  if ARGV[13] ~= '' then redis.call('LPUSH', KEYS[4], ARGV[13]) end
  if ARGV[14] == '1' then redis.call('ZREM', KEYS[5], ARGV[9]) end
  if ARGV[15] ~= '' then redis.call('ZADD', KEYS[5], 'NX', ARGV[15], ARGV[9]) end
end
return {1, current, seq}
"""

# Records a run unless it exists (then leaves it as it is) and returns it.
# KEYS: run, the task's runs. ARGV: run id, now, then the record as name, value...
_CREATE_RUN_LUA = """
if redis.call('HSETNX', KEYS[1], 'run_id', ARGV[1]) == 1 then
  redis.call('HSET', KEYS[1], unpack(ARGV, 3))
  redis.call('ZADD', KEYS[2], 'NX', ARGV[2], ARGV[1])
end
return redis.call('HGETALL', KEYS[1])
"""

# A run and its task (and the task's context documents) in one round trip.
# KEYS: run. ARGV: task key prefix, contexts suffix ('' to skip the contexts).
# Returns {} without a run, else {run fields, task fields, contexts}.
_RUN_WITH_TASK_LUA = """
local run = redis.call('HGETALL', KEYS[1])
if #run == 0 then return {} end
local service, task_id
for i = 1, #run, 2 do
  if run[i] == 'service' then service = run[i + 1] elseif run[i] == 'task_id' then task_id = run[i + 1] end
end
if not service or not task_id then return {run, {}, {}} end
local key = ARGV[1] .. service .. ':' .. task_id
local contexts = {}
if ARGV[2] ~= '' then contexts = redis.call('LRANGE', key .. ARGV[2], 0, -1) end
return {run, redis.call('HGETALL', key), contexts}
"""

# Lease with fencing: KEYS lease, fence. ARGV holder, ttl ms. Returns the
# fencing token (strictly increasing per lease name) or 0 when someone else holds it.
_ACQUIRE_LUA = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return tonumber(redis.call('GET', KEYS[2]))
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return redis.call('INCR', KEYS[2])
"""

# Sets fields of a task or run only when its hash exists (never resurrects a
# deleted record) and, with phases in ARGV[1] (comma-separated, '' for none),
# only while its `phase` is none of them: the end of a run is written once, and
# whoever read the run before someone else recorded its end (a watcher, a
# cancel) must not write over it. With a lease and its fence as KEYS 2 and 3,
# only while ARGV 2 and 3 (holder, fencing token) are still current (a deposed
# watcher must not write). ARGV: those phases, holder, token, then name, value...
# Returns -1 for no record, -2 when the lease passed on, 0 when its phase forbade the write, 1 when written.
_UPDATE_EXISTING_LUA = """
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if #KEYS >= 3 and (redis.call('GET', KEYS[2]) ~= ARGV[2]
    or tonumber(redis.call('GET', KEYS[3]) or '0') ~= tonumber(ARGV[3])) then
  return -2
end
if ARGV[1] ~= '' then
  local phase = redis.call('HGET', KEYS[1], 'phase') or ''
  for ended in string.gmatch(ARGV[1], '[^,]+') do
    if phase == ended then return 0 end
  end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
return 1
"""

_RENEW_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_RELEASE_LUA = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


# Capacity slot, taken atomically against both limits. Expired holders (a
# crashed worker, a lost finish) are dropped first, so a slot can never leak
# for longer than its lease. KEYS: global set, service set, holders hash.
# ARGV: run id, service, lease ms, global limit, service limit.
# Returns 1 taken (or already held: lease renewed), 0 global full, -1 service full.
_SLOT_ACQUIRE_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local expiry = now + tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], expiry, ARGV[1])
  redis.call('ZADD', KEYS[2], expiry, ARGV[1])
  return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then return 0 end
if redis.call('ZCARD', KEYS[2]) >= tonumber(ARGV[5]) then return -1 end
redis.call('ZADD', KEYS[1], expiry, ARGV[1])
redis.call('ZADD', KEYS[2], expiry, ARGV[1])
redis.call('HSET', KEYS[3], ARGV[1], ARGV[2])
return 1
"""

# Extends a held slot; 0 when it is not held (released or expired).
# KEYS: global set, holders hash. ARGV: run id, lease ms, service-set prefix.
_SLOT_RENEW_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not score or tonumber(score) <= now then return 0 end
local service = redis.call('HGET', KEYS[2], ARGV[1])
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
if service then redis.call('ZADD', ARGV[3] .. service, now + tonumber(ARGV[2]), ARGV[1]) end
return 1
"""

# Frees a slot (idempotent). KEYS: global set, holders hash. ARGV: run id, service-set prefix.
_SLOT_RELEASE_LUA = """
local service = redis.call('HGET', KEYS[2], ARGV[1])
local removed = redis.call('ZREM', KEYS[1], ARGV[1])
if service then
  removed = removed + redis.call('ZREM', ARGV[2] .. service, ARGV[1])
  redis.call('HDEL', KEYS[2], ARGV[1])
end
return removed
"""


# Drops a task from the admission index unless its status is one to keep.
# KEYS: waiting set, task. ARGV: member, statuses to keep (csv).
_WAITING_REMOVE_LUA = """
local status = redis.call('HGET', KEYS[2], 'status') or ''
for keep in string.gmatch(ARGV[2], '[^,]+') do
  if keep == status then return 0 end
end
return redis.call('ZREM', KEYS[1], ARGV[1])
"""


# Reads, for each task, its status, its current run and the named fields of that
# run: the watcher's reconcile reads this for every active task, and one script
# per batch is one round trip and one command to encode, where a pipeline of
# two commands per task cost more in the client than in Redis. Read-only.
# KEYS: task hashes. ARGV: run key prefix, then the run's fields.
# Returns per task {status, current run, run fields...}, or false when the task is gone.
_CURRENT_RUNS_LUA = """
local fields = {unpack(ARGV, 2)}
local out = {}
for i, key in ipairs(KEYS) do
  local task = redis.call('HMGET', key, 'status', 'current_run')
  if task[1] then
    local row = {task[1], task[2] or ''}
    if task[2] and task[2] ~= '' and #fields > 0 then
      local run = redis.call('HMGET', ARGV[1] .. task[2], unpack(fields))
      for j = 1, #fields do row[j + 2] = run[j] end
    end
    out[i] = row
  else
    out[i] = false
  end
end
return out
"""


def _encode(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def _encode_fields(fields: Mapping[str, Any]) -> dict[str, str]:
    """Task and run fields as stored: None as '' (reads as unset), numbers as repr, the rest as `_encode`."""
    return {k: ("" if v is None else _encode(v) if not isinstance(v, (int, float)) else repr(v))
            for k, v in fields.items()}


def _decode_task(raw: Mapping[str, str]) -> dict[str, Any]:
    task: dict[str, Any] = dict(raw)
    for key in ("spec", "outputs", "origin"):
        if key in task:
            task[key] = json.loads(task[key])
    for key in ("id", "seq", "context_version", "history_seq"):
        if key in task:
            task[key] = int(task[key])
    for key in ("created_at", "updated_at"):
        if key in task:
            task[key] = float(task[key])
    return task


def _decode_run(raw: Mapping[str, str]) -> dict[str, Any]:
    run: dict[str, Any] = dict(raw)
    for key in ("outputs", "inputs"):
        if run.get(key):
            run[key] = json.loads(run[key])
    for key in ("task_id", "version", "attempt", "seq"):
        if key in run:
            run[key] = int(run[key])
    if run.get("exit_code") not in (None, ""):
        run["exit_code"] = int(run["exit_code"])
    for key in ("queued_at", "started_at", "finished_at"):
        if run.get(key) not in (None, ""):
            run[key] = float(run[key])
    return run


class TaskStore:
    """Tasks, runs and their history, stored in Redis."""

    def __init__(self, client: redis.Redis, *, history_limit: int = 200):
        self.redis = client
        self.history_limit = history_limit
        self._create = client.register_script(_CREATE_LUA)
        self._claim_delivery = client.register_script(_CLAIM_DELIVERY_LUA)
        self._transition = client.register_script(_TRANSITION_LUA)
        self._run_with_task = client.register_script(_RUN_WITH_TASK_LUA)
        self._create_run = client.register_script(_CREATE_RUN_LUA)
        self._acquire = client.register_script(_ACQUIRE_LUA)
        self._renew = client.register_script(_RENEW_LUA)
        self._update_existing = client.register_script(_UPDATE_EXISTING_LUA)
        self._release = client.register_script(_RELEASE_LUA)
        self._slot_acquire = client.register_script(_SLOT_ACQUIRE_LUA)
        self._slot_renew = client.register_script(_SLOT_RENEW_LUA)
        self._slot_release = client.register_script(_SLOT_RELEASE_LUA)
        self._waiting_remove = client.register_script(_WAITING_REMOVE_LUA)
        self._current_runs = client.register_script(_CURRENT_RUNS_LUA)

    # Health ----------------------------------------------------------------

    def ping(self) -> bool:
        """True when Redis answers."""
        try:
            return bool(self.redis.ping())
        except redis.RedisError:
            return False

    # Tasks -------------------------------------------------------------------

    def create_task(
        self,
        *,
        service: str,
        task_id: int,
        agent: str,
        spec: Mapping[str, Any],
        priority: str = "medium",
        actor: str = "api",
        origin: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
        idempotency_ttl: int = 86400,
        idempotency_value: Any = None,
        dependencies: Iterable[int] = (),
        enqueue: tuple[str, bytes | str] | None = None,
        now: float | None = None,
    ) -> dict[str, Any]:
        """Store a new task in Pending; raise TaskExists when (service, id) is taken.

        With an idempotency key, the key, the task and its indexes are written
        together or not at all, so a retried request finds either nothing or
        everything. `dependencies` records the reverse edges (as
        `add_dependents`) and `enqueue=(queue, message)` pushes a broker message
        (see `enqueue`) in the same atomic step: stored, linked and queued, or
        none of them.
        """
        now = time.time() if now is None else now
        member = task_ref(service, task_id)
        fields = {
            "service": service,
            "id": str(task_id),
            "agent": agent,
            "priority": priority,
            "spec": _encode(dict(spec)),
            "origin": _encode(dict(origin or {})),
            "outputs": "{}",
            "status": Status.PENDING.value,
            "status_reason": "submitted",
            "context_version": "1",
            "created_at": repr(now),
            "updated_at": repr(now),
            "submitted_by": actor,
        }
        idem_key = _idem_key(idempotency_key) if idempotency_key else _idem_key("-")
        ttl = idempotency_ttl if idempotency_key else 0
        value = _encode(idempotency_value if idempotency_value is not None else {"task": member})
        created, _seq = self._call(
            self._create,
            keys=[
                _task_key(service, task_id), _history_key(service, task_id), _IDX_ALL,
                _idx_service(service), _idx_agent(agent), _idx_status(Status.PENDING.value),
                _SEQ_KEY, idem_key,
                _queue_keys(enqueue[0])[0] if enqueue else _task_key(service, task_id),
                *(_dependents_key(service, dep) for dep in dependencies),
            ],
            args=[fields["status"], member, repr(now), actor, "submitted", ttl, value,
                  enqueue[1] if enqueue else "", str(task_id), *(item for pair in fields.items() for item in pair)],
        )
        if not int(created):
            raise TaskExists(f"task {member} already exists")
        # The script wrote exactly these fields, atomically: no need to read them back.
        return _decode_task({**fields, "seq": str(_seq), "history_seq": "1"})

    def get_task(self, service: str, task_id: int) -> dict[str, Any] | None:
        """The task's record, or None."""
        raw = self._safe(self.redis.hgetall, _task_key(service, task_id))
        return _decode_task(raw) if raw else None

    def get_task_with_links(self, service: str, task_id: int) -> tuple[dict[str, Any] | None, list[int], bool]:
        """(the task or None, ids of its dependents as `dependents_of`, whether any run was recorded), one round trip.

        What an admission reads first; three round trips were a good part of its time.
        """
        pipe = self.redis.pipeline(transaction=False)
        pipe.hgetall(_task_key(service, task_id))
        pipe.smembers(_dependents_key(service, task_id))
        pipe.zcard(_task_runs_key(service, task_id))
        raw, dependents, runs = self._safe(pipe.execute)
        return (_decode_task(raw) if raw else None), sorted(int(m) for m in dependents), bool(runs)

    def require_task(self, service: str, task_id: int) -> dict[str, Any]:
        task = self.get_task(service, task_id)
        if task is None:
            raise TaskNotFound(f"no task {task_ref(service, task_id)}")
        return task

    def update_task(self, service: str, task_id: int, **fields: Any) -> None:
        """Set non-status fields of an existing task (outputs, stage, ...)."""
        if "status" in fields or "status_reason" in fields:
            raise ValueError("status changes go through transition()")
        key = _task_key(service, task_id)
        if self._update_existing_hash(key, {**fields, "updated_at": time.time()}) < 0:
            raise TaskNotFound(f"no task {task_ref(service, task_id)}")

    def transition(
        self,
        service: str,
        task_id: int,
        target: Status | str,
        *,
        reason: str,
        actor: str,
        expect: Status | str | None = None,
        fields: Mapping[str, Any] | None = None,
        expect_fields: Mapping[str, str] | None = None,
        run_fields: tuple[str, Mapping[str, Any]] | None = None,
        enqueue: tuple[str, bytes | str] | None = None,
        unwait: bool = False,
        wait_score: float | None = None,
        lease: tuple[str, str, int] | None = None,
        now: float | None = None,
    ) -> Transition:
        """Move the task to `target` atomically, or raise IllegalTransition.

        `expect` makes it a compare-and-set: the write happens only when the
        task is still in that status (and, with `expect_fields`, when those
        fields still hold those values; a missing field reads as '').
        `fields` are written in the same step, and so, only when the move is
        made, are `run_fields=(run id, fields)` (as `update_run`, on a run that
        exists), `enqueue=(queue, message)` (as `enqueue`), with `unwait` the
        task's removal from the admission index and with `wait_score` its
        addition (as `add_waiting`): the next step is queued, and the index
        follows, exactly when the status that asks for it is written.
        `lease=(name, holder, token)` makes the move also conditional on that
        lease still being held with that fencing token (LeaseNotHeld otherwise).
        """
        target = Status(target)
        now = time.time() if now is None else now
        allowed = ",".join(sorted(s.value for s in sources_of(target)))
        extra = _encode_fields(fields or {})
        keys = [_task_key(service, task_id), _history_key(service, task_id)]
        args: list[Any] = [
            target.value, reason, actor, repr(now), allowed,
            Status(expect).value if expect else "", self.history_limit,
            f"{_IDX_PREFIX}:status:", task_ref(service, task_id), json.dumps(extra) if extra else "{}",
            json.dumps({k: str(v) for k, v in expect_fields.items()}) if expect_fields else "{}",
        ]
        if run_fields or enqueue or unwait or wait_score is not None or lease:
            keys += [_run_key(run_fields[0]) if run_fields else keys[0],
                     _queue_keys(enqueue[0])[0] if enqueue else keys[0], _WAITING]
            args += [json.dumps(_encode_fields(run_fields[1])) if run_fields else "{}",
                     enqueue[1] if enqueue else "", "1" if unwait else "",
                     repr(float(wait_score)) if wait_score is not None else ""]
        if lease:
            keys += [_lease_key(lease[0]), _fence_key(lease[0])]
            args += [lease[1], int(lease[2])]
        result = self._call(self._transition, keys=keys, args=args)
        code = int(result[0])
        if code == -1:
            raise TaskNotFound(f"no task {task_ref(service, task_id)}")
        if code == 0 and result[2] == "lease":
            raise LeaseNotHeld(f"the lease {lease[0] if lease else ''} passed to another holder")
        if code == 0:
            raise IllegalTransition(service, task_id, result[1], target.value, conflict=result[2] == "conflict")
        return Transition(service, task_id, result[1], target.value, int(result[2]))

    def history(self, service: str, task_id: int, limit: int | None = None) -> list[dict[str, Any]]:
        """Status history, oldest first (the newest `limit` entries when given)."""
        start = -limit if limit else 0
        raw = self._safe(self.redis.lrange, _history_key(service, task_id), start, -1)
        return [json.loads(item) for item in raw]

    def list_tasks(
        self,
        *,
        service: str | None = None,
        status: str | None = None,
        agent: str | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Tasks newest first, filtered; returns a page and the cursor of the next one.

        The most selective index drives the scan; other filters are checked on
        the records, so a page is always full unless the index is exhausted.
        """
        if status:
            index = _idx_status(status)
        elif service:
            index = _idx_service(service)
        elif agent:
            index = _idx_agent(agent)
        else:
            index = _IDX_ALL
        upper = f"({int(cursor)}" if cursor else "+inf"
        found: list[dict[str, Any]] = []
        batch = max(limit * 2, 20)
        while len(found) < limit:
            members = self._safe(
                self.redis.zrevrangebyscore, index, upper, "-inf", start=0, num=batch, withscores=True
            )
            if not members:
                return found, None
            pipe = self.redis.pipeline(transaction=False)
            for member, _score in members:
                pipe.hgetall(_task_key(*member.rsplit("/", 1)))
            records = self._safe(pipe.execute)
            for (member, score), raw in zip(members, records):
                upper = f"({int(score)}"
                if not raw:
                    continue
                task = _decode_task(raw)
                if service and task["service"] != service:
                    continue
                if status and task["status"] != status:
                    continue
                if agent and task["agent"] != agent:
                    continue
                found.append(task)
                if len(found) == limit:
                    more = self._safe(self.redis.zrevrangebyscore, index, upper, "-inf", start=0, num=1)
                    return found, (upper[1:] if more else None)
            if len(members) < batch:
                return found, None
        return found, None

    def count_by_status(self) -> dict[str, int]:
        """How many tasks are in each status (for metrics)."""
        pipe = self.redis.pipeline(transaction=False)
        for status in Status:
            pipe.zcard(_idx_status(status.value))
        counts = self._safe(pipe.execute)
        return {status.value: int(n) for status, n in zip(Status, counts)}

    def enqueue(self, queue: str, message: bytes | str) -> None:
        """Push one broker message onto a Celery queue, as kombu's Redis transport does.

        Kombu keeps a priority-0 message in the list named after the queue and
        its consumers BRPOP from the other end, so LPUSH is a plain publish.
        """
        self._safe(self.redis.lpush, _queue_keys(queue)[0], message)

    def queue_depths(self, names: Iterable[str]) -> dict[str, int]:
        """Messages waiting in each Celery queue (for metrics).

        Kombu's Redis transport keeps a queue as a list named after it, plus
        one list per priority step (`<name>\\x06\\x16<priority>`); all are counted.
        """
        names = list(names)
        pipe = self.redis.pipeline(transaction=False)
        for name in names:
            for key in _queue_keys(name):
                pipe.llen(key)
        counts = self._safe(pipe.execute)
        per = len(_QUEUE_PRIORITY_SUFFIXES)
        return {name: sum(int(n) for n in counts[i * per:(i + 1) * per]) for i, name in enumerate(names)}

    def task_refs_in_status(self, *statuses: Status | str) -> list[tuple[str, int]]:
        """(service, id) of every task in the given statuses, oldest first."""
        refs: list[tuple[str, int]] = []
        for status in statuses:
            for member in self._safe(self.redis.zrange, _idx_status(Status(status).value), 0, -1):
                refs.append(split_ref(member))
        return refs

    def task_fields(self, refs: Iterable[tuple[str, int]], *fields: str,
                    batch: int = 1000) -> list[dict[str, str] | None]:
        """The named fields of many tasks (None for a task that is gone), in pipelined batches.

        For loops over every active task (the watcher's reconcile): one round
        trip per `batch` tasks instead of one per task, and only the fields asked for.
        """
        refs = list(refs)
        out: list[dict[str, str] | None] = []
        for start in range(0, len(refs), batch):
            pipe = self.redis.pipeline(transaction=False)
            for service, task_id in refs[start:start + batch]:
                pipe.hmget(_task_key(service, task_id), ["status", *fields])
            for values in self._safe(pipe.execute):
                out.append(None if values[0] is None else dict(zip(["status", *fields], values)))
        return out

    def get_runs(self, run_ids: Iterable[str], *, batch: int = 1000) -> list[dict[str, Any] | None]:
        """Many runs (None for one that is gone), in pipelined batches."""
        run_ids = list(run_ids)
        out: list[dict[str, Any] | None] = []
        for start in range(0, len(run_ids), batch):
            pipe = self.redis.pipeline(transaction=False)
            for run_id in run_ids[start:start + batch]:
                pipe.hgetall(_run_key(run_id))
            out.extend(_decode_run(raw) if raw else None for raw in self._safe(pipe.execute))
        return out

    def current_runs(self, refs: Iterable[tuple[str, int]], *fields: str,
                     batch: int = 1000) -> list[tuple[str, str, dict[str, str] | None] | None]:
        """(task status, current run id, the named fields of that run) for many tasks, by one script per `batch`.

        None for a task that is gone; the fields are None when the task has no
        current run or its run record is gone (a run hash always holds `run_id`:
        ask for it to tell). Values are the stored strings, not decoded.
        """
        refs = list(refs)
        out: list[tuple[str, str, dict[str, str] | None] | None] = []
        prefix = _run_key("")
        for start in range(0, len(refs), batch):
            keys = [_task_key(service, task_id) for service, task_id in refs[start:start + batch]]
            for row in self._call(self._current_runs, keys=keys, args=[prefix, *fields]):
                if not row:
                    out.append(None)
                    continue
                values = row[2:]
                run = dict(zip(fields, values)) if values and any(v is not None for v in values) else None
                out.append((row[0], row[1], run))
        return out

    # Context documents -------------------------------------------------------

    def add_context(self, service: str, task_id: int, document: Mapping[str, Any]) -> int:
        """Append a context document and bump the context version; returns it."""
        key = _task_key(service, task_id)
        with self.redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    pipe.watch(key)
                    if not pipe.exists(key):
                        pipe.reset()
                        raise TaskNotFound(f"no task {task_ref(service, task_id)}")
                    pipe.multi()
                    pipe.hincrby(key, "context_version", 1)
                    pipe.rpush(_contexts_key(service, task_id), _encode(dict(document)))
                    pipe.hset(key, "updated_at", repr(time.time()))
                    version, _, _ = pipe.execute()
                    return int(version)
                except redis.WatchError:
                    continue
                except redis.ConnectionError as exc:
                    raise StoreUnavailable(str(exc)) from exc

    def contexts(self, service: str, task_id: int) -> list[dict[str, Any]]:
        """Context documents added after submission, oldest first."""
        return [json.loads(d) for d in self._safe(self.redis.lrange, _contexts_key(service, task_id), 0, -1)]

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
    ) -> dict[str, Any]:
        """Record a run; a second call for the same run returns the first record."""
        run_id = run_id_for(service, task_id, version, attempt, stage)
        key = _run_key(run_id)
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
        raw = self._call(self._create_run, keys=[key, _task_runs_key(service, task_id)],
                         args=[run_id, repr(now), *(item for pair in record.items() for item in pair)])
        return _decode_run(dict(zip(raw[::2], raw[1::2])))

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        raw = self._safe(self.redis.hgetall, _run_key(run_id))
        return _decode_run(raw) if raw else None

    def get_run_with_task(self, run_id: str, *, contexts: bool = False
                          ) -> tuple[dict[str, Any] | None, dict[str, Any] | None, list[dict[str, Any]]]:
        """(run, its task, the task's context documents if asked) in one round trip; None for what is missing.

        The steps that act on a run read both first; two round trips each was a
        good part of a step's own time.
        """
        # The script builds the task's keys from the run's fields, as _task_key and _contexts_key do.
        found = self._call(self._run_with_task, keys=[_run_key(run_id)],
                           args=[_task_key("", "")[:-1], _contexts_key("", "")[len(_task_key("", "")):]
                                 if contexts else ""])
        if not found:
            return None, None, []
        run_raw, task_raw, docs = found
        run = _decode_run(dict(zip(run_raw[::2], run_raw[1::2])))
        task = _decode_task(dict(zip(task_raw[::2], task_raw[1::2]))) if task_raw else None
        return run, task, [json.loads(d) for d in docs] if task else []

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set fields of an existing run (phase, timestamps, exit code, outputs...)."""
        if self._update_existing_hash(_run_key(run_id), fields) < 0:
            raise StoreError(f"no run {run_id}")

    def update_unended_run(self, run_id: str, ended: Iterable[str], *, lease: tuple[str, str, int] | None = None,
                           **fields: Any) -> bool:
        """Set fields of a run unless its phase is one of `ended`; False (nothing written) when it is.

        `lease=(name, holder, token)` makes the write also conditional on that
        lease still being held with that fencing token (LeaseNotHeld otherwise).
        """
        written = self._update_existing_hash(_run_key(run_id), fields, unless_phase=ended, lease=lease)
        if written == -2:
            raise LeaseNotHeld(f"the lease {lease[0] if lease else ''} passed to another holder")
        if written < 0:
            raise StoreError(f"no run {run_id}")
        return bool(written)

    def _update_existing_hash(self, key: str, fields: Mapping[str, Any], *, unless_phase: Iterable[str] = (),
                              lease: tuple[str, str, int] | None = None) -> int:
        """_UPDATE_EXISTING_LUA on one record: -1 no record, -2 lease lost, 0 its phase forbade it, 1 written."""
        flat = [item for pair in _encode_fields(fields).items() for item in pair]
        keys = [key, _lease_key(lease[0]), _fence_key(lease[0])] if lease else [key]
        holder, token = (lease[1], int(lease[2])) if lease else ("", 0)
        return int(self._call(self._update_existing, keys=keys, args=[",".join(unless_phase), holder, token, *flat]))

    def list_runs(self, service: str, task_id: int) -> list[dict[str, Any]]:
        """Every run of the task, oldest first."""
        ids = self._safe(self.redis.zrange, _task_runs_key(service, task_id), 0, -1)
        if not ids:
            return []
        pipe = self.redis.pipeline(transaction=False)
        for run_id in ids:
            pipe.hgetall(_run_key(run_id))
        return [_decode_run(raw) for raw in self._safe(pipe.execute) if raw]

    # Idempotency and dedupe --------------------------------------------------

    def get_idempotent(self, key: str) -> Any:
        """The value stored with a submission's Idempotency-Key, or None."""
        raw = self._safe(self.redis.get, _idem_key(key))
        return json.loads(raw) if raw else None

    def claim_delivery(self, delivery_id: str, ttl: int, *, enqueue: tuple[str, bytes | str] | None = None,
                       pending: tuple[str, str | bytes] | None = None, now: float | None = None) -> bool:
        """Mark a webhook delivery as accepted; False when it already was.

        Only when the claim is new, and in the same atomic step: `pending=(event,
        body)` keeps the event as `keep_pending_event` does, and
        `enqueue=(queue, message)` pushes its message. A claimed delivery is
        then always queued and kept.
        """
        if enqueue is None and pending is None:
            return bool(self._safe(self.redis.set, _delivery_key(delivery_id), "1", nx=True, ex=ttl))
        now = time.time() if now is None else now
        event, body = pending or ("", "")
        keys = [_delivery_key(delivery_id), _queue_keys(enqueue[0])[0] if enqueue else _delivery_key(delivery_id),
                _event_pending_key(delivery_id), _EVENTS_PENDING]
        return bool(int(self._call(self._claim_delivery, keys=keys,
                                   args=[ttl, enqueue[1] if enqueue else "", event, body, repr(now), delivery_id])))

    def release_delivery(self, delivery_id: str) -> None:
        """Forget a delivery whose processing failed before it was queued."""
        self._safe(self.redis.delete, _delivery_key(delivery_id))

    def event_handled(self, delivery_id: str) -> bool:
        """True when the queued event of this delivery was already acted on."""
        return bool(self._safe(self.redis.exists, _event_handled_key(delivery_id)))

    def mark_event_handled(self, delivery_id: str, ttl: int) -> None:
        """Remember that this delivery's event was acted on (a redelivered step skips it); drop its pending copy."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.set(_event_handled_key(delivery_id), "1", ex=ttl)
        pipe.zrem(_EVENTS_PENDING, delivery_id)
        pipe.delete(_event_pending_key(delivery_id))
        self._safe(pipe.execute)

    def keep_pending_event(self, delivery_id: str, event: str, body: str | bytes, ttl: int, now: float | None = None) -> None:
        """Keep an accepted delivery's event until it is acted on, so a lost queue message can be re-sent.

        The queue message alone is not enough: a worker that took it and lost its
        connection leaves it unacknowledged until the broker's visibility timeout
        (an hour); the reconcile loop re-sends it from this copy much sooner.
        """
        now = time.time() if now is None else now
        pipe = self.redis.pipeline(transaction=True)
        pipe.hset(_event_pending_key(delivery_id), mapping={"event": event, "body": body, "resent": 0})
        pipe.expire(_event_pending_key(delivery_id), ttl)
        pipe.zadd(_EVENTS_PENDING, {delivery_id: now})
        self._safe(pipe.execute)

    def pending_event(self, delivery_id: str) -> tuple[str, str] | None:
        """(event, body) of an accepted delivery not yet acted on; None once handled (or expired)."""
        event, body = self._safe(self.redis.hmget, _event_pending_key(delivery_id), ["event", "body"])
        return None if body is None else (event or "", body)

    def drop_pending_event(self, delivery_id: str) -> None:
        """Forget an accepted delivery's pending event (refused before it was queued, or given up)."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.zrem(_EVENTS_PENDING, delivery_id)
        pipe.delete(_event_pending_key(delivery_id))
        self._safe(pipe.execute)

    def pending_events(self, queued_before: float, limit: int = 100) -> list[tuple[str, str, str, int]]:
        """(delivery id, event, body, times re-sent) of events queued before `queued_before` and not acted on."""
        ids = self._safe(self.redis.zrangebyscore, _EVENTS_PENDING, "-inf", queued_before, start=0, num=limit)
        found = []
        for delivery_id in ids:
            raw = self._safe(self.redis.hgetall, _event_pending_key(delivery_id))
            if not raw or "body" not in raw:
                self._safe(self.redis.zrem, _EVENTS_PENDING, delivery_id)  # expired: nothing to re-send
                continue
            found.append((delivery_id, raw.get("event", ""), raw["body"], int(raw.get("resent") or 0)))
        return found

    def requeued_pending_event(self, delivery_id: str, now: float | None = None) -> None:
        """Record that a pending event was queued again (counted; not re-sent again before the next threshold)."""
        now = time.time() if now is None else now
        pipe = self.redis.pipeline(transaction=True)
        pipe.zadd(_EVENTS_PENDING, {delivery_id: now}, xx=True)
        pipe.hincrby(_event_pending_key(delivery_id), "resent", 1)
        self._safe(pipe.execute)

    # GitHub pull requests ------------------------------------------------------

    def link_pull_request(self, key: str, service: str, task_id: int) -> None:
        """Remember which task a pull request (`owner/repo#n`) belongs to."""
        self._safe(self.redis.set, _pull_request_key(key), task_ref(service, task_id))

    def task_for_pull_request(self, key: str) -> tuple[str, int] | None:
        """(service, task id) linked to a pull request, or None."""
        ref = self._safe(self.redis.get, _pull_request_key(key))
        return split_ref(ref) if ref else None

    # Leases ------------------------------------------------------------------

    def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> int:
        """Take or extend the lease; returns its fencing token, 0 when held by another."""
        return int(self._call(self._acquire, keys=[_lease_key(name), _fence_key(name)],
                              args=[holder, int(ttl_seconds * 1000)]))

    def renew_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        return bool(self._call(self._renew, keys=[_lease_key(name)], args=[holder, int(ttl_seconds * 1000)]))

    def release_lease(self, name: str, holder: str) -> bool:
        return bool(self._call(self._release, keys=[_lease_key(name)], args=[holder]))

    def lease_holder(self, name: str) -> str | None:
        return self._safe(self.redis.get, _lease_key(name))

    def lease_state(self, name: str) -> tuple[str | None, int]:
        """(holder, newest fencing token) of a lease, read together (0 when none was issued)."""
        holder, fence = self._safe(self.redis.mget, [_lease_key(name), _fence_key(name)])
        return holder, int(fence or 0)


    # Gauges --------------------------------------------------------------------

    def set_gauge(self, name: str, value: float) -> None:
        """Record a measured value (e.g. the workspace's disk use) for the metrics endpoint."""
        self._safe(self.redis.hset, _GAUGES_KEY, name, repr(float(value)))

    def gauges(self) -> dict[str, float]:
        """Every recorded gauge by name."""
        return {k: float(v) for k, v in self._safe(self.redis.hgetall, _GAUGES_KEY).items()}
    # Capacity slots ------------------------------------------------------------

    def acquire_slot(
        self, run_id: str, service: str, *, lease_seconds: float, global_limit: int, service_limit: int
    ) -> int:
        """Take a run slot under both limits: 1 taken (or renewed), 0 global limit reached, -1 service limit."""
        return int(self._call(
            self._slot_acquire,
            keys=[_SLOTS_GLOBAL, _slots_service(service), _SLOTS_HOLDERS],
            args=[run_id, service, max(1, int(lease_seconds * 1000)), global_limit, service_limit],
        ))

    def renew_slot(self, run_id: str, lease_seconds: float) -> bool:
        """Extend a held slot's lease; False when the run holds none."""
        return bool(self._call(self._slot_renew, keys=[_SLOTS_GLOBAL, _SLOTS_HOLDERS],
                               args=[run_id, max(1, int(lease_seconds * 1000)), _SLOTS_SERVICE_PREFIX]))

    def renew_slots(self, run_ids: Iterable[str], lease_seconds: float, *, batch: int = 1000) -> None:
        """`renew_slot` for many runs, in pipelined batches."""
        run_ids = list(run_ids)
        lease = max(1, int(lease_seconds * 1000))
        for start in range(0, len(run_ids), batch):
            pipe = self.redis.pipeline(transaction=False)
            for run_id in run_ids[start:start + batch]:
                self._slot_renew(keys=[_SLOTS_GLOBAL, _SLOTS_HOLDERS], args=[run_id, lease, _SLOTS_SERVICE_PREFIX],
                                 client=pipe)
            self._safe(pipe.execute)

    def release_slot(self, run_id: str) -> bool:
        """Free the run's slot; False when it held none (already released or expired)."""
        return bool(self._call(self._slot_release, keys=[_SLOTS_GLOBAL, _SLOTS_HOLDERS],
                               args=[run_id, _SLOTS_SERVICE_PREFIX]))

    def slot_holders(self) -> dict[str, tuple[str, float]]:
        """Every run recorded as holding a slot: run id -> (service, lease expiry in epoch seconds).

        Expired holders are included (expiry in the past) until an acquisition
        or `release_slot` drops them, so a sweep can see and clean them.
        """
        pipe = self.redis.pipeline(transaction=False)
        pipe.zrange(_SLOTS_GLOBAL, 0, -1, withscores=True)
        pipe.hgetall(_SLOTS_HOLDERS)
        members, services = self._safe(pipe.execute)
        held = {run_id: (services.get(run_id, ""), score / 1000.0) for run_id, score in members}
        for run_id, service in services.items():  # in the hash but gone from the set: expired and purged
            held.setdefault(run_id, (service, 0.0))
        return held

    def slot_counts(self) -> tuple[int, dict[str, int]]:
        """Live (unexpired) slots: the global count and the count per service."""
        seconds, micros = self._safe(self.redis.time)
        now_ms = seconds * 1000 + micros // 1000
        holders = self.slot_holders()
        live = [service for service, expiry in holders.values() if expiry * 1000 > now_ms]
        per_service: dict[str, int] = {}
        for service in live:
            per_service[service] = per_service.get(service, 0) + 1
        return len(live), per_service

    # Admission order -------------------------------------------------------------

    def add_waiting(self, service: str, task_id: int, score: float) -> None:
        """Put a task in the admission index (lowest score admitted first); keeps an existing score."""
        self._safe(self.redis.zadd, _WAITING, {task_ref(service, task_id): score}, nx=True)

    def remove_waiting(self, service: str, task_id: int, *, keep: Iterable[Status | str] = ()) -> bool:
        """Drop a task from the admission index, unless its status is (still) one of `keep`.

        The check and the removal are one step: a walker that read a stale
        status cannot drop a task that was queued again meanwhile.
        """
        return bool(self._call(
            self._waiting_remove, keys=[_WAITING, _task_key(service, task_id)],
            args=[task_ref(service, task_id), ",".join(Status(s).value for s in keep)],
        ))

    def waiting(self, limit: int | None = None) -> list[tuple[str, int]]:
        """Tasks waiting for capacity, in admission order."""
        end = -1 if limit is None else limit - 1
        return [split_ref(m) for m in self._safe(self.redis.zrange, _WAITING, 0, end)]

    # Dependencies ------------------------------------------------------------------

    def add_dependents(self, service: str, task_id: int, dependencies: Iterable[int]) -> None:
        """Record that `task_id` waits for each of `dependencies` (the reverse edges)."""
        pipe = self.redis.pipeline(transaction=True)
        for dep in dependencies:
            pipe.sadd(_dependents_key(service, dep), str(task_id))
        self._safe(pipe.execute)

    def dependents_of(self, service: str, task_id: int) -> list[int]:
        """Ids of the tasks (same service) that named `task_id` as a dependency."""
        return sorted(int(m) for m in self._safe(self.redis.smembers, _dependents_key(service, task_id)))

    # Helpers -------------------------------------------------------------------

    def _call(self, script: Any, *, keys: Iterable[str], args: Iterable[Any]) -> Any:
        try:
            return script(keys=list(keys), args=list(args))
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable("the task store (Redis) does not answer") from exc

    @staticmethod
    def _safe(func: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise StoreUnavailable("the task store (Redis) does not answer") from exc
