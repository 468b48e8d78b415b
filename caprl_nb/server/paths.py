"""Paths from the browser, checked against the Jupyter root; stored inputs, made fit to show.

A path from JupyterLab is relative to the Jupyter root, as its file browser shows it. Refused
with a 4xx that says why, before anything is read: a NUL byte, an absolute path, ``..``, a
hidden file or folder while ``ContentsManager.allow_hidden`` is off (Jupyter's default), and
a symlink that leads out of the root or to a hidden file.
"""

from __future__ import annotations

import ast
import os
import re
from pathlib import Path

from caprl_nb.errors import ConfigError, ImageNotFoundError, PathNotAllowedError, UnsupportedImageError

__all__ = ["relative_input", "resolve_inside", "shown_input"]

_ALLOW_HIDDEN = "set ContentsManager.allow_hidden = True in the Jupyter server's configuration"


def _hidden_part(parts: tuple[str, ...]) -> str | None:
    return next((part for part in parts if part.startswith(".") and part not in (".", "..")), None)


def resolve_inside(root: str | os.PathLike[str], relative: object, *, allow_hidden: bool = False) -> Path:
    """The file ``relative`` names under ``root``; PathNotAllowedError (403) for what may not be read."""
    if not isinstance(relative, str) or not relative.strip():
        raise ConfigError('Send {"path": "<file relative to the Jupyter root>"}.')
    shown = repr(relative[:200])
    if "\0" in relative:
        raise ConfigError(f"The path {shown} contains a NUL byte; no file name can.")
    if relative.startswith(("/", "\\")) or os.path.isabs(relative) or os.path.splitdrive(relative)[0]:
        msg = (
            f"{shown} is an absolute path. Send the path relative to the Jupyter root, as the "
            "file browser shows it (e.g. 'images/cat.png')."
        )
        raise PathNotAllowedError(msg)
    parts = Path(relative).parts
    if ".." in parts:
        msg = f"{shown} climbs with '..'; only files under the Jupyter root can be read, named from it."
        raise PathNotAllowedError(msg)
    if not allow_hidden and (hidden := _hidden_part(parts)) is not None:
        msg = (
            f"{shown} is hidden ({hidden!r} starts with a dot) and this Jupyter server hides such "
            f"files; {_ALLOW_HIDDEN} to allow it."
        )
        raise PathNotAllowedError(msg)
    base = Path(root).resolve()
    try:
        target = (base / relative).resolve()
        exists, is_file = target.exists(), target.is_file()
    except (OSError, RuntimeError) as exc:  # symlink loops, names too long, unreadable folders
        reason = getattr(exc, "strerror", None) or exc
        raise ImageNotFoundError(f"Cannot open {shown} under the Jupyter root: {reason}.") from exc
    if target != base and base not in target.parents:
        msg = f"{shown} leads outside the Jupyter root (a symlink); only files under it can be read."
        raise PathNotAllowedError(msg)
    if not allow_hidden and (hidden := _hidden_part(target.relative_to(base).parts)) is not None:
        msg = f"{shown} leads to a hidden file or folder ({hidden!r}); {_ALLOW_HIDDEN} to allow it."
        raise PathNotAllowedError(msg)
    if not exists:
        raise ImageNotFoundError(f"No file {shown} under the Jupyter root.")
    if not is_file:
        raise UnsupportedImageError(f"{shown} is a folder, not an image file.")
    return target


def relative_input(description: str, root: str | os.PathLike[str]) -> str:
    """A stored input (``file '/abs/root/x.png'``) with its path made relative to ``root``.

    Inputs that are not files, relative paths and paths outside ``root`` come back unchanged.
    """
    if not description.startswith("file "):
        return description
    try:
        text = ast.literal_eval(description[5:])
    except (ValueError, SyntaxError):
        return description
    if not isinstance(text, str) or not os.path.isabs(text):
        return description
    for base in {os.path.abspath(root), os.path.realpath(root)}:
        prefix = base.rstrip(os.sep) + os.sep
        if text.startswith(prefix):
            return f"file {text[len(prefix):]!r}"
    return description


# A URL's query and fragment (where presigned URLs keep their signatures), and its user:password.
_URL_TAIL = re.compile(r"(\b[a-zA-Z][a-zA-Z0-9+.-]*://[^\s'\"?#]*)[?#][^\s'\"]*")
_URL_USER = re.compile(r"://[^/\s'\"@]*@")


def shown_input(description: str, root: str | os.PathLike[str]) -> str:
    """A stored input as ``/caprl/recent`` shows it: root-relative; URLs without the query,
    fragment or user:password (presigned URLs keep their signature there)."""
    return _URL_USER.sub("://", _URL_TAIL.sub(r"\1", relative_input(description, root)))
