"""Each row's image as encoded bytes with a file extension, through :func:`caprl_nb.images.identify`.

Original bytes are kept (no re-encoding) for every input that has them: files, URLs, bytes,
data URLs and whatever else :func:`~caprl_nb.images.identify` reads. A decoded input (a PIL
image or a numpy array) is encoded once as PNG, losslessly; a PDF page (an extraction row with
a ``page``) is rendered as extraction saw it. Content that is not an image Pillow can open is
the row's failure, never a file in the dataset.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass

from PIL import Image

from caprl_nb import images
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
    or credentials (a Hugging Face ``Image`` dict's ``path`` too); None for in-memory images."""
    if isinstance(value, dict):
        value = value.get("path")
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
    extension = _EXTENSIONS.get(kind or "")
    if extension is None:
        raise ImageDecodeError(unidentified(source.description, content, ""))
    try:
        with open_image(content):
            pass  # the header parses: Pillow (and so the datasets Image feature) can open it
    except _PILLOW_ERRORS as exc:
        raise ImageDecodeError(unidentified(source.description, content, "")) from exc
    return Encoded(content, extension, source.sha256)


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
