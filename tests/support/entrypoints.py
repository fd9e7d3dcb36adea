"""Check that a container command names a real entry point of the package.

There is no Docker engine to run the image, so docker-compose.yml and the
Dockerfile are checked by reading their commands: the gunicorn app, the Celery
app and its queues, the `orchestrator` console script and its subcommand.
"""

from __future__ import annotations

import configparser
import importlib
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from unittest import mock

REPO_ROOT = Path(__file__).resolve().parents[2]

# Modules another part of the project adds; checked only once they exist.
NOT_YET: list[str] = []


def _import_attr(spec: str) -> object:
    module_name, _, attr = spec.partition(":")
    module = importlib.import_module(module_name)
    assert hasattr(module, attr), f"{module_name} has no attribute {attr!r}"
    return getattr(module, attr)


def console_scripts() -> dict[str, str]:
    """`name -> module:function` of setup.cfg's console scripts."""
    parser = configparser.ConfigParser()
    parser.read(REPO_ROOT / "setup.cfg")
    raw = parser.get("options.entry_points", "console_scripts", fallback="")
    scripts = {}
    for line in raw.strip().splitlines():
        name, _, target = line.partition("=")
        scripts[name.strip()] = target.strip()
    return scripts


def _option(argv: Sequence[str], *names: str) -> str | None:
    for index, arg in enumerate(argv):
        for name in names:
            if arg == name and index + 1 < len(argv):
                return argv[index + 1]
            if arg.startswith(name + "="):
                return arg.split("=", 1)[1]
    return None


def check_command(argv: Sequence[str]) -> list[str]:
    """Assert `argv` starts a real entry point; return notes on parts not checkable yet."""
    from celery import Celery

    from workers.app import QUEUES

    notes: list[str] = []
    program = Path(argv[0]).name
    if program == "gunicorn":
        app_spec = argv[-1]
        assert ":" in app_spec, f"gunicorn needs module:app, got {app_spec!r}"
        assert app_spec == "api.wsgi:app", app_spec
        assert callable(_import_attr(app_spec))
        config = _option(argv, "-c", "--config")
        if config and config.startswith("python:"):
            module = config[len("python:"):]
            if importlib.util.find_spec(module) is None:
                notes.append(f"{module} does not exist in this tree yet; not checked")
            else:
                # The config sets PROMETHEUS_MULTIPROC_DIR for gunicorn's workers: not for this
                # process, whose later API tests would then read metrics from that directory.
                with mock.patch.dict(os.environ):
                    importlib.import_module(module)
    elif program == "celery":
        app = _option(argv, "-A", "--app")
        assert app == "workers.app", app
        assert isinstance(_import_attr(f"{app}:app"), Celery)
        sub = next(arg for arg in argv[3:] if not arg.startswith("-"))
        assert sub in {"worker", "flower", "inspect"}, sub
        if sub == "worker":
            queues = _option(argv, "-Q", "--queues")
            assert queues, "a worker names its queues"
            unknown = set(queues.split(",")) - set(QUEUES)
            assert not unknown, f"unknown queues {unknown}"
        if sub == "flower":
            assert importlib.util.find_spec("flower") is not None, "flower is not installed"
            port = _option(argv, "--port")
            assert port and port.isdigit(), "flower takes --port=<number>"
    elif program == "orchestrator":
        scripts = console_scripts()
        assert "orchestrator" in scripts, "setup.cfg has no orchestrator console script"
        main = _import_attr(scripts["orchestrator"])
        assert callable(main)
        subcommand = argv[1]
        import click

        from orchestrator import cli

        assert cli.cli.get_command(click.Context(cli.cli), subcommand) is not None, \
            f"`orchestrator {subcommand}` is not a command of orchestrator/cli"
    else:
        raise AssertionError(f"{argv[0]!r} is not an entry point of the package")
    return notes
