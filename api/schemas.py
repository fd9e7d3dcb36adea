"""Every request and response shape of the PM API, in one place.

The views validate with these schemas and the OpenAPI document is generated
from them, so the documentation cannot drift from what the API accepts.
Rules that depend on configuration (allowed git hosts, timeout bounds, agent
overrides, page size) are set per app from the settings when a schema is built.
"""

from __future__ import annotations

from typing import Any

from marshmallow import RAISE, Schema, ValidationError, fields, validate, validates, validates_schema

from orchestrator import agent_env, validation
from orchestrator.delivery.local import check_repository_url
from orchestrator.model import PRIORITIES
from orchestrator.settings import Settings
from orchestrator.states import Status

# The statuses Task Master writes; kept as `submitted_status`, never acted upon.
TASKMASTER_STATUSES = ("pending", "in-progress", "done", "review", "deferred", "cancelled", "blocked")
FILE_TYPES = ("task", "design-spec", "prompt", "context", "acceptance-criteria")
MAX_TEXT = 100_000
MAX_ITEMS = 100
DEFAULT_PAGE_SIZE = 20
HISTORY_SHOWN = 20
MODEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:@/-]{0,99}$"
IDEMPOTENCY_KEY_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"


def _check(func: Any) -> Any:
    """Adapt a validation.py validator (ValueError) to marshmallow (ValidationError)."""

    def validator(value: Any) -> None:
        try:
            func(value)
        except ValueError as exc:
            raise ValidationError(str(exc)) from None

    validator.__name__ = getattr(func, "__name__", "validator")
    return validator


def _text(max_length: int = MAX_TEXT, *, required: bool = False, min_length: int = 0, **meta: Any) -> fields.String:
    kwargs: dict[str, Any] = {
        "required": required,
        "validate": validate.Length(min=min_length, max=max_length),
        "metadata": meta,
    }
    if not required:
        kwargs["load_default"] = ""
    return fields.String(**kwargs)


def _task_id(**meta: Any) -> fields.Integer:
    return fields.Integer(strict=True, validate=validate.Range(min=1, max=validation.MAX_TASK_ID), **meta)


def _pm_task_id(**meta: Any) -> fields.Integer:
    """A submitted task's own id: below the id space of tasks made from GitHub issues (dependencies may name those)."""
    return fields.Integer(
        strict=True,
        validate=validate.Range(
            min=1,
            max=validation.ISSUE_TASK_ID_OFFSET - 1,
            error=f"must be from 1 to {validation.ISSUE_TASK_ID_OFFSET - 1}; larger ids are GitHub issues' tasks",
        ),
        **meta,
    )


def _at_most(n: int) -> Any:
    def validator(value: Any) -> None:
        if len(value) > n:
            raise ValidationError(f"at most {n} entries")

    return validator


SERVICE_META = {"pattern": validation.DNS_LABEL.pattern, "minLength": 1, "maxLength": validation.MAX_SERVICE_LENGTH}
AGENT_META = {"pattern": validation.DNS_LABEL.pattern, "minLength": 1, "maxLength": validation.MAX_AGENT_LENGTH}


class StrictSchema(Schema):
    """Unknown fields are an error, named in the response."""

    class Meta:
        unknown = RAISE


# Requests --------------------------------------------------------------------------


class SubtaskSchema(StrictSchema):
    """A Task Master subtask."""

    id = _task_id(required=True)
    title = _text(500, required=True, min_length=1)
    description = _text()
    details = _text()
    status = fields.String(load_default="pending", validate=validate.OneOf(TASKMASTER_STATUSES))
    dependencies = fields.List(
        _task_id(),
        load_default=list,
        validate=validate.Length(max=MAX_ITEMS),
        metadata={"description": "ids of sibling subtasks"},
    )
    test_strategy = _text()


class MarkdownFileSchema(StrictSchema):
    """One markdown document written into the task's workspace."""

    filename = fields.String(
        required=True,
        validate=_check(validation.markdown_filename),
        metadata={"pattern": validation.MARKDOWN_FILENAME.pattern, "example": "task.md"},
    )
    content = fields.String(required=True, validate=validate.Length(min=1, max=MAX_TEXT * 5))
    file_type = fields.String(required=True, validate=validate.OneOf(FILE_TYPES))


def _env_name_validator(patterns: tuple[str, ...]) -> Any:
    def validator(value: Any) -> None:
        errors = agent_env.name_errors(str(value), patterns)
        if errors:
            raise ValidationError(errors)

    return validator


class RepositorySchema(StrictSchema):
    """The git repository the agent works on; the host must be allowed by configuration."""

    url = fields.String(
        required=True,
        validate=validate.Length(min=1, max=500),
        metadata={"example": "https://github.com/acme/billing.git"},
    )
    branch = fields.String(load_default="main", validate=_check(validation.git_ref), metadata={"example": "main"})


class AgentOverridesField(fields.Dict):
    """`agent` overrides: keys allowed by configuration, scalar values."""


class TaskSubmissionSchema(StrictSchema):
    """POST /api/v1/pm/tasks: a Task Master task plus where and how to run it."""

    id = _pm_task_id(
        required=True,
        metadata={"description": "Task Master id (below 1000000000); (service_name, id) names the task"},
    )
    title = _text(500, required=True, min_length=1)
    description = _text()
    details = _text()
    test_strategy = _text()
    priority = fields.String(load_default="medium", validate=validate.OneOf(PRIORITIES))
    status = fields.String(
        load_default="pending",
        validate=validate.OneOf(TASKMASTER_STATUSES),
        metadata={"description": "Task Master status; returned as submitted_status"},
    )
    dependencies = fields.List(
        _task_id(),
        load_default=list,
        validate=validate.Length(max=MAX_ITEMS),
        metadata={"description": "ids of other tasks of the same service"},
    )
    subtasks = fields.List(fields.Nested(SubtaskSchema), load_default=list, validate=validate.Length(max=MAX_ITEMS))
    service_name = fields.String(
        required=True, validate=_check(validation.service_name), metadata={**SERVICE_META, "example": "billing"}
    )
    agent_name = fields.String(
        required=True, validate=_check(validation.agent_name), metadata={**AGENT_META, "example": "claude"}
    )
    markdown_files = fields.List(
        fields.Nested(MarkdownFileSchema), required=True, validate=validate.Length(min=1, max=50)
    )
    repository = fields.Nested(RepositorySchema, load_default=None, allow_none=True)
    model = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Regexp(MODEL_PATTERN),
        metadata={"example": "claude-sonnet-4-5"},
    )
    working_directory = fields.String(
        load_default="",
        validate=_check(validation.relative_path),
        metadata={"description": "relative to the repository root; no '..'"},
    )
    timeout_seconds = fields.Integer(strict=True, metadata={"description": "run time limit"})
    max_cost_usd = fields.Float(
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=0, min_inclusive=False, max=100_000),
        metadata={"description": "cost limit of one run in US dollars (Claude Code)"},
    )
    max_turns = fields.Integer(
        strict=True,
        load_default=None,
        allow_none=True,
        validate=validate.Range(min=1, max=10_000),
        metadata={"description": "turn limit of one run (Claude Code)"},
    )
    exclusive = fields.Boolean(
        load_default=False, metadata={"description": "run alone: no other run of the service overlaps this task's runs"}
    )
    env = fields.Dict(
        keys=fields.String(validate=_check(validation.plain_env_name)),
        values=fields.String(validate=_check(validation.plain_env_value)),
        load_default=dict,
        validate=_at_most(50),
        metadata={
            "description": "non-secret variables; names must match ORCHESTRATOR_AGENT_ENV_ALLOWED, "
            "credential-like names or values are refused",
            "maxProperties": 50,
        },
    )
    agent = AgentOverridesField(
        keys=fields.String(),
        values=fields.Raw(),
        load_default=dict,
        metadata={"description": "agent overrides; keys allowed by configuration"},
    )
    pipeline = fields.String(
        load_default=None,
        allow_none=True,
        validate=validate.Length(min=1, max=63),
        metadata={"description": "a pipeline of agent stages named in ORCHESTRATOR_PIPELINES"},
    )

    def __init__(self, *, settings: Settings, **kwargs: Any):
        super().__init__(**kwargs)
        self.settings = settings
        timeout = self.fields["timeout_seconds"]
        timeout.load_default = settings.default_timeout_seconds
        timeout.validators = [validate.Range(min=1, max=settings.max_timeout_seconds)]
        # Only names ops allow (agent_env): a name like ANTHROPIC_BASE_URL would send the key elsewhere.
        patterns = tuple(settings.agent_env_allowed)
        env = self.fields["env"]
        env.key_field.validators = [_env_name_validator(patterns)]  # type: ignore[attr-defined]
        env.metadata = {
            **env.metadata,
            "description": env.metadata["description"] + " (allowed: " + (", ".join(patterns) or "none") + ")",
        }
        allowed = tuple(settings.allowed_agent_overrides)
        agent = self.fields["agent"]
        agent.metadata = {
            **agent.metadata,
            "description": "agent overrides; allowed keys: " + (", ".join(allowed) or "none (not configured)"),
            "maxProperties": min(len(allowed), 20),
        }

    @validates("pipeline")
    def _pipeline(self, value: str | None, data_key: str) -> None:
        if value is not None and value not in self.settings.pipelines:
            known = ", ".join(sorted(self.settings.pipelines)) or "none are configured"
            raise ValidationError(f"unknown pipeline (known: {known})")

    @validates("agent")
    def _agent(self, value: dict[str, Any], data_key: str) -> None:
        allowed = set(self.settings.allowed_agent_overrides)
        errors: dict[str, list[str]] = {}
        if len(value) > 20:
            raise ValidationError("at most 20 overrides")
        for key, item in value.items():
            if key not in allowed:
                shown = ", ".join(sorted(allowed)) or "none are allowed"
                errors[key] = [f"override not allowed (allowed: {shown})"]
            elif isinstance(item, (dict, list)) or (isinstance(item, str) and len(item) > 1000):
                errors[key] = ["override values must be a number, a boolean or a string of at most 1000 characters"]
        if errors:
            raise ValidationError(errors)

    @validates_schema(skip_on_field_errors=False)
    def _whole(self, data: dict[str, Any], **_: Any) -> None:
        errors: dict[str, Any] = {}
        repo = data.get("repository")
        if isinstance(repo, dict) and "url" in repo:
            try:
                check_repository_url(repo["url"], self.settings)  # local ones only with ORCHESTRATOR_ALLOW_LOCAL_REPOS
            except ValueError as exc:
                errors["repository"] = {"url": [str(exc)]}
        if data.get("id") in data.get("dependencies", []):
            errors["dependencies"] = ["a task cannot depend on itself"]
        filenames = [f.get("filename") for f in data.get("markdown_files", [])]
        if len(filenames) != len(set(filenames)):
            errors["markdown_files"] = ["file names must be unique"]
        subtask_ids = [s.get("id") for s in data.get("subtasks", [])]
        if len(subtask_ids) != len(set(subtask_ids)):
            errors["subtasks"] = ["subtask ids must be unique"]
        if errors:
            raise ValidationError(errors)


class ContextSchema(StrictSchema):
    """POST .../context: one more document; stored as `context-v<N>.md`."""

    content = fields.String(required=True, validate=validate.Length(min=1, max=MAX_TEXT * 5))
    title = fields.String(load_default="", validate=validate.Length(max=500))


class CancelSchema(StrictSchema):
    """POST .../cancel: an optional reason, kept in the history."""

    reason = fields.String(load_default="", validate=validate.Length(max=500))


class ListQuerySchema(StrictSchema):
    """GET /api/v1/pm/tasks query parameters."""

    service = fields.String(validate=_check(validation.service_name), metadata=SERVICE_META)
    status = fields.String(validate=validate.OneOf([s.value for s in Status]))
    agent = fields.String(validate=_check(validation.agent_name), metadata=AGENT_META)
    limit = fields.Integer(load_default=DEFAULT_PAGE_SIZE)
    cursor = fields.String(
        validate=validate.Regexp(r"^[0-9]{1,18}$"), metadata={"description": "next_cursor of the previous page"}
    )

    def __init__(self, *, settings: Settings, **kwargs: Any):
        super().__init__(**kwargs)
        limit = self.fields["limit"]
        limit.load_default = min(DEFAULT_PAGE_SIZE, settings.page_size_max)
        limit.validators = [validate.Range(min=1, max=settings.page_size_max)]


class LogsQuerySchema(StrictSchema):
    """GET .../logs query parameters."""

    tail = fields.Integer(
        validate=validate.Range(min=1, max=100_000), metadata={"description": "only the last N lines"}
    )
    follow = fields.Boolean(load_default=False, metadata={"description": "stream until the run ends"})
    format = fields.String(
        load_default="text",
        validate=validate.OneOf(("text", "raw")),
        metadata={"description": "`text`: the conversation as text; `raw`: the agent's own stream"},
    )


# Responses -------------------------------------------------------------------------


class ErrorSchema(Schema):
    """The one error envelope."""

    code = fields.String(required=True, metadata={"example": "validation_error"})
    message = fields.String(required=True)
    errors = fields.Dict(metadata={"description": "field-level messages, shaped like the request"})


class RunViewSchema(Schema):
    """One run of a task."""

    run_id = fields.String()
    version = fields.Integer(metadata={"description": "context version the run executes"})
    attempt = fields.Integer()
    stage = fields.String()
    job_name = fields.String()
    phase = fields.String()
    queued_at = fields.DateTime(allow_none=True)
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)
    exit_code = fields.Integer(allow_none=True)
    failure_reason = fields.String()
    pull_request_url = fields.String(
        allow_none=True, metadata={"description": "the task's pull request, once delivered"}
    )
    branch = fields.String(allow_none=True, metadata={"description": "the task's git branch"})
    base = fields.String(allow_none=True, metadata={"description": "the branch the task's branch started from"})
    commit = fields.String(allow_none=True, metadata={"description": "head commit of the branch after delivery"})
    commits = fields.Integer(allow_none=True, metadata={"description": "commits on the branch beyond its base"})
    diffstat = fields.Dict(
        keys=fields.String(),
        values=fields.Integer(),
        allow_none=True,
        metadata={"description": "files, insertions and deletions beyond the base"},
    )
    pull_request_number = fields.Integer(allow_none=True)
    outcome = fields.String(
        allow_none=True,
        metadata={
            "enum": ["changes", "no_changes", "failed", "cancelled"],
            "description": "how the run ended for the user",
        },
    )
    usage = fields.Dict(
        allow_none=True,
        metadata={
            "description": "what the run consumed (from Claude Code's stream-json): input_tokens, output_tokens, "
            "cache_read_input_tokens, cache_creation_input_tokens, cost_usd, num_turns, session_id, "
            "model, models (per model); null when the agent reported none"
        },
    )


class HistoryEntrySchema(Schema):
    """One status change."""

    seq = fields.Integer()
    at = fields.DateTime()
    from_ = fields.String(data_key="from", allow_none=True)
    to = fields.String()
    reason = fields.String()
    actor = fields.String()


class TaskSummarySchema(Schema):
    """A task in a list."""

    service_name = fields.String()
    id = fields.Integer()
    agent_name = fields.String()
    title = fields.String()
    priority = fields.String()
    status = fields.String(
        metadata={"enum": [s.value for s in Status], "description": "the system's status (state machine)"}
    )
    status_reason = fields.String()
    submitted_status = fields.String(metadata={"description": "the Task Master status the PM sent"})
    context_version = fields.Integer()
    current_run = fields.String(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    url = fields.String(metadata={"description": "path of the task resource"})


class TaskViewSchema(TaskSummarySchema):
    """A task with its documents, runs and recent history."""

    description = fields.String()
    details = fields.String()
    test_strategy = fields.String()
    dependencies = fields.List(fields.Integer())
    subtasks = fields.List(fields.Nested(SubtaskSchema))
    markdown_files = fields.List(fields.Nested(MarkdownFileSchema))
    repository = fields.Nested(RepositorySchema, allow_none=True)
    model = fields.String(allow_none=True)
    working_directory = fields.String()
    timeout_seconds = fields.Integer()
    max_cost_usd = fields.Float(allow_none=True)
    max_turns = fields.Integer(allow_none=True)
    exclusive = fields.Boolean()
    env = fields.Dict(keys=fields.String(), values=fields.String())
    agent = fields.Dict()
    usage = fields.Dict(
        metadata={"description": "totals of the task's runs: tokens by kind, cost_usd, num_turns, runs"}
    )
    runs = fields.List(fields.Nested(RunViewSchema))
    delivery = fields.String(
        allow_none=True,
        metadata={
            "enum": ["delivered", "declined"],
            "description": "the task's pull request was merged (delivered) or closed unmerged (declined)",
        },
    )
    history = fields.List(
        fields.Nested(HistoryEntrySchema),
        metadata={"description": f"the newest {HISTORY_SHOWN} status changes, oldest first"},
    )


class TaskPageSchema(Schema):
    """One page of tasks, newest first."""

    items = fields.List(fields.Nested(TaskSummarySchema))
    next_cursor = fields.String(allow_none=True, metadata={"description": "pass as `cursor` for the next page"})
