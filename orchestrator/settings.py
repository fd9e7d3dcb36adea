"""Configuration: every environment variable the system reads, in one table.

The table below is the single source of truth: `Settings.from_env` parses it,
and the README's configuration table is checked against it by a test, so the
documentation cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator.config_values import ConfigError
from orchestrator.variables import VARIABLES


@dataclass(frozen=True)
class Settings:
    """Typed configuration, read once from the environment."""

    redis_url: str
    redis_sentinels: tuple[tuple[str, int], ...]
    redis_sentinel_master: str
    redis_sentinel_password: str
    redis_wait_replicas: int | None
    redis_wait_timeout_ms: int
    api_tokens: tuple[str, ...]
    session_secret: str
    session_lifetime_seconds: int
    runner: str
    namespace: str
    workspace_root: Path
    branch_template: str
    git_timeout_seconds: int
    workspace_lease_seconds: int
    agent_allowed_tools: tuple[str, ...]
    task_files_max_age_days: int
    max_active_runs: int
    max_runs_per_service: int
    priority_ageing_seconds: float
    max_retries: int
    retry_backoff_seconds: float
    slot_lease_seconds: float
    stuck_after_seconds: float
    pipelines: Mapping[str, Any]
    api_url: str
    api_token: str
    data_dir: Path
    log_level: str
    metrics_port: int
    status_history_limit: int
    max_tasks_per_service: int
    max_contexts_per_task: int
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
    agent_env_allowed: tuple[str, ...]
    page_size_max: int
    log_follow_max_seconds: int
    log_follows_per_token: int
    run_log_max_bytes: int
    agent_image: str
    agent_images: Mapping[str, str]
    agent_command: tuple[str, ...]
    local_agent_command: tuple[str, ...]
    local_agent_user: str
    agent_secret: str
    workspace_pvc: str
    job_template: Path | None
    job_backoff_limit: int
    job_ttl_seconds: int
    job_requests: Mapping[str, str]
    job_limits: Mapping[str, str]
    job_node_selector: Mapping[str, str]
    job_tolerations: tuple[Any, ...]
    job_affinity: Mapping[str, Any]
    job_image_pull_secrets: tuple[str, ...]
    job_service_account: str
    job_run_as_user: int
    kube_request_timeout: float
    kube_retries: int
    reconcile_seconds: float
    pending_timeout_seconds: int
    sweep_after_seconds: int
    retention_days: int
    watcher_lease_seconds: float
    kubeconfig: Path | None
    github_token: str
    github_webhook_secrets: tuple[str, ...]
    github_repositories: Mapping[str, str]
    github_trigger_label: str
    github_command_prefix: str
    github_allowed_associations: tuple[str, ...]
    github_trusted_authors_only: bool
    github_api_url: str
    github_bot_login: str
    github_writes_per_minute: int
    default_agent: str
    webhook_max_bytes: int
    default_max_cost_usd: float | None
    default_max_turns: int | None
    daily_budget_usd: float | None
    service_daily_budgets: Mapping[str, float]
    stall_seconds: int
    otel_endpoint: str
    otel_protocol: str
    otel_headers: str
    anthropic_api_key: str
    allow_local_repos: bool
    pull_request_draft: bool
    commit_identity: tuple[str, str]
    delivery_retries: int
    delivery_backoff_seconds: float
    agent_github_token: bool

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
        if self.git_timeout_seconds >= self.step_soft_time_limit:
            raise ConfigError("ORCHESTRATOR_GIT_TIMEOUT_SECONDS: must be less than ORCHESTRATOR_STEP_SOFT_TIME_LIMIT")
        if self.redis_sentinels and self.redis_url.startswith("rediss://"):
            raise ConfigError("ORCHESTRATOR_REDIS_SENTINELS: TLS (rediss://) with Sentinel is not supported yet")
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
            f"{f.name}={'***' if f.name in secret_attrs else getattr(self, f.name)!r}" for f in dataclasses.fields(self)
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
