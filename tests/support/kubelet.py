"""Stands in for the Job controller and the kubelet: each new Job's container really runs, as a local process.

The emulator (tests/support/kube_emulator.py) stores Jobs but runs nothing.
This runs the agent container of every new Job the way a node would, from the
Job as created: its command and args, its env (a `secretKeyRef` resolved from
the Secret given here, as the kubelet does), its working directory, and its
volume mounts mapped onto this machine (a PersistentVolumeClaim subPath onto
the workspace root, an emptyDir onto a fresh directory). Its output becomes
the pod's log; its exit code ends the pod and the Job.

The process gets a PID namespace of its own with its own /proc (`unshare`, as
root), as a pod's container does: it sees no other process, so no other
process's environment. Not emulated: the container's own filesystem. Outside
its mounts the process sees this machine, so what an agent can write beyond
them says nothing about a real pod; the Job's mounts are checked on the spec.
"""

from __future__ import annotations

import os
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Any

from tests.support.kube_emulator import KubeEmulator


class ProcessKubelet:
    def __init__(
        self, emulator: KubeEmulator, workspace_root: Path, secret: dict[str, str], timeout: float = 120
    ) -> None:
        self.emu, self.workspace_root, self.secret, self.timeout = emulator, workspace_root, secret, timeout
        self.started: set[str] = set()
        self.exit_codes: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="kubelet", daemon=True)

    def start(self) -> ProcessKubelet:
        self.thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)

    def _loop(self) -> None:
        while not self.stop.wait(0.1):
            for job in self.emu.items("jobs"):
                name = job["metadata"]["name"]
                if name not in self.started:
                    self.started.add(name)
                    threading.Thread(target=self._run, args=(job,), daemon=True).start()

    def _mounts(self, pod_spec: dict[str, Any], container: dict[str, Any]) -> list[tuple[str, str]]:
        volumes = {v["name"]: v for v in pod_spec.get("volumes", [])}
        mapped: list[tuple[str, str]] = []
        for mount in container.get("volumeMounts", []):
            volume = volumes[mount["name"]]
            if "persistentVolumeClaim" in volume:
                host = str(self.workspace_root / mount.get("subPath", ""))
            else:
                host = tempfile.mkdtemp(prefix=f"kubelet-{mount['name']}-")
            mapped.append((mount["mountPath"], host))
        return sorted(mapped, key=lambda pair: -len(pair[0]))

    @staticmethod
    def _translate(value: str, mounts: list[tuple[str, str]]) -> str:
        for path, host in mounts:
            if value == path or value.startswith(path + "/"):
                return host + value[len(path) :]
        return value

    def _run(self, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        pod = self.emu.start_pod(name)
        pod_name = pod["metadata"]["name"]
        spec = job["spec"]["template"]["spec"]
        container = next(c for c in spec["containers"] if c["name"] == "agent")
        mounts = self._mounts(spec, container)
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        for item in container.get("env", []):
            if "value" in item:
                env[item["name"]] = self._translate(item["value"], mounts)
            elif "secretKeyRef" in item.get("valueFrom", {}):
                value = self.secret.get(item["valueFrom"]["secretKeyRef"]["key"])
                if value is not None:
                    env[item["name"]] = value
        Path(env.get("HOME", "/tmp")).mkdir(parents=True, exist_ok=True)
        argv = ["unshare", "--pid", "--fork", "--mount-proc", *container.get("command", []), *container.get("args", [])]
        cwd = self._translate(container.get("workingDir", "/"), mounts)
        try:
            done = subprocess.run(
                argv,
                cwd=cwd,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                timeout=self.timeout,
                check=False,
            )
            code, output = done.returncode, done.stdout
        except (OSError, subprocess.TimeoutExpired) as exc:
            code, output = 127, f"kubelet: {exc}\n".encode()
        self.exit_codes[name] = code
        self.emu.append_log(pod_name, *output.decode(errors="replace").splitlines())
        self.emu.terminate_pod(pod_name, code)
        self.emu.finish_job(name, "Complete" if code == 0 else "Failed")
