"""Where Redis is: one URL, or the master a set of Sentinels names; the one place that builds clients of it.

The store, the Celery broker and the result backend all reach the same Redis.
`RedisTarget` says where it is, and from it come the store's client
(`client`), and Celery's broker URL and transport options (`broker_url`,
`transport_options`), so the three cannot disagree about the master.

With Sentinels, the URL still carries the password, user, database and
scheme; its host and port are not used, because Sentinel names the master,
and a client asks again after a failover.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote, urlparse

import redis
from redis.connection import parse_url
from redis.sentinel import Sentinel, SentinelConnectionPool

# The Bitnami chart's (and Redis's own sentinel.conf's) name of the master set.
DEFAULT_MASTER = "mymaster"


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


def _write_once(client: redis.Redis) -> redis.Redis:
    # The URL (or Sentinel) chose the connection class (TCP, TLS, Unix socket,
    # Sentinel-managed): keep it, write once.
    pool = client.connection_pool
    base = pool.connection_class
    one_write = _one_write_classes.get(base)
    if one_write is None:
        one_write = _one_write_classes[base] = type(f"OneWrite{base.__name__}", (_OneWrite, base), {})
    pool.connection_class = one_write
    return client


@dataclass(frozen=True)
class RedisTarget:
    """Where the store, the broker and the result backend find Redis."""

    url: str
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str = DEFAULT_MASTER
    sentinel_password: str = field(default="", repr=False)

    @property
    def uses_sentinel(self) -> bool:
        return bool(self.sentinels)

    def client(self, *, timeout: float = 5.0) -> redis.Redis:
        """A client for the store (text replies). Connects lazily, on the first command."""
        common: dict[str, Any] = {
            "decode_responses": True,
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "health_check_interval": 15,
            "retry_on_timeout": False,
        }
        if not self.sentinels:
            return _write_once(redis.Redis.from_url(self.url, **common))
        options = {k: v for k, v in parse_url(self.url).items() if k in ("username", "password", "db")}
        # A Sentinel that does not answer quickly is skipped for the next one; the
        # master itself gets the caller's timeout.
        ask = min(timeout, 1.0)
        sentinel_kwargs: dict[str, Any] = {"socket_timeout": ask, "socket_connect_timeout": ask}
        if self.sentinel_password:
            sentinel_kwargs["password"] = self.sentinel_password
        sentinel = Sentinel(list(self.sentinels), sentinel_kwargs=sentinel_kwargs, **options)
        return _write_once(sentinel.master_for(self.master, redis_class=redis.Redis, **common))

    def broker_url(self) -> str:
        """Celery's URL of this Redis (broker and result backend): the URL, or one `sentinel://` per Sentinel."""
        if not self.sentinels:
            return self.url
        parsed = urlparse(self.url)
        auth = ""
        if parsed.password is not None or parsed.username:
            auth = f"{quote(unquote(parsed.username or ''), safe='')}:{quote(unquote(parsed.password or ''), safe='')}@"
        db = parse_url(self.url).get("db", 0)
        return ";".join(f"sentinel://{auth}{_host(host)}:{port}/{db}" for host, port in self.sentinels)

    def transport_options(self) -> dict[str, Any]:
        """What kombu's Sentinel transport (and Celery's Sentinel backend) need beside the URL."""
        if not self.sentinels:
            return {}
        options: dict[str, Any] = {"master_name": self.master}
        if self.sentinel_password:
            options["sentinel_kwargs"] = {"password": self.sentinel_password, "socket_timeout": 1.0}
        return options

    @classmethod
    def from_broker(cls, url: str, options: dict[str, Any] | None = None) -> RedisTarget:
        """The target a Celery broker URL and its transport options name (the inverse of the two above)."""
        if not url.startswith("sentinel://"):
            return cls(url)
        options = options or {}
        sentinels: list[tuple[str, int]] = []
        first = None
        for part in url.split(";"):
            parsed = urlparse(part.strip())
            first = first or parsed
            sentinels.append((parsed.hostname or "localhost", parsed.port or 26379))
        assert first is not None
        auth = f"{first.netloc.rpartition('@')[0]}@" if "@" in first.netloc else ""
        db = first.path.strip("/") or "0"
        password = (options.get("sentinel_kwargs") or {}).get("password", "")
        master = options.get("master_name", DEFAULT_MASTER)
        return cls(f"redis://{auth}sentinel/{db}", tuple(sentinels), master, password)

    def identity(self) -> tuple[Any, ...]:
        """What names one Redis server and database (never a password): equal identities share keys."""
        kwargs = parse_url(self.url)
        if self.sentinels:
            return ("sentinel", self.master, frozenset(self.sentinels), int(kwargs.get("db", 0)))
        return _plain_identity(kwargs)


def identity_of(client: redis.Redis) -> tuple[Any, ...]:
    """`RedisTarget.identity` of the Redis a client talks to."""
    pool = client.connection_pool
    kwargs = pool.connection_kwargs
    if isinstance(pool, SentinelConnectionPool):
        sentinels = frozenset(
            (str(s.connection_pool.connection_kwargs.get("host")), int(s.connection_pool.connection_kwargs["port"]))
            for s in pool.sentinel_manager.sentinels
        )
        return ("sentinel", pool.service_name, sentinels, int(kwargs.get("db", 0)))
    return _plain_identity(kwargs)


def _plain_identity(kwargs: dict[str, Any]) -> tuple[Any, ...]:
    defaults = {"host": "localhost", "port": 6379, "db": 0, "path": None, "username": None}
    return ("redis", *(str(kwargs.get(f, default)) for f, default in defaults.items()))


def _host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def connect(target: RedisTarget | str, *, timeout: float = 5.0) -> redis.Redis:
    """A Redis client for the store. Connects lazily, on the first command."""
    if isinstance(target, str):
        target = RedisTarget(target)
    return target.client(timeout=timeout)
