"""Tracing end to end: gunicorn, a Celery worker, the watcher and a local agent export to an OTLP receiver of
the test's own; the submission, every step of the task and the agent share one trace."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from orchestrator.store import TaskStore, connect
from tests.e2e.test_flow import task
from tests.support.otlp_receiver import OtlpReceiver
from tests.support.stack import Stack
from tests.support.wait import wait_for

STEPS = ("orchestrator.admit", "orchestrator.prepare_workspace", "orchestrator.launch_run", "orchestrator.finish_run")


def test_one_trace_from_the_submission_through_every_step_to_the_agent(tmp_path: Path) -> None:
    receiver = OtlpReceiver().start()
    dump = tmp_path / "agent-env.json"
    env = {
        "ORCHESTRATOR_OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url,
        "ORCHESTRATOR_RECONCILE_SECONDS": "1",
        "ORCHESTRATOR_LOCAL_AGENT_COMMAND": f"{sys.executable} -m tests.support.telemetry_agent",
        "OTEL_BSP_SCHEDULE_DELAY": "200",  # the SDK's batch delay in ms: spans arrive within the test
    }
    stack = Stack(tmp_path / "stack", env=env)
    try:
        stack.up()
        status, body = stack.request("POST", "/api/v1/pm/tasks", task(1, env={"APP_ENV_DUMP": str(dump)}))
        assert status == 202, body
        done = stack.wait_status("demo", 1, {"Succeeded", "Failed"})
        assert done["status"] == "Succeeded", done

        agent = json.loads(dump.read_text())
        version, trace_id, parent_id, flags = agent["TRACEPARENT"].split("-")
        assert version == "00" and len(trace_id) == 32 and int(flags, 16) & 1  # sampled
        assert agent["CLAUDE_CODE_ENABLE_TELEMETRY"] == "1" and agent["OTEL_EXPORTER_OTLP_ENDPOINT"] == receiver.url
        assert "orchestrator.task_id=1" in agent["OTEL_RESOURCE_ATTRIBUTES"]

        # The submission's trace is the one stored on the task and the one the agent joined.
        client = connect(stack.redis.url)
        stored = TaskStore(client).get_task("demo", 1)
        client.close()
        assert stored is not None and stored.trace_parent.split("-")[1] == trace_id

        def trace_complete() -> list | None:
            spans = [s for s in receiver.received() if s.trace_id == trace_id]
            names = {s.name for s in spans}
            submitted = any(s.service == "orchestrator-api" and s.parent_span_id == "" for s in spans)
            return spans if submitted and all(f"run/{step}" in names for step in STEPS) else None

        spans = wait_for(trace_complete, timeout=30)
        # The launch step is the agent's parent: its spans hang under the step that started it.
        launch = [s for s in spans if s.name == "run/orchestrator.launch_run"]
        assert parent_id in {s.span_id for s in spans}, (parent_id, launch)
        # finish_run was sent by the watcher, outside any request or step, and still joined.
        assert {s.service for s in spans} >= {"orchestrator-api", "orchestrator-worker"}
        # Exactly one root: the submission's request.
        assert len([s for s in spans if s.parent_span_id == ""]) == 1
    except BaseException:
        print(stack.dump_logs())
        raise
    finally:
        stack.down()
        receiver.stop()
