"""Where Redis is: one URL or Sentinels, decided once for the store, the broker and the result backend."""

from __future__ import annotations

import pytest
from redis.sentinel import SentinelConnectionPool

from orchestrator.celery_app import celery_config, create_celery
from orchestrator.celery_dispatch import CeleryDispatcher
from orchestrator.runtime import new_store, redis_target
from orchestrator.settings import ConfigError, Settings
from orchestrator.store import RedisTarget, TaskStore, connect
from orchestrator.store.connection import identity_of

SENTINEL_ENV = {
    "ORCHESTRATOR_REDIS_URL": "redis://:s3cret@ignored:6379/2",
    "ORCHESTRATOR_REDIS_SENTINELS": "redis-node-0.redis-headless:26379, 10.0.0.7:26380,[fd00::1]:26379",
    "ORCHESTRATOR_REDIS_SENTINEL_MASTER": "orchestrator",
    "ORCHESTRATOR_REDIS_SENTINEL_PASSWORD": "sentinel-pw",
}


def test_sentinel_variables_are_parsed() -> None:
    settings = Settings.from_env(SENTINEL_ENV)
    assert settings.redis_sentinels == (("redis-node-0.redis-headless", 26379), ("10.0.0.7", 26380), ("fd00::1", 26379))
    assert settings.redis_sentinel_master == "orchestrator"
    assert settings.redis_wait_replicas is None and settings.redis_wait_timeout_ms == 1000
    assert "sentinel-pw" not in repr(settings) and "sentinel-pw" in settings.secret_values()
    assert Settings.from_env({"ORCHESTRATOR_REDIS_WAIT_REPLICAS": "2"}).redis_wait_replicas == 2
    assert Settings.from_env({}).redis_sentinels == ()


@pytest.mark.parametrize(
    "name, value, fragment",
    [
        ("ORCHESTRATOR_REDIS_SENTINELS", "redis-node-0", "host:port"),
        ("ORCHESTRATOR_REDIS_SENTINELS", "a:26379,b:port", "host:port"),
        ("ORCHESTRATOR_REDIS_SENTINELS", "user@a:26379", "host:port"),
        ("ORCHESTRATOR_REDIS_WAIT_REPLICAS", "some", "auto or an integer"),
        ("ORCHESTRATOR_REDIS_WAIT_REPLICAS", "-1", "auto or an integer"),
        ("ORCHESTRATOR_REDIS_WAIT_TIMEOUT_MS", "0", ">= 1"),
    ],
)
def test_a_wrong_sentinel_value_names_the_variable(name: str, value: str, fragment: str) -> None:
    with pytest.raises(ConfigError, match=f"{name}: .*{fragment}"):
        Settings.from_env({name: value})


def test_tls_with_sentinel_is_refused_until_it_is_supported() -> None:
    with pytest.raises(ConfigError, match="ORCHESTRATOR_REDIS_SENTINELS: TLS"):
        Settings.from_env({**SENTINEL_ENV, "ORCHESTRATOR_REDIS_URL": "rediss://:pw@x:6379/0"})


def test_celery_uses_the_sentinel_transport_for_broker_and_results() -> None:
    config = celery_config(Settings.from_env(SENTINEL_ENV))
    assert (
        config["broker_url"]
        == config["result_backend"]
        == (
            "sentinel://:s3cret@redis-node-0.redis-headless:26379/2;sentinel://:s3cret@10.0.0.7:26380/2;"
            "sentinel://:s3cret@[fd00::1]:26379/2"
        )
    )
    for options in (config["broker_transport_options"], config["result_backend_transport_options"]):
        assert options["master_name"] == "orchestrator"
        assert options["sentinel_kwargs"]["password"] == "sentinel-pw"
        assert options["visibility_timeout"] == 3600


def test_without_sentinels_celery_and_the_store_use_the_url() -> None:
    settings = Settings.from_env({"ORCHESTRATOR_REDIS_URL": "redis://:pw@cache:6380/1"})
    config = celery_config(settings)
    assert config["broker_url"] == config["result_backend"] == "redis://:pw@cache:6380/1"
    assert "master_name" not in config["broker_transport_options"]
    kwargs = new_store(settings).redis.connection_pool.connection_kwargs
    assert (kwargs["host"], kwargs["port"], kwargs["db"], kwargs["password"]) == ("cache", 6380, 1, "pw")


def test_the_store_asks_the_sentinels_for_the_master() -> None:
    store = new_store(Settings.from_env(SENTINEL_ENV), timeout=2.0)
    pool = store.redis.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "orchestrator"
    assert pool.connection_kwargs["password"] == "s3cret" and pool.connection_kwargs["db"] == 2
    sentinel = pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
    assert sentinel["password"] == "sentinel-pw" and sentinel["socket_timeout"] == 1.0
    assert store.wait_replicas is None and store.wait_timeout_ms == 1000


def test_the_dispatcher_reads_the_same_target_back_and_pushes_in_the_stores_script() -> None:
    settings = Settings.from_env(SENTINEL_ENV)
    dispatcher = CeleryDispatcher(create_celery(settings))
    assert dispatcher.plain_redis
    assert dispatcher.target.identity() == redis_target(settings).identity()
    assert dispatcher.bound_to(new_store(settings))
    other = Settings.from_env({**SENTINEL_ENV, "ORCHESTRATOR_REDIS_SENTINEL_MASTER": "another"})
    assert not dispatcher.bound_to(new_store(other))
    assert not dispatcher.bound_to(TaskStore(connect("redis://ignored:6379/2")))


def test_broker_url_round_trips_users_and_odd_passwords() -> None:
    target = RedisTarget("redis://app:p%40ss%3Aw@x:6379/3", (("s1", 26379), ("s2", 26379)), "m", "sp")
    back = RedisTarget.from_broker(target.broker_url(), target.transport_options())
    assert back.identity() == target.identity()
    assert identity_of(back.client()) == identity_of(target.client())
    kwargs = back.client().connection_pool.connection_kwargs
    assert (kwargs["username"], kwargs["password"]) == ("app", "p@ss:w")


def test_a_fixed_replica_count_is_the_operators_and_auto_waits_for_none_without_replicas(redis_url: str) -> None:
    from orchestrator.store import NotReplicated, StoreUnavailable

    auto = TaskStore(connect(redis_url), wait_replicas=None, wait_timeout_ms=50)
    auto.create_task(service="svc", task_id=1, agent="claude", spec={})  # a master without replicas: no WAIT
    assert auto._replicas_wanted() == 0
    fixed = TaskStore(connect(redis_url), wait_replicas=1, wait_timeout_ms=50)
    with pytest.raises(NotReplicated) as refused:
        fixed.create_task(service="svc", task_id=2, agent="claude", spec={})
    assert isinstance(refused.value, StoreUnavailable)  # the API's 503, with the retry it implies
    assert auto.get_task("svc", 2) is not None  # written on the master; a retry finds it (409, or a replay)
