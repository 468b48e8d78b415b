"""Images on object stores and other file systems, read through fsspec: ``s3://``, ``gs://``, ``hf://``,
``az://``, ``memory://``, chained URLs (``zip://a.png::s3://bucket/images.zip``), any protocol fsspec
knows whose file-system package is installed.

fsspec is optional (the ``fsspec`` extra) and imported only when a row names such a URL. What a
row can fail with, each an :class:`caprl_nb.errors.ImageError` that names the URL as
:func:`caprl_nb.fetch.public_url` shows it (no user info, query or fragment):

- fsspec, or the protocol's file-system package, is not installed: the message says what to
  ``pip install`` (:class:`UnsupportedImageError`);
- a protocol fsspec does not know (:class:`UnsupportedImageError`);
- no object there, a folder, or no answer within the timeout (:class:`ImageNotFoundError`);
- denied, or anything else the file system raised (:class:`ImageError`);
- over the byte cap (checked from the object's size before it is read) or empty.

Timeouts: async file systems (s3fs, gcsfs, adlfs, ...) run every call on fsspec's event loop,
and fsspec cancels a call that takes longer than its ``timeout=``: :func:`stat_object` and
:func:`read_object` pass theirs. Synchronous ones (``memory``, ``hf``, ``sftp``, ...) use their
own timeouts (huggingface_hub's ``HF_HUB_DOWNLOAD_TIMEOUT``, for one).

:func:`fingerprint` is what lets a cached re-run skip the download: a validator the store
derives from the object's content or version (an ETag, an MD5 or CRC32C, a version id, a git
blob id, an LFS sha256), never from a timestamp alone. File systems that report none (``memory``)
are read again on every run; the result store still answers by the content's hash.
"""

from __future__ import annotations

import asyncio
import importlib
import re
import sys
import urllib.parse
from dataclasses import dataclass
from typing import Any

from caprl_nb.errors import ImageDecodeError, ImageError, ImageNotFoundError, UnsupportedImageError
from caprl_nb.fetch import check_cap, public_url

__all__ = ["ObjectInfo", "fingerprint", "is_object_url", "local_path", "read_object", "stat_object"]

_SCHEME = re.compile(r"^([a-z][a-z0-9+.-]*)://", re.IGNORECASE)
_NOT_OBJECTS = frozenset({"http", "https", "file", "local"})  # fetch.py / local paths read these
# Which package gives a protocol to fsspec, for the message when fsspec itself is missing.
_PACKAGES = {
    "s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "hf": "huggingface_hub",
    "az": "adlfs", "abfs": "adlfs", "abfss": "adlfs", "oci": "ocifs", "webdav": "webdav4",
}
# Keys of fsspec's info() whose value changes whenever the content does (never a timestamp).
_VALIDATORS = (
    "ETag", "etag", "md5Hash", "crc32c", "VersionId", "version_id", "generation", "blob_id", "content_md5",
)


def is_object_url(value: object) -> bool:
    """Whether :func:`caprl_nb.images.identify` reads ``value`` through fsspec: a string with a
    ``scheme://`` other than http(s) and file (``zip://...::s3://...`` chains included)."""
    if not isinstance(value, str):
        return False
    match = _SCHEME.match(value.strip())
    return match is not None and match.group(1).lower() not in _NOT_OBJECTS


def local_path(value: str) -> str | None:
    """The local path of a ``file://`` (or fsspec ``local://``) URL on this machine; None for
    anything else, including ``file://otherhost/...``."""
    text = value.strip()
    match = _SCHEME.match(text)
    if match is None or match.group(1).lower() not in ("file", "local"):
        return None
    parts = urllib.parse.urlsplit(text)
    if parts.netloc not in ("", "localhost"):
        return None
    from urllib.request import url2pathname  # only here: urllib.request imports http.client and ssl

    return url2pathname(parts.path)


@dataclass(frozen=True)
class ObjectInfo:
    """What the file system said about an object before it was read."""

    url: str
    size: int | None
    fingerprint: str | None  # see fingerprint()
    fs: Any = None  # the fsspec file system and the path in it, reused by read_object
    path: str = ""


def describe_url(url: str) -> str:
    return f"URL {public_url(url)}"


def _fsspec(url: str) -> Any:
    """fsspec.core, or a row error saying what to install."""
    try:
        core = importlib.import_module("fsspec.core")  # optional: the fsspec extra
    except ImportError as exc:
        protocol = _protocol(url)
        extra = f" {_pip_name(_PACKAGES[protocol])}" if protocol in _PACKAGES else ""
        msg = (f"Reading {describe_url(url)} needs fsspec{' and' + extra if extra else ''}: "
               f"pip install fsspec{extra} (or pip install 'caprl-nb[fsspec]'), then restart the kernel.")
        raise UnsupportedImageError(msg) from exc
    return core


def _protocol(url: str) -> str:
    match = _SCHEME.match(url.strip())
    return match.group(1).lower() if match else ""


def _pip_name(module: str) -> str:
    return module.split(".")[0].replace("_", "-")


def _open_fs(url: str) -> tuple[Any, str]:
    """(file system, path in it) for ``url``; fsspec caches file-system instances."""
    core = _fsspec(url)
    desc = describe_url(url)
    try:
        fs, path = core.url_to_fs(url.strip())
    except ImportError as exc:  # fsspec knows the protocol; its package is not installed
        missing = exc.__cause__.name if isinstance(exc.__cause__, ModuleNotFoundError) else None
        if missing is None:
            known = importlib.import_module("fsspec.registry").known_implementations.get(_protocol(url), {})
            missing = str(known.get("class", "")) or None
        package = _pip_name(missing) if missing and not missing.startswith("fsspec.") else None
        fix = f"pip install {package}" if package else "install what it names"
        msg = f"Reading {desc} needs a file-system package for fsspec that is not installed ({exc}). "
        msg += f"Install it ({fix}), then restart the kernel."
        raise UnsupportedImageError(msg) from exc
    except ValueError as exc:
        if "protocol not known" in str(exc).lower():
            msg = (f"Cannot read {desc}: fsspec knows no {_protocol(url)!r} protocol. Check the address; "
                   "images are read from local paths, http(s):// and data: URLs, and fsspec URLs "
                   "such as s3://, gs://, hf://.")
            raise UnsupportedImageError(msg) from exc
        raise _translate(exc, url, 0) from exc
    except Exception as exc:  # a file system's own constructor failed: that row's error
        raise _translate(exc, url, 0) from exc
    return fs, str(path)


def _timeout_kwargs(fs: Any, timeout: float) -> dict[str, float]:
    """``timeout=`` for an async file system's blocking methods (fsspec.asyn.sync takes it)."""
    asyn = sys.modules.get("fsspec.asyn")
    if asyn is not None and isinstance(fs, asyn.AsyncFileSystem) and not fs.asynchronous:
        return {"timeout": timeout}
    return {}


def fingerprint(info: dict[str, Any]) -> str | None:
    """A validator of an object's content from fsspec's ``info()``, or None when the file system
    gives none that changes with the content (a size or a timestamp alone never counts)."""
    found = [f"{key}={info[key]}" for key in _VALIDATORS if info.get(key)]
    lfs = info.get("lfs")
    if isinstance(lfs, dict) and lfs.get("sha256"):
        found.append(f"lfs.sha256={lfs['sha256']}")
    if not found:
        return None
    return f"fsspec size={info.get('size')} " + " ".join(found)


def stat_object(url: str, *, max_bytes: int, timeout: float) -> ObjectInfo:
    """The object's size and fingerprint, asked of its file system (one metadata request);
    raises :class:`ImageError` subclasses naming the URL (see the module's list)."""
    fs, path = _open_fs(url)
    desc = describe_url(url)
    try:
        info = fs.info(path, **_timeout_kwargs(fs, timeout))
    except Exception as exc:  # whatever the file system raises becomes this row's error
        raise _translate(exc, url, timeout) from exc
    if info.get("type") == "directory":
        msg = f"{desc} is a folder, not an image. Pass the image objects inside it (fs.glob lists them)."
        raise ImageNotFoundError(msg)
    size = info.get("size")
    size = int(size) if isinstance(size, (int, float)) and size >= 0 else None
    if size is not None:
        check_cap(size, max_bytes, desc)
        if size == 0:
            msg = f"{desc} is empty (0 B); there is no image in it. Check how it was uploaded."
            raise ImageDecodeError(msg)
    return ObjectInfo(url, size, fingerprint(info), fs, path)


def read_object(url: str, *, max_bytes: int, timeout: float, info: ObjectInfo | None = None) -> bytes:
    """The object's bytes, at most ``max_bytes`` (one ranged read when its size is not known)."""
    info = info if info is not None and info.fs is not None else stat_object(url, max_bytes=max_bytes, timeout=timeout)
    desc = describe_url(url)
    fs = info.fs
    try:
        end = None if info.size is not None else max_bytes + 1
        data = fs.cat_file(info.path, start=None if end is None else 0, end=end, **_timeout_kwargs(fs, timeout))
    except Exception as exc:  # whatever the file system raises becomes this row's error
        raise _translate(exc, url, timeout) from exc
    data = bytes(data)
    check_cap(len(data), max_bytes, desc)
    if not data:
        msg = f"{desc} is empty (0 B); there is no image in it. Check how it was uploaded."
        raise ImageDecodeError(msg)
    return data


def _translate(exc: BaseException, url: str, timeout: float) -> ImageError:
    """What a file system raised, as this row's error (the URL shown without its secrets)."""
    if isinstance(exc, ImageError):
        return exc
    desc = describe_url(url)
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)):  # fsspec's FSTimeoutError is one
        return ImageNotFoundError(f"{desc} did not answer within {timeout:g} s. Check the address, "
                                  "or pass a larger url_timeout=.")
    if isinstance(exc, FileNotFoundError):
        return ImageNotFoundError(f"No object at {desc}. Check the path (bucket, folder and name), "
                                  "and that your credentials may list it.")
    if isinstance(exc, IsADirectoryError):
        return ImageNotFoundError(f"{desc} is a folder, not an image. Pass the image objects inside it.")
    if isinstance(exc, PermissionError):
        return ImageError(f"{desc} refused access ({_why(exc, url)}). Check your credentials for it "
                          "(for s3://: AWS_PROFILE or AWS_ACCESS_KEY_ID; for gs://: gcloud auth; for hf://: HF_TOKEN).")
    return ImageError(f"Could not read {desc}: {type(exc).__name__}: {_why(exc, url)}. "
                      "Check the address, your credentials and your network connection.")


def _why(exc: BaseException, url: str) -> str:
    """The exception's message, the URL in it shown as public_url shows it."""
    text = str(exc).strip().replace(url.strip(), public_url(url)) or type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."
