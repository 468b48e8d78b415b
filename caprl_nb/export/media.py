"""Each row's image as encoded bytes with a file extension, through :func:`caprl_nb.images.identify`.

Original bytes are kept (no re-encoding) for every input that has them: files, URLs, bytes,
data URLs, Hugging Face ``Image`` values, Arrow binary cells, fsspec URLs and whatever else
:func:`~caprl_nb.images.identify` reads. A decoded input (a PIL image or a numpy array) is
encoded once as PNG, losslessly; a PDF page (an extraction row with a ``page``) is rendered as
extraction saw it. Content that is not an image Pillow can open is the row's failure, never a
file in the dataset.

The file extension follows the bytes' format, never a name that may lie: ``jpg``, ``png``,
``webp``, ... for the usual formats; for any other format Pillow reads (TGA, PPM, JPEG 2000,
...) the suffix of the row's path (a file, a URL, an ``Image`` value's ``path``) when Pillow
registers it for that format, else the format's own.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import PurePosixPath

from PIL import Image

from caprl_nb import images, sources
from caprl_nb.cells import is_missing
from caprl_nb.errors import ImageDecodeError, ImageError
from caprl_nb.fetch import public_url
from caprl_nb.formats import open_image, sniff, unidentified

__all__ = ["Encoded", "encoded", "source_text"]

_EXTENSIONS = {
    "JPEG": "jpg", "PNG": "png", "GIF": "gif", "BMP": "bmp", "TIFF": "tiff", "WEBP": "webp",
    "AVIF": "avif", "HEIC": "heic",
}


# What Pillow raises on a header it cannot read besides OSError (UnidentifiedImageError is one).
_PILLOW_ERRORS = (OSError, SyntaxError, ValueError, EOFError, TypeError, IndexError, KeyError)


@dataclass(frozen=True)
class Encoded:
    """One row's image: its bytes as written, their extension, and the hash the store knows it by."""

    data: bytes
    extension: str  # "jpg", "png", ... (no dot)
    sha256: str  # images.identify's hash: of the original bytes, or of the pixels for PIL/arrays


def source_text(value: object) -> str | None:
    """Where a row's image came from, safe to publish: a path as given, a URL without its query
    or credentials (a Hugging Face ``Image`` value's ``path`` too, also beside embedded bytes);
    None for in-memory images (bytes, Arrow binary, PIL, arrays, data URLs)."""
    path = sources.feature_path(value)  # an Image value's path, even when its bytes are used
    value = path if path is not None else images.plain_value(value)
    if isinstance(value, os.PathLike):
        value = os.fsdecode(value)
    if not isinstance(value, str) or is_missing(value):
        return None
    text = value.strip()
    if text[:5].lower() == "data:":
        return None
    return public_url(text) if "://" in text else text


def _page(value: object, page: object) -> object:
    """The PDF page an extraction row was read from, else ``value`` itself."""
    if is_missing(page):
        return value
    from caprl_nb.extract.pages import PAGE_PIXELS, PdfPage, is_pdf

    if not is_pdf(value):
        return value
    source = (
        bytes(value) if isinstance(value, (bytes, bytearray, memoryview))
        else os.path.abspath(os.path.expanduser(os.fsdecode(value)))  # type: ignore[arg-type]  # is_pdf: str or PathLike
    )
    return PdfPage(source, int(page), PAGE_PIXELS)  # type: ignore[call-overload]  # page: a number here


def encoded(value: object, page: object = None) -> Encoded:
    """The row's image bytes; raises :class:`~caprl_nb.errors.ImageError` naming the input."""
    source = images.identify(_page(value, page))
    content = source.read()
    if isinstance(content, Image.Image):
        return Encoded(_png(content, source.description), "png", source.sha256)
    kind = sniff(content)
    try:
        with open_image(content) as img:  # the header parses: Pillow (so datasets' Image) opens it
            pillow_format = img.format
    except _PILLOW_ERRORS as exc:
        raise ImageDecodeError(unidentified(source.description, content, "")) from exc
    extension = _EXTENSIONS.get(kind or "") or _extension(pillow_format, source_text(value))
    if extension is None:
        raise ImageDecodeError(unidentified(source.description, content, ""))
    return Encoded(content, extension, source.sha256)


def _extension(pillow_format: str | None, source: str | None) -> str | None:
    """A file extension for a format outside :data:`_EXTENSIONS`: the source's suffix when Pillow
    registers it for that format (``.pgm`` stays ``.pgm``), else the format's own name or its
    first registered extension; None when Pillow names no format."""
    if not pillow_format:
        return None
    if pillow_format in _EXTENSIONS:  # e.g. Pillow's name for a format sniff() does not know
        return _EXTENSIONS[pillow_format]
    registered = [ext[1:] for ext, fmt in Image.registered_extensions().items() if fmt == pillow_format]
    suffix = PurePosixPath(source.replace("\\", "/")).suffix.lower()[1:] if source else ""
    for candidate in (suffix, pillow_format.lower()):
        if candidate in registered:
            return candidate
    return registered[0] if registered else None


def _png(img: Image.Image, description: str) -> bytes:
    out = io.BytesIO()
    try:
        if img.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
            img = img.convert("RGBA" if "A" in img.getbands() else "RGB")
        img.save(out, format="PNG")
    except (OSError, ValueError) as exc:
        msg = f"Cannot encode {description} as PNG: {exc}."
        raise ImageError(msg) from exc
    return out.getvalue()
