"""The launch_run and cancel_run steps on a real Celery worker, with the local runner."""

from __future__ import annotations


from orchestrator.runners.local import LocalRunner
from orchestrator.settings import Settings
from orchestrator.states import Status
from orchestrator.store import TaskStore
from orchestrator.steps import Step
from tests.support.runs import launching_task
from workers.app import create_celery
from tests.support.wait import wait_for


def test_launch_and_cancel_steps(store: TaskStore, settings: Settings, worker_factory) -> None:
    worker_factory(queues=("deploy",), env={"ORCHESTRATOR_LOCAL_AGENT_COMMAND": "sh -c 'echo started; sleep 60'"})
    (settings.workspace_root / "billing" / "worktrees" / "1").mkdir(parents=True)  # task 1's checkout
    run_id = launching_task(store)
    app = create_celery(settings)
    try:
        app.send_task(Step.LAUNCH_RUN, args=[run_id], queue="deploy")
        wait_for(lambda: store.get_run(run_id).job_name == run_id)
        runner = LocalRunner(settings)
        wait_for(lambda: (o := runner.observe(run_id)) and o.phase == "Running")
        store.transition("billing", 1, Status.CANCELLED, reason="cancelled by pm", actor="pm")
        app.send_task(Step.CANCEL_RUN, args=[run_id], queue="deploy")
        wait_for(lambda: store.get_run(run_id).phase == "Cancelled")
        assert runner.observe(run_id).reason == "Cancelled"
    finally:
        app.close()
