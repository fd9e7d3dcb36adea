"""Errors of the command line and their exit codes (documented in the README)."""

from __future__ import annotations

# Exit codes: one per kind of failure, so scripts can tell them apart.
EXIT_OK = 0
EXIT_FAILED = 1  # the task ended Failed or Cancelled (`task watch`), or the server failed (5xx)
EXIT_USAGE = 2  # wrong arguments, unreadable or invalid files, configuration errors
EXIT_NOT_FOUND = 3  # no such task (404)
EXIT_CONFLICT = 4  # refused in the task's current state, already submitted (409), or `up` already running
EXIT_UNREACHABLE = 5  # the API (or, for `up`, Redis) cannot be reached, or answers 503
EXIT_AUTH = 6  # missing or wrong API token (401/403)
EXIT_INVALID = 7  # the API refused the request body (400, 413, 415, 422)
EXIT_INTERRUPTED = 130  # Ctrl-C


class CliError(Exception):
    """A failure shown as one line on stderr, with its exit code."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, details: list[str] | None = None, exit_code: int | None = None, code: str = ""):
        super().__init__(message)
        self.message = message
        self.details = details or []
        self.code = code  # the API's error code, when the error came from it
        if exit_code is not None:
            self.exit_code = exit_code


class UsageError(CliError):
    exit_code = EXIT_USAGE


class NotFound(CliError):
    exit_code = EXIT_NOT_FOUND


class Conflict(CliError):
    exit_code = EXIT_CONFLICT


class Unreachable(CliError):
    exit_code = EXIT_UNREACHABLE


class AuthError(CliError):
    exit_code = EXIT_AUTH


class InvalidRequest(CliError):
    exit_code = EXIT_INVALID


class ServerError(CliError):
    exit_code = EXIT_FAILED
