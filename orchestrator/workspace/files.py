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
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from orchestrator.workspace.layout import TEMP_MARK


def atomic_write(path: Path, content: str | bytes, *, mode: int = 0o644, durable: bool = True) -> bool:
    """Write `content` to `path` via a temporary file and a rename; False when it was already so.

    With `durable=False` nothing is flushed here (no fsync of the file or its
    directory): the caller flushes everything it wrote at once with
    `make_durable` before anything relies on it.
    """
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
            if durable:
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
    if durable:
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


def _fsync_file(path: Path) -> None:
    # O_NOFOLLOW: a link planted at the name is not ours to flush (atomic_write replaced any).
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_flushers: dict[int, ThreadPoolExecutor] = {}


def _flusher() -> ThreadPoolExecutor:
    """This process's flushing threads, started on first use (a forked worker child starts its own)."""
    pool = _flushers.get(os.getpid())
    if pool is None:
        pool = _flushers[os.getpid()] = ThreadPoolExecutor(max_workers=8, thread_name_prefix="fsync")
    return pool


def make_durable(files: Iterable[Path], directories: Iterable[Path] = ()) -> None:
    """Flush files and directories to stable storage, all at once; raise OSError when a file cannot be.

    What `atomic_write` does file by file (the data, then the directory entry),
    for a set written with `durable=False`: each file and each directory once,
    the flushes waiting at the same time. A journaling filesystem commits
    concurrent flushes together, so the caller waits for about one commit
    instead of two per file in a row: on a busy disk those waits were most of
    a workspace preparation's time. `directories` adds directories whose
    entries must last too (ones just created); each file's own is included.
    """
    files = list(dict.fromkeys(files))
    dirs = list(dict.fromkeys([*directories, *(f.parent for f in files)]))
    pool = _flusher()
    pending = [pool.submit(_fsync_file, f) for f in files] + [pool.submit(_fsync_dir, d) for d in dirs]
    for future in pending:
        future.result()


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
