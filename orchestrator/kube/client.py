"""The one module that calls the Kubernetes API.

It receives its ApiClient (never builds one at import), sets a timeout on
every request, retries what may heal (429, 5xx, timeouts, connection errors)
with exponential backoff and jitter honouring Retry-After, and turns every
failure into TransientKubeError or PermanentKubeError. It speaks plain dicts:
the manifests we build are dicts, and decoding 1,000 Jobs into model objects
would cost more than the request.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import quote

import urllib3
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from orchestrator import backoff
from orchestrator.backoff import retry_after_seconds
from orchestrator.kube.listing import _CHUNK, Listing, Transform, _lines, parse_list
from orchestrator.metrics import registry as metrics
from orchestrator.metrics.labels import kube_error_kind
from orchestrator.runners.errors import RunnerError, RunnerUnavailable
from orchestrator.settings import Settings

log = logging.getLogger("orchestrator.kube")
T = TypeVar("T")

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})


class KubeError(RunnerError):
    """Base of Kubernetes failures; `status` is the HTTP status when there was one."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status


class TransientKubeError(KubeError, RunnerUnavailable):
    """May heal: the API was busy, slow or unreachable (still failing after our retries)."""


class PermanentKubeError(KubeError):
    """Will not heal by retrying: a bad manifest, a missing permission, a missing namespace."""


class Gone(KubeError):
    """410: the watch's resourceVersion is too old; list again."""


def api_client_from_settings(settings: Settings) -> k8s.ApiClient:
    """An ApiClient from KUBECONFIG, else the in-cluster service account; urllib3 retries off (ours count)."""
    configuration = k8s.Configuration()
    if settings.kubeconfig:
        k8s_config.load_kube_config(config_file=str(settings.kubeconfig), client_configuration=configuration)
    else:
        k8s_config.load_incluster_config(client_configuration=configuration)
    configuration.retries = False
    return k8s.ApiClient(configuration)


def _message(exc: ApiException) -> str:
    try:
        body = json.loads(exc.body or "{}")
        return str(body.get("message") or exc.reason or "")
    except (ValueError, TypeError, AttributeError):
        return str(exc.reason or "")


def _retry_after(exc: ApiException) -> float | None:
    headers = exc.headers or {}
    return retry_after_seconds(headers.get("Retry-After") or headers.get("retry-after"), time.time())


class KubeClient:
    """Jobs and pods of one namespace, with timeouts, retries and our error types."""

    def __init__(
        self,
        api_client: k8s.ApiClient,
        namespace: str,
        *,
        timeout: float = 10.0,
        retries: int = 5,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.sleep = sleep
        self.batch = k8s.BatchV1Api(api_client)
        self.core = k8s.CoreV1Api(api_client)

    @classmethod
    def from_settings(cls, settings: Settings, api_client: k8s.ApiClient | None = None, **kwargs: Any) -> KubeClient:
        """A client for the configured namespace, timeout and retries."""
        return cls(
            api_client or api_client_from_settings(settings),
            settings.namespace,
            timeout=settings.kube_request_timeout,
            retries=settings.kube_retries,
            **kwargs,
        )

    # Retry machinery -----------------------------------------------------------

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        return backoff.delay(attempt, base=self.backoff, cap=self.max_backoff, retry_after=retry_after)

    def _call(self, what: str, verb: str, resource: str, func: Callable[[], T]) -> T:
        """Run one request; retry what may heal; map every failure to our errors."""
        attempt = 0
        while True:
            try:
                return func()
            except ApiException as exc:
                status = exc.status or 0
                metrics.kube_error(kube_error_kind(status))
                if status in RETRYABLE_STATUS and attempt < self.retries:
                    delay = self._delay(attempt, _retry_after(exc))
                    log.warning(
                        "%s: Kubernetes answered %s; retry %d/%d in %.2fs",
                        what,
                        status,
                        attempt + 1,
                        self.retries,
                        delay,
                    )
                    self.sleep(delay)
                    attempt += 1
                    continue
                raise self._map(exc, what, verb, resource) from None
            except (urllib3.exceptions.HTTPError, OSError) as exc:
                metrics.kube_error(kube_error_kind(None, exc))
                if attempt < self.retries:
                    delay = self._delay(attempt, None)
                    log.warning(
                        "%s: %s; retry %d/%d in %.2fs", what, type(exc).__name__, attempt + 1, self.retries, delay
                    )
                    self.sleep(delay)
                    attempt += 1
                    continue
                raise TransientKubeError(
                    f"{what}: the Kubernetes API did not answer after "
                    f"{self.retries + 1} attempts ({type(exc).__name__})"
                ) from None

    def _map(self, exc: ApiException, what: str, verb: str, resource: str) -> KubeError:
        status = exc.status or 0
        message = _message(exc)
        if status == 403:
            return PermanentKubeError(
                f"{what}: forbidden: the orchestrator's service account needs permission to {verb} "
                f"{resource} in namespace {self.namespace!r} (RBAC): {message}",
                status,
            )
        if status == 410:
            return Gone(f"{what}: {message or 'resourceVersion too old'}", status)
        if status in RETRYABLE_STATUS:
            return TransientKubeError(
                f"{what}: Kubernetes answered {status} after {self.retries + 1} attempts: {message}", status
            )
        return PermanentKubeError(f"{what}: Kubernetes refused it ({status}): {message}", status)

    def _timeout(self, read: float | None = None) -> tuple[float, float]:
        return (self.timeout, read if read is not None else self.timeout)

    @staticmethod
    def _json(response: Any) -> dict[str, Any]:
        try:
            return json.loads(response.data)
        finally:
            response.release_conn()

    # Jobs ----------------------------------------------------------------------

    def create_job(self, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create the Job; when it exists already (409), adopt it. Returns (job, created)."""
        name = body["metadata"]["name"]
        path = f"/apis/batch/v1/namespaces/{quote(self.namespace, safe='')}/jobs"
        try:
            job = self._call(f"create Job {name}", "create", "jobs.batch", lambda: self._post(path, body))
            return job, True
        except PermanentKubeError as exc:
            if exc.status != 409:
                raise
        existing = self.get_job(name)
        if existing is None:  # deleted between our create and get: try once more
            return self.create_job(body)
        return existing, False

    def _post(self, path: str, body: Mapping[str, Any]) -> dict[str, Any]:
        """POST a manifest as it is, with the ApiClient's host, authentication and connection pool.

        The generated `create_namespaced_*` methods validate the dict into the
        client's pydantic models and serialise it back: the same JSON for our
        manifests, for most of a launch step's time. The API server validates
        it instead, strictly (`fieldValidation=Strict`), so an unknown field in
        an ops pod template is still refused rather than silently dropped.
        """
        method, url, headers, _, _ = self.api_client.param_serialize(
            "POST",
            path,
            query_params=[("fieldValidation", "Strict")],
            header_params={"Accept": "application/json", "Content-Type": "application/json"},
            auth_settings=["BearerToken"],
        )
        response = self.api_client.call_api(method, url, headers, dict(body), _request_timeout=self._timeout())
        if not 200 <= response.status <= 299:
            response.read()
            raise ApiException.from_response(http_resp=response, body=None, data=None)
        return self._json(response.response)

    def get_job(self, name: str) -> dict[str, Any] | None:
        """The Job, or None when it does not exist."""
        try:
            return self._call(
                f"get Job {name}",
                "get",
                "jobs.batch",
                lambda: self._json(
                    self.batch.read_namespaced_job(
                        name, self.namespace, _preload_content=False, _request_timeout=self._timeout()
                    )
                ),
            )
        except PermanentKubeError as exc:
            if exc.status == 404:
                return None
            raise

    def list_jobs(self, selector: str, transform: Transform | None = None) -> Listing:
        """Every Job matching the label selector, in one request.

        With `transform`, the answer is parsed one item at a time and only what
        `transform` returns is kept: ten thousand full Jobs never sit in memory at once.
        """
        return self._call(
            "list Jobs",
            "list",
            "jobs.batch",
            lambda: self._listing(
                self.batch.list_namespaced_job(
                    self.namespace,
                    label_selector=selector,
                    _preload_content=False,
                    _request_timeout=self._timeout(max(self.timeout, 60)),
                ),
                transform,
            ),
        )

    @classmethod
    def _listing(cls, response: Any, transform: Transform | None) -> Listing:
        if transform is None:
            data = cls._json(response)
            return Listing(data.get("items") or [], (data.get("metadata") or {}).get("resourceVersion", ""))
        try:
            items, metadata = parse_list(response.stream(_CHUNK), transform)
        finally:
            response.release_conn()
        return Listing(items, (metadata or {}).get("resourceVersion", ""))

    def delete_job(self, name: str) -> bool:
        """Delete the Job and its pods (foreground propagation); False when it was already gone."""
        body: Any = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Foreground"}
        try:
            self._call(
                f"delete Job {name}",
                "delete",
                "jobs.batch",
                lambda: self._json(
                    self.batch.delete_namespaced_job(
                        name, self.namespace, body=body, _preload_content=False, _request_timeout=self._timeout()
                    )
                ),
            )
            return True
        except PermanentKubeError as exc:
            if exc.status == 404:
                return False
            raise

    # Pods ----------------------------------------------------------------------

    def list_pods(self, selector: str, transform: Transform | None = None) -> Listing:
        """Every pod matching the label selector, in one request (`transform`: as `list_jobs`)."""
        return self._call(
            "list pods",
            "list",
            "pods",
            lambda: self._listing(
                self.core.list_namespaced_pod(
                    self.namespace,
                    label_selector=selector,
                    _preload_content=False,
                    _request_timeout=self._timeout(max(self.timeout, 60)),
                ),
                transform,
            ),
        )

    def pod_log(
        self,
        name: str,
        *,
        follow: bool = False,
        tail: int | None = None,
        read_timeout: float | None = None,
        opened: Callable[[Any], None] | None = None,
    ) -> Iterator[str]:
        """The agent container's log lines; with `follow`, until the container ends.

        `opened` receives the streamed response as soon as there is one (to abort it from another thread).
        """
        kwargs: dict[str, Any] = {
            "container": "agent",
            "follow": follow,
            "_preload_content": False,
            "_request_timeout": self._timeout(read_timeout if follow else None),
        }
        if tail is not None:
            kwargs["tail_lines"] = tail
        response: Any = self._call(
            f"read the log of pod {name}",
            "get",
            "pods/log",
            lambda: self.core.read_namespaced_pod_log(name, self.namespace, **kwargs),
        )
        if opened is not None:
            opened(response)
        try:
            yield from _lines(response)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            metrics.kube_error(kube_error_kind(None, exc))
            raise TransientKubeError(f"the log stream of pod {name} broke ({type(exc).__name__})") from None
        finally:
            response.release_conn()

    # Watch ---------------------------------------------------------------------

    def watch(
        self, kind: str, selector: str, resource_version: str, *, timeout_seconds: int = 60
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Events (type, object) of `jobs` or `pods` after resource_version; raises Gone on 410.

        The server ends the stream after timeout_seconds; the read timeout is a
        little longer, so a silently dead connection cannot hang the watcher.
        """
        lister = self.batch.list_namespaced_job if kind == "jobs" else self.core.list_namespaced_pod
        resource = "jobs.batch" if kind == "jobs" else "pods"
        response: Any = self._call(
            f"watch {kind}",
            "watch",
            resource,
            lambda: lister(
                self.namespace,
                label_selector=selector,
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=timeout_seconds,
                _preload_content=False,
                _request_timeout=self._timeout(timeout_seconds + self.timeout),
            ),
        )
        try:
            for line in _lines(response):
                event = json.loads(line)
                kind_of = event.get("type")
                obj = event.get("object") or {}
                if kind_of == "ERROR":
                    code = obj.get("code")
                    metrics.kube_error(kube_error_kind(code if isinstance(code, int) else 500))
                    if code == 410:
                        raise Gone(obj.get("message") or "resourceVersion too old", 410)
                    raise TransientKubeError(f"watch {kind}: {obj.get('message') or obj}", code)
                yield kind_of, obj
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            metrics.kube_error(kube_error_kind(None, exc))
            raise TransientKubeError(f"watch {kind}: the stream broke ({type(exc).__name__})") from None
        finally:
            response.release_conn()
