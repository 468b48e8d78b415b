"""PDF rows become one row per page, each page rendered when the batch reaches it.

A value is a PDF when it is a path (``str`` / ``os.PathLike``) ending in ``.pdf`` or bytes
starting with ``%PDF-``. :func:`expand_pdfs` only opens each PDF to count its pages: every page
row holds a :class:`PdfPage` (the path or the PDF's bytes, shared by its pages, and a page
number), and :func:`caprl_nb.images.identify` renders that one page when the batch asks for it.
So a 1,000-page scan costs a few pages in memory at a time, not 1,000 PNGs before the first
request.

Caps: a PDF over ``max_bytes`` (file size, default :data:`DEFAULT_MAX_PDF_BYTES`) is one failed
row that says so; a PDF with more than ``max_pages`` pages (default :data:`DEFAULT_MAX_PDF_PAGES`)
contributes its first ``max_pages`` pages and a :class:`caprl_nb.errors.CapRLWarning` names the
file, its page count and the option to raise.

Pages are rendered with pypdfium2 at the scale that makes the page about :data:`PAGE_PIXELS`
pixels (1.5 MP, well inside Qwen2.5-VL's 12.8 MP limit and near the model's sweet spot for
A4/Letter text), never above 300 dpi. The batch then sizes each page to the model like any other
image, so the page's bytes (and the result store's key) depend only on the PDF and pypdfium2's
renderer. PDFium is not thread-safe: every call into it holds one process-wide lock.
"""

from __future__ import annotations

import io
import math
import os
import threading
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from caprl_nb.errors import (
    ConfigError,
    ImageDecodeError,
    ImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    row_error,
    warn,
)

__all__ = [
    "DEFAULT_MAX_PDF_BYTES", "DEFAULT_MAX_PDF_PAGES", "PAGE_PIXELS", "Expanded", "PdfPage",
    "expand_pdfs", "is_pdf", "render_pdf",
]

PAGE_PIXELS = 1_500_000
DEFAULT_MAX_PDF_PAGES = 200
"""Pages read from one PDF; the rest are left out with a warning (``max_pdf_pages=``)."""
DEFAULT_MAX_PDF_BYTES = 256 * 1024 * 1024
"""Largest PDF file (or bytes) read; a bigger one is a failed row (``max_pdf_bytes=``)."""
_MAX_SCALE = 300 / 72  # pdfium's scale 1.0 is 72 dpi
_PDFIUM = threading.Lock()  # pdfium must never be called from two threads at once


def is_pdf(value: object) -> bool:
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes):
        text = os.fspath(value)
        return isinstance(text, str) and text.lower().endswith(".pdf") and not text.startswith(
            ("http://", "https://", "data:")
        )
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value[:5]) == b"%PDF-"
    return False


@dataclass(frozen=True, eq=False)
class PdfPage:
    """One page of a PDF, rendered to PNG bytes only when :meth:`render` is called.

    ``source`` is an absolute path or the PDF's bytes (the same object for all its pages);
    ``number`` is 1-based. Pass it anywhere an image goes (``caprl_nb.caption``, the gallery).
    """

    source: str | bytes
    number: int
    pixels: int = PAGE_PIXELS

    @property
    def description(self) -> str:
        where = f"PDF bytes ({len(self.source):,} B)" if isinstance(self.source, bytes) else f"file {self.source!r}"
        return f"{where} page {self.number}"

    def __repr__(self) -> str:
        return f"PdfPage({self.description})"

    def render(self) -> bytes:
        """The page as PNG bytes of about :attr:`pixels` pixels.

        Raises :class:`ImageNotFoundError` if the file is gone and :class:`ImageDecodeError` if
        pdfium cannot open or render it.
        """
        import pypdfium2 as pdfium

        with _PDFIUM:
            document = _open(self.source)
            try:
                if not 1 <= self.number <= len(document):
                    msg = (f"{self.description}: the PDF has only {len(document)} page(s) now. "
                           "Check that the file was not replaced.")
                    raise ImageNotFoundError(msg)
                page = document[self.number - 1]
                try:
                    width, height = page.get_size()
                    scale = min(_MAX_SCALE, math.sqrt(self.pixels / max(1.0, width * height)))
                    bitmap = page.render(scale=scale)
                    image = bitmap.to_pil().convert("RGB")  # a copy: the bitmap can go
                    bitmap.close()
                except pdfium.PdfiumError as exc:
                    msg = f"{self.description} could not be rendered ({exc}); the PDF may be damaged."
                    raise ImageDecodeError(msg) from exc
                finally:
                    page.close()
            finally:
                document.close()
        buffer = io.BytesIO()
        image.save(buffer, format="PNG", optimize=False)
        return buffer.getvalue()


def _open(source: str | bytes) -> Any:
    """A ``pdfium.PdfDocument``; the caller holds :data:`_PDFIUM` and closes it."""
    import pypdfium2 as pdfium

    where = f"PDF bytes ({len(source):,} B)" if isinstance(source, bytes) else f"file {source!r}"
    if isinstance(source, str) and not os.path.isfile(source):
        raise ImageNotFoundError(f"No PDF at {source}. Check the path.")
    try:
        return pdfium.PdfDocument(source)
    except pdfium.PdfiumError as exc:
        msg = f"{where} is not a PDF pdfium can open ({exc}); it may be damaged or encrypted."
        raise ImageDecodeError(msg) from exc


def _normalise(value: Any, max_bytes: int) -> str | bytes:
    """A PDF value as an absolute path or bytes, within ``max_bytes``."""
    if isinstance(value, (bytes, bytearray, memoryview)):
        size = memoryview(value).nbytes
        where = f"PDF bytes ({size:,} B)"
        source: str | bytes = value if isinstance(value, bytes) else bytes(value)
    else:
        source = os.path.abspath(os.path.expanduser(os.fsdecode(value)))
        if not os.path.isfile(source):
            raise ImageNotFoundError(f"No PDF at {source}. Check the path.")
        size = os.path.getsize(source)
        where = f"file {source!r}"
    if size > max_bytes:
        msg = f"{where} is {size:,} B, over the {max_bytes:,} B cap on one PDF (max_pdf_bytes={max_bytes}). "
        msg += f"Split it, or pass max_pdf_bytes={size} to read it."
        raise ImageTooLargeError(msg)
    return source


def _count_pages(source: str | bytes) -> int:
    with _PDFIUM:
        document = _open(source)
        try:
            return len(document)
        finally:
            document.close()


def render_pdf(source: str | os.PathLike[str] | bytes, *, pixels: int = PAGE_PIXELS) -> list[bytes]:
    """Every page of a PDF as PNG bytes of about ``pixels`` pixels, all at once.

    Holds every page in memory: for many pages use :func:`expand_pdfs`, which renders each page
    only when it is needed. Raises :class:`caprl_nb.errors.ImageNotFoundError` for a missing
    file and :class:`caprl_nb.errors.ImageDecodeError` for one pdfium cannot open (damaged,
    encrypted) or that has no pages.
    """
    normal = _normalise(source, max_bytes=2**63)
    count = _count_pages(normal)
    if not count:
        where = "the PDF bytes" if isinstance(normal, bytes) else normal
        raise ImageDecodeError(f"{where} has no pages.")
    return [PdfPage(normal, number, pixels).render() for number in range(1, count + 1)]


@dataclass(frozen=True)
class Expanded:
    """The rows to send: ``values`` with, per value, its original position and page (or NA)."""

    values: list[Any]
    positions: list[int]
    pages: list[int | None]
    problems: dict[int, BaseException]  # position in ``values`` -> why that PDF produced no pages
    any_pdf: bool
    capped: dict[int, int] = field(default_factory=dict)  # original position -> its page count, when over max_pages

    @property
    def errors(self) -> dict[int, str]:
        """``problems`` as the rows' error text (``"ImageDecodeError: ..."``)."""
        return {i: row_error(exc) for i, exc in self.problems.items()}

    def index(self, original: pd.Index) -> pd.Index:
        """``original``'s labels, each repeated once per page of its row."""
        return original.take(self.positions)

    def page_column(self) -> pd.api.extensions.ExtensionArray:
        return pd.array(self.pages, dtype="Int64")


def expand_pdfs(
    values: Any,
    *,
    max_pages: int = DEFAULT_MAX_PDF_PAGES,
    max_bytes: int = DEFAULT_MAX_PDF_BYTES,
    pixels: int = PAGE_PIXELS,
) -> Expanded:
    """Replace every PDF in ``values`` by one :class:`PdfPage` per page; other values pass through.

    Nothing is rendered here (each PDF is opened only to count its pages). A PDF that cannot be
    opened, has no pages or is over ``max_bytes`` stays one row whose error says why (it is not
    sent). A PDF with more than ``max_pages`` pages gives its first ``max_pages`` and one
    warning per call names every such file.
    """
    if max_pages < 1:
        raise ConfigError(f"max_pdf_pages must be at least 1, got {max_pages}.")
    out: list[Any] = []
    positions: list[int] = []
    pages: list[int | None] = []
    problems: dict[int, BaseException] = {}
    capped: dict[int, int] = {}
    notes: list[str] = []
    any_pdf = False
    for position, value in enumerate(values):
        if not is_pdf(value):
            out.append(value)
            positions.append(position)
            pages.append(None)
            continue
        any_pdf = True
        try:
            source = _normalise(value, max_bytes)
            count = _count_pages(source)
            if not count:
                where = "the PDF bytes" if isinstance(source, bytes) else source
                raise ImageDecodeError(f"{where} has no pages.")
        except (ImageError, OSError) as exc:  # one unreadable PDF is one failed row
            problems[len(out)] = exc
            out.append(None)
            positions.append(position)
            pages.append(None)
            continue
        if count > max_pages:
            capped[position] = count
            name = "PDF bytes" if isinstance(source, bytes) else repr(source)
            notes.append(f"{name} has {count:,} pages")
        for number in range(1, min(count, max_pages) + 1):
            out.append(PdfPage(source, number, pixels))
            positions.append(position)
            pages.append(number)
    if notes:
        most = max(capped.values())
        shown = "; ".join(notes[:5]) + (f"; and {len(notes) - 5} more" if len(notes) > 5 else "")
        warn(
            f"{shown}: only the first {max_pages:,} pages of each are read "
            f"(max_pdf_pages={max_pages}). Pass max_pdf_pages={most} to read them all."
        )
    return Expanded(out, positions, pages, problems, any_pdf, capped)
