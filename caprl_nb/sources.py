"""Image cells as datasets hold them: Hugging Face ``Image`` feature values and Arrow values.

``datasets.Dataset.to_pandas()`` (and ``pd.read_parquet`` of a Hugging Face Parquet file) gives
an ``Image`` column as dicts ``{"bytes": b"..." | None, "path": "..." | None}``; with
``dtype_backend="pyarrow"`` the column is an Arrow ``struct<bytes: binary, path: string>``,
whose cells are the same dicts. A pyarrow binary column's cells are ``bytes`` (or ``pd.NA``),
and a ``pyarrow.Array`` iterated by hand gives ``pyarrow.Scalar`` objects.

:func:`plain` turns each of these into what :func:`caprl_nb.images.identify` reads already:
the dict's bytes when it has them (``datasets`` writes the file name beside embedded bytes;
the bytes are the image), else its path (local, or any URL identify reads, ``hf://`` included),
and a scalar's Python value. :func:`describe` names them in messages and the store's ``input``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from caprl_nb.errors import ImageNotFoundError, UnsupportedImageError

__all__ = ["describe", "feature_path", "is_feature", "missing_path_error", "plain"]

_KEYS = frozenset({"bytes", "path"})


def is_feature(value: object) -> bool:
    """Whether ``value`` is a Hugging Face ``Image`` feature value: a dict whose keys are
    ``bytes`` and/or ``path`` (as ``Dataset.to_pandas()`` and ``Image(decode=False)`` give them)."""
    return isinstance(value, dict) and bool(value) and value.keys() <= _KEYS


def _arrow_scalar(value: object) -> bool:
    pa = sys.modules.get("pyarrow")  # never imported: value cannot be an Arrow scalar
    return pa is not None and isinstance(value, pa.Scalar)


def feature_path(value: object) -> str | None:
    """The ``path`` of a Hugging Face ``Image`` value (or of an Arrow struct scalar holding one),
    when it has a non-empty one; None for anything else."""
    if _arrow_scalar(value):
        value = value.as_py()  # type: ignore[attr-defined]
    if not isinstance(value, dict) or not is_feature(value):
        return None
    path = value.get("path")
    return path if isinstance(path, str) and path.strip() else None


def plain(value: object) -> object:
    """``value`` as :func:`caprl_nb.images.identify` reads it: an Arrow scalar's Python value, a
    Hugging Face ``Image`` value's bytes (if it has any) or else its path. Anything else is
    returned as it is (the same object).

    Raises :class:`UnsupportedImageError` for an ``Image`` value with neither bytes nor a path,
    or with a ``bytes``/``path`` that is neither bytes nor text.
    """
    if _arrow_scalar(value):
        value = value.as_py()  # type: ignore[attr-defined]  # bytes, str, dict or None
    if not is_feature(value):
        return value
    assert isinstance(value, dict)
    data, path = value.get("bytes"), value.get("path")
    if data is not None and not isinstance(data, (bytes, bytearray, memoryview)):
        msg = (f"The {describe(value)} holds a {type(data).__name__} under 'bytes', not bytes. "
               "Check how the column was filled.")
        raise UnsupportedImageError(msg)
    if data is not None and memoryview(data).nbytes:
        return data
    if path is not None and not isinstance(path, (str, os.PathLike)):
        msg = (f"The {describe(value)} holds a {type(path).__name__} under 'path', not a path. "
               "Check how the column was filled.")
        raise UnsupportedImageError(msg)
    if path is None or not os.fspath(path).strip():
        if data is not None:  # b"" and no path: identify says "empty bytes"
            return data
        msg = ("The row's Hugging Face image value has neither bytes nor a path: there is no image to caption. "
               "Drop those rows, or load the dataset again with its images.")
        raise UnsupportedImageError(msg)
    return os.fspath(path)


def missing_path_error(value: object, path: str, exc: ImageNotFoundError) -> ImageNotFoundError:
    """The error for an ``Image`` value with no bytes whose path names nothing here.

    A relative path was relative to wherever the dataset was made: say so, and how to keep the
    bytes with the dataset instead.
    """
    if os.path.isabs(os.path.expanduser(path)) or "://" in path:
        return ImageNotFoundError(f"The {describe(value)} has no bytes, and its path names nothing readable: {exc}")
    msg = (f"The {describe(value)} has no bytes, and its path {path!r} is relative: it names no file under "
           f"{os.getcwd()}. Run from the folder the dataset's paths are relative to, make them absolute, "
           "or keep the images in the dataset (datasets embeds their bytes in Parquet: "
           "ds.to_parquet(...), or ds.cast_column(column, datasets.Image()) on absolute paths first).")
    return ImageNotFoundError(msg)


def describe(value: object) -> str | None:
    """A short description of a Hugging Face ``Image`` value, or None if ``value`` is not one."""
    if not is_feature(value):
        return None
    assert isinstance(value, dict)
    data, path = value.get("bytes"), value.get("path")
    shown = ""
    if isinstance(path, (str, os.PathLike)) and os.fspath(path).strip():
        text = os.fspath(path)
        shown = f" {_short(text)!r}"
        if "://" in text:
            from caprl_nb.fetch import public_url  # no user:password, query or fragment

            shown = f" {public_url(text)!r}"
    if isinstance(data, (bytes, bytearray, memoryview)):
        return f"Hugging Face image{shown} ({memoryview(data).nbytes:,} B)"
    if data is None and shown:
        return f"Hugging Face image{shown}"
    if data is None:
        return "Hugging Face image value with neither bytes nor a path"
    return f"Hugging Face image{shown} (bytes: {type(data).__name__})"


def _short(text: str, limit: int = 120) -> str:
    half = (limit - 3) // 2
    return text if len(text) <= limit else f"{text[:half]}...{text[-half:]}"


def as_py(value: Any) -> Any:
    """An Arrow scalar's Python value; anything else as it is."""
    return value.as_py() if _arrow_scalar(value) else value
