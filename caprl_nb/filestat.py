"""Local image files as the store knows them: a :class:`FileStat` identity, and the batch's bulk
stat of many rows at once (:func:`stat_files`), which lets a cached re-run answer rows whose
files did not change without reading them. :func:`caprl_nb.images.identify` takes the same stat
of one file; both are re-exported from :mod:`caprl_nb.images`.
"""

from __future__ import annotations

import os
import re
import stat as stat_mod
import sys
from collections.abc import Iterable
from contextlib import suppress
from dataclasses import dataclass

from caprl_nb import objects, sources

__all__ = ["FileStat", "stat_files"]

_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


@dataclass(frozen=True)
class FileStat:
    """Identity of a file input at the time it was looked at; lets callers memoise its hash."""

    path: str  # absolute, symlinks resolved
    size: int
    mtime_ns: int
    ino: int = 0  # a file replaced by a rename is another inode
    ctime_ns: int = 0  # changes on every write, and no tool sets it back

    @classmethod
    def of(cls, path: str, st: os.stat_result) -> FileStat:
        return cls(path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)



def stat_files(values: Iterable[object], *, max_bytes: int) -> list[FileStat | None]:
    """For each value, the :class:`FileStat` :func:`identify` would take of it, if it names a
    non-empty regular file under ``max_bytes``; None for anything else (a URL, bytes, a missing
    file, ...: :func:`identify` says what is wrong with it).

    Made for many rows at once (a cached re-run, before any row is identified): one ``lstat``
    per file, and each folder's real path resolved once rather than once per file.
    """
    folders: dict[str, str] = {}
    stats: list[FileStat | None] = []
    append, lstat, is_file, is_link = stats.append, os.lstat, stat_mod.S_ISREG, stat_mod.S_ISLNK
    sep, one_sep = os.sep, os.altsep is None
    for value in values:
        # The common row, a plain path (a str with no ":", so no scheme; no "~", no NUL), takes
        # the same steps as _stat_path inline: a cached re-run does this for every row.
        if (
            one_sep and type(value) is str and ":" not in value and "\0" not in value
            and value[:1] != "~" and not value.isspace()
        ):
            cut = value.rfind(sep) + 1
            tail = value[cut:]
            if tail:  # (a tail of "." or ".." names a folder: None either way)
                head = value[:cut]
                try:
                    folder = folders.get(head)
                    if folder is None:
                        folder = folders[head] = os.path.join(os.path.realpath(head), "")
                    path = folder + tail
                    st = lstat(path)
                    if is_link(st.st_mode):
                        path = os.path.realpath(value)
                        st = os.stat(path)
                except (OSError, ValueError):
                    append(None)
                    continue
                ok = is_file(st.st_mode) and 0 < st.st_size <= max_bytes
                append(FileStat(path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns) if ok else None)
                continue
        text = _path_text(value)
        append(None if text is None else _stat_path(text, folders, max_bytes))
    return stats


def _path_text(value: object) -> str | None:
    """The text of a value :func:`identify` reads as a local path; None for anything else."""
    if isinstance(value, dict) and sources.is_feature(value) and value.get("bytes") is None:
        value = value.get("path")  # a Hugging Face Image value with only a path: that file
    if isinstance(value, str):
        stripped = value.strip()
        if _SCHEME.match(stripped):
            return objects.local_path(stripped)
        if not stripped or stripped[:5].lower() == "data:":
            return None
        return value
    if isinstance(value, os.PathLike) and _as_pdf_page(value) is None:
        with suppress(TypeError):
            return os.fsdecode(value)
    return None


def _stat_path(text: str, folders: dict[str, str], max_bytes: int) -> FileStat | None:
    """_identify_file's view of ``text`` when it names a readable, non-empty regular file.

    ``folders`` caches each folder's real path (with a trailing separator); the file's own name
    is resolved only when it is a symbolic link.
    """
    if "\0" in text:
        return None
    given = os.path.expanduser(text) if text[:1] == "~" else text
    cut = max(given.rfind(os.sep), given.rfind(os.altsep) if os.altsep else -1) + 1
    head, tail = given[:cut], given[cut:]
    try:
        if tail in ("", ".", ".."):
            path = os.path.realpath(given)
            st = os.stat(path)
        else:
            folder = folders.get(head)
            if folder is None:
                folder = os.path.join(os.path.realpath(head), "")
                folders[head] = folder
            path = folder + tail
            st = os.lstat(path)
            if stat_mod.S_ISLNK(st.st_mode):  # realpath follows the link: so does identify
                path = os.path.realpath(given)
                st = os.stat(path)
    except (OSError, ValueError):  # missing, unreadable, a name no file system can hold
        return None
    if not stat_mod.S_ISREG(st.st_mode) or not 0 < st.st_size <= max_bytes:
        return None
    return FileStat(path, st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)



def _as_pdf_page(value: object) -> object | None:
    """``value`` if it is a :class:`caprl_nb.extract.pages.PdfPage` (a PathLike that is no file)."""
    pages = sys.modules.get("caprl_nb.extract.pages")  # never imported: value cannot be a page
    return value if pages is not None and isinstance(value, pages.PdfPage) else None
