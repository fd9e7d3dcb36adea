"""The one list of steps: names, queues, and the README's "Queues" table."""

from __future__ import annotations

import re
from pathlib import Path

from orchestrator.steps import QUEUES, Step, routes

README = Path(__file__).resolve().parent.parent / "README.md"


def test_a_step_is_its_celery_name() -> None:
    assert Step.ADMIT == "orchestrator.admit" and str(Step.ADMIT) == "orchestrator.admit"
    assert Step("orchestrator.launch_run") is Step.LAUNCH_RUN and Step.LAUNCH_RUN.queue == "deploy"
    assert routes()["orchestrator.handle_event"] == "events"


def test_every_queue_has_steps_and_every_step_a_queue() -> None:
    assert {step.queue for step in Step} == set(QUEUES)


def test_the_readme_queues_table_is_the_step_list() -> None:
    section = README.read_text().split("### Queues", 1)[1].split("\n\n", 2)[1]
    table = {}
    for queue, steps in re.findall(r"^\| `([a-z]+)` \| (.+) \|$", section, re.MULTILINE):
        table[queue] = set(re.findall(r"`([a-z._]+)`", steps))
    expected: dict[str, set[str]] = {}
    for step in Step:
        if step is not Step.PROBE:  # not a pipeline step
            expected.setdefault(step.queue, set()).add(step.value)
    assert table == expected
