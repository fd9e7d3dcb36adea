"""A small Kubernetes API emulator over real HTTP, in its own threads.

Why not kmock's KubernetesEmulator alone: our code depends on label
selectors, resourceVersion, 410 Gone on a compacted history, chunked watch
streams, pods/log and injected faults (500, 429 + Retry-After, hangs); kmock
ignores the first three and extending its async internals for the rest was
more code than these few endpoints. This serves exactly what
`orchestrator.kube.client` calls, with the official `kubernetes` client on
the other side of a real socket:

  /apis/batch/v1/namespaces/{ns}/jobs[/{name}[/status]]  list, watch, create, get, patch, delete
  /api/v1/namespaces/{ns}/pods[/{name}[/log|/status]]    list, watch, get, patch, delete, log (follow)

Test helpers stand in for the Job controller: `start_pod`, `set_pod_status`,
`finish_job`, `append_log`. Every request is recorded in `requests`.
"""

from __future__ import annotations

import copy
import datetime
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

Obj = dict[str, Any]
_PATH = re.compile(
    r"^/(?:api/v1|apis/batch/v1)/namespaces/(?P<ns>[^/]+)/(?P<kind>jobs|pods)(?:/(?P<name>[^/]+))?(?:/(?P<sub>status|log))?$"
)


def now_iso(at: float | None = None) -> str:
    at = time.time() if at is None else at
    return datetime.datetime.fromtimestamp(at, tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def merge(target: Obj, patch: Obj) -> Obj:
    """RFC 7386 JSON merge patch."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, dict) and isinstance(target.get(key), dict):
            merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)
    return target


def selector_matches(selector: str, labels: dict[str, str]) -> bool:
    """Equality (=, ==, !=), set (in, notin) and existence (k, !k) requirements, comma-separated."""
    if not selector:
        return True
    parts = re.findall(r"[^,(]+(?:\([^)]*\))?", selector)
    for raw in parts:
        req = raw.strip()
        if not req:
            continue
        m = re.match(r"^(\S+)\s+(in|notin)\s+\((.*)\)$", req)
        if m:
            key, op, values = m.group(1), m.group(2), {v.strip() for v in m.group(3).split(",")}
            present = key in labels and labels[key] in values
            if (op == "in") != present:
                return False
            continue
        if "!=" in req:
            key, value = req.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in req:
            key, value = req.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif req.startswith("!"):
            if req[1:] in labels:
                return False
        elif req not in labels:
            return False
    return True


@dataclass
class Fault:
    """Answer matching requests with `status` (or hang) `times` times."""

    status: int = 500
    method: str | None = None
    path_contains: str | None = None
    times: int = 1
    retry_after: float | None = None
    hang: float | None = None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        return (self.times > 0 and (self.method is None or self.method == method)
                and (self.path_contains is None or self.path_contains in path))


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    at: float = field(default_factory=time.time)  # when it arrived (benchmarks count per minute)


@dataclass
class _State:
    objects: dict[tuple[str, str, str], Obj] = field(default_factory=dict)
    events: list[tuple[int, str, str, Obj]] = field(default_factory=list)
    rv: int = 100
    oldest: int = 0  # watches from a resourceVersion older than this get 410
    logs: dict[tuple[str, str], list[str]] = field(default_factory=dict)


class KubeEmulator:
    """Jobs, pods and their events in memory, served over HTTP by a thread of its own."""

    def __init__(self) -> None:
        self.state = _State()
        self.cond = threading.Condition()
        self.requests: list[Request] = []
        self.created: list[tuple[str, str, float]] = []  # (kind, name, time) of every successful create
        self.faults: list[Fault] = []
        self.closing = False
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle -------------------------------------------------------------------

    def start(self) -> str:
        emulator = self

        class Handler(_Handler):
            emu = emulator

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="kube-emulator", daemon=True)
        self._thread.start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        if self._server:
            self._server.shutdown()
            self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def api_client(self, timeout: float = 5.0) -> Any:
        """An official-client ApiClient pointed at this emulator (urllib3 retries off)."""
        from kubernetes import client as k8s

        configuration = k8s.Configuration()
        configuration.host = self.url
        configuration.retries = False
        return k8s.ApiClient(configuration)

    # Storage ---------------------------------------------------------------------

    def _emit(self, kind: str, type_: str, obj: Obj) -> None:
        self.state.events.append((int(obj["metadata"]["resourceVersion"]), kind, type_, copy.deepcopy(obj)))
        self.cond.notify_all()

    def _bump(self, obj: Obj) -> None:
        self.state.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.state.rv)

    def put(self, kind: str, obj: Obj) -> Obj:
        """Create an object as the API server would (name, uid, resourceVersion, timestamps)."""
        with self.cond:
            meta = obj.setdefault("metadata", {})
            ns = meta.setdefault("namespace", "default")
            key = (kind, ns, meta["name"])
            if key in self.state.objects:
                raise KeyError(key)
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("creationTimestamp", now_iso())
            obj.setdefault("status", {})
            self._bump(obj)
            self.state.objects[key] = obj
            self._emit(kind, "ADDED", obj)
            return copy.deepcopy(obj)

    def patch(self, kind: str, name: str, patch: Obj, namespace: str = "default") -> Obj:
        """Merge-patch an object (status included) and emit MODIFIED."""
        with self.cond:
            obj = self.state.objects[(kind, namespace, name)]
            merge(obj, patch)
            self._bump(obj)
            self._emit(kind, "MODIFIED", obj)
            return copy.deepcopy(obj)

    def delete(self, kind: str, name: str, namespace: str = "default") -> Obj | None:
        """Delete an object (a Job takes its pods along) and emit DELETED."""
        with self.cond:
            obj = self.state.objects.pop((kind, namespace, name), None)
            if obj is None:
                return None
            self._bump(obj)
            self._emit(kind, "DELETED", obj)
            if kind == "jobs":
                for key, pod in list(self.state.objects.items()):
                    if key[0] == "pods" and key[1] == namespace and \
                            pod["metadata"].get("labels", {}).get("job-name") == name:
                        self.state.objects.pop(key)
                        self._bump(pod)
                        self._emit("pods", "DELETED", pod)
            return obj

    def get(self, kind: str, name: str, namespace: str = "default") -> Obj | None:
        with self.cond:
            obj = self.state.objects.get((kind, namespace, name))
            return copy.deepcopy(obj) if obj else None

    def items(self, kind: str, namespace: str = "default", selector: str = "") -> list[Obj]:
        with self.cond:
            return [copy.deepcopy(o) for (k, ns, _), o in self.state.objects.items()
                    if k == kind and ns == namespace and selector_matches(selector, o["metadata"].get("labels", {}))]

    def list_body(self, kind: str, namespace: str = "default", selector: str = "") -> bytes:
        """A list answer, encoded under the lock straight from the stored objects.

        Encoding is the copy: deep-copying ten thousand Jobs first, under the
        lock, took longer than the encoding and held up every other request.
        """
        with self.cond:
            items = [o for (k, ns, _), o in self.state.objects.items()
                     if k == kind and ns == namespace and selector_matches(selector, o["metadata"].get("labels", {}))]
            return json.dumps({"kind": "JobList" if kind == "jobs" else "PodList", "apiVersion": "v1",
                               "metadata": {"resourceVersion": str(self.state.rv)}, "items": items}).encode()

    def compact(self) -> None:
        """Forget the event history: every watch from an older resourceVersion now gets 410 Gone."""
        with self.cond:
            self.state.events.clear()
            self.state.oldest = self.state.rv + 1
            self.cond.notify_all()

    # Job controller stand-ins ------------------------------------------------------

    def start_pod(self, job_name: str, *, phase: str = "Running", namespace: str = "default",
                  suffix: str | None = None, status: Obj | None = None, age: float = 0.0) -> Obj:
        """Create a pod for the Job from its template, as the Job controller would."""
        job = self.state.objects[("jobs", namespace, job_name)]
        template = job["spec"]["template"]
        meta = copy.deepcopy(template.get("metadata", {}))
        meta["name"] = f"{job_name}-{suffix or uuid.uuid4().hex[:5]}"
        meta["namespace"] = namespace
        meta["creationTimestamp"] = now_iso(time.time() - age)
        meta.setdefault("labels", {}).update({"job-name": job_name, "batch.kubernetes.io/job-name": job_name})
        pod_status: Obj = {"phase": phase}
        if phase == "Running":
            pod_status.update({"startTime": now_iso(), "containerStatuses": [
                {"name": "agent", "state": {"running": {"startedAt": now_iso()}}, "ready": True,
                 "restartCount": 0, "image": "x", "imageID": ""}]})
        if status:
            pod_status.update(status)
        pod = self.put("pods", {"apiVersion": "v1", "kind": "Pod", "metadata": meta,
                                "spec": copy.deepcopy(template["spec"]), "status": pod_status})
        self.patch("jobs", job_name, {"status": {"active": 1, "startTime": job["status"].get("startTime")
                                                 or now_iso()}}, namespace)
        return pod

    def set_pod_status(self, pod_name: str, status: Obj, namespace: str = "default") -> Obj:
        return self.patch("pods", pod_name, {"status": status}, namespace)

    def terminate_pod(self, pod_name: str, exit_code: int, reason: str | None = None,
                      namespace: str = "default") -> Obj:
        """The agent container ended with `exit_code`."""
        return self.set_pod_status(pod_name, {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "containerStatuses": [{"name": "agent", "ready": False, "restartCount": 0, "image": "x",
                                   "imageID": "", "state": {"terminated": {
                                       "exitCode": exit_code, "reason": reason or ("Completed" if exit_code == 0
                                                                                   else "Error")}}}]},
            namespace)

    def finish_job(self, job_name: str, condition: str, reason: str = "", message: str = "",
                   namespace: str = "default") -> Obj:
        """Give the Job its final condition (Complete or Failed)."""
        at = now_iso()
        status: Obj = {"active": None, "conditions": [
            {"type": condition, "status": "True", "reason": reason, "message": message,
             "lastProbeTime": at, "lastTransitionTime": at}]}
        if condition == "Complete":
            status.update({"succeeded": 1, "completionTime": at})
        else:
            status["failed"] = 1
        return self.patch("jobs", job_name, {"status": status}, namespace)

    def append_log(self, pod_name: str, *lines: str, namespace: str = "default") -> None:
        with self.cond:
            self.state.logs.setdefault((namespace, pod_name), []).extend(lines)
            self.cond.notify_all()

    def count(self, predicate: Callable[[Request], bool] | None = None) -> int:
        return sum(1 for r in list(self.requests) if predicate is None or predicate(r))


class _Handler(BaseHTTPRequestHandler):
    emu: KubeEmulator
    protocol_version = "HTTP/1.1"
    # TCP_NODELAY, as the real API server has (Go sets it on every TCP connection).
    # Without it the body, written after the headers, waits for the client's
    # delayed ACK: 40 ms on every request of a kept-alive connection, which made
    # each Job create cost ten times what the orchestrator spends on it.
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    # Plumbing ------------------------------------------------------------------------

    def _send_json(self, status: int, body: Obj, headers: dict[str, str] | None = None) -> None:
        self._send_bytes(status, json.dumps(body).encode(), headers)

    def _send_bytes(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str, headers: dict[str, str] | None = None) -> None:
        self._send_json(code, {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                               "message": message, "reason": reason, "code": code}, headers)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _start_stream(self, content_type: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _end_stream(self) -> None:
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    def _body(self) -> Obj:
        length = int(self.headers.get("Content-Length") or 0)
        return json.loads(self.rfile.read(length) or b"{}") if length else {}

    def _handle(self, method: str) -> None:
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        emu = self.emu
        emu.requests.append(Request(method, parts.path, query))
        for fault in list(emu.faults):
            if fault.matches(method, parts.path):
                fault.times -= 1
                fault.hits += 1
                if fault.hang:
                    time.sleep(fault.hang)
                    self.close_connection = True
                    return
                headers = {"Retry-After": str(int(fault.retry_after))} if fault.retry_after is not None else None
                self._body() if method in {"POST", "PATCH", "PUT"} else None
                self._status(fault.status, "InjectedFault", f"injected {fault.status}", headers)
                return
        m = _PATH.match(parts.path)
        if not m:
            self._status(404, "NotFound", f"no route {parts.path}")
            return
        ns, kind, name, sub = m.group("ns"), m.group("kind"), m.group("name"), m.group("sub")
        if name is None:
            if method == "GET" and query.get("watch") in {"true", "1"}:
                self._watch(kind, ns, query)
            elif method == "GET":
                self._send_bytes(200, emu.list_body(kind, ns, query.get("labelSelector", "")))
            elif method == "POST":
                body = self._body()
                body.setdefault("metadata", {}).setdefault("namespace", ns)
                if body["metadata"].get("namespace") != ns:
                    self._status(400, "BadRequest", "the namespace of the object does not match the URL")
                    return
                if not body["metadata"].get("name"):
                    self._status(422, "Invalid", "metadata.name: Required value")
                    return
                try:
                    created = emu.put(kind, body)
                except KeyError:
                    self._status(409, "AlreadyExists", f'{kind} "{body["metadata"]["name"]}" already exists')
                    return
                emu.created.append((kind, created["metadata"]["name"], time.time()))
                self._send_json(201, created)
            else:
                self._status(405, "MethodNotAllowed", method)
            return
        if sub == "log":
            self._log(ns, name, query)
            return
        if method == "GET":
            obj = emu.get(kind, name, ns)
            if obj is None:
                self._status(404, "NotFound", f'{kind} "{name}" not found')
            else:
                self._send_json(200, obj)
        elif method == "PATCH":
            patch = self._body()
            if emu.get(kind, name, ns) is None:
                self._status(404, "NotFound", f'{kind} "{name}" not found')
                return
            self._send_json(200, emu.patch(kind, name, patch if sub != "status" else
                                           {"status": patch.get("status", {})}, ns))
        elif method == "DELETE":
            self._body()
            obj = emu.delete(kind, name, ns)
            if obj is None:
                self._status(404, "NotFound", f'{kind} "{name}" not found')
            else:
                self._send_json(200, obj)
        else:
            self._status(405, "MethodNotAllowed", method)

    def _watch(self, kind: str, ns: str, query: dict[str, str]) -> None:
        emu = self.emu
        selector = query.get("labelSelector", "")
        timeout = float(query.get("timeoutSeconds") or 30)
        deadline = time.monotonic() + timeout
        since = int(query.get("resourceVersion") or 0) or emu.state.rv
        self._start_stream("application/json")
        try:
            with emu.cond:
                if since < emu.state.oldest - 1:
                    self._chunk(json.dumps({"type": "ERROR", "object": {
                        "kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 410, "reason": "Expired",
                        "message": f"too old resource version: {since} ({emu.state.oldest})"}}).encode() + b"\n")
                    self._end_stream()
                    return
            sent = since
            while True:
                with emu.cond:
                    pending = [e for e in emu.state.events if e[0] > sent and e[1] == kind
                               and e[3]["metadata"].get("namespace") == ns
                               and selector_matches(selector, e[3]["metadata"].get("labels", {}))]
                    if not pending:
                        newest = max([sent] + [e[0] for e in emu.state.events])
                        remaining = deadline - time.monotonic()
                        if remaining <= 0 or emu.closing:
                            break
                        sent = newest  # nothing of ours in between
                        emu.cond.wait(min(remaining, 0.5))
                        continue
                for rv, _kind, type_, obj in pending:
                    self._chunk(json.dumps({"type": type_, "object": obj}).encode() + b"\n")
                    sent = rv
            self._end_stream()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _log(self, ns: str, name: str, query: dict[str, str]) -> None:
        emu = self.emu
        if emu.get("pods", name, ns) is None:
            self._status(404, "NotFound", f'pods "{name}" not found')
            return
        follow = query.get("follow") in {"true", "1"}
        tail = int(query["tailLines"]) if "tailLines" in query else None
        self._start_stream("text/plain")
        try:
            with emu.cond:
                lines = list(emu.state.logs.get((ns, name), []))
            if tail is not None:
                lines = lines[-tail:] if tail else []
            sent = len(emu.state.logs.get((ns, name), []))
            for line in lines:
                self._chunk(line.encode() + b"\n")
            while follow:
                with emu.cond:
                    current = emu.state.logs.get((ns, name), [])
                    fresh = current[sent:]
                    pod = emu.state.objects.get(("pods", ns, name))
                    done = pod is None or pod["status"].get("phase") in {"Succeeded", "Failed"} or emu.closing
                    if not fresh and not done:
                        emu.cond.wait(0.5)
                        continue
                for line in fresh:
                    self._chunk(line.encode() + b"\n")
                sent += len(fresh)
                if done and not fresh:
                    break
            self._end_stream()
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")


KUBECONFIG_TEMPLATE = """apiVersion: v1
kind: Config
clusters: [{{name: emulator, cluster: {{server: "{url}"}}}}]
users: [{{name: bench, user: {{token: bench}}}}]
contexts: [{{name: emulator, context: {{cluster: emulator, user: bench, namespace: default}}}}]
current-context: emulator
"""


def kubeconfig_for(url: str) -> str:
    """A kubeconfig pointing the official client at an emulator (for processes started by benches and tests)."""
    return KUBECONFIG_TEMPLATE.format(url=url)
