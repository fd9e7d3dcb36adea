"""Configuration: every environment variable the system reads, in one table.

The table below is the single source of truth: `Settings.from_env` parses it,
and the README's configuration table is checked against it by a test, so the
documentation cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse


class ConfigError(Exception):
    """A configuration value is wrong; the message names the variable."""


def _parse_str(raw: str) -> str:
    return raw.strip()


def _parse_int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError(f"expected an integer, got {raw!r}") from None


def _positive_int(raw: str) -> int:
    value = _parse_int(raw)
    if value < 1:
        raise ValueError(f"expected an integer >= 1, got {raw!r}")
    return value


def _non_negative_int(raw: str) -> int:
    value = _parse_int(raw)
    if value < 0:
        raise ValueError(f"expected an integer >= 0, got {raw!r}")
    return value


def _parse_float(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None
    if value <= 0:
        raise ValueError(f"expected a number > 0, got {raw!r}")
    return value


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _parse_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _parse_redis_url(raw: str) -> str:
    url = raw.strip()
    parsed = urlparse(url)
    if parsed.scheme not in {"redis", "rediss", "unix"}:
        # Never echo the URL itself: it may carry a password.
        raise ValueError("expected a redis://, rediss:// or unix:// URL")
    if parsed.scheme != "unix" and not parsed.hostname:
        raise ValueError("the URL has no host")
    try:
        parsed.port  # noqa: B018 - raises on a non-numeric port
    except ValueError:
        raise ValueError("the URL has an invalid port") from None
    return url


def _parse_runner(raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"local", "kubernetes"}:
        raise ValueError(f"expected 'local' or 'kubernetes', got {raw!r}")
    return value


def _parse_path(raw: str) -> Path:
    return Path(raw.strip()).expanduser().resolve()


def _parse_optional_path(raw: str) -> Path | None:
    return _parse_path(raw) if raw.strip() else None


def _parse_mapping(raw: str) -> dict[str, str]:
    """`key=value,key=value` pairs, e.g. repository to service."""
    result: dict[str, str] = {}
    for item in _parse_list(raw):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"expected key=value pairs separated by commas, got {item!r}")
        result[key.strip()] = value.strip()
    return result


@dataclass(frozen=True)
class Variable:
    """One environment variable: where it goes, how it parses, what it means."""

    env: str
    attr: str
    parse: Callable[[str], Any]
    default: str
    doc: str
    secret: bool = False


# Keep this table in the order the README shows it.
VARIABLES: tuple[Variable, ...] = (
    Variable("ORCHESTRATOR_REDIS_URL", "redis_url", _parse_redis_url,
             "redis://127.0.0.1:6379/0", "Redis used as the Celery broker and the task store."),
    Variable("ORCHESTRATOR_API_TOKENS", "api_tokens", _parse_list, "",
             "Comma-separated bearer tokens accepted by the REST API. Empty: every /api/v1 request is refused.",
             secret=True),
    Variable("ORCHESTRATOR_RUNNER", "runner", _parse_runner, "local",
             "Where runs execute: `local` (child process of the worker) or `kubernetes` (one Job per run)."),
    Variable("ORCHESTRATOR_NAMESPACE", "namespace", _parse_str, "default",
             "Kubernetes namespace for agent Jobs."),
    Variable("ORCHESTRATOR_WORKSPACE_ROOT", "workspace_root", _parse_path, ".orchestrator/workspaces",
             "Root of the shared workspace: one directory per service (the shared PVC in a cluster)."),
    Variable("ORCHESTRATOR_MAX_ACTIVE_RUNS", "max_active_runs", _positive_int, "10",
             "Global limit on runs active at once."),
    Variable("ORCHESTRATOR_MAX_RUNS_PER_SERVICE", "max_runs_per_service", _positive_int, "1",
             "Limit on runs active at once for one service (they share one workspace directory)."),
    Variable("ORCHESTRATOR_API_URL", "api_url", _parse_str, "http://127.0.0.1:8080",
             "Base URL of the API, for the `orchestrator` command line."),
    Variable("ORCHESTRATOR_API_TOKEN", "api_token", _parse_str, "",
             "Bearer token the command line sends.", secret=True),
    Variable("ORCHESTRATOR_DATA_DIR", "data_dir", _parse_path, ".orchestrator",
             "Local state of `orchestrator up`: Redis data, run logs, pid files."),
    Variable("ORCHESTRATOR_LOG_LEVEL", "log_level", _parse_str, "INFO",
             "Log level of every process (DEBUG, INFO, WARNING, ERROR)."),
    Variable("ORCHESTRATOR_STATUS_HISTORY_LIMIT", "status_history_limit", _positive_int, "200",
             "Status history entries kept per task (oldest dropped first)."),
    Variable("ORCHESTRATOR_IDEMPOTENCY_TTL_SECONDS", "idempotency_ttl_seconds", _positive_int, "86400",
             "How long an `Idempotency-Key` of a submission is remembered."),
    Variable("ORCHESTRATOR_DELIVERY_TTL_SECONDS", "delivery_ttl_seconds", _positive_int, "604800",
             "How long a GitHub delivery id is remembered for deduplication."),
    Variable("ORCHESTRATOR_STEP_SOFT_TIME_LIMIT", "step_soft_time_limit", _positive_int, "300",
             "Seconds a pipeline step may run before it is asked to stop."),
    Variable("ORCHESTRATOR_STEP_TIME_LIMIT", "step_time_limit", _positive_int, "360",
             "Seconds after which a pipeline step is killed."),
    Variable("ORCHESTRATOR_BROKER_VISIBILITY_TIMEOUT", "broker_visibility_timeout", _positive_int, "3600",
             "Seconds before the broker redelivers an unacknowledged step; longer than the longest step."),
    Variable("ORCHESTRATOR_ALLOWED_GIT_HOSTS", "allowed_git_hosts", _parse_list, "github.com",
             "Comma-separated hosts a submitted repository URL may point to."),
    Variable("ORCHESTRATOR_MAX_REQUEST_BYTES", "max_request_bytes", _positive_int, "1048576",
             "Largest PM API request body accepted, in bytes (larger: 413)."),
    Variable("ORCHESTRATOR_DEFAULT_TIMEOUT_SECONDS", "default_timeout_seconds", _positive_int, "3600",
             "Run timeout of a submitted task that names none."),
    Variable("ORCHESTRATOR_MAX_TIMEOUT_SECONDS", "max_timeout_seconds", _positive_int, "21600",
             "Largest `timeout_seconds` a submission may ask for."),
    Variable("ORCHESTRATOR_ALLOWED_AGENT_OVERRIDES", "allowed_agent_overrides", _parse_list, "",
             "Comma-separated keys a submission may set in its `agent` object. Empty: no overrides."),
    Variable("ORCHESTRATOR_PAGE_SIZE_MAX", "page_size_max", _positive_int, "100",
             "Largest page of tasks the list endpoint returns."),
    Variable("KUBECONFIG", "kubeconfig", _parse_optional_path, "",
             "Kubeconfig file for the Kubernetes runner; empty: in-cluster configuration."),
    Variable("GITHUB_TOKEN", "github_token", _parse_str, "",
             "Token for git over HTTPS and GitHub's REST API.", secret=True),
    Variable("GITHUB_WEBHOOK_SECRET", "github_webhook_secrets", _parse_list, "",
             "Webhook secret; several comma-separated while rotating. Empty: webhooks are refused.",
             secret=True),
    Variable("ANTHROPIC_API_KEY", "anthropic_api_key", _parse_str, "",
             "API key of the Claude Code agent (local runner; in a cluster it comes from a Secret).",
             secret=True),
)


@dataclass(frozen=True)
class Settings:
    """Typed configuration, read once from the environment."""

    redis_url: str
    api_tokens: tuple[str, ...]
    runner: str
    namespace: str
    workspace_root: Path
    max_active_runs: int
    max_runs_per_service: int
    api_url: str
    api_token: str
    data_dir: Path
    log_level: str
    status_history_limit: int
    idempotency_ttl_seconds: int
    delivery_ttl_seconds: int
    step_soft_time_limit: int
    step_time_limit: int
    broker_visibility_timeout: int
    allowed_git_hosts: tuple[str, ...]
    max_request_bytes: int
    default_timeout_seconds: int
    max_timeout_seconds: int
    allowed_agent_overrides: tuple[str, ...]
    page_size_max: int
    kubeconfig: Path | None
    github_token: str
    github_webhook_secrets: tuple[str, ...]
    anthropic_api_key: str
    extra: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Parse every variable; the first wrong one raises ConfigError naming it."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for var in VARIABLES:
            raw = env.get(var.env)
            if raw is None or (raw.strip() == "" and var.default != ""):
                raw = var.default
            try:
                values[var.attr] = var.parse(raw)
            except ValueError as exc:
                raise ConfigError(f"{var.env}: {exc}") from None
        values.update(overrides)
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        """Cross-field rules that no single variable can express."""
        if self.step_time_limit <= self.step_soft_time_limit:
            raise ConfigError("ORCHESTRATOR_STEP_TIME_LIMIT: must be greater than ORCHESTRATOR_STEP_SOFT_TIME_LIMIT")
        if self.default_timeout_seconds > self.max_timeout_seconds:
            raise ConfigError(
                "ORCHESTRATOR_DEFAULT_TIMEOUT_SECONDS: must not be greater than ORCHESTRATOR_MAX_TIMEOUT_SECONDS"
            )
        if self.broker_visibility_timeout <= self.step_time_limit:
            raise ConfigError(
                "ORCHESTRATOR_BROKER_VISIBILITY_TIMEOUT: must be greater than ORCHESTRATOR_STEP_TIME_LIMIT"
            )

    def replace(self, **changes: Any) -> Settings:
        """A copy with some fields changed (tests and the local stack use it)."""
        return dataclasses.replace(self, **changes)

    def __repr__(self) -> str:  # secrets must never reach a log line through repr()
        secret_attrs = {v.attr for v in VARIABLES if v.secret}
        shown = ", ".join(
            f"{f.name}={'***' if f.name in secret_attrs else getattr(self, f.name)!r}"
            for f in dataclasses.fields(self)
            if f.name != "extra"
        )
        return f"Settings({shown})"

    def secret_values(self) -> list[str]:
        """Every configured secret value, for scrubbing text before it is shown."""
        found: list[str] = []
        for var in VARIABLES:
            if not var.secret:
                continue
            value = getattr(self, var.attr)
            items = value if isinstance(value, tuple) else (value,)
            found.extend(item for item in items if item)
        return found


@functools.lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, parsed on first use (never at import)."""
    return Settings.from_env()


def reset_settings_cache() -> None:
    """Forget the cached settings (tests change the environment)."""
    get_settings.cache_clear()
