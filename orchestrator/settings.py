"""Configuration: every environment variable the system reads, in one table.

The table below is the single source of truth: `Settings.from_env` parses it,
and the README's configuration table is checked against it by a test, so the
documentation cannot drift from the code.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import re
import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from orchestrator.coordination.stages import parse_pipelines
from orchestrator.validation import git_ref


class ConfigError(Exception):
    """A configuration value is wrong; the message names the variable."""


def _parse_str(raw: str) -> str:
    return raw.strip()


def _parse_int(raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ValueError(f"expected an integer, got {raw!r}") from None


def _finite(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError(f"expected a number, got {raw!r}") from None
    if not math.isfinite(value):  # float() takes "nan" and "inf"; no setting means either
        raise ValueError(f"expected a finite number, got {raw!r}")
    return value


def _checked(parse: Callable[[str], Any], ok: Callable[[Any], bool], expected: str) -> Callable[[str], Any]:
    """`parse`, then refuse a value `ok` rejects, saying what was `expected`."""
    def parse_checked(raw: str) -> Any:
        value = parse(raw)
        if not ok(value):
            raise ValueError(f"expected {expected}, got {raw!r}")
        return value
    return parse_checked


_positive_int = _checked(_parse_int, lambda v: v >= 1, "an integer >= 1")
_non_negative_int = _checked(_parse_int, lambda v: v >= 0, "an integer >= 0")
_non_negative_float = _checked(_finite, lambda v: v >= 0, "a number >= 0")
_parse_float = _checked(_finite, lambda v: v > 0, "a number > 0")


def _parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _parse_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def _parse_env_patterns(raw: str) -> tuple[str, ...]:
    from orchestrator.agent_env import parse_patterns  # the rules of agent env live there

    return parse_patterns(raw)


def _parse_upper_list(raw: str) -> tuple[str, ...]:
    return tuple(item.upper() for item in _parse_list(raw))


def _parse_repositories(raw: str) -> dict[str, str]:
    """`owner/repo=service` pairs; repository names compare case-insensitively, as on GitHub."""
    result: dict[str, str] = {}
    for repo, service in _parse_mapping(raw).items():
        owner, sep, name = repo.partition("/")
        if not sep or not owner or not name or "/" in name:
            raise ValueError(f"expected owner/repo=service, got {repo!r}")
        result[repo.lower()] = service
    return result


def _parse_command_prefix(raw: str) -> str:
    value = raw.strip()
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"expected one word without spaces, got {raw!r}")
    return value


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


def _parse_branch_template(raw: str) -> str:
    """A branch name template; checked by rendering it for a sample task."""
    template = raw.strip()
    try:
        sample = template.format(task_id=1, service="svc")
    except (KeyError, IndexError, ValueError):
        raise ValueError("only {task_id} and {service} may appear in braces") from None
    if "{task_id}" not in template:
        raise ValueError("must contain {task_id}, so each task gets its own branch")
    try:
        git_ref(sample)
    except ValueError:
        raise ValueError(f"does not make a valid git branch name: {raw!r}") from None
    return template


def _parse_mapping(raw: str) -> dict[str, str]:
    """`key=value,key=value` pairs, e.g. repository to service."""
    result: dict[str, str] = {}
    for item in _parse_list(raw):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"expected key=value pairs separated by commas, got {item!r}")
        result[key.strip()] = value.strip()
    return result


def _parse_json(raw: str, kind: type) -> Any:
    if not raw.strip():
        return kind()
    try:
        value = json.loads(raw)
    except ValueError:
        raise ValueError(f"expected a JSON {kind.__name__}") from None
    if not isinstance(value, kind):
        raise ValueError(f"expected a JSON {kind.__name__}")
    return value


def _parse_json_list(raw: str) -> tuple[Any, ...]:
    """A JSON array (tolerations), kept immutable."""
    return tuple(_parse_json(raw, list))


def _parse_json_object(raw: str) -> dict[str, Any]:
    """A JSON object (affinity)."""
    return _parse_json(raw, dict)


def _parse_command(raw: str) -> tuple[str, ...]:
    """A command line split the way a POSIX shell splits words (no shell runs it)."""
    try:
        return tuple(shlex.split(raw))
    except ValueError as exc:
        raise ValueError(f"cannot split the command: {exc}") from None
def _parse_identity(raw: str) -> tuple[str, str]:
    """`Name <email>` as (name, email)."""
    match = re.fullmatch(r"\s*([^<>\n]+?)\s*<([^<>\s]+@[^<>\s]+)>\s*", raw)
    if not match:
        raise ValueError(f"expected Name <email>, got {raw!r}")
    return match.group(1), match.group(2)


def _parse_optional_money(raw: str) -> float | None:
    """A positive amount of US dollars; empty: none."""
    return _parse_float(raw) if raw.strip() else None


def _parse_optional_count(raw: str) -> int | None:
    """A positive whole number; empty: none."""
    return _positive_int(raw) if raw.strip() else None


def _parse_budgets(raw: str) -> dict[str, float]:
    """`service=amount` pairs of daily budgets in US dollars."""
    return {service: _parse_float(amount) for service, amount in _parse_mapping(raw).items()}


def _parse_pipelines(raw: str) -> dict[str, Any]:
    return parse_pipelines(raw)


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
    Variable("ORCHESTRATOR_SESSION_SECRET", "session_secret", _parse_str, "",
             "Key that signs web console session cookies; the same in every API process. Empty: a random key per process (sessions end on restart and fail across several workers; `orchestrator up` keeps one in its data directory).",
             secret=True),
    Variable("ORCHESTRATOR_SESSION_LIFETIME_SECONDS", "session_lifetime_seconds", _positive_int, "43200",
             "How long a web console sign-in lasts, in seconds (from sign-in, not from the last request)."),
    Variable("ORCHESTRATOR_RUNNER", "runner", _parse_runner, "local",
             "Where runs execute: `local` (child process of the worker) or `kubernetes` (one Job per run)."),
    Variable("ORCHESTRATOR_NAMESPACE", "namespace", _parse_str, "default",
             "Kubernetes namespace for agent Jobs."),
    Variable("ORCHESTRATOR_WORKSPACE_ROOT", "workspace_root", _parse_path, ".orchestrator/workspaces",
             "Root of the shared workspace: one directory per service (the shared PVC in a cluster)."),
    Variable("ORCHESTRATOR_BRANCH_TEMPLATE", "branch_template", _parse_branch_template, "task-{task_id}",
             "Name of a task's git branch; `{task_id}` and `{service}` are replaced. Never the base branch."),
    Variable("ORCHESTRATOR_GIT_TIMEOUT_SECONDS", "git_timeout_seconds", _positive_int, "120",
             "Seconds one git command may take before it is stopped (and retried later)."),
    Variable("ORCHESTRATOR_WORKSPACE_LEASE_SECONDS", "workspace_lease_seconds", _positive_int, "7200",
             "Expiry of a task's worktree lease, held by a run from preparation to its end (and of the service lock an exclusive run holds); a crashed holder's lease lapses after it."),
    Variable("ORCHESTRATOR_AGENT_ALLOWED_TOOLS", "agent_allowed_tools", _parse_list,
             "Bash,Read,Write,Edit,MultiEdit,Glob,Grep,LS,TodoWrite",
             "Comma-separated tools the agent may use without asking, written to its settings file in the workspace."),
    Variable("ORCHESTRATOR_TASK_FILES_MAX_AGE_DAYS", "task_files_max_age_days", _positive_int, "14",
             "Days after which the task files of a Succeeded or Failed task are removed from the workspace by the sweep."),
    Variable("ORCHESTRATOR_MAX_ACTIVE_RUNS", "max_active_runs", _positive_int, "10",
             "Global limit on runs active at once."),
    Variable("ORCHESTRATOR_MAX_RUNS_PER_SERVICE", "max_runs_per_service", _positive_int, "4",
             "Limit on runs active at once for one service, each in its own git worktree of the service's clone "
             "(disk: one checkout per run; fetches share one clone). A task with `exclusive: true` has the service "
             "to itself."),
    Variable("ORCHESTRATOR_PRIORITY_AGEING_SECONDS", "priority_ageing_seconds", _non_negative_float, "1800",
             "Waiting time worth one priority level: a task waiting this much longer than one a level above goes first, so low priorities never starve. 0: strict priorities."),
    Variable("ORCHESTRATOR_MAX_RETRIES", "max_retries", _non_negative_int, "2",
             "Further attempts of a run that failed for a platform reason (eviction, node loss, image pull); agent failures are not retried."),
    Variable("ORCHESTRATOR_RETRY_BACKOFF_SECONDS", "retry_backoff_seconds", _parse_float, "30",
             "Delay before the first retry attempt; doubled for each further one."),
    Variable("ORCHESTRATOR_SLOT_LEASE_SECONDS", "slot_lease_seconds", _parse_float, "900",
             "Lease of a run's capacity slot; renewed while the run is active, so a lost run frees its slot after this long."),
    Variable("ORCHESTRATOR_STUCK_AFTER_SECONDS", "stuck_after_seconds", _parse_float, "90",
             "A task waiting, preparing or launching unchanged for this long is re-driven by the reconcile loop."),
    Variable("ORCHESTRATOR_PIPELINES", "pipelines", _parse_pipelines, "",
             "Pipelines of agent stages, as JSON or the path of a YAML/JSON file (see Coordination). Empty: none."),
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
    Variable("ORCHESTRATOR_AGENT_ENV_ALLOWED", "agent_env_allowed", _parse_env_patterns,
             "APP_*,FEATURE_*,LOG_LEVEL,TZ",
             "Comma-separated name patterns (`fnmatch`) of the `env` a task may give its agent; anything else is refused with 400. Names that could redirect the agent or its credentials (`ANTHROPIC_*`, `CLAUDE*`, `*PROXY*`, `NODE_*`, `SSL_*`, `LD_*`, `ORCHESTRATOR_*`...) are never allowed, whatever the patterns."),
    Variable("ORCHESTRATOR_PAGE_SIZE_MAX", "page_size_max", _positive_int, "100",
             "Largest page of tasks the list endpoint returns."),
    Variable("ORCHESTRATOR_LOG_FOLLOW_MAX_SECONDS", "log_follow_max_seconds", _positive_int, "3600",
             "Longest a followed log stream (`logs?follow=true`) stays open; the client follows again to go on."),
    Variable("ORCHESTRATOR_LOG_FOLLOWS_PER_TOKEN", "log_follows_per_token", _positive_int, "4",
             "Followed log streams one API token may hold open at once, across every API process (more: 429)."),
    Variable("ORCHESTRATOR_RUN_LOG_MAX_BYTES", "run_log_max_bytes", _positive_int, "104857600",
             "Largest output log of a local run; past it the agent's further output is dropped and the log says so."),
    Variable("ORCHESTRATOR_AGENT_IMAGE", "agent_image", _parse_str, "ghcr.io/orchestrator/claude-code-agent:0.1.0",
             "Container image of agent Jobs (Kubernetes runner)."),
    Variable("ORCHESTRATOR_AGENT_IMAGES", "agent_images", _parse_mapping, "",
             "Per-agent image overrides, `agent=image` pairs separated by commas."),
    Variable("ORCHESTRATOR_AGENT_COMMAND", "agent_command", _parse_command,
             "claude -p --dangerously-skip-permissions --output-format stream-json --verbose 'Read CLAUDE.md in this directory and complete the task it describes.'",
             "Command of the agent container, split like a shell would (Kubernetes runner). The task's model reaches it as `ANTHROPIC_MODEL`."),
    Variable("ORCHESTRATOR_LOCAL_AGENT_COMMAND", "local_agent_command", _parse_command, "",
             "Agent command of the local runner. Empty: Claude Code when `claude` is installed and `ANTHROPIC_API_KEY` is set, else the built-in example agent (`python -m orchestrator.agents.example`)."),
    Variable("ORCHESTRATOR_LOCAL_AGENT_USER", "local_agent_user", _parse_str, "",
             "User the local runner runs agents as (the worker must run as root); the agent gets its checkout and its contract environment only. Empty: agents run as the worker's own user, which is no security boundary. `orchestrator up` run as root uses `orchestrator-agent` (created when missing) unless this is set."),
    Variable("ORCHESTRATOR_AGENT_SECRET", "agent_secret", _parse_str, "orchestrator-agent",
             "Kubernetes Secret holding `anthropic-api-key` and `github-token`, referenced by agent Jobs (never copied); `github-token` only with `ORCHESTRATOR_AGENT_GITHUB_TOKEN=true`."),
    Variable("ORCHESTRATOR_WORKSPACE_PVC", "workspace_pvc", _parse_str, "orchestrator-workspace",
             "PersistentVolumeClaim of the shared workspace; each Job mounts its task's worktree and its service clone's `.git` only."),
    Variable("ORCHESTRATOR_JOB_TEMPLATE", "job_template", _parse_optional_path, "",
             "YAML pod template replacing the built-in one (the chart mounts it from a ConfigMap); empty: built-in."),
    Variable("ORCHESTRATOR_JOB_BACKOFF_LIMIT", "job_backoff_limit", _non_negative_int, "0",
             "`backoffLimit` of agent Jobs: pod retries inside one run (evictions never count)."),
    Variable("ORCHESTRATOR_JOB_TTL_SECONDS", "job_ttl_seconds", _non_negative_int, "86400",
             "`ttlSecondsAfterFinished` of agent Jobs: Kubernetes deletes finished Jobs after this."),
    Variable("ORCHESTRATOR_JOB_REQUESTS", "job_requests", _parse_mapping, "cpu=500m,memory=1Gi",
             "Resource requests of the agent container, `name=quantity` pairs."),
    Variable("ORCHESTRATOR_JOB_LIMITS", "job_limits", _parse_mapping, "memory=4Gi",
             "Resource limits of the agent container, `name=quantity` pairs."),
    Variable("ORCHESTRATOR_JOB_NODE_SELECTOR", "job_node_selector", _parse_mapping, "",
             "Node selector of agent pods, `label=value` pairs."),
    Variable("ORCHESTRATOR_JOB_TOLERATIONS", "job_tolerations", _parse_json_list, "",
             "Tolerations of agent pods, a JSON array."),
    Variable("ORCHESTRATOR_JOB_AFFINITY", "job_affinity", _parse_json_object, "",
             "Affinity of agent pods, a JSON object."),
    Variable("ORCHESTRATOR_JOB_IMAGE_PULL_SECRETS", "job_image_pull_secrets", _parse_list, "",
             "Comma-separated image pull Secret names for agent pods."),
    Variable("ORCHESTRATOR_JOB_SERVICE_ACCOUNT", "job_service_account", _parse_str, "",
             "Service account of agent pods; empty: the namespace default, with no API token mounted."),
    Variable("ORCHESTRATOR_JOB_RUN_AS_USER", "job_run_as_user", _positive_int, "1000",
             "Non-root user (and group) id agent containers run as."),
    Variable("ORCHESTRATOR_KUBE_REQUEST_TIMEOUT", "kube_request_timeout", _parse_float, "10",
             "Seconds any Kubernetes API request may take (connect and read) before it is retried."),
    Variable("ORCHESTRATOR_KUBE_RETRIES", "kube_retries", _non_negative_int, "5",
             "Retries of a Kubernetes API request after 429, 5xx, timeouts or connection errors (exponential backoff with jitter, honouring `Retry-After`)."),
    Variable("ORCHESTRATOR_RECONCILE_SECONDS", "reconcile_seconds", _parse_float, "30",
             "Period of the watcher's reconcile: list what exists and repair what the watch missed."),
    Variable("ORCHESTRATOR_PENDING_TIMEOUT_SECONDS", "pending_timeout_seconds", _positive_int, "600",
             "A run whose pod stays unschedulable or cannot pull its image this long fails."),
    Variable("ORCHESTRATOR_SWEEP_AFTER_SECONDS", "sweep_after_seconds", _positive_int, "172800",
             "The watcher's sweep deletes our finished Jobs older than this that Kubernetes did not remove."),
    Variable("ORCHESTRATOR_WATCHER_LEASE_SECONDS", "watcher_lease_seconds", _parse_float, "15",
             "Lease of the active `orchestrator watcher`; a standby takes over after this."),
    Variable("ORCHESTRATOR_ALLOW_LOCAL_REPOS", "allow_local_repos", _parse_bool, "false",
             "Let `repository.url` be a `file://` URL or an absolute path to a git repository on this machine (delivery pushes the branch back to it, no pull request). `orchestrator up` sets it."),
    Variable("ORCHESTRATOR_PULL_REQUEST_DRAFT", "pull_request_draft", _parse_bool, "true",
             "Open a task's pull request as a draft while its pipeline has stages left; it is marked ready after the last stage."),
    Variable("ORCHESTRATOR_COMMIT_IDENTITY", "commit_identity", _parse_identity, "Orchestrator <orchestrator@localhost>",
             "Author and committer (`Name <email>`) of the commit delivery makes of an agent's uncommitted changes."),
    Variable("ORCHESTRATOR_DELIVERY_RETRIES", "delivery_retries", _non_negative_int, "5",
             "Retries of a delivery (push, pull request) that failed for a transient reason, before the run fails."),
    Variable("ORCHESTRATOR_DELIVERY_BACKOFF_SECONDS", "delivery_backoff_seconds", _parse_float, "10",
             "Delay before the first delivery retry; doubled for each further one (with jitter)."),
    Variable("ORCHESTRATOR_AGENT_GITHUB_TOKEN", "agent_github_token", _parse_bool, "false",
             "Give agent Jobs `GITHUB_TOKEN` (the Secret's `github-token`, by `secretKeyRef`). Off: only delivery pushes and opens pull requests. Local agents never get it."),
    Variable("KUBECONFIG", "kubeconfig", _parse_optional_path, "",
             "Kubeconfig file for the Kubernetes runner; empty: in-cluster configuration."),
    Variable("GITHUB_TOKEN", "github_token", _parse_str, "",
             "Token for git over HTTPS and GitHub's REST API.", secret=True),
    Variable("GITHUB_WEBHOOK_SECRET", "github_webhook_secrets", _parse_list, "",
             "Webhook secret; several comma-separated while rotating. Empty: webhooks are refused.",
             secret=True),
    Variable("ORCHESTRATOR_GITHUB_REPOSITORIES", "github_repositories", _parse_repositories, "",
             "GitHub repositories that may create tasks, as comma-separated `owner/repo=service` pairs."),
    Variable("ORCHESTRATOR_GITHUB_TRIGGER_LABEL", "github_trigger_label", _parse_str, "orchestrator",
             "Issue label that turns an issue into a task."),
    Variable("ORCHESTRATOR_GITHUB_COMMAND_PREFIX", "github_command_prefix", _parse_command_prefix, "/orchestrator",
             "Word that starts a command in an issue or pull request comment (`/orchestrator run`)."),
    Variable("ORCHESTRATOR_GITHUB_ALLOWED_ASSOCIATIONS", "github_allowed_associations", _parse_upper_list,
             "OWNER,MEMBER,COLLABORATOR",
             "`author_association` values allowed to trigger work by comment, review or new issue."),
    Variable("ORCHESTRATOR_GITHUB_TRUSTED_AUTHORS_ONLY", "github_trusted_authors_only", _parse_bool, "true",
             "A labelled issue becomes a task only when its author (or the labeller, when the payload says) has an association in `ORCHESTRATOR_GITHUB_ALLOWED_ASSOCIATIONS`; otherwise it is ignored with the reason. `false`: any labelled issue."),
    Variable("ORCHESTRATOR_GITHUB_API_URL", "github_api_url", _parse_str, "https://api.github.com",
             "Base URL of GitHub's REST API (GitHub Enterprise: `https://host/api/v3`)."),
    Variable("ORCHESTRATOR_GITHUB_BOT_LOGIN", "github_bot_login", _parse_str, "",
             "Login of the account that owns `GITHUB_TOKEN`; its own comments never trigger work."),
    Variable("ORCHESTRATOR_DEFAULT_AGENT", "default_agent", _parse_str, "claude",
             "Agent of tasks created from GitHub issues."),
    Variable("ORCHESTRATOR_WEBHOOK_MAX_BYTES", "webhook_max_bytes", _positive_int, "26214400",
             "Largest webhook body accepted (GitHub caps payloads at 25 MB); larger ones get 413."),
    Variable("ORCHESTRATOR_DEFAULT_MAX_COST_USD", "default_max_cost_usd", _parse_optional_money, "",
             "Cost limit in US dollars of one run of a task that sets no `max_cost_usd` (Claude Code's `--max-budget-usd`). Empty: none."),
    Variable("ORCHESTRATOR_DEFAULT_MAX_TURNS", "default_max_turns", _parse_optional_count, "",
             "Turn limit of one run of a task that sets no `max_turns` (Claude Code's `--max-turns`). Empty: none."),
    Variable("ORCHESTRATOR_DAILY_BUDGET_USD", "daily_budget_usd", _parse_optional_money, "",
             "US dollars all services may spend per UTC day; once the day's recorded spend reaches it, tasks wait Blocked until the next day. Empty: no limit."),
    Variable("ORCHESTRATOR_SERVICE_DAILY_BUDGETS", "service_daily_budgets", _parse_budgets, "",
             "Daily budgets of single services in US dollars, `service=amount` pairs separated by commas."),
    Variable("ORCHESTRATOR_STALL_SECONDS", "stall_seconds", _non_negative_int, "900",
             "A running agent whose output has not grown for this long is stopped and fails (`stalled`), retried once. 0: never."),
    Variable("ANTHROPIC_API_KEY", "anthropic_api_key", _parse_str, "",
             "API key of the Claude Code agent (local runner; in a cluster it comes from a Secret).",
             secret=True),
)


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
            raise ConfigError(
                "ORCHESTRATOR_GIT_TIMEOUT_SECONDS: must be less than ORCHESTRATOR_STEP_SOFT_TIME_LIMIT"
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
