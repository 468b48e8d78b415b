"""PDF rows become one row per page, each page rendered to a PNG the model can read.

A value is a PDF when it is a path (``str`` / ``os.PathLike``) ending in ``.pdf`` or bytes
starting with ``%PDF-``. Pages are rendered with pypdfium2 at the scale that makes the page
about :data:`PAGE_PIXELS` pixels (1.5 MP, well inside Qwen2.5-VL's 12.8 MP limit and near the
model's sweet spot for A4/Letter text), never above 300 dpi. The batch then sizes each page
to the model like any other image, so the page's bytes (and the result store's key) depend
only on the PDF and pypdfium2's renderer.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from caprl_nb.errors import ImageDecodeError, ImageError, ImageNotFoundError

__all__ = ["PAGE_PIXELS", "Expanded", "expand_pdfs", "is_pdf", "render_pdf"]

PAGE_PIXELS = 1_500_000
_MAX_SCALE = 300 / 72  # pdfium's scale 1.0 is 72 dpi


def is_pdf(value: object) -> bool:
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes):
        text = os.fspath(value)
        return isinstance(text, str) and text.lower().endswith(".pdf") and not text.startswith(
            ("http://", "https://", "data:")
        )
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value[:5]) == b"%PDF-"
    return False


def render_pdf(source: str | os.PathLike[str] | bytes, *, pixels: int = PAGE_PIXELS) -> list[bytes]:
    """Every page of a PDF as PNG bytes of about ``pixels`` pixels.

    Raises :class:`caprl_nb.errors.ImageNotFoundError` for a missing file and
    :class:`caprl_nb.errors.ImageDecodeError` for one pdfium cannot open (damaged, encrypted).
    """
    import pypdfium2 as pdfium

    where = "the PDF bytes" if isinstance(source, (bytes, bytearray)) else str(source)
    if not isinstance(source, (bytes, bytearray)):
        path = Path(os.path.expanduser(os.fspath(source)))
        if not path.is_file():
            raise ImageNotFoundError(f"No PDF at {where}. Check the path.")
        source = str(path)
    try:
        document = pdfium.PdfDocument(bytes(source) if isinstance(source, bytearray) else source)
    except pdfium.PdfiumError as exc:
        msg = f"{where} is not a PDF pdfium can open ({exc}); it may be damaged or encrypted."
        raise ImageDecodeError(msg) from exc
    try:
        pages = []
        for number, page in enumerate(document, start=1):
            try:
                width, height = page.get_size()
                scale = min(_MAX_SCALE, math.sqrt(pixels / max(1.0, width * height)))
                image = page.render(scale=scale).to_pil().convert("RGB")
            except pdfium.PdfiumError as exc:
                msg = f"Page {number} of {where} could not be rendered ({exc})."
                raise ImageDecodeError(msg) from exc
            finally:
                page.close()
            buffer = io.BytesIO()
            image.save(buffer, format="PNG", optimize=False)
            pages.append(buffer.getvalue())
        if not pages:
            raise ImageDecodeError(f"{where} has no pages.")
        return pages
    finally:
        document.close()


@dataclass(frozen=True)
class Expanded:
    """The rows to send: ``values`` with, per value, its original position and page (or NA)."""

    values: list[Any]
    positions: list[int]
    pages: list[int | None]
    errors: dict[int, str]  # position in ``values`` -> why that PDF produced no pages
    any_pdf: bool

    def index(self, original: pd.Index) -> pd.Index:
        """``original``'s labels, each repeated once per page of its row."""
        return original.take(self.positions)

    def page_column(self) -> pd.api.extensions.ExtensionArray:
        return pd.array(self.pages, dtype="Int64")


def expand_pdfs(values: Any) -> Expanded:
    """Replace every PDF in ``values`` by its rendered pages; other values pass through.

    A PDF that cannot be rendered stays one row whose error says why (it is not sent).
    """
    out: list[Any] = []
    positions: list[int] = []
    pages: list[int | None] = []
    errors: dict[int, str] = {}
    any_pdf = False
    for position, value in enumerate(values):
        if not is_pdf(value):
            out.append(value)
            positions.append(position)
            pages.append(None)
            continue
        any_pdf = True
        try:
            rendered = render_pdf(value)
        except (ImageError, OSError) as exc:  # one unreadable PDF is one failed row
            errors[len(out)] = f"{type(exc).__name__}: {exc}"
            out.append(None)
            positions.append(position)
            pages.append(None)
            continue
        for number, png in enumerate(rendered, start=1):
            out.append(png)
            positions.append(position)
            pages.append(number)
    return Expanded(out, positions, pages, errors, any_pdf)
