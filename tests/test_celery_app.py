"""The Celery app's configuration, and a real worker consuming from every named queue."""

from __future__ import annotations

from orchestrator.settings import Settings
from workers.app import QUEUES, ROUTES, celery_config, create_celery


def test_configuration_is_safe_for_redelivery() -> None:
    settings = Settings.from_env({})
    conf = celery_config(settings)
    assert conf["task_serializer"] == "json" and conf["accept_content"] == ["json"]
    assert conf["task_acks_late"] and conf["task_reject_on_worker_lost"]
    assert conf["worker_prefetch_multiplier"] == 1
    assert conf["broker_connection_retry_on_startup"]
    assert conf["broker_transport_options"]["visibility_timeout"] > conf["task_time_limit"]
    assert conf["task_time_limit"] > conf["task_soft_time_limit"]
    assert conf["task_ignore_result"]
    assert {q.name for q in conf["task_queues"]} == set(QUEUES)
    assert set(ROUTES.values()) == set(QUEUES)


def test_every_routed_step_has_a_dotted_name() -> None:
    for name in ROUTES:
        assert name.startswith("orchestrator.")


def test_a_real_worker_consumes_from_each_queue(settings: Settings, worker_factory) -> None:
    worker_factory(queues=QUEUES, concurrency=2)
    app = create_celery(settings)
    try:
        results = {queue: app.send_task("orchestrator.probe", queue=queue, ignore_result=False) for queue in QUEUES}
        for queue, result in results.items():
            answer = result.get(timeout=30)
            assert answer["queue"] == queue
            assert answer["hostname"].startswith("test-")
    finally:
        app.close()
