"""Each row's image bytes: originals kept, decoded images as lossless PNG, non-images refused."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from caprl_nb.errors import ImageDecodeError, ImageNotFoundError
from caprl_nb.export.media import encoded, source_text


def test_files_and_bytes_keep_their_bytes_and_extension(tmp_path: Path) -> None:
    path = tmp_path / "photo.jpeg"
    Image.new("RGB", (20, 10), "red").save(path, quality=70)
    got = encoded(str(path))
    assert got.data == path.read_bytes() and got.extension == "jpg"
    webp = io.BytesIO()
    Image.new("RGB", (8, 8), "blue").save(webp, format="WEBP")
    assert encoded(webp.getvalue()).extension == "webp"


def test_pil_images_and_arrays_become_lossless_png() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (12, 16, 3), dtype=np.uint8)
    for value in (pixels, Image.fromarray(pixels)):
        got = encoded(value)
        assert got.extension == "png"
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(got.data))), pixels)
    cmyk = encoded(Image.new("CMYK", (4, 4)))
    assert Image.open(io.BytesIO(cmyk.data)).mode == "RGB"


def test_what_is_not_an_image_is_the_rows_error(tmp_path: Path) -> None:
    with pytest.raises(ImageDecodeError, match="not an image"):
        encoded(b"just some text, not pixels")
    with pytest.raises(ImageNotFoundError, match="No such file"):
        encoded(str(tmp_path / "gone.png"))


def test_a_pdf_page_row_exports_the_rendered_page(tmp_path: Path) -> None:
    pdf = tmp_path / "two.pdf"
    black = Image.new("RGB", (200, 100), "black")
    Image.new("RGB", (200, 100), "white").save(pdf, save_all=True, append_images=[black])
    page = encoded(str(pdf), page=2)
    assert page.extension == "png"
    assert Image.open(io.BytesIO(page.data)).convert("L").getextrema()[1] < 30  # the black page


def test_source_text_never_publishes_secrets() -> None:
    assert source_text("https://user:pw@example.com/a.jpg?sig=abc#x") == "https://example.com/a.jpg"
    assert source_text("/data/a.png") == "/data/a.png"
    assert source_text(b"\x89PNG") is None and source_text("data:image/png;base64,AAAA") is None
