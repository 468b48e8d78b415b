"""PDFs expand to one row per page (caprl_nb.extract.pages), end to end against the simulator."""

from __future__ import annotations

import io
import tracemalloc
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from caprl_nb import images
from caprl_nb.errors import CapRLWarning, ImageNotFoundError
from caprl_nb.extract import expand_pdfs, groundtruth, render_pdf
from caprl_nb.extract.pages import DEFAULT_MAX_PDF_PAGES, PAGE_PIXELS, PdfPage

from tests.conftest import make_images
from tests.support.vllm_sim import VLLMSimulator

SCHEMA = {"type": "object", "properties": {"total": {"type": "number"}}}


@pytest.fixture(scope="module")
def thousand_pages(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 1,000-page PDF of blank Letter pages (pdfium writes it in well under a second)."""
    import pypdfium2 as pdfium

    path = tmp_path_factory.mktemp("pdf") / "book.pdf"
    document = pdfium.PdfDocument.new()
    for _ in range(1000):
        document.new_page(612, 792).close()
    document.save(str(path))
    document.close()
    return path


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The page numbers rendered, in order."""
    done: list[int] = []
    real = PdfPage.render

    def counted(self: PdfPage) -> bytes:
        done.append(self.number)
        return real(self)

    monkeypatch.setattr(PdfPage, "render", counted)
    return done


@pytest.fixture
def three_pages(tmp_path: Path) -> Path:
    path = tmp_path / "docs.pdf"
    groundtruth.pdf(path, 3)
    return path


def test_pages_render_near_the_pixel_target(three_pages: Path) -> None:
    pages = render_pdf(three_pages)
    assert len(pages) == 3
    for png in pages:
        with Image.open(io.BytesIO(png)) as img:
            assert img.format == "PNG"
            assert 0.9 * PAGE_PIXELS < img.width * img.height <= PAGE_PIXELS * 1.01
            assert img.height > img.width  # Letter, portrait
    assert render_pdf(three_pages.read_bytes()) == pages  # bytes in, same pages out


def test_expansion_keeps_positions(three_pages: Path, tmp_path: Path) -> None:
    [png] = make_images(tmp_path / "img", 1)
    expanded = expand_pdfs([png, str(three_pages), three_pages.read_bytes()])
    assert expanded.positions == [0, 1, 1, 1, 2, 2, 2]
    assert expanded.pages == [None, 1, 2, 3, 1, 2, 3]
    assert expanded.index(pd.Index(["a", "b", "c"])).tolist() == ["a", "b", "b", "b", "c", "c", "c"]
    assert expanded.any_pdf and not expanded.errors


def test_unreadable_pdfs_are_row_errors(tmp_path: Path) -> None:
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4\nthis is not really a pdf")
    expanded = expand_pdfs([str(tmp_path / "missing.pdf"), str(broken)])
    assert expanded.pages == [None, None]
    assert expanded.errors[0].startswith("ImageNotFoundError: No PDF at ")
    assert expanded.errors[1].startswith("ImageDecodeError: ")
    assert "damaged or encrypted" in expanded.errors[1]


def test_extract_gives_one_row_per_page(sim: VLLMSimulator, three_pages: Path, tmp_path: Path) -> None:
    [png] = make_images(tmp_path / "img", 1)
    frame = pd.DataFrame({"doc": [png, str(three_pages), str(tmp_path / "missing.pdf")]},
                         index=["scan", "pdf", "gone"])
    with pytest.warns(UserWarning, match="5 row"):
        out = frame.caprl.extract("doc", SCHEMA, base_url=sim.base_url, progress=False)
    assert out.index.tolist() == ["scan", "pdf", "pdf", "pdf", "gone"]
    assert out["page"].tolist() == [pd.NA, 1, 2, 3, pd.NA]
    assert str(out["page"].dtype) == "Int64"
    assert list(out.columns) == ["page", "total", "error"]
    assert out["error"].iloc[:4].str.startswith("ParseError: no JSON object").all()
    assert out["error"].iloc[4].startswith("ImageNotFoundError")
    assert len(sim.requests) == 4  # the missing PDF was never sent


def test_no_page_column_without_pdfs(sim: VLLMSimulator, tmp_path: Path) -> None:
    paths = make_images(tmp_path / "img", 2)
    with pytest.warns(UserWarning):
        out = pd.Series(paths).caprl.extract(SCHEMA, base_url=sim.base_url, progress=False)
    assert list(out.columns) == ["total", "error"]


def test_a_thousand_pages_expand_without_rendering_any(thousand_pages: Path, renders: list[int]) -> None:
    tracemalloc.start()
    try:
        expanded = expand_pdfs([str(thousand_pages)], max_pages=1000)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert expanded.pages == list(range(1, 1001)) and not expanded.errors
    assert renders == []  # nothing rendered before the batch asks
    assert peak < 2 * 2**20  # page references, not 1,000 PNGs (one alone is ~10 KB..1 MB)
    page = expanded.values[499]
    assert isinstance(page, PdfPage) and page.number == 500
    assert images.describe(page) == f"file {str(thousand_pages)!r} page 500"
    source = images.identify(page)  # the batch's first step renders that page, and only it
    assert renders == [500]
    png = source.read()
    assert isinstance(png, bytes)
    with Image.open(io.BytesIO(png)) as img:
        assert 0.9 * PAGE_PIXELS < img.width * img.height <= PAGE_PIXELS * 1.01


def test_page_cap_reads_the_first_pages_and_says_so(thousand_pages: Path, renders: list[int]) -> None:
    with pytest.warns(CapRLWarning) as caught:
        expanded = expand_pdfs([str(thousand_pages), "photo.png"])
    [warning] = caught
    message = str(warning.message)
    assert f"'{thousand_pages}' has 1,000 pages" in message
    assert f"only the first {DEFAULT_MAX_PDF_PAGES} pages of each are read" in message
    assert "Pass max_pdf_pages=1000 to read them all" in message
    assert expanded.pages == [*range(1, DEFAULT_MAX_PDF_PAGES + 1), None]
    assert expanded.capped == {0: 1000}
    assert renders == []


def test_byte_cap_makes_the_pdf_one_failed_row(three_pages: Path) -> None:
    size = three_pages.stat().st_size
    expanded = expand_pdfs([str(three_pages), three_pages.read_bytes()], max_bytes=size - 1)
    assert expanded.pages == [None, None] and expanded.values == [None, None]
    for why in expanded.errors.values():
        assert why.startswith("ImageTooLargeError: ")
        assert f"{size:,} B, over the {size - 1:,} B cap on one PDF" in why
        assert f"max_pdf_bytes={size}" in why


def test_pages_of_pdf_bytes_share_one_copy(three_pages: Path) -> None:
    expanded = expand_pdfs([bytearray(three_pages.read_bytes())])
    sources = {id(page.source) for page in expanded.values}
    assert len(sources) == 1  # three references to one bytes object, not three copies
    assert images.describe(expanded.values[2]).startswith("PDF bytes (") and images.describe(expanded.values[2]).endswith(" page 3")


def test_a_page_whose_file_went_away_is_that_rows_error(tmp_path: Path) -> None:
    path = tmp_path / "gone.pdf"
    groundtruth.pdf(path, 1)
    [page] = expand_pdfs([str(path)]).values
    path.unlink()
    with pytest.raises(ImageNotFoundError, match="No PDF at .*gone.pdf"):
        images.identify(page)


def test_extract_renders_pages_as_the_batch_reaches_them(
    sim: VLLMSimulator, three_pages: Path, renders: list[int]
) -> None:
    frame = pd.DataFrame({"doc": [str(three_pages)]})
    with pytest.warns(UserWarning) as caught:
        out = frame.caprl.extract("doc", SCHEMA, base_url=sim.base_url, progress=False, max_pdf_pages=2)
    assert out["page"].tolist() == [1, 2]
    assert sorted(renders) == [1, 2]  # the batch rendered each page it sent, and page 3 never
    assert len(sim.requests) == 2
    assert any("has 3 pages" in str(w.message) and "max_pdf_pages=3" in str(w.message) for w in caught)
