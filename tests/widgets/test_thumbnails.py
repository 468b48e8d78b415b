from pathlib import Path

import pytest
from PIL import Image

from caprl_nb.widgets.thumbnails import ThumbnailCache, make_thumbnail


def test_thumbnail_fits_its_box_and_keeps_aspect(tmp_path: Path) -> None:
    path = tmp_path / "wide.jpg"
    Image.new("RGB", (1600, 400), "teal").save(path, quality=90)
    thumb = make_thumbnail(str(path), 100)
    assert thumb.width * thumb.height <= 100 * 100
    assert abs(thumb.width / thumb.height - 4) < 0.1
    assert thumb.mime == "image/jpeg" and thumb.data[:2] == b"\xff\xd8"
    assert thumb.data_url.startswith("data:image/jpeg;base64,")


def test_small_images_are_not_upscaled(tmp_path: Path) -> None:
    path = tmp_path / "tiny.png"
    Image.new("RGB", (20, 10), "red").save(path)
    thumb = make_thumbnail(str(path), 180)
    assert (thumb.width, thumb.height) == (20, 10)


def test_cache_is_bounded_and_remembers_errors(tmp_path: Path) -> None:
    cache = ThumbnailCache(max_items=3)
    img = Image.new("RGB", (50, 50), "blue")
    for row in range(5):
        cache.get(row, img, 32)
    assert len(cache._items) == 3
    message = cache.get(9, str(tmp_path / "nope.png"), 32)
    assert isinstance(message, str) and "nope.png" in message


@pytest.mark.parametrize("side", [64, 256])
def test_panorama_is_not_refused(side: int) -> None:
    thumb = make_thumbnail(Image.new("RGB", (8000, 20), "white"), side)
    assert thumb.width <= 8000 and thumb.height >= 1


def test_thumbnails_of_hugging_face_image_values(tmp_path: Path) -> None:
    import io

    path = tmp_path / "linked.png"
    Image.new("RGB", (400, 200), "navy").save(path)
    buf = io.BytesIO()
    Image.new("RGB", (300, 300), "gold").save(buf, "PNG")
    embedded = make_thumbnail({"bytes": buf.getvalue(), "path": "gold.png"}, 64)  # as Dataset.to_pandas() gives
    linked = make_thumbnail({"bytes": None, "path": str(path)}, 64)
    assert (embedded.width, embedded.height) == (64, 64)
    assert (linked.width, linked.height) == (90, 45)
    cache = ThumbnailCache()
    message = cache.get(0, {"bytes": None, "path": "nowhere/relative.png"}, 64)
    assert isinstance(message, str) and "'nowhere/relative.png' is relative" in message
