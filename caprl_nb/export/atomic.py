"""Atomic publication: an export is written into a hidden sibling and renamed into place.

The target (a folder, or a Parquet file) appears whole or not at all: a failed or interrupted
export leaves the target as it was and removes its staging copy. ``overwrite=True`` replaces
only what an export made (a folder holding :data:`MANIFEST`, or a Parquet file) or an empty
folder, never an arbitrary path: a typo cannot delete a home directory.

Staging is a hidden sibling folder ``.NAME.caprl-tmp-XXXXXXXX`` (a Parquet file is written
inside it, then linked into place). It holds a marker, :data:`STAGING_MARKER` (JSON: pid, host,
target, start time), locked with ``flock`` for as long as the export runs. A process killed
outright (``kill -9``, the OOM killer, a lost kernel) cannot remove its staging folder, but the
kernel releases its lock; so the next export to the same target removes every staging sibling
of that target whose marker is ours and whose lock it can take (or, where the file system
cannot lock, whose pid on this host is gone). A sibling without a readable marker, naming
another target, a symlink, or locked by a live export is never touched. The marker is created
under a temporary name, locked, then renamed into place, so no marker is ever seen unlocked
while its export runs; it is removed just before the folder is published.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import socket
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from caprl_nb.export.failures import ExportTargetError

try:
    import fcntl
except ImportError:  # Windows: no flock; stale staging folders are then left for the user
    fcntl = None  # type: ignore[assignment]

__all__ = ["MANIFEST", "STAGING_MARKER", "check_target", "remove_stale_staging", "staged"]

MANIFEST = "caprl_export.json"
"""The file an exported folder holds about itself: rows, options, skipped rows, provenance source."""


def _is_export(path: Path) -> bool:
    if path.is_dir():
        return (path / MANIFEST).is_file() or not any(path.iterdir())
    if path.is_file():
        with path.open("rb") as handle:
            return handle.read(4) == b"PAR1"
    return False


def check_target(path: Path, overwrite: bool) -> None:
    """Raise :class:`ExportTargetError` unless ``path`` may be (re)written."""
    if not os.path.lexists(path):
        return
    if path.is_dir() and not any(path.iterdir()):
        return  # an empty folder: nothing to lose
    if not overwrite:
        msg = f"{path} already exists. Pass overwrite=True to replace it, or choose another path."
        raise ExportTargetError(msg)
    if path.is_symlink() or not _is_export(path):
        msg = (
            f"{path} exists and is not an export made by caprl_nb (no {MANIFEST} in it, not a "
            "Parquet file), so overwrite=True will not replace it. Remove it yourself or choose another path."
        )
        raise ExportTargetError(msg)


STAGING_MARKER = ".caprl-staging.json"
"""The marker inside a staging folder: which process writes it, for which target; locked while it runs."""
_MARKER_KEY = "caprl_nb_staging"


def _sibling(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.caprl-{tag}-{secrets.token_hex(4)}")


def _claim(folder: Path, target: Path) -> int:
    """Mark ``folder`` as this process's staging for ``target``: the marker, locked where the
    file system can lock; returns its descriptor (the lock lives as long as it is open)."""
    info = {_MARKER_KEY: 1, "pid": os.getpid(), "host": socket.gethostname(), "target": target.name,
            "started_at": time.time()}
    pending = folder / f"{STAGING_MARKER}.{secrets.token_hex(4)}"
    fd = os.open(pending, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        if fcntl is not None:
            with contextlib.suppress(OSError):  # a file system without locks: the pid still tells
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(fd, json.dumps(info).encode())
        os.rename(pending, folder / STAGING_MARKER)  # appears locked, never unlocked while we run
    except BaseException:
        os.close(fd)
        raise
    return fd


def _pid_gone(pid: object, host: object) -> bool:
    """Whether ``pid`` on ``host`` is known to have ended (this host only; POSIX only: on Windows
    ``os.kill(pid, 0)`` would send CTRL_C_EVENT)."""
    if not isinstance(pid, int) or pid <= 0 or host != socket.gethostname() or sys.platform == "win32":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: alive, another user's
        return False
    return False


def _stale(folder: Path, target: Path) -> int | None:
    """An open, locked descriptor of ``folder``'s marker if the folder is a staging folder of
    ``target``'s that no live export holds, else None."""
    marker = folder / STAGING_MARKER
    if folder.is_symlink() or not folder.is_dir() or marker.is_symlink():
        return None
    try:
        fd = os.open(marker, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None  # no marker: not clearly ours (or being published right now)
    try:
        info: Any = json.loads(os.read(fd, 4096) or b"null")
        if not isinstance(info, dict) or info.get(_MARKER_KEY) != 1 or info.get("target") != target.name:
            raise ValueError("not our marker")
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return fd  # nobody holds it: its export is gone
            except OSError as exc:
                if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                    raise ValueError("in use") from exc
        if _pid_gone(info.get("pid"), info.get("host")):
            return fd
        raise ValueError("maybe in use")
    except (ValueError, OSError):
        os.close(fd)
        return None


def remove_stale_staging(path: Path) -> list[Path]:
    """Remove the staging folders that interrupted exports to ``path`` left behind; returns them."""
    pattern = re.compile(re.escape(f".{path.name}.caprl-tmp-") + r"[0-9a-f]{8}")
    try:
        names = [entry.name for entry in os.scandir(path.parent) if pattern.fullmatch(entry.name)]
    except OSError:
        return []
    removed = []
    for name in names:
        folder = path.parent / name
        fd = _stale(folder, path)
        if fd is None:
            continue
        try:
            shutil.rmtree(folder, ignore_errors=True)  # while holding its lock
        finally:
            os.close(fd)
        removed.append(folder)
    return removed


@contextlib.contextmanager
def staged(path: Path, *, directory: bool, overwrite: bool) -> Iterator[Path]:
    """A staging path beside ``path``; on a clean exit it replaces ``path``, else it is removed.

    A folder export writes into the yielded folder; a file export writes the yielded path (inside
    the staging folder). Stale staging folders of ``path`` (see the module docs) go first."""
    path.parent.mkdir(parents=True, exist_ok=True)
    check_target(path, overwrite)
    remove_stale_staging(path)
    tmp = _sibling(path, "tmp")
    tmp.mkdir()
    lock: int | None = None
    try:
        lock = _claim(tmp, path)
        yield tmp if directory else tmp / path.name
        (tmp / STAGING_MARKER).unlink()  # the published folder holds only the export
        _publish(tmp if directory else tmp / path.name, path, overwrite)
    finally:
        _remove(tmp)
        if lock is not None:
            os.close(lock)


def _publish(tmp: Path, path: Path, overwrite: bool) -> None:
    check_target(path, overwrite)  # again: something may have appeared while we wrote
    if not os.path.lexists(path):
        if tmp.is_dir():
            os.rename(tmp, path)  # fails (not clobbers) if a non-empty folder appeared meanwhile
        else:
            os.link(tmp, path)  # no-clobber: fails if a file appeared meanwhile
        return
    if tmp.is_file() and path.is_file():
        os.replace(tmp, path)  # one atomic step
        return
    if path.is_dir() and not any(path.iterdir()):
        path.rmdir()
        os.rename(tmp, path)
        return
    # A folder replaces an earlier export: move the old one aside, move the new one in,
    # then delete the old. Between the two renames the target is briefly absent, never partial.
    old = _sibling(path, "old")
    os.rename(path, old)
    try:
        os.rename(tmp, path)
    except BaseException:
        os.rename(old, path)
        raise
    _remove(old)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
