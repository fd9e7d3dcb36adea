"""A Redis master, its replica and three Sentinels, real processes owned by the tests, on free ports."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import redis

from tests.support.redis_server import RedisServer, free_port, wait_for_ping

MASTER_NAME = "mymaster"
PASSWORD = "redis-SENTINELSUITE-pw-7f3a9c"


class ReplicaServer(RedisServer):
    """A redis-server that starts as a replica of `master_port`, with the same password."""

    def __init__(self, data_dir: Path, master_port: int, *, password: str = PASSWORD):
        super().__init__(data_dir, appendonly=True)
        self.master_port = master_port
        self.password = password

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            str(self.binary),
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--dir",
            str(self.data_dir),
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--logfile",
            str(self.data_dir / "redis.log"),
            "--requirepass",
            self.password,
            "--masterauth",
            self.password,
        ]
        if self.master_port:
            args += ["--replicaof", "127.0.0.1", str(self.master_port)]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for_ping(self.port, password=self.password, what="redis-server")

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, socket_timeout=2, decode_responses=True)


class SentinelProcess:
    """`redis-server --sentinel` watching one master, quick to declare it down."""

    def __init__(self, data_dir: Path, master_port: int, *, down_after_ms: int = 1000, password: str = PASSWORD):
        self.binary = shutil.which("redis-server")
        self.data_dir = data_dir
        self.port = free_port()
        self.master_port = master_port
        self.down_after_ms = down_after_ms
        self.password = password
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        conf = self.data_dir / "sentinel.conf"  # Sentinel rewrites its config file: it must own one
        conf.write_text(
            "\n".join(
                [
                    f"port {self.port}",
                    "bind 127.0.0.1",
                    f"dir {self.data_dir}",
                    f"logfile {self.data_dir / 'sentinel.log'}",
                    # The Sentinels share Redis's password (as the Bitnami chart sets them up).
                    f"requirepass {self.password}",
                    f"sentinel sentinel-pass {self.password}",
                    f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.master_port} 2",
                    f"sentinel auth-pass {MASTER_NAME} {self.password}",
                    f"sentinel down-after-milliseconds {MASTER_NAME} {self.down_after_ms}",
                    # A failed election (two Sentinels asking for votes at once) is tried again after
                    # twice this: kept short, or one split vote would stretch the switch by 20 s.
                    f"sentinel failover-timeout {MASTER_NAME} 2000",
                    f"sentinel parallel-syncs {MASTER_NAME} 1",
                ]
            )
            + "\n"
        )
        self.process = subprocess.Popen(
            [str(self.binary), str(conf), "--sentinel"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        wait_for_ping(self.port, password=self.password, what="redis-sentinel")

    def master(self) -> tuple[str, int] | None:
        client = redis.Redis(port=self.port, password=self.password, socket_timeout=1, decode_responses=True)
        try:
            found = client.sentinel_get_master_addr_by_name(MASTER_NAME)
            return (found[0], int(found[1])) if found else None
        finally:
            client.close()

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


class SentinelCluster:
    """A master, a replica and three Sentinels; `kill_master()` is kill -9 of whichever is master."""

    def __init__(self, tmp: Path, *, down_after_ms: int = 1000):
        self.tmp = tmp
        self.servers = [ReplicaServer(tmp / "redis-a", 0)]
        self.servers.append(ReplicaServer(tmp / "redis-b", self.servers[0].port))
        self.sentinels = [
            SentinelProcess(tmp / f"sentinel-{i}", self.servers[0].port, down_after_ms=down_after_ms) for i in range(3)
        ]

    @property
    def sentinel_addresses(self) -> str:
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    @property
    def url(self) -> str:
        """ORCHESTRATOR_REDIS_URL beside the Sentinels: password and database (its host is not used)."""
        return f"redis://:{PASSWORD}@redis-via-sentinel:6379/0"

    def env(self) -> dict[str, str]:
        return {
            "ORCHESTRATOR_REDIS_URL": self.url,
            "ORCHESTRATOR_REDIS_SENTINELS": self.sentinel_addresses,
            "ORCHESTRATOR_REDIS_SENTINEL_MASTER": MASTER_NAME,
            "ORCHESTRATOR_REDIS_SENTINEL_PASSWORD": PASSWORD,
        }

    def start(self, *, wait: bool = True) -> SentinelCluster:
        """Start every process; with `wait`, also `wait_ready` (else the caller does, meanwhile starting more)."""
        for server in self.servers:
            server.start()
        for sentinel in self.sentinels:
            sentinel.start()
        return self.wait_ready() if wait else self

    def wait_ready(self) -> SentinelCluster:
        """Block until the replica is in sync and every Sentinel knows it and the other Sentinels."""
        self.wait_replica_synced(self.servers[0], timeout=20)
        # Without both, a failover could not happen (no replica to promote, no quorum to elect).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if all(self._sees_replica_and_peers(s) for s in self.sentinels):
                return self
            time.sleep(0.1)
        raise RuntimeError("the Sentinels never saw the replica and each other")

    def _sees_replica_and_peers(self, sentinel: SentinelProcess) -> bool:
        client = redis.Redis(port=sentinel.port, password=PASSWORD, socket_timeout=1, decode_responses=True)
        try:
            info = client.sentinel_master(MASTER_NAME)
            return int(info.get("num-slaves", 0)) >= 1 and int(info.get("num-other-sentinels", 0)) >= 2
        except redis.RedisError:
            return False
        finally:
            client.close()

    def master(self) -> ReplicaServer:
        """The server the Sentinels name as master now."""
        address = next(filter(None, (s.master() for s in self.sentinels if s.process)), None)
        return next(s for s in self.servers if address and s.port == address[1])

    def wait_replica_synced(self, master: ReplicaServer, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                info = master.client().info("replication")
                if any(str(v).find("state=online") >= 0 for k, v in info.items() if k.startswith("slave")) or any(
                    isinstance(v, dict) and v.get("state") == "online" for k, v in info.items() if k.startswith("slave")
                ):
                    return
            except redis.RedisError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the replica never came online")

    def kill_master(self) -> ReplicaServer:
        master = self.master()
        master.kill()
        return master

    def wait_failover(self, old: ReplicaServer, timeout: float = 30) -> ReplicaServer:
        """Block until every Sentinel names another server as master; that server."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            seen = {s.master() for s in self.sentinels}
            if len(seen) == 1 and None not in seen and next(iter(seen))[1] != old.port:
                return self.master()
            time.sleep(0.05)
        raise RuntimeError("no failover happened")

    def stop(self) -> None:
        for sentinel in self.sentinels:
            sentinel.stop()
        for server in self.servers:
            server.stop()
