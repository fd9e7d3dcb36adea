"""Label values with a bound: every series is kept by Prometheus for as long as it is scraped.

Task and run ids never become labels. Names that come from outside (services,
agents, models, GitHub events) are checked and capped per process; reasons
are folded into a fixed set of classes.
"""

from __future__ import annotations

import re
import threading

OTHER = "other"
# Distinct values one label may take in one process before the rest count as "other".
# Services and agents are configured names; a model is what the agent's stream says.
MAX_VALUES = 100
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,79}")

_seen: dict[str, set[str]] = {}
_lock = threading.Lock()


def bounded(label: str, value: object) -> str:
    """`value` as a label value of `label`: itself when it looks like a name and the cap allows, else "other"."""
    text = str(value or "").strip()
    if not text:
        return "none"
    if not _NAME.fullmatch(text):
        return OTHER
    seen = _seen.get(label)
    if seen is not None and text in seen:
        return text
    with _lock:
        seen = _seen.setdefault(label, set())
        if text in seen:
            return text
        if len(seen) >= MAX_VALUES:
            return OTHER
        seen.add(text)
    return text


# (prefix of the lower-cased reason, class); the first match wins. The reasons are
# the ones the runners, the stream verdict, the stall check and delivery write.
_REASON_CLASSES: tuple[tuple[str, str], ...] = (
    ("cancelled", "cancelled"),
    ("model rate limit", "rate_limit"),
    ("stalled", "stalled"),
    ("budget", "budget"),
    ("max_turns", "max_turns"),
    ("permission denied", "permission_denied"),
    ("model api error", "api_error"),
    ("agent reported an error", "agent_error"),
    ("the agent's output ended without a result", "agent_crash"),
    ("deadlineexceeded", "timeout"),
    ("delivery failed", "delivery"),
    ("workspace preparation failed", "workspace"),
    ("imagepullbackoff", "image_pull"),
    ("errimagepull", "image_pull"),
    ("unschedulable", "unschedulable"),
    ("crashloopbackoff", "agent_exit"),
    ("error: exit code", "agent_exit"),
    ("agent exited with code", "agent_exit"),
    ("backofflimitexceeded", "agent_exit"),
    ("cannot start the agent", "agent_start"),
    ("the run's job disappeared", "lost"),
    ("the local run was lost", "lost"),
    ("the local supervisor never started", "lost"),
)
REASON_CLASSES: tuple[str, ...] = ("none", "platform", OTHER, *dict.fromkeys(c for _, c in _REASON_CLASSES))


def reason_class(reason: str, *, retryable: bool = False) -> str:
    """The class of a run's end reason ('none' when it gave none): a fixed, small set of label values."""
    text = " ".join(str(reason or "").split()).lower()
    if not text:
        return "none"
    for prefix, name in _REASON_CLASSES:
        if text.startswith(prefix):
            return name
    # Evictions, node loss and the like: the runners mark what the platform did as retryable.
    return "platform" if retryable else OTHER


_KUBE_STATUS_KINDS = {
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    409: "conflict",
    410: "gone",
    422: "invalid",
    429: "throttled",
}


def kube_error_kind(status: int | None, exc: BaseException | None = None) -> str:
    """The kind of a failed Kubernetes request: by HTTP status, or timeout / connection when none came."""
    if status:
        if status >= 500:
            return "server_error"
        return _KUBE_STATUS_KINDS.get(status, "client_error")
    return "timeout" if exc is not None and "timeout" in type(exc).__name__.lower() else "connection"


def reset() -> None:
    """Forget the values seen (tests)."""
    with _lock:
        _seen.clear()
