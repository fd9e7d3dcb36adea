"""Errors every runner raises, so callers need not know which runner they hold."""

from __future__ import annotations


class RunnerError(Exception):
    """A runner could not do what was asked; the message is fit to record on the run."""


class RunnerUnavailable(RunnerError):
    """The runner's platform did not answer, or refused for now (busy, down, timing out): a later try may work."""


class LaunchFailed(RunnerError):
    """The run could not be started (a bad command, a refused manifest...)."""


class LogsUnavailable(RunnerError):
    """The run's output no longer exists (or never did); the message says why."""
