"""Which environment variables a task may give its agent: an allow-list set by ops.

A task's `env` reaches the agent beside ANTHROPIC_API_KEY and GITHUB_TOKEN, so
a variable that changes where the agent connects (`ANTHROPIC_BASE_URL`,
`HTTPS_PROXY`), which certificates it trusts (`SSL_CERT_FILE`,
`NODE_EXTRA_CA_CERTS`) or what its interpreters load (`NODE_OPTIONS`,
`PERL5OPT`, `PYTHONHOME`, `PS4` with `SHELLOPTS`, `GCONV_PATH`) would hand the
key to whoever submitted the task. A deny-list always misses one, so only
names matching `ORCHESTRATOR_AGENT_ENV_ALLOWED` pass, and the names below
never do, whatever the patterns say. Pure functions; the API checks at
submission, the runner again at launch (tasks from GitHub, pipeline stages).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from fnmatch import fnmatchcase

from orchestrator import validation

# Compared with the name in upper case: `http_proxy` works as well as `HTTP_PROXY`.
NEVER_ALLOWED: tuple[str, ...] = (
    # Ours, the model's and the forge's: credentials, endpoints, the run contract.
    "ORCHESTRATOR_*",
    "ANTHROPIC_*",
    "CLAUDE*",
    "GITHUB_*",
    "GH_*",
    "GIT_*",
    "OPENAI_*",
    "AWS_*",
    "GOOGLE_*",
    "GCLOUD_*",
    "AZURE_*",
    "VERTEX_*",
    "BEDROCK_*",
    "KUBERNETES_*",
    "KUBECONFIG",
    "MCP_*",
    "DISABLE_*",
    # Where telemetry goes (prompts and tool details may be in it), and which trace it joins.
    "OTEL_*",
    "TRACEPARENT",
    "TRACESTATE",
    # Where connections go and whom they trust.
    "*PROXY*",
    "SSL_*",
    "*_CA_BUNDLE",
    "*_CA_CERTS",
    "*CERT*",
    "CURL_*",
    "WGETRC",
    "NETRC",
    "HOSTALIASES",
    "LOCALDOMAIN",
    "RES_OPTIONS",
    "SSH_*",
    # What interpreters, shells and the C library load or run.
    "LD_*",
    "DYLD_*",
    "GCONV_PATH",
    "LOCPATH",
    "NLSPATH",
    "MALLOC_*",
    "GLIBC_TUNABLES",
    "NODE_*",
    "NPM_*",
    "YARN_*",
    "PYTHON*",
    "PIP_*",
    "PERL*",
    "RUBY*",
    "GEM_*",
    "BUNDLE_*",
    "JAVA_TOOL_OPTIONS",
    "JDK_JAVA_OPTIONS",
    "_JAVA_OPTIONS",
    "BASH_ENV",
    "BASH_FUNC_*",
    "ENV",
    "PS?",
    "PROMPT_COMMAND",
    "SHELLOPTS",
    "BASHOPTS",
    "IFS",
    "CDPATH",
    "GLOBIGNORE",
    "EDITOR",
    "VISUAL",
    "PAGER",
    "BROWSER",
    "TMPDIR",
    "XDG_*",
    # What the runner sets itself.
    "PATH",
    "HOME",
    "USER",
    "LOGNAME",
    "SHELL",
    "PWD",
    "TERM",
)


def parse_patterns(raw: str) -> tuple[str, ...]:
    """Comma-separated fnmatch patterns of names, e.g. `APP_*,TZ`."""
    patterns = tuple(item.strip() for item in raw.split(",") if item.strip())
    for pattern in patterns:
        if not all(c.isalnum() or c in "_*?[]!" for c in pattern):
            raise ValueError(f"expected comma-separated name patterns (letters, digits, _ * ? [ ] !), got {pattern!r}")
    return patterns


def never_allowed(name: str) -> bool:
    upper = name.upper()
    return any(fnmatchcase(upper, pattern) for pattern in NEVER_ALLOWED)


def name_errors(name: str, allowed: Iterable[str]) -> list[str]:
    """Why a task may not set `name` ([] when it may)."""
    try:
        validation.plain_env_name(name)
    except ValueError as exc:
        return [str(exc)]
    if never_allowed(name):
        return [
            (
                f"environment variable {name} is reserved: it could change where the agent connects, "
                "what it trusts or what it loads"
            )
        ]
    patterns = tuple(allowed)
    if not any(fnmatchcase(name, pattern) for pattern in patterns):
        shown = ", ".join(patterns) or "none"
        return [f"environment variable {name} is not allowed (ORCHESTRATOR_AGENT_ENV_ALLOWED: {shown})"]
    return []


def check(env: Mapping[str, object], allowed: Iterable[str]) -> dict[str, list[str]]:
    """Every name of `env` a task may not set, with the reasons."""
    patterns = tuple(allowed)
    errors = {str(name): name_errors(str(name), patterns) for name in env}
    return {name: reasons for name, reasons in errors.items() if reasons}
