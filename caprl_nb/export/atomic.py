"""Atomic publication: an export is written into a hidden sibling and renamed into place.

The target (a folder, or a Parquet file) appears whole or not at all: a failed or interrupted
export leaves the target as it was and removes its staging copy (a ``kill -9`` leaves only a
hidden ``.NAME.caprl-tmp-*`` sibling, which no loader mistakes for the dataset). ``overwrite=True``
replaces only what an export made (a folder holding :data:`MANIFEST`, or a Parquet file) or an
empty folder, never an arbitrary path: a typo cannot delete a home directory.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from caprl_nb.export.failures import ExportTargetError

__all__ = ["MANIFEST", "check_target", "staged"]

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


def _sibling(path: Path, tag: str) -> Path:
    return path.with_name(f".{path.name}.caprl-{tag}-{secrets.token_hex(4)}")


@contextlib.contextmanager
def staged(path: Path, *, directory: bool, overwrite: bool) -> Iterator[Path]:
    """A staging path beside ``path``; on a clean exit it replaces ``path``, else it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    check_target(path, overwrite)
    tmp = _sibling(path, "tmp")
    if directory:
        tmp.mkdir()
    try:
        yield tmp
        _publish(tmp, path, overwrite)
    finally:
        _remove(tmp)


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
