"""PDFs expand to one row per page (caprl_nb.extract.pages), end to end against the simulator."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from caprl_nb.extract import expand_pdfs, groundtruth, render_pdf
from caprl_nb.extract.pages import PAGE_PIXELS

from .conftest import make_images
from .vllm_sim import VLLMSimulator

SCHEMA = {"type": "object", "properties": {"total": {"type": "number"}}}


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
