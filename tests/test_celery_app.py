"""The Celery app's configuration, and a real worker consuming from every named queue."""

from __future__ import annotations

from orchestrator.settings import Settings
from orchestrator.steps import Step
from workers.app import QUEUES, celery_config, create_celery


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
    assert {route["queue"] for route in conf["task_routes"].values()} == set(QUEUES)


def test_the_routes_are_the_steps() -> None:
    conf = celery_config(Settings.from_env({}))
    assert conf["task_routes"] == {step.value: {"queue": step.queue} for step in Step}
    for step in Step:
        assert step.value.startswith("orchestrator.") and step.queue in QUEUES


def test_every_step_is_a_registered_task_and_every_task_a_step() -> None:
    import workers.steps  # noqa: F401 - registers the steps on workers.app.app
    from workers.app import app

    ours = {name for name in app.tasks if name.startswith("orchestrator.")}
    assert ours == {step.value for step in Step}


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
