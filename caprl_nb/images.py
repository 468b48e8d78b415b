"""Anything image-like -> a bounded, encoded payload for the model server.

Two synchronous steps (the batch runs them in worker threads): :func:`identify` names one cell
(path, http(s) URL, data: URL, bytes, PIL image, numpy array, PDF page, and as datasets hold
them: Hugging Face ``Image`` values, Arrow values, fsspec URLs such as ``s3://``) and hashes it
without decoding (URLs are downloaded by :mod:`caprl_nb.fetch`, fsspec URLs read by
:mod:`caprl_nb.objects`, dataset cells unwrapped by :mod:`caprl_nb.sources`, local files stat-ed
as :mod:`caprl_nb.filestat` does; a PDF page is rendered); :func:`prepare`
(:mod:`caprl_nb.payloads`, re-exported here) fits it to a :class:`ModelPreset`, decoding only what
must change and guarding against decompression bombs. OS, HTTP and file-system failures become
:mod:`caprl_nb.errors` that name the input and say what to do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import stat as stat_mod
import sys
import urllib.parse
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from PIL import Image

from caprl_nb import objects, sources
from caprl_nb.cells import is_missing
from caprl_nb.errors import ImageDecodeError, ImageError, ImageNotFoundError, UnsupportedImageError
from caprl_nb.fetch import check_cap as _check_cap
from caprl_nb.fetch import fetch, public_url
from caprl_nb.filestat import FileStat
from caprl_nb.filestat import stat_files as _stat_files
from caprl_nb.formats import IMAGE_KINDS, sniff
from caprl_nb.payloads import DEFAULT_MAX_DECODE_PIXELS, Payload, exif_orientation, pillow_errors, prepare
from caprl_nb.pixels import array_to_image

__all__ = [
    "DEFAULT_MAX_BYTES", "DEFAULT_MAX_DECODE_PIXELS", "FileStat", "ImageSource", "Payload", "UrlMemo",
    "describe", "feature_path", "identify", "is_image_path", "is_remote", "is_url", "plain_value", "prepare",
    "stat_files",
]

DEFAULT_MAX_BYTES = 64 * 1024 * 1024
"""Byte cap for one input (file, URL, bytes, data URL)."""

_IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp", ".tif", ".tiff"})
_URLISH = re.compile(r"^(www\.|[a-z0-9-]+(\.[a-z0-9-]+)*\.[a-z]{2,}(:\d+)?/)", re.IGNORECASE)
_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)


# -- sources --------------------------------------------------------------------------------------
class UrlMemo(NamedTuple):
    """What a URL's server said about its content when it was last downloaded, and its hash."""

    etag: str | None
    last_modified: str | None
    sha256: str


@dataclass
class ImageSource:
    """One identified input: what to call it, its content hash, and how to get its content."""

    description: str
    sha256: str
    stat: FileStat | None = None
    _data: bytes | None = field(default=None, kw_only=True, repr=False, compare=False)
    _image: Image.Image | None = field(default=None, kw_only=True, repr=False, compare=False)
    _max_bytes: int = field(default=DEFAULT_MAX_BYTES, kw_only=True, repr=False, compare=False)
    _content_type: str | None = field(default=None, kw_only=True, repr=False, compare=False)
    _url: str | None = field(default=None, kw_only=True, repr=False, compare=False)  # may hold secrets
    _object: str | None = field(default=None, kw_only=True, repr=False, compare=False)  # an fsspec URL
    _url_timeout: float = field(default=60.0, kw_only=True, repr=False, compare=False)
    _validators: tuple[str | None, str | None] = field(default=(None, None), kw_only=True, repr=False, compare=False)

    @property
    def hashed_now(self) -> bool:
        """Whether the file's bytes were read and hashed now (not taken from ``known_hash``)."""
        return self.stat is not None and self._data is not None

    @property
    def url_memo(self) -> UrlMemo | None:
        """For a URL downloaded now whose server sent an ETag or Last-Modified (or an fsspec URL
        read now whose file system gave a fingerprint): what to remember so that the next
        download of it can be a conditional request, or skipped (see ``known_url``)."""
        if (self._url is None and self._object is None) or self._data is None or self._validators == (None, None):
            return None
        return UrlMemo(*self._validators, self.sha256)

    def read(self) -> bytes | Image.Image:
        """The original encoded bytes, or the decoded image for PIL/ndarray inputs.

        A file whose hash came from ``known_hash`` is read now; if its size or mtime changed since,
        this raises :class:`ImageError` rather than send bytes that do not match :attr:`sha256`.
        """
        if self._image is not None:
            return self._image
        if self._data is not None:
            return self._data
        if self._url is not None:  # the server said "not modified": download it now, unconditionally
            fetched = fetch(self._url, max_bytes=self._max_bytes, timeout=self._url_timeout)
            if hashlib.sha256(fetched.data).hexdigest() != self.sha256:
                msg = (f"{self.description} changed after the server said it had not. "
                       "Run the call again to caption what it serves now.")
                raise ImageError(msg)
            return fetched.data
        if self._object is not None:  # its fingerprint was remembered: read it now
            data = objects.read_object(self._object, max_bytes=self._max_bytes, timeout=self._url_timeout)
            if hashlib.sha256(data).hexdigest() != self.sha256:
                msg = (f"{self.description} changed after its file system said it had not. "
                       "Run the call again to caption what it holds now.")
                raise ImageError(msg)
            return data
        if self.stat is None:
            msg = f"{self.description} holds no content; build sources with caprl_nb.images.identify()."
            raise ImageError(msg)
        data, now = _read_file(self.stat.path, self.description, self._max_bytes)
        if now != self.stat:
            msg = (f"{self.description} changed after it was hashed (its size or mtime differ). "
                   "Run the call again once nothing is writing to it.")
            raise ImageError(msg)
        return data


def describe(value: object) -> str:
    """A short, human description of a cell for error messages; never raises."""
    try:
        value = sources.as_py(value)  # an Arrow scalar: what it holds
        if is_missing(value):
            return f"missing value ({'None' if value is None else repr(value)})"
        feature = sources.describe(value)
        if feature is not None:
            return feature
        if isinstance(value, Image.Image):
            return f"PIL image {value.width}x{value.height} {value.mode}"
        if isinstance(value, np.ndarray):
            return f"array {'x'.join(str(n) for n in value.shape)} {value.dtype}"
        if isinstance(value, (bytes, bytearray, memoryview)):
            return f"bytes ({memoryview(value).nbytes:,} B)"
        page = _as_pdf_page(value)
        if page is not None:
            return str(page.description)
        if isinstance(value, (str, os.PathLike)):
            text = os.fsdecode(value) if isinstance(value, os.PathLike) else value
            low = text.strip()[:8].lower()
            if low.startswith("data:"):
                header, _, data = text.strip()[5:].partition(",")
                size = len(data) * 3 // 4 if header.lower().endswith(";base64") else len(data)
                return f"data URL ({_short(header.split(';')[0], 40) or 'no type'}, ~{size:,} B)"
            if _SCHEME.match(text.strip()):
                return f"URL {_short(public_url(text))}"  # no user:password, query or fragment
            return f"file {_short(text)!r}" if text else "empty string ''"
        return f"{type(value).__name__} {_short(repr(value))}"
    except Exception:  # noqa: BLE001 - describe() feeds error messages, so it must not fail itself
        return f"<{type(value).__name__}>"


feature_path = sources.feature_path


def plain_value(value: object) -> object:
    """What a dataset cell holds (see :mod:`caprl_nb.sources`): a Hugging Face ``Image`` value's
    bytes (else its path), an Arrow scalar's value; any other value, and an ``Image`` value with
    nothing in it, as it is. Never raises: for names and identities (the gallery's reviews)."""
    try:
        return sources.plain(value)
    except ImageError:
        return sources.as_py(value)


def is_url(value: object) -> bool:
    """Whether :func:`identify` downloads ``value``: a string that is an http(s) URL."""
    return isinstance(value, str) and value.lstrip()[:8].lower().startswith(("http://", "https://"))


def is_remote(value: object) -> bool:
    """Whether :func:`identify` reads ``value`` over a network: an http(s) URL or an fsspec URL
    such as ``s3://`` (see :mod:`caprl_nb.objects`), or a Hugging Face ``Image`` value with no
    bytes whose path is one."""
    if isinstance(value, dict) and sources.is_feature(value) and not value.get("bytes"):
        value = value.get("path")
    return is_url(value) or objects.is_object_url(value)


def is_image_path(path: Path) -> bool:
    """Whether ``path`` has an image extension we read (jpg jpeg png webp gif bmp tif tiff)."""
    return Path(path).suffix.lower() in _IMAGE_SUFFIXES


def identify(
    value: object,
    *,
    known_hash: Callable[[FileStat], str | None] | None = None,
    known_url: Callable[[str], UrlMemo | None] | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    url_timeout: float = 60.0,
) -> ImageSource:
    """Turn one cell into an :class:`ImageSource` without decoding it.

    Accepts a path (``str`` or ``os.PathLike``, ``~`` expanded; ``file://`` URLs too), an
    ``http(s)://`` URL, a ``data:`` URL, ``bytes``/``bytearray``/``memoryview``, a
    ``PIL.Image.Image`` or a numpy array (see :func:`caprl_nb.pixels.array_to_image` for how
    dtypes are scaled), a PDF page from :func:`caprl_nb.extract.expand_pdfs` (rendered now), a
    Hugging Face ``Image`` value ``{"bytes": ..., "path": ...}`` (its bytes, else its path), a
    ``pyarrow.Scalar`` (its value), or a URL of any other protocol fsspec has installed
    (``s3://``, ``gs://``, ``hf://``, ``memory://``; read by :mod:`caprl_nb.objects` within
    ``url_timeout`` where the file system supports one). For files, ``known_hash(stat)`` is
    asked first; when it returns a hash the file is not read until :meth:`ImageSource.read`.
    Inputs over ``max_bytes`` raise :class:`ImageTooLargeError`; ``url_timeout`` bounds a URL's
    whole download (connect, redirects, headers and body together). For ``http(s)`` URLs,
    ``known_url(url)`` is asked first; when it returns a memo the download is conditional, and
    if the server answers 304 Not Modified the source takes the memo's hash and its body is
    downloaded only if :meth:`ImageSource.read` is called. fsspec URLs are asked the same of
    ``known_url``: a remembered fingerprint (an ETag, a checksum or a version id; see
    :func:`caprl_nb.objects.fingerprint`) that still matches skips the read.
    Every failure is an :class:`ImageError` whose message names the input and what to do.
    """
    if is_missing(value):
        msg = f"The row's input is a {describe(value)}; there is no image to caption. Drop or fill missing rows first."
        raise UnsupportedImageError(msg)
    inner = sources.plain(value)  # a Hugging Face Image value or an Arrow scalar: what it holds
    if inner is not value:
        return _identify_cell(
            value, inner, known_hash=known_hash, known_url=known_url, max_bytes=max_bytes, url_timeout=url_timeout
        )
    if isinstance(value, (Image.Image, np.ndarray)):  # held by reference (PIL) or as an 8-bit copy
        img = value if isinstance(value, Image.Image) else array_to_image(value)
        with pillow_errors(describe(value)):
            return ImageSource(describe(value), _pixel_hash(img), None, _image=img)
    if isinstance(value, (bytes, bytearray, memoryview)):
        n = memoryview(value).nbytes
        desc = f"bytes ({n:,} B)"
        if n == 0:
            msg = "The row's input is empty bytes (0 B); there is no image in it. Check how the column was filled."
            raise ImageDecodeError(msg)
        _check_cap(n, max_bytes, desc)
        data = bytes(value)
        return ImageSource(desc, hashlib.sha256(data).hexdigest(), None, _data=data)
    page = _as_pdf_page(value)
    if page is not None:
        data = page.render()
        return ImageSource(str(page.description), hashlib.sha256(data).hexdigest(), None, _data=data)
    if isinstance(value, (str, os.PathLike)):
        text = os.fsdecode(value) if isinstance(value, os.PathLike) else value
        if "\0" in text:
            msg = (f"The row's input {describe(value)} holds a NUL byte, which no file name can. "
                   "Check how the column was filled.")
            raise UnsupportedImageError(msg)
        stripped = text.strip()
        if not stripped:
            msg = f"The row's input is an empty string ({text!r}), not a path or URL. Drop or fill those rows first."
            raise UnsupportedImageError(msg)
        if isinstance(value, str):
            low = stripped[:8].lower()
            if low.startswith("data:"):
                return _identify_data_url(stripped, max_bytes)
            if is_url(stripped):
                return _identify_url(stripped, max_bytes, url_timeout, known_url)
            if _SCHEME.match(stripped):
                local = objects.local_path(stripped)
                if local is not None:
                    return _identify_file(local, known_hash, max_bytes)
                if objects.is_object_url(stripped):
                    return _identify_object(stripped, max_bytes, url_timeout, known_url)
                msg = (f"Cannot read {describe(value)}: a file:// URL names a file on another machine. "
                       "Copy the file here and pass its local path.")
                raise UnsupportedImageError(msg)
        return _identify_file(text, known_hash, max_bytes)
    msg = (f"Cannot read {describe(value)} as an image. Pass a file path, an http(s) or s3:// (fsspec) URL, "
           "a data: URL, bytes, a PIL.Image.Image, a numpy array or a Hugging Face Image value.")
    raise UnsupportedImageError(msg)


def _identify_cell(
    value: object, inner: object, *, known_hash: Callable[[FileStat], str | None] | None,
    known_url: Callable[[str], UrlMemo | None] | None, max_bytes: int, url_timeout: float,
) -> ImageSource:
    """A dataset cell (see :mod:`caprl_nb.sources`) identified by what it holds."""
    path = sources.feature_path(value) if isinstance(inner, str) else None
    try:
        source = identify(inner, known_hash=known_hash, known_url=known_url, max_bytes=max_bytes,
                          url_timeout=url_timeout)
    except ImageNotFoundError as exc:
        if path is None:
            raise
        raise sources.missing_path_error(sources.as_py(value), path, exc) from exc
    if sources.is_feature(sources.as_py(value)):
        source.description = describe(value)
    return source


def _identify_object(
    url: str, max_bytes: int, timeout: float, known_url: Callable[[str], UrlMemo | None] | None
) -> ImageSource:
    """An fsspec URL: its fingerprint asked first; read unless a remembered one still matches."""
    info = objects.stat_object(url, max_bytes=max_bytes, timeout=timeout)
    desc = objects.describe_url(url)
    memo = known_url(url) if known_url is not None and info.fingerprint is not None else None
    if memo is not None and memo.etag == info.fingerprint:
        return ImageSource(desc, memo.sha256, None, _max_bytes=max_bytes, _object=url, _url_timeout=timeout)
    data = objects.read_object(url, max_bytes=max_bytes, timeout=timeout, info=info)
    return ImageSource(
        desc, hashlib.sha256(data).hexdigest(), None, _data=data, _max_bytes=max_bytes, _object=url,
        _url_timeout=timeout, _validators=(info.fingerprint, None),
    )


def _as_pdf_page(value: object) -> Any:
    """``value`` if it is a :class:`caprl_nb.extract.pages.PdfPage`, else None."""
    pages = sys.modules.get("caprl_nb.extract.pages")  # never imported: value cannot be a page
    return value if pages is not None and isinstance(value, pages.PdfPage) else None


def _short(text: str, limit: int = 160) -> str:
    half = (limit - 3) // 2
    return text if len(text) <= limit else f"{text[:half]}...{text[-half:]}"


def _identify_file(text: str, known_hash: Callable[[FileStat], str | None] | None, max_bytes: int) -> ImageSource:
    given = os.path.expanduser(text)
    try:
        path = os.path.realpath(given)
        os.fsencode(path)
    except (UnicodeError, ValueError) as exc:  # a lone surrogate: no file can have that name
        msg = (f"The row's input {describe(text)} is not a name the file system can hold ({exc}). "
               "Check how the column was filled.")
        raise UnsupportedImageError(msg) from exc
    desc = f"file {_short(path)!r}"
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError) as exc:
        if os.path.lexists(given):  # the name is there, what it links to is not
            msg = (f"{given!r} is a broken symbolic link: it points to {path!r}, which does not exist. "
                   "Fix or remove the link.")
            raise ImageNotFoundError(msg) from exc
        hint = " If it is a web address, add https:// in front." if _URLISH.match(text) else ""
        where = "" if os.path.isabs(os.path.expanduser(text)) else f" (relative paths start at {os.getcwd()})"
        msg = f"No such file: {path!r}{where}. Check the path.{hint}"
        raise ImageNotFoundError(msg) from exc
    except OSError as exc:
        msg = f"Cannot look at {desc}: {exc.strerror or exc}. Check the path and its permissions."
        raise ImageError(msg) from exc
    if stat_mod.S_ISDIR(st.st_mode):
        msg = (f"{path!r} is a folder, not an image file. Pass the image files inside it "
               "(caprl_nb.images.is_image_path picks them by extension).")
        raise ImageNotFoundError(msg)
    if not stat_mod.S_ISREG(st.st_mode):
        msg = f"{desc} is not a regular file (a pipe, socket or device). Copy the image to a file first."
        raise UnsupportedImageError(msg)
    _check_cap(st.st_size, max_bytes, desc)
    if st.st_size == 0:
        msg = f"{desc} is empty (0 B); there is no image in it. It may still be downloading or copying; check the file."
        raise ImageDecodeError(msg)
    fstat = FileStat.of(path, st)
    if known_hash is not None:
        digest = known_hash(fstat)
        if digest:
            return ImageSource(desc, digest, fstat, _max_bytes=max_bytes)
    data, fstat = _read_file(path, desc, max_bytes)
    return ImageSource(desc, hashlib.sha256(data).hexdigest(), fstat, _data=data, _max_bytes=max_bytes)


def stat_files(values: Iterable[object], *, max_bytes: int = DEFAULT_MAX_BYTES) -> list[FileStat | None]:
    """For each value, the :class:`FileStat` :func:`identify` would take of it (see
    :func:`caprl_nb.filestat.stat_files`); None where it names no file identify would read."""
    return _stat_files(values, max_bytes=max_bytes)


def _read_file(path: str, desc: str, max_bytes: int) -> tuple[bytes, FileStat]:
    """Read a whole file under the byte cap; the FileStat is taken from the open descriptor."""
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            # One byte past the size fstat gave (or the cap): enough to see a file that grew or
            # is over the cap, without a cap-sized buffer for every read (CPython allocates the
            # size asked for, then shrinks it).
            data = fh.read(min(st.st_size, max_bytes) + 1)
    except FileNotFoundError as exc:
        msg = f"{desc} no longer exists. Check that nothing moved or deleted it."
        raise ImageNotFoundError(msg) from exc
    except OSError as exc:
        msg = f"Cannot read {desc}: {exc.strerror or exc}. Check its permissions."
        raise ImageError(msg) from exc
    _check_cap(len(data), max_bytes, desc)
    if len(data) != st.st_size:
        msg = f"{desc} changed while it was being read. Run the call again once nothing is writing to it."
        raise ImageError(msg)
    return data, FileStat.of(path, st)


def _identify_data_url(text: str, max_bytes: int) -> ImageSource:
    header, comma, payload = text[5:].partition(",")
    params = [p.strip().lower() for p in header.split(";")]
    mime = params[0] or "no type"
    if not comma:
        msg = f"The data URL ({_short(text, 60)}) has no ',' before its data. Build it as data:image/png;base64,<data>."
        raise ImageDecodeError(msg)
    if "base64" in params[1:]:
        compact = re.sub(r"\s+", "", urllib.parse.unquote(payload) if "%" in payload else payload)
        _check_cap(len(compact) * 3 // 4, max_bytes, f"data URL ({mime})")
        altchars = b"-_" if ("-" in compact or "_" in compact) else None
        try:
            data = base64.b64decode(compact + "=" * (-len(compact) % 4), altchars=altchars, validate=True)
        except (binascii.Error, ValueError) as exc:
            msg = f"The data URL ({mime}) is not valid base64 ({exc}). Re-encode the image with base64.b64encode."
            raise ImageDecodeError(msg) from exc
    else:
        data = urllib.parse.unquote_to_bytes(payload)
    desc = f"data URL ({_short(mime, 40)}, {len(data):,} B)"
    _check_cap(len(data), max_bytes, desc)
    if not data:
        msg = f"The {desc} is empty; there is no image in it."
        raise ImageDecodeError(msg)
    return ImageSource(desc, hashlib.sha256(data).hexdigest(), None, _data=data)


def _identify_url(
    url: str, max_bytes: int, timeout: float, known_url: Callable[[str], UrlMemo | None] | None = None
) -> ImageSource:
    memo = known_url(url) if known_url is not None else None
    if memo is not None and not (memo.etag or memo.last_modified):
        memo = None
    etag, last_modified = (memo.etag, memo.last_modified) if memo is not None else (None, None)
    fetched = fetch(url, max_bytes=max_bytes, timeout=timeout, etag=etag, last_modified=last_modified)
    desc = f"URL {_short(public_url(url))}"
    if fetched.not_modified and memo is not None:
        return ImageSource(desc, memo.sha256, None, _max_bytes=max_bytes, _url=url, _url_timeout=timeout)
    data, content_type = fetched.data, fetched.content_type
    kind = (content_type or "").split(";")[0].strip().lower()
    if (kind.startswith("text/") or kind.endswith(("html", "json", "xml"))) and sniff(data) not in IMAGE_KINDS:
        named = sniff(data)
        what = f" ({named})" if named and named != kind else ""
        msg = f"{desc} sent {kind}{what}, not an image: "
        msg += "probably a web page about the image rather than the image itself. "
        msg += "Use the image's own address (in a browser: right-click the image, Copy Image Address)."
        raise ImageDecodeError(msg)
    return ImageSource(
        desc, hashlib.sha256(data).hexdigest(), None, _data=data, _content_type=content_type,
        _url=url, _url_timeout=timeout, _validators=(fetched.etag, fetched.last_modified),
    )


def _pixel_hash(img: Image.Image) -> str:
    """SHA-256 of (mode, size, palette, transparency, EXIF orientation, raw pixels)."""
    h = hashlib.sha256(f"{img.mode} {img.width}x{img.height}\n".encode())
    if img.mode in ("P", "PA"):
        h.update(bytes(img.getpalette() or []))
    if "transparency" in img.info:
        h.update(repr(img.info["transparency"]).encode())
    orientation = exif_orientation(img, png_getexif=True)
    if orientation != 1:
        h.update(f"orientation {orientation}".encode())
    h.update(img.tobytes())
    return h.hexdigest()
