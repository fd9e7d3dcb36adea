"""Parsers of configuration values: each turns an environment variable's text into its typed value.

A parser raises ValueError with what was expected; the settings table
(orchestrator/settings.py) names the variable in the ConfigError it becomes.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from orchestrator.validation import git_ref


class ConfigError(Exception):
    """A configuration value is wrong; the message names the variable."""


def parse_str(raw: str) -> str:
    return raw.strip()


def parse_int(raw: str) -> int:
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


positive_int = _checked(parse_int, lambda v: v >= 1, "an integer >= 1")
non_negative_int = _checked(parse_int, lambda v: v >= 0, "an integer >= 0")
non_negative_float = _checked(_finite, lambda v: v >= 0, "a number >= 0")
parse_float = _checked(_finite, lambda v: v > 0, "a number > 0")


def parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in {"1", "true", "yes", "on"}:
        return True
    if lowered in {"0", "false", "no", "off", ""}:
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def parse_list(raw: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in raw.split(",") if item.strip())


def parse_env_patterns(raw: str) -> tuple[str, ...]:
    from orchestrator.agent_env import parse_patterns  # the rules of agent env live there

    return parse_patterns(raw)


def parse_upper_list(raw: str) -> tuple[str, ...]:
    return tuple(item.upper() for item in parse_list(raw))


def parse_repositories(raw: str) -> dict[str, str]:
    """`owner/repo=service` pairs; repository names compare case-insensitively, as on GitHub."""
    result: dict[str, str] = {}
    for repo, service in parse_mapping(raw).items():
        owner, sep, name = repo.partition("/")
        if not sep or not owner or not name or "/" in name:
            raise ValueError(f"expected owner/repo=service, got {repo!r}")
        result[repo.lower()] = service
    return result


def parse_command_prefix(raw: str) -> str:
    value = raw.strip()
    if not value or any(c.isspace() for c in value):
        raise ValueError(f"expected one word without spaces, got {raw!r}")
    return value


def parse_redis_url(raw: str) -> str:
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


def parse_sentinels(raw: str) -> tuple[tuple[str, int], ...]:
    """`host:port` of each Redis Sentinel, separated by commas (IPv6 in brackets)."""
    found: list[tuple[str, int]] = []
    for item in parse_list(raw):
        parsed = urlparse(f"//{item}")
        try:
            port = parsed.port
        except ValueError:
            port = None
        if not parsed.hostname or port is None or parsed.path or parsed.username is not None:
            raise ValueError(f"expected host:port pairs separated by commas, got {item!r}")
        found.append((parsed.hostname, port))
    return tuple(found)


def parse_wait_replicas(raw: str) -> int | None:
    """`auto` (None) or how many replicas must hold an accepted write."""
    if raw.strip().lower() == "auto":
        return None
    try:
        return non_negative_int(raw)
    except ValueError:
        raise ValueError(f"expected auto or an integer >= 0, got {raw!r}") from None


def parse_runner(raw: str) -> str:
    value = raw.strip().lower()
    if value not in {"local", "kubernetes"}:
        raise ValueError(f"expected 'local' or 'kubernetes', got {raw!r}")
    return value


def parse_otlp_endpoint(raw: str) -> str:
    """An OTLP base URL (http or https, no query), without its trailing slash; empty: telemetry off."""
    value = raw.strip().rstrip("/")
    if not value:
        return ""
    parts = urlparse(value)
    if parts.scheme not in {"http", "https"} or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(f"expected an http(s) URL such as http://collector:4318, got {raw!r}")
    return value


OTLP_PROTOCOLS = ("http/protobuf", "http/json", "grpc")


def parse_otlp_protocol(raw: str) -> str:
    value = raw.strip().lower()
    if value not in OTLP_PROTOCOLS:
        raise ValueError(f"expected one of {', '.join(OTLP_PROTOCOLS)}, got {raw!r}")
    return value


def parse_path(raw: str) -> Path:
    return Path(raw.strip()).expanduser().resolve()


def parse_optional_path(raw: str) -> Path | None:
    return parse_path(raw) if raw.strip() else None


def parse_branch_template(raw: str) -> str:
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


def parse_mapping(raw: str) -> dict[str, str]:
    """`key=value,key=value` pairs, e.g. repository to service."""
    result: dict[str, str] = {}
    for item in parse_list(raw):
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"expected key=value pairs separated by commas, got {item!r}")
        result[key.strip()] = value.strip()
    return result


def parse_json(raw: str, kind: type) -> Any:
    if not raw.strip():
        return kind()
    try:
        value = json.loads(raw)
    except ValueError:
        raise ValueError(f"expected a JSON {kind.__name__}") from None
    if not isinstance(value, kind):
        raise ValueError(f"expected a JSON {kind.__name__}")
    return value


def parse_json_list(raw: str) -> tuple[Any, ...]:
    """A JSON array (tolerations), kept immutable."""
    return tuple(parse_json(raw, list))


def parse_json_object(raw: str) -> dict[str, Any]:
    """A JSON object (affinity)."""
    return parse_json(raw, dict)


def parse_command(raw: str) -> tuple[str, ...]:
    """A command line split the way a POSIX shell splits words (no shell runs it)."""
    try:
        return tuple(shlex.split(raw))
    except ValueError as exc:
        raise ValueError(f"cannot split the command: {exc}") from None


def parse_identity(raw: str) -> tuple[str, str]:
    """`Name <email>` as (name, email)."""
    match = re.fullmatch(r"\s*([^<>\n]+?)\s*<([^<>\s]+@[^<>\s]+)>\s*", raw)
    if not match:
        raise ValueError(f"expected Name <email>, got {raw!r}")
    return match.group(1), match.group(2)


def parse_optional_money(raw: str) -> float | None:
    """A positive amount of US dollars; empty: none."""
    return parse_float(raw) if raw.strip() else None


def parse_optional_count(raw: str) -> int | None:
    """A positive whole number; empty: none."""
    return positive_int(raw) if raw.strip() else None


def parse_budgets(raw: str) -> dict[str, float]:
    """`service=amount` pairs of daily budgets in US dollars."""
    return {service: parse_float(amount) for service, amount in parse_mapping(raw).items()}


@dataclass(frozen=True)
class Variable:
    """One environment variable: where it goes, how it parses, what it means."""

    env: str
    attr: str
    parse: Callable[[str], Any]
    default: str
    doc: str
    secret: bool = False
