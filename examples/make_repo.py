#!/usr/bin/env python3
"""Create a small local git repository to point an agent at: `python examples/make_repo.py PATH`.

The repository has one commit on `main` (a README and a package stub), a
deterministic author and date, and no remote. Tests use it as a fixture; by
hand it shows what an agent's branch and commit look like afterwards
(`git -C PATH log --all --oneline`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

FILES = {
    "README.md": "# demo\n\nA tiny project the example agent works on.\n",
    "demo/__init__.py": '"""The demo package."""\n',
    ".gitignore": "__pycache__/\n",
}
IDENTITY = {
    "GIT_AUTHOR_NAME": "Orchestrator Example", "GIT_AUTHOR_EMAIL": "example@orchestrator.invalid",
    "GIT_COMMITTER_NAME": "Orchestrator Example", "GIT_COMMITTER_EMAIL": "example@orchestrator.invalid",
    "GIT_AUTHOR_DATE": "2025-01-01T00:00:00Z", "GIT_COMMITTER_DATE": "2025-01-01T00:00:00Z",
}


def make_repo(path: Path, *, bare_remote: Path | None = None) -> Path:
    """Create the repository at `path` (which must not exist or be empty); return it."""
    if path.exists() and any(path.iterdir()):
        raise SystemExit(f"make_repo: {path} exists and is not empty; choose a new directory")
    path.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, **IDENTITY}

    def git(*args: str, cwd: Path = path) -> None:
        subprocess.run(["git", *args], cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)

    git("init", "-q", "-b", "main")
    for name, content in FILES.items():
        target = path / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content)
    git("add", "-A")
    git("commit", "-q", "-m", "Initial commit")
    if bare_remote is not None:
        # A bare copy acts as the "remote" the agent pushes to.
        subprocess.run(["git", "clone", "-q", "--bare", str(path), str(bare_remote)], env=env, check=True)
        git("remote", "add", "origin", str(bare_remote))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("path", type=Path, help="directory to create")
    parser.add_argument("--bare-remote", type=Path, help="also create a bare clone there and add it as origin")
    args = parser.parse_args(argv)
    repo = make_repo(args.path.resolve(), bare_remote=args.bare_remote.resolve() if args.bare_remote else None)
    print(repo)
    return 0


if __name__ == "__main__":
    sys.exit(main())
