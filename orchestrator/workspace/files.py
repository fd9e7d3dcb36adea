"""Atomic file writes and removals on the shared volume.

A write goes to a temporary name in the same directory and is renamed over the
target, so a reader (or the next preparation after a crash) sees the old file
or the new one, never half of one. Temporary names carry `TEMP_MARK` so a
sweep can tell them apart from anything else.
"""

from __future__ import annotations

import os
import secrets
import shutil
from pathlib import Path

from orchestrator.workspace.layout import TEMP_MARK


def atomic_write(path: Path, content: str | bytes, *, mode: int = 0o644) -> bool:
    """Write `content` to `path` via a temporary file and a rename; False when it was already so."""
    data = content.encode("utf-8") if isinstance(content, str) else content
    try:
        if path.is_file() and not path.is_symlink() and path.read_bytes() == data:
            return False  # unchanged: keep its timestamps, nothing to do
    except OSError:
        pass
    temp = path.parent / f"{TEMP_MARK}{path.name}.{secrets.token_hex(4)}"
    # O_EXCL and O_NOFOLLOW: never write through a link someone placed at the temp name.
    fd = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(temp, mode)
        # rename replaces a link at `path` itself rather than following it.
        os.replace(temp, path)
    except BaseException:
        try:
            os.unlink(temp)
        except FileNotFoundError:
            pass
        raise
    _fsync_dir(path.parent)
    return True


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def remove_path(path: Path) -> None:
    """Remove a file, link or directory tree; never follows a link out of it."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        # rmtree does not follow symbolic links inside the tree.
        shutil.rmtree(path, ignore_errors=False)


def remove_temp_files(directory: Path) -> list[Path]:
    """Remove temporary files of interrupted atomic writes under `directory` (links not followed)."""
    removed: list[Path] = []
    if not directory.is_dir() or directory.is_symlink():
        return removed
    for current, dirs, files in os.walk(directory, followlinks=False):
        for name in list(files) + [d for d in dirs if d.startswith(TEMP_MARK)]:
            if name.startswith(TEMP_MARK):
                target = Path(current) / name
                remove_path(target)
                removed.append(target)
        dirs[:] = [d for d in dirs if not d.startswith(TEMP_MARK)]
    return removed
