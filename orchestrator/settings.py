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

from orchestrator.config_values import (
    ConfigError,
    Variable,
    non_negative_float,
    non_negative_int,
    parse_bool,
    parse_branch_template,
    parse_budgets,
    parse_command,
    parse_command_prefix,
    parse_env_patterns,
    parse_float,
    parse_identity,
    parse_json_list,
    parse_json_object,
    parse_list,
    parse_mapping,
    parse_optional_count,
    parse_optional_money,
    parse_optional_path,
    parse_path,
    parse_redis_url,
    parse_repositories,
    parse_runner,
    parse_str,
    parse_upper_list,
    positive_int,
)
from orchestrator.coordination.stages import parse_pipelines

# fmt: off
# Keep this table in the order the README shows it.
VARIABLES: tuple[Variable, ...] = (
    Variable("ORCHESTRATOR_REDIS_URL", "redis_url", parse_redis_url,
             "redis://127.0.0.1:6379/0", "Redis used as the Celery broker and the task store."),
    Variable("ORCHESTRATOR_API_TOKENS", "api_tokens", parse_list, "",
             "Comma-separated bearer tokens accepted by the REST API. Empty: every /api/v1 request is refused.",
             secret=True),
    Variable("ORCHESTRATOR_SESSION_SECRET", "session_secret", parse_str, "",
             "Key that signs web console session cookies; the same in every API process. Empty: a random key per process (sessions end on restart and fail across several workers; `orchestrator up` keeps one in its data directory).",
             secret=True),
    Variable("ORCHESTRATOR_SESSION_LIFETIME_SECONDS", "session_lifetime_seconds", positive_int, "43200",
             "How long a web console sign-in lasts, in seconds (from sign-in, not from the last request)."),
    Variable("ORCHESTRATOR_RUNNER", "runner", parse_runner, "local",
             "Where runs execute: `local` (child process of the worker) or `kubernetes` (one Job per run)."),
    Variable("ORCHESTRATOR_NAMESPACE", "namespace", parse_str, "default",
             "Kubernetes namespace for agent Jobs."),
    Variable("ORCHESTRATOR_WORKSPACE_ROOT", "workspace_root", parse_path, ".orchestrator/workspaces",
             "Root of the shared workspace: one directory per service (the shared PVC in a cluster)."),
    Variable("ORCHESTRATOR_BRANCH_TEMPLATE", "branch_template", parse_branch_template, "task-{task_id}",
             "Name of a task's git branch; `{task_id}` and `{service}` are replaced. Never the base branch."),
    Variable("ORCHESTRATOR_GIT_TIMEOUT_SECONDS", "git_timeout_seconds", positive_int, "120",
             "Seconds one git command may take before it is stopped (and retried later)."),
    Variable("ORCHESTRATOR_WORKSPACE_LEASE_SECONDS", "workspace_lease_seconds", positive_int, "7200",
             "Expiry of a task's worktree lease, held by a run from preparation to its end (and of the service lock an exclusive run holds); a crashed holder's lease lapses after it."),
    Variable("ORCHESTRATOR_AGENT_ALLOWED_TOOLS", "agent_allowed_tools", parse_list,
             "Bash,Read,Write,Edit,MultiEdit,Glob,Grep,LS,TodoWrite",
             "Comma-separated tools the agent may use without asking, written to its settings file in the workspace."),
    Variable("ORCHESTRATOR_TASK_FILES_MAX_AGE_DAYS", "task_files_max_age_days", positive_int, "14",
             "Days after which the task files of a Succeeded or Failed task are removed from the workspace by the sweep."),
    Variable("ORCHESTRATOR_MAX_ACTIVE_RUNS", "max_active_runs", positive_int, "10",
             "Global limit on runs active at once."),
    Variable("ORCHESTRATOR_MAX_RUNS_PER_SERVICE", "max_runs_per_service", positive_int, "4",
             "Limit on runs active at once for one service, each in its own git worktree of the service's clone "
             "(disk: one checkout per run; fetches share one clone). A task with `exclusive: true` has the service "
             "to itself."),
    Variable("ORCHESTRATOR_PRIORITY_AGEING_SECONDS", "priority_ageing_seconds", non_negative_float, "1800",
             "Waiting time worth one priority level: a task waiting this much longer than one a level above goes first, so low priorities never starve. 0: strict priorities."),
    Variable("ORCHESTRATOR_MAX_RETRIES", "max_retries", non_negative_int, "2",
             "Further attempts of a run that failed for a platform reason (eviction, node loss, image pull); agent failures are not retried."),
    Variable("ORCHESTRATOR_RETRY_BACKOFF_SECONDS", "retry_backoff_seconds", parse_float, "30",
             "Delay before the first retry attempt; doubled for each further one."),
    Variable("ORCHESTRATOR_SLOT_LEASE_SECONDS", "slot_lease_seconds", parse_float, "900",
             "Lease of a run's capacity slot; renewed while the run is active, so a lost run frees its slot after this long."),
    Variable("ORCHESTRATOR_STUCK_AFTER_SECONDS", "stuck_after_seconds", parse_float, "90",
             "A task waiting, preparing or launching unchanged for this long is re-driven by the reconcile loop."),
    Variable("ORCHESTRATOR_PIPELINES", "pipelines", parse_pipelines, "",
             "Pipelines of agent stages, as JSON or the path of a YAML/JSON file (see Coordination). Empty: none."),
    Variable("ORCHESTRATOR_API_URL", "api_url", parse_str, "http://127.0.0.1:8080",
             "Base URL of the API, for the `orchestrator` command line."),
    Variable("ORCHESTRATOR_API_TOKEN", "api_token", parse_str, "",
             "Bearer token the command line sends.", secret=True),
    Variable("ORCHESTRATOR_DATA_DIR", "data_dir", parse_path, ".orchestrator",
             "Local state of `orchestrator up`: Redis data, run logs, pid files."),
    Variable("ORCHESTRATOR_LOG_LEVEL", "log_level", parse_str, "INFO",
             "Log level of every process (DEBUG, INFO, WARNING, ERROR)."),
    Variable("ORCHESTRATOR_STATUS_HISTORY_LIMIT", "status_history_limit", positive_int, "200",
             "Status history entries kept per task (oldest dropped first)."),
    Variable("ORCHESTRATOR_IDEMPOTENCY_TTL_SECONDS", "idempotency_ttl_seconds", positive_int, "86400",
             "How long an `Idempotency-Key` of a submission is remembered."),
    Variable("ORCHESTRATOR_DELIVERY_TTL_SECONDS", "delivery_ttl_seconds", positive_int, "604800",
             "How long a GitHub delivery id is remembered for deduplication."),
    Variable("ORCHESTRATOR_STEP_SOFT_TIME_LIMIT", "step_soft_time_limit", positive_int, "300",
             "Seconds a pipeline step may run before it is asked to stop."),
    Variable("ORCHESTRATOR_STEP_TIME_LIMIT", "step_time_limit", positive_int, "360",
             "Seconds after which a pipeline step is killed."),
    Variable("ORCHESTRATOR_BROKER_VISIBILITY_TIMEOUT", "broker_visibility_timeout", positive_int, "3600",
             "Seconds before the broker redelivers an unacknowledged step; longer than the longest step."),
    Variable("ORCHESTRATOR_ALLOWED_GIT_HOSTS", "allowed_git_hosts", parse_list, "github.com",
             "Comma-separated hosts a submitted repository URL may point to."),
    Variable("ORCHESTRATOR_MAX_REQUEST_BYTES", "max_request_bytes", positive_int, "1048576",
             "Largest PM API request body accepted, in bytes (larger: 413)."),
    Variable("ORCHESTRATOR_DEFAULT_TIMEOUT_SECONDS", "default_timeout_seconds", positive_int, "3600",
             "Run timeout of a submitted task that names none."),
    Variable("ORCHESTRATOR_MAX_TIMEOUT_SECONDS", "max_timeout_seconds", positive_int, "21600",
             "Largest `timeout_seconds` a submission may ask for."),
    Variable("ORCHESTRATOR_ALLOWED_AGENT_OVERRIDES", "allowed_agent_overrides", parse_list, "",
             "Comma-separated keys a submission may set in its `agent` object. Empty: no overrides."),
    Variable("ORCHESTRATOR_AGENT_ENV_ALLOWED", "agent_env_allowed", parse_env_patterns,
             "APP_*,FEATURE_*,LOG_LEVEL,TZ",
             "Comma-separated name patterns (`fnmatch`) of the `env` a task may give its agent; anything else is refused with 400. Names that could redirect the agent or its credentials (`ANTHROPIC_*`, `CLAUDE*`, `*PROXY*`, `NODE_*`, `SSL_*`, `LD_*`, `ORCHESTRATOR_*`...) are never allowed, whatever the patterns."),
    Variable("ORCHESTRATOR_PAGE_SIZE_MAX", "page_size_max", positive_int, "100",
             "Largest page of tasks the list endpoint returns."),
    Variable("ORCHESTRATOR_LOG_FOLLOW_MAX_SECONDS", "log_follow_max_seconds", positive_int, "3600",
             "Longest a followed log stream (`logs?follow=true`) stays open; the client follows again to go on."),
    Variable("ORCHESTRATOR_LOG_FOLLOWS_PER_TOKEN", "log_follows_per_token", positive_int, "4",
             "Followed log streams one API token may hold open at once, across every API process (more: 429)."),
    Variable("ORCHESTRATOR_RUN_LOG_MAX_BYTES", "run_log_max_bytes", positive_int, "104857600",
             "Largest output log of a local run; past it the agent's further output is dropped and the log says so."),
    Variable("ORCHESTRATOR_AGENT_IMAGE", "agent_image", parse_str, "ghcr.io/orchestrator/claude-code-agent:0.1.0",
             "Container image of agent Jobs (Kubernetes runner)."),
    Variable("ORCHESTRATOR_AGENT_IMAGES", "agent_images", parse_mapping, "",
             "Per-agent image overrides, `agent=image` pairs separated by commas."),
    Variable("ORCHESTRATOR_AGENT_COMMAND", "agent_command", parse_command,
             "claude -p --dangerously-skip-permissions --output-format stream-json --verbose 'Read CLAUDE.md in this directory and complete the task it describes.'",
             "Command of the agent container, split like a shell would (Kubernetes runner). The task's model reaches it as `ANTHROPIC_MODEL`."),
    Variable("ORCHESTRATOR_LOCAL_AGENT_COMMAND", "local_agent_command", parse_command, "",
             "Agent command of the local runner. Empty: Claude Code when `claude` is installed and `ANTHROPIC_API_KEY` is set, else the built-in example agent (`python -m orchestrator.agents.example`)."),
    Variable("ORCHESTRATOR_LOCAL_AGENT_USER", "local_agent_user", parse_str, "",
             "User the local runner runs agents as (the worker must run as root); the agent gets its checkout and its contract environment only. Empty: agents run as the worker's own user, which is no security boundary. `orchestrator up` run as root uses `orchestrator-agent` (created when missing) unless this is set."),
    Variable("ORCHESTRATOR_AGENT_SECRET", "agent_secret", parse_str, "orchestrator-agent",
             "Kubernetes Secret holding `anthropic-api-key` and `github-token`, referenced by agent Jobs (never copied); `github-token` only with `ORCHESTRATOR_AGENT_GITHUB_TOKEN=true`."),
    Variable("ORCHESTRATOR_WORKSPACE_PVC", "workspace_pvc", parse_str, "orchestrator-workspace",
             "PersistentVolumeClaim of the shared workspace; each Job mounts its task's worktree and its service clone's `.git` only."),
    Variable("ORCHESTRATOR_JOB_TEMPLATE", "job_template", parse_optional_path, "",
             "YAML pod template replacing the built-in one (the chart mounts it from a ConfigMap); empty: built-in."),
    Variable("ORCHESTRATOR_JOB_BACKOFF_LIMIT", "job_backoff_limit", non_negative_int, "0",
             "`backoffLimit` of agent Jobs: pod retries inside one run (evictions never count)."),
    Variable("ORCHESTRATOR_JOB_TTL_SECONDS", "job_ttl_seconds", non_negative_int, "86400",
             "`ttlSecondsAfterFinished` of agent Jobs: Kubernetes deletes finished Jobs after this."),
    Variable("ORCHESTRATOR_JOB_REQUESTS", "job_requests", parse_mapping, "cpu=500m,memory=1Gi",
             "Resource requests of the agent container, `name=quantity` pairs."),
    Variable("ORCHESTRATOR_JOB_LIMITS", "job_limits", parse_mapping, "memory=4Gi",
             "Resource limits of the agent container, `name=quantity` pairs."),
    Variable("ORCHESTRATOR_JOB_NODE_SELECTOR", "job_node_selector", parse_mapping, "",
             "Node selector of agent pods, `label=value` pairs."),
    Variable("ORCHESTRATOR_JOB_TOLERATIONS", "job_tolerations", parse_json_list, "",
             "Tolerations of agent pods, a JSON array."),
    Variable("ORCHESTRATOR_JOB_AFFINITY", "job_affinity", parse_json_object, "",
             "Affinity of agent pods, a JSON object."),
    Variable("ORCHESTRATOR_JOB_IMAGE_PULL_SECRETS", "job_image_pull_secrets", parse_list, "",
             "Comma-separated image pull Secret names for agent pods."),
    Variable("ORCHESTRATOR_JOB_SERVICE_ACCOUNT", "job_service_account", parse_str, "",
             "Service account of agent pods; empty: the namespace default, with no API token mounted."),
    Variable("ORCHESTRATOR_JOB_RUN_AS_USER", "job_run_as_user", positive_int, "1000",
             "Non-root user (and group) id agent containers run as."),
    Variable("ORCHESTRATOR_KUBE_REQUEST_TIMEOUT", "kube_request_timeout", parse_float, "10",
             "Seconds any Kubernetes API request may take (connect and read) before it is retried."),
    Variable("ORCHESTRATOR_KUBE_RETRIES", "kube_retries", non_negative_int, "5",
             "Retries of a Kubernetes API request after 429, 5xx, timeouts or connection errors (exponential backoff with jitter, honouring `Retry-After`)."),
    Variable("ORCHESTRATOR_RECONCILE_SECONDS", "reconcile_seconds", parse_float, "30",
             "Period of the watcher's reconcile: list what exists and repair what the watch missed."),
    Variable("ORCHESTRATOR_PENDING_TIMEOUT_SECONDS", "pending_timeout_seconds", positive_int, "600",
             "A run whose pod stays unschedulable or cannot pull its image this long fails."),
    Variable("ORCHESTRATOR_SWEEP_AFTER_SECONDS", "sweep_after_seconds", positive_int, "172800",
             "The watcher's sweep deletes our finished Jobs older than this that Kubernetes did not remove."),
    Variable("ORCHESTRATOR_WATCHER_LEASE_SECONDS", "watcher_lease_seconds", parse_float, "15",
             "Lease of the active `orchestrator watcher`; a standby takes over after this."),
    Variable("ORCHESTRATOR_ALLOW_LOCAL_REPOS", "allow_local_repos", parse_bool, "false",
             "Let `repository.url` be a `file://` URL or an absolute path to a git repository on this machine (delivery pushes the branch back to it, no pull request). `orchestrator up` sets it."),
    Variable("ORCHESTRATOR_PULL_REQUEST_DRAFT", "pull_request_draft", parse_bool, "true",
             "Open a task's pull request as a draft while its pipeline has stages left; it is marked ready after the last stage."),
    Variable("ORCHESTRATOR_COMMIT_IDENTITY", "commit_identity", parse_identity, "Orchestrator <orchestrator@localhost>",
             "Author and committer (`Name <email>`) of the commit delivery makes of an agent's uncommitted changes."),
    Variable("ORCHESTRATOR_DELIVERY_RETRIES", "delivery_retries", non_negative_int, "5",
             "Retries of a delivery (push, pull request) that failed for a transient reason, before the run fails."),
    Variable("ORCHESTRATOR_DELIVERY_BACKOFF_SECONDS", "delivery_backoff_seconds", parse_float, "10",
             "Delay before the first delivery retry; doubled for each further one (with jitter)."),
    Variable("ORCHESTRATOR_AGENT_GITHUB_TOKEN", "agent_github_token", parse_bool, "false",
             "Give agent Jobs `GITHUB_TOKEN` (the Secret's `github-token`, by `secretKeyRef`). Off: only delivery pushes and opens pull requests. Local agents never get it."),
    Variable("KUBECONFIG", "kubeconfig", parse_optional_path, "",
             "Kubeconfig file for the Kubernetes runner; empty: in-cluster configuration."),
    Variable("GITHUB_TOKEN", "github_token", parse_str, "",
             "Token for git over HTTPS and GitHub's REST API.", secret=True),
    Variable("GITHUB_WEBHOOK_SECRET", "github_webhook_secrets", parse_list, "",
             "Webhook secret; several comma-separated while rotating. Empty: webhooks are refused.",
             secret=True),
    Variable("ORCHESTRATOR_GITHUB_REPOSITORIES", "github_repositories", parse_repositories, "",
             "GitHub repositories that may create tasks, as comma-separated `owner/repo=service` pairs."),
    Variable("ORCHESTRATOR_GITHUB_TRIGGER_LABEL", "github_trigger_label", parse_str, "orchestrator",
             "Issue label that turns an issue into a task."),
    Variable("ORCHESTRATOR_GITHUB_COMMAND_PREFIX", "github_command_prefix", parse_command_prefix, "/orchestrator",
             "Word that starts a command in an issue or pull request comment (`/orchestrator run`)."),
    Variable("ORCHESTRATOR_GITHUB_ALLOWED_ASSOCIATIONS", "github_allowed_associations", parse_upper_list,
             "OWNER,MEMBER,COLLABORATOR",
             "`author_association` values allowed to trigger work by comment, review or new issue."),
    Variable("ORCHESTRATOR_GITHUB_TRUSTED_AUTHORS_ONLY", "github_trusted_authors_only", parse_bool, "true",
             "A labelled issue becomes a task only when its author (or the labeller, when the payload says) has an association in `ORCHESTRATOR_GITHUB_ALLOWED_ASSOCIATIONS`; otherwise it is ignored with the reason. `false`: any labelled issue."),
    Variable("ORCHESTRATOR_GITHUB_API_URL", "github_api_url", parse_str, "https://api.github.com",
             "Base URL of GitHub's REST API (GitHub Enterprise: `https://host/api/v3`)."),
    Variable("ORCHESTRATOR_GITHUB_BOT_LOGIN", "github_bot_login", parse_str, "",
             "Login of the account that owns `GITHUB_TOKEN`; its own comments never trigger work."),
    Variable("ORCHESTRATOR_GITHUB_WRITES_PER_MINUTE", "github_writes_per_minute", positive_int, "60", "Budget of GitHub writes (comments, pull requests) per minute, shared by every worker through Redis; below GitHub's secondary limit of 80 content-creating requests a minute."),
    Variable("ORCHESTRATOR_DEFAULT_AGENT", "default_agent", parse_str, "claude",
             "Agent of tasks created from GitHub issues."),
    Variable("ORCHESTRATOR_WEBHOOK_MAX_BYTES", "webhook_max_bytes", positive_int, "26214400",
             "Largest webhook body accepted (GitHub caps payloads at 25 MB); larger ones get 413."),
    Variable("ORCHESTRATOR_DEFAULT_MAX_COST_USD", "default_max_cost_usd", parse_optional_money, "",
             "Cost limit in US dollars of one run of a task that sets no `max_cost_usd` (Claude Code's `--max-budget-usd`). Empty: none."),
    Variable("ORCHESTRATOR_DEFAULT_MAX_TURNS", "default_max_turns", parse_optional_count, "",
             "Turn limit of one run of a task that sets no `max_turns` (Claude Code's `--max-turns`). Empty: none."),
    Variable("ORCHESTRATOR_DAILY_BUDGET_USD", "daily_budget_usd", parse_optional_money, "",
             "US dollars all services may spend per UTC day; once the day's recorded spend reaches it, tasks wait Blocked until the next day. Empty: no limit."),
    Variable("ORCHESTRATOR_SERVICE_DAILY_BUDGETS", "service_daily_budgets", parse_budgets, "",
             "Daily budgets of single services in US dollars, `service=amount` pairs separated by commas."),
    Variable("ORCHESTRATOR_STALL_SECONDS", "stall_seconds", non_negative_int, "900",
             "A running agent whose output has not grown for this long is stopped and fails (`stalled`), retried once. 0: never."),
    Variable("ANTHROPIC_API_KEY", "anthropic_api_key", parse_str, "",
             "API key of the Claude Code agent (local runner; in a cluster it comes from a Secret).",
             secret=True),
)
# fmt: on


@dataclass(frozen=True)
class Settings:
    """Typed configuration, read once from the environment."""

    redis_url: str
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
