"""The local runner across containers: one data directory, several PID namespaces.

docker compose runs the deploy worker (which starts the supervisors) and the
watcher (which judges them) in separate containers over one shared volume.
Here the other container is a process in its own PID namespace
(`unshare --user --pid`): it sees the run's files but none of its processes,
and a pid it looks up may belong to someone else entirely.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.runners.local import LocalRunner
from orchestrator.settings import Settings
from tests.runners.test_local import alive, request, sh
from tests.support.wait import wait_for

REPO_ROOT = Path(__file__).resolve().parents[2]
UNSHARE = ["unshare", "--user", "--map-root-user", "--pid", "--fork", "--kill-child"]


def _namespaces_available() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = subprocess.run([*UNSHARE, "true"], capture_output=True, timeout=10)
    return probe.returncode == 0


pytestmark = pytest.mark.skipif(not _namespaces_available(), reason="no unprivileged PID namespaces here")


def in_other_container(settings: Settings, code: str, **module_values: float) -> Any:
    """Run `code` (it sets `result`) with a LocalRunner on the same data dir, in another PID namespace."""
    patches = "".join(f"local_files.{name} = {value!r}\n" for name, value in module_values.items())
    script = (
        "import json, sys\n"
        "from pathlib import Path\n"
        "from orchestrator.runners import local, local_files\n"
        "from orchestrator.settings import Settings\n"
        f"{patches}"
        f"runner = local.LocalRunner(Settings.from_env({{}}).replace(data_dir=Path({str(settings.data_dir)!r})))\n"
        f"{textwrap.dedent(code)}\n"
        "print(json.dumps(result))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("ORCHESTRATOR_")}
    env["PYTHONPATH"] = str(REPO_ROOT)
    done = subprocess.run([*UNSHARE, sys.executable, "-c", script], env=env, capture_output=True, text=True,
                          timeout=60, cwd=REPO_ROOT)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


OBSERVE = """
obs = runner.observe(RUN_ID)
result = obs and {"phase": obs.phase, "reason": obs.reason}
"""


@pytest.fixture
def local(settings: Settings) -> Iterator[LocalRunner]:
    runner = LocalRunner(settings)
    yield runner
    for run_id in runner.observe_all():
        runner.cancel(run_id, wait=3)


def test_a_run_of_another_container_is_seen_running_not_lost(local: LocalRunner, settings: Settings) -> None:
    local.launch(request(settings, "r-shared", sh("echo started; sleep 30")))
    wait_for(lambda: (o := local.observe("r-shared")) and o.phase == "Running")
    seen = in_other_container(settings, OBSERVE.replace("RUN_ID", "'r-shared'"))
    # On a pid check alone the watcher's container declares it lost and the run starts a second time.
    assert seen == {"phase": "Running", "reason": "Running"}


def test_a_dead_supervisor_of_another_container_is_lost_once_its_heartbeat_stops(
        local: LocalRunner, settings: Settings) -> None:
    local.launch(request(settings, "r-dies", sh("sleep 30")))
    status = wait_for(lambda: local._status("r-dies"))
    os.kill(int(status["pid"]), signal.SIGKILL)  # the deploy container is killed: no status is written
    os.killpg(int(status["agent_pgid"]), signal.SIGKILL)
    wait_for(lambda: not alive(int(status["pid"])), timeout=10)
    time.sleep(1.5)  # longer than the stale limit the other container is given below
    seen = in_other_container(settings, OBSERVE.replace("RUN_ID", "'r-dies'"), HEARTBEAT_STALE_SECONDS=1.0)
    assert seen["phase"] == "Failed" and "lost" in seen["reason"], seen
    assert local.observe("r-dies").phase == "Failed"  # and in its own namespace at once, by pid


def test_cancel_from_another_container_stops_the_agent(local: LocalRunner, settings: Settings) -> None:
    local.launch(request(settings, "r-stop", sh("sleep 60 & echo child $!; wait")))
    child = int(wait_for(lambda: [line for line in local.logs("r-stop") if line.startswith("child")])[0].split()[1])
    status = wait_for(lambda: local._status("r-stop"))
    seen = in_other_container(settings, """
        runner.cancel("r-stop", wait=10)
        obs = runner.observe("r-stop")
        result = {"phase": obs.phase, "reason": obs.reason}
    """)
    assert seen == {"phase": "Failed", "reason": "Cancelled"}
    wait_for(lambda: not alive(child), timeout=10)
    wait_for(lambda: not alive(int(status["pid"])), timeout=10)



def test_the_agent_of_a_killed_supervisor_is_killed_when_its_run_is_found_lost(
        local: LocalRunner, settings: Settings) -> None:
    """#16 finding 14: otherwise the retry starts a second agent beside the first in the same checkout."""
    local.launch(request(settings, "r-orphan", sh("sleep 60")))
    status = wait_for(lambda: (s := local._status("r-orphan")) and s.get("agent_pgid") and s)
    agent = int(status["agent_pgid"])
    os.kill(int(status["pid"]), signal.SIGKILL)  # the supervisor alone: its agent goes on
    wait_for(lambda: not alive(int(status["pid"])), timeout=10)
    assert alive(agent)
    observed = local.observe("r-orphan")
    assert observed is not None and observed.phase == "Failed" and "lost" in observed.reason
    wait_for(lambda: not alive(agent), timeout=10, what="the lost run's agent to be killed")
