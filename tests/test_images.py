"""caprl_nb.images: every input kind -> ImageSource -> Payload, against real files and a real
loopback HTTP server. Every fixture image is generated here."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import os
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from caprl_nb.errors import (
    ImageDecodeError,
    ImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    UnsupportedImageError,
)
from caprl_nb.images import (
    DEFAULT_MAX_BYTES,
    FileStat,
    ImageSource,
    Payload,
    describe,
    identify,
    is_image_path,
    prepare,
    stat_files,
)
from caprl_nb.models import PRESETS

from tests.support.loopback import serving

QWEN = PRESETS["qwen2.5-vl"]
QWEN3 = PRESETS["qwen3-vl"]
INTERNVL = PRESETS["internvl3.5"]


# -- helpers --------------------------------------------------------------------------------------
def gradient(width: int, height: int) -> Image.Image:
    """An RGB image with structure in both directions (so rotations are visible)."""
    x = np.linspace(0, 255, width, dtype=np.float64)[None, :]
    y = np.linspace(0, 255, height, dtype=np.float64)[:, None]
    arr = np.stack([np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)), np.full((height, width), 90.0)], axis=2)
    return Image.fromarray(arr.astype(np.uint8))


def save(img: Image.Image, path: Path, fmt: str, **kwargs: object) -> bytes:
    img.save(path, fmt, **kwargs)
    return path.read_bytes()


def sent_bytes(payload: Payload) -> bytes:
    head, _, body = payload.data_url.partition(",")
    assert head == f"data:{payload.mime};base64"
    return base64.b64decode(body)


def sent_image(payload: Payload) -> Image.Image:
    img = Image.open(io.BytesIO(sent_bytes(payload)))
    img.load()
    assert img.size == (payload.width, payload.height)
    assert len(sent_bytes(payload)) == payload.nbytes
    return img


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int, bit_depth: int = 1, colour: int = 0) -> bytes:
    """A PNG whose IHDR claims width x height over a few bytes of pixel data that cannot decode."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def read_chars() -> int | None:
    """Bytes this process has read through read() syscalls so far (Linux), else None."""
    try:
        text = Path("/proc/self/io").read_text()
    except OSError:
        return None
    return int(next(line.split()[1] for line in text.splitlines() if line.startswith("rchar:")))


# -- describe / is_image_path ---------------------------------------------------------------------
class ReprBoom:
    def __repr__(self) -> str:
        raise RuntimeError("no repr for you")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, "missing value (None)"),
        (float("nan"), "missing value (nan)"),
        (pd.NA, "missing value (<NA>)"),
        (pd.NaT, "missing value (NaT)"),
        (b"abc", "bytes (3 B)"),
        ("https://example.com/a.png", "URL https://example.com/a.png"),
        ("/data/a.png", "file '/data/a.png'"),
        (Path("/data/a.png"), "file '/data/a.png'"),
        (Image.new("RGB", (640, 480)), "PIL image 640x480 RGB"),
        (np.zeros((480, 640, 3), np.uint8), "array 480x640x3 uint8"),
        (ReprBoom(), "<ReprBoom>"),
    ],
)
def test_describe_names_each_kind_and_never_raises(value: object, expected: str) -> None:
    assert describe(value) == expected


def test_describe_truncates_long_strings() -> None:
    text = describe("/very/long/" + "x" * 5000 + "/name.png")
    assert len(text) < 200
    assert text.endswith("name.png'")
    assert describe("data:image/png;base64," + "A" * 10_000).startswith("data URL (image/png,")


def test_is_image_path_by_extension_case_insensitive() -> None:
    for name in ("a.jpg", "a.JPEG", "a.png", "a.WebP", "a.gif", "a.bmp", "a.tif", "a.TIFF"):
        assert is_image_path(Path(name)), name
    for name in ("a.txt", "a", "a.jpg.bak", "a.pdf"):
        assert not is_image_path(Path(name)), name


# -- pass-through ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("fmt", "suffix", "mode", "mime"),
    [
        ("PNG", "png", "RGB", "image/png"),
        ("PNG", "png", "L", "image/png"),
        ("JPEG", "jpg", "RGB", "image/jpeg"),
        ("JPEG", "jpg", "L", "image/jpeg"),
        ("WEBP", "webp", "RGB", "image/webp"),
    ],
)
def test_fitting_image_goes_out_as_its_exact_bytes(tmp_path: Path, fmt: str, suffix: str, mode: str, mime: str) -> None:
    path = tmp_path / f"a.{suffix}"
    original = save(gradient(320, 240).convert(mode), path, fmt)
    source = identify(str(path))
    assert source.description == f"file '{path.resolve()}'"
    assert source.sha256 == hashlib.sha256(original).hexdigest()
    assert source.stat == FileStat.of(str(path.resolve()), path.stat())
    payload = prepare(source, QWEN)
    assert payload.reencoded is False
    assert sent_bytes(payload) == original
    assert (payload.mime, payload.width, payload.height) == (mime, 320, 240)
    assert (payload.original_width, payload.original_height) == (320, 240)


def test_path_like_and_home_expansion(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    original = save(gradient(64, 64), tmp_path / "home.png", "PNG")
    for value in ("~/home.png", Path("~/home.png"), tmp_path / "home.png"):
        assert identify(value).read() == original


# -- orientation, modes ---------------------------------------------------------------------------
def test_exif_orientation_6_swaps_dimensions_and_reencodes(tmp_path: Path) -> None:
    img = Image.new("RGB", (200, 100), (0, 0, 255))
    img.paste((255, 0, 0), (0, 0, 20, 20))  # a red corner at the stored top-left
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    save(img, tmp_path / "rot.jpg", "JPEG", exif=exif.tobytes(), quality=95)
    payload = prepare(identify(tmp_path / "rot.jpg"), QWEN)
    assert payload.reencoded is True
    assert (payload.width, payload.height) == (100, 200)
    assert (payload.original_width, payload.original_height) == (100, 200)
    out = sent_image(payload).convert("RGB")
    assert out.getexif().get(0x0112) is None  # never rotated twice by the server
    r, g, b = out.getpixel((90, 10))  # the red corner is now top-right
    assert r > 200 and b < 60
    r, g, b = out.getpixel((10, 10))
    assert b > 200 and r < 60


def test_cmyk_jpeg_becomes_rgb_with_the_right_colours(tmp_path: Path) -> None:
    img = Image.new("RGB", (128, 128), (220, 30, 30)).convert("CMYK")
    save(img, tmp_path / "cmyk.jpg", "JPEG", quality=95)
    with Image.open(tmp_path / "cmyk.jpg") as stored:
        assert stored.mode == "CMYK"
    payload = prepare(identify(tmp_path / "cmyk.jpg"), QWEN)
    assert payload.reencoded and payload.mime == "image/jpeg"
    out = sent_image(payload)
    assert out.mode == "RGB"
    r, g, b = out.getpixel((64, 64))
    assert r > 180 and g < 80 and b < 80


def test_palette_png_with_transparency_is_composited_on_white(tmp_path: Path) -> None:
    img = Image.new("P", (100, 100), 1)
    img.putpalette([0, 0, 0] + [0, 200, 0] + [0, 0, 0] * 254)
    img.paste(0, (0, 0, 50, 100))  # left half: index 0, declared transparent
    save(img, tmp_path / "pal.png", "PNG", transparency=0)
    payload = prepare(identify(tmp_path / "pal.png"), QWEN)
    assert payload.reencoded and payload.mime == "image/png"
    out = sent_image(payload)
    assert out.mode == "RGB"
    assert out.getpixel((10, 50)) == (255, 255, 255)
    assert out.getpixel((90, 50)) == (0, 200, 0)


def test_16_bit_png_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 256).astype(np.uint16)
    arr = np.ascontiguousarray(np.broadcast_to(ramp, (64, 256)))
    save(Image.fromarray(arr), tmp_path / "deep.png", "PNG")
    payload = prepare(identify(tmp_path / "deep.png"), QWEN)
    assert payload.reencoded
    out = np.asarray(sent_image(payload))
    assert out.ndim == 2  # still grayscale
    row = out[32].astype(int)
    assert row[0] <= 1 and row[-1] >= 254
    assert row[128] == pytest.approx(128, abs=2)  # clipping would put this at 255
    assert np.all(np.diff(row) >= 0)


def test_rgba_is_composited_on_white(tmp_path: Path) -> None:
    img = Image.new("RGBA", (100, 100), (255, 0, 0, 0))
    img.paste((255, 0, 0, 255), (50, 0, 100, 50))
    img.paste((0, 0, 0, 128), (50, 50, 100, 100))
    save(img, tmp_path / "alpha.png", "PNG")
    out = sent_image(prepare(identify(tmp_path / "alpha.png"), QWEN))
    assert out.mode == "RGB"
    assert out.getpixel((10, 10)) == (255, 255, 255)  # fully transparent -> white, not red/black
    assert out.getpixel((75, 25)) == (255, 0, 0)
    assert out.getpixel((75, 75)) == pytest.approx((127, 127, 127), abs=2)


def test_grayscale_stays_single_channel_when_reencoded(tmp_path: Path) -> None:
    img = Image.new("LA", (100, 100), (40, 255))
    img.paste((200, 0), (0, 0, 50, 100))
    save(img, tmp_path / "la.png", "PNG")
    out = sent_image(prepare(identify(tmp_path / "la.png"), QWEN))
    assert out.mode == "L"
    assert out.getpixel((10, 10)) == 255 and out.getpixel((90, 10)) == 40
    big = gradient(2000, 1600).convert("L")
    save(big, tmp_path / "gray.jpg", "JPEG")
    out = sent_image(prepare(identify(tmp_path / "gray.jpg"), QWEN, max_image_tokens=500))
    assert out.mode == "L"


@pytest.mark.parametrize(("fmt", "suffix"), [("BMP", "bmp"), ("TIFF", "tif"), ("GIF", "gif")])
def test_other_formats_are_reencoded_as_png(tmp_path: Path, fmt: str, suffix: str) -> None:
    save(gradient(120, 90), tmp_path / f"a.{suffix}", fmt)
    payload = prepare(identify(tmp_path / f"a.{suffix}"), QWEN)
    assert payload.reencoded and payload.mime == "image/png"
    assert (payload.width, payload.height) == (120, 90)


def test_animated_image_sends_its_first_frame(tmp_path: Path) -> None:
    frames = [Image.new("RGB", (80, 80), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(tmp_path / "anim.webp", "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    payload = prepare(identify(tmp_path / "anim.webp"), QWEN)
    assert payload.reencoded
    r, g, b = sent_image(payload).convert("RGB").getpixel((40, 40))
    assert r > 200 and b < 50


def test_one_bit_image_becomes_gray(tmp_path: Path) -> None:
    img = Image.new("1", (64, 64), 0)
    img.paste(1, (0, 0, 32, 64))
    save(img, tmp_path / "bw.png", "PNG")
    out = sent_image(prepare(identify(tmp_path / "bw.png"), QWEN))
    assert out.mode == "L" and out.getpixel((5, 5)) == 255 and out.getpixel((60, 5)) == 0


# -- sizes ----------------------------------------------------------------------------------------
def test_image_over_the_pixel_limit_is_resized_within_it(tmp_path: Path) -> None:
    save(gradient(4000, 3500), tmp_path / "big.jpg", "JPEG", quality=90)
    payload = prepare(identify(tmp_path / "big.jpg"), QWEN)
    assert payload.reencoded and payload.mime == "image/jpeg"
    assert payload.width * payload.height <= QWEN.max_pixels
    assert (payload.width, payload.height) == QWEN.target_size(4000, 3500)
    assert (payload.original_width, payload.original_height) == (4000, 3500)


def test_internvl_keeps_the_size_its_tiles_use_and_drops_only_wasted_pixels(tmp_path: Path) -> None:
    save(gradient(2000, 1500), tmp_path / "big.png", "PNG", compress_level=1)
    payload = prepare(identify(tmp_path / "big.png"), INTERNVL)
    # 4x3 tiles of 448 px (1792x1344) sample most of it: sent as it is, with no kwargs.
    assert not payload.reencoded and (payload.width, payload.height) == (2000, 1500)
    assert payload.processor_kwargs == {}
    save(gradient(4000, 3000), tmp_path / "huge.jpg", "JPEG", quality=85)
    payload = prepare(identify(tmp_path / "huge.jpg"), INTERNVL)
    assert payload.reencoded and (payload.width, payload.height) == (1792, 1344)  # the 4x3 grid
    assert INTERNVL.image_tokens(1792, 1344) == INTERNVL.image_tokens(4000, 3000) == 13 * 256


def test_tiny_image_is_scaled_up_to_the_minimum(tmp_path: Path) -> None:
    save(gradient(20, 20), tmp_path / "tiny.png", "PNG")
    payload = prepare(identify(tmp_path / "tiny.png"), QWEN)
    assert payload.reencoded
    assert payload.width * payload.height >= QWEN.min_pixels


@pytest.mark.parametrize("preset", [QWEN, QWEN3, INTERNVL], ids=lambda p: p.family)
@pytest.mark.parametrize("budget", [256, 1024])
def test_max_image_tokens_is_honoured(tmp_path: Path, preset: object, budget: int) -> None:
    path = tmp_path / "photo.png"
    if not path.exists():
        save(gradient(1600, 1200), path, "PNG", compress_level=1)
    payload = prepare(identify(path), preset, max_image_tokens=budget)  # type: ignore[arg-type]
    tiles = payload.processor_kwargs.get("max_dynamic_patch")
    assert preset.image_tokens(payload.width, payload.height, tiles) <= budget  # type: ignore[attr-defined]
    assert payload.width / payload.height == pytest.approx(4 / 3, rel=0.05)


def test_internvl_budget_travels_as_processor_kwargs_not_pixels(tmp_path: Path) -> None:
    save(gradient(1000, 100), tmp_path / "strip.png", "PNG")
    payload = prepare(identify(tmp_path / "strip.png"), INTERNVL, max_image_tokens=1100)
    assert (payload.width, payload.height) == (1000, 100) and not payload.reencoded
    assert payload.processor_kwargs == {"max_dynamic_patch": 3}  # 3x1 tiles + thumbnail = 1024
    assert INTERNVL.image_tokens(1000, 100, 3) == 1024
    assert prepare(identify(tmp_path / "strip.png"), QWEN, max_image_tokens=40).processor_kwargs == {}


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The size of every image Pillow decodes (``ImageFile.load``), in order."""
    from PIL import ImageFile

    sizes: list[tuple[int, int]] = []
    load = ImageFile.ImageFile.load

    def recording(self: ImageFile.ImageFile) -> object:
        sizes.append(self.size)
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", recording)
    return sizes


def test_big_jpeg_uses_draft_and_gets_the_exact_target_size(tmp_path: Path, decoded: list[tuple[int, int]]) -> None:
    save(gradient(4000, 3000), tmp_path / "huge.jpg", "JPEG", quality=85)
    payload = prepare(identify(tmp_path / "huge.jpg"), QWEN, max_image_tokens=300)
    assert (payload.width, payload.height) == QWEN.target_size(4000, 3000, 300)
    assert QWEN.image_tokens(payload.width, payload.height) <= 300
    assert payload.mime == "image/jpeg"
    # the decoder scaled it (draft: 1/2..1/8) instead of decoding all 12 MP
    assert decoded and all(w * h <= 4000 * 3000 // 4 for w, h in decoded), decoded


def test_aspect_ratio_over_200_to_1_is_refused(tmp_path: Path) -> None:
    save(Image.new("RGB", (3000, 10), "white"), tmp_path / "strip.png", "PNG")
    with pytest.raises(ImageTooLargeError, match="300:1"):
        prepare(identify(tmp_path / "strip.png"), QWEN)


def test_decompression_bomb_is_refused_before_decoding(tmp_path: Path, decoded: list[tuple[int, int]]) -> None:
    bomb = png_header_only(30_000, 30_000)  # 900 MP claimed, a few dozen bytes of data
    (tmp_path / "bomb.png").write_bytes(bomb)
    with pytest.raises(ImageTooLargeError, match="bomb|decode safely") as info:
        prepare(identify(tmp_path / "bomb.png"), QWEN)
    assert decoded == []  # refused from the header: not one pixel decoded
    assert "bomb.png" in str(info.value)


def test_max_decode_pixels_is_checked_from_the_header(tmp_path: Path) -> None:
    # 25 MP claimed over pixel data that would fail to decode: refusal proves nothing was decoded
    source = identify(png_header_only(5000, 5000, bit_depth=8))
    with pytest.raises(ImageTooLargeError, match="max_decode_pixels") as info:
        prepare(source, QWEN, max_decode_pixels=1_000_000)
    assert "25,000,000 pixels" in str(info.value)
    with pytest.raises(ImageDecodeError):  # the same bytes under a higher limit do get decoded
        prepare(source, QWEN, max_decode_pixels=30_000_000)


# -- broken inputs --------------------------------------------------------------------------------
def test_truncated_and_garbage_bytes_raise_decode_errors_naming_the_input(tmp_path: Path) -> None:
    png = save(gradient(300, 200), tmp_path / "whole.png", "PNG")
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    with pytest.raises(ImageDecodeError, match="cut.png"):
        prepare(identify(tmp_path / "cut.png"), QWEN)
    jpg = save(gradient(300, 200), tmp_path / "whole.jpg", "JPEG")
    (tmp_path / "cut.jpg").write_bytes(jpg[: len(jpg) // 2])
    with pytest.raises(ImageDecodeError, match="cut.jpg"):
        prepare(identify(tmp_path / "cut.jpg"), QWEN)
    with pytest.raises(ImageDecodeError, match=r"bytes \(23 B\) is not an image"):
        prepare(identify(b"this is not an image :("), QWEN)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (None, UnsupportedImageError, "missing value"),
        (float("nan"), UnsupportedImageError, "missing value"),
        (np.float32("nan"), UnsupportedImageError, "missing value"),
        (pd.NA, UnsupportedImageError, "missing value"),
        (pd.NaT, UnsupportedImageError, "missing value"),
        ("", UnsupportedImageError, "empty string"),
        (b"", ImageDecodeError, "empty bytes"),
        (42, UnsupportedImageError, "int 42"),
        ({"url": "a.png"}, UnsupportedImageError, "dict"),  # not a Hugging Face Image value
        (np.zeros((2, 8, 8, 3), np.uint8), UnsupportedImageError, "2x8x8x3"),
        (np.zeros((3, 64, 64), np.uint8), UnsupportedImageError, "channels-first"),
        (np.zeros((8, 8, 2), np.uint8), UnsupportedImageError, "8x8x2"),
        (np.array([["a"]], dtype=object), UnsupportedImageError, "dtype object"),
        (np.zeros((8, 8), np.complex64), UnsupportedImageError, "complex64"),
        ("nosuch://bucket/a.png", UnsupportedImageError, "fsspec knows no 'nosuch' protocol"),
    ],
)
def test_unusable_values_raise_the_right_error(value: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        identify(value)


def test_missing_file_and_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ImageNotFoundError, match="No such file") as info:
        identify(str(tmp_path / "nope.png"))
    assert "nope.png" in str(info.value) and "https://" not in str(info.value)
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImageNotFoundError, match=r"add https:// in front") as info:
        identify("example.com/cat.jpg")
    assert str(tmp_path) in str(info.value)  # says where relative paths start
    with pytest.raises(ImageNotFoundError, match="is a folder"):
        identify(tmp_path)


def test_byte_cap_on_files_and_bytes(tmp_path: Path) -> None:
    noise = np.random.default_rng(1).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    data = save(Image.fromarray(noise), tmp_path / "a.png", "PNG")
    with pytest.raises(ImageTooLargeError, match="max_bytes=") as info:
        identify(tmp_path / "a.png", max_bytes=1000)
    assert f"{len(data):,} B" in str(info.value) and "1,000 B" in str(info.value)
    with pytest.raises(ImageTooLargeError):
        identify(data, max_bytes=1000)
    with pytest.raises(ImageTooLargeError):
        identify("data:image/png;base64," + base64.b64encode(data).decode(), max_bytes=1000)
    assert identify(tmp_path / "a.png", max_bytes=len(data)).read() == data
    assert DEFAULT_MAX_BYTES == 64 * 1024 * 1024


# -- stat_files: what identify would stat, for many rows at once ---------------------------------
def test_stat_files_sees_each_file_as_identify_does(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "pics"
    (folder / "sub").mkdir(parents=True)
    save(gradient(8, 8), folder / "a.png", "PNG")
    save(gradient(9, 9), folder / "sub" / "b.png", "PNG")
    (tmp_path / "link.png").symlink_to(folder / "a.png")
    (tmp_path / "linked").symlink_to(folder / "sub")
    (tmp_path / "empty.png").write_bytes(b"")
    save(gradient(7, 7), folder / "c:d.png", "PNG")  # a colon: not a scheme
    (folder / "...").write_bytes((folder / "a.png").read_bytes())
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.chdir(folder)
    files = [
        str(folder / "a.png"), "a.png", "./sub/../a.png", "sub/b.png", str(tmp_path / "link.png"),
        str(tmp_path / "linked" / "b.png"), "~/pics/a.png", folder / "sub" / "b.png", "a.png/",
        str(tmp_path / "pics//a.png"), str(tmp_path / "linked" / ".." / "a.png"),
        str(folder / "c:d.png"), "c:d.png", "./a.png", "sub/./b.png", "...", "a.png",
        str(tmp_path / "link.png"), "../link.png",
    ]
    not_files = [
        "missing.png", "sub", "sub/", "sub/.", str(tmp_path / "empty.png"), "", "   ", " a.png",
        "a\0.png", "a\udc80.png", b"a.png", None, 3, "data:image/png;base64,iVBORw0KGgo=",
        "a.png ", "\t", "sub/..", "sub/../", "../pics", "../linked/", str(tmp_path / "linked"),
    ]

    def identified(value: object) -> FileStat | None:
        try:
            return identify(value).stat
        except ImageError:
            return None

    values = files + not_files
    expected = [identified(value) for value in values]
    assert None not in expected[: len(files)]
    assert expected[len(files) :] == [None] * len(not_files)
    assert stat_files(values) == expected
    # Never fetched, nor taken for files: URLs of any scheme.
    urls = ["http://example.com/a.png", " https://example.com/a.png", "s3://bucket/a.png"]
    assert stat_files(urls) == [None] * len(urls)
    assert stat_files([str(folder / "a.png")], max_bytes=10) == [None]  # identify: over the cap


# -- known_hash memo ------------------------------------------------------------------------------
def test_known_hash_skips_reading_the_file(tmp_path: Path) -> None:
    path = tmp_path / "blob.jpg"
    path.write_bytes(os.urandom(4 * 1024 * 1024))  # identify never decodes, so any bytes do
    asked: list[FileStat] = []

    def memo(stat: FileStat) -> str | None:
        asked.append(stat)
        return "f" * 64

    before = read_chars()
    source = identify(path, known_hash=memo)
    after = read_chars()
    assert source.sha256 == "f" * 64
    assert asked == [FileStat.of(str(path.resolve()), path.stat())]
    if before is not None and after is not None:
        assert after - before < 256 * 1024
        identify(path)  # the measurement does see a real read
        assert read_chars() - after >= 4 * 1024 * 1024  # type: ignore[operator]
    # Swap the contents behind its back, restoring size and mtime: read() looks at the file again
    # (identify held nothing) and sees, from its ctime, that it is no longer what was hashed.
    swapped = os.urandom(4 * 1024 * 1024)
    mtime = path.stat().st_mtime_ns
    path.write_bytes(swapped)
    os.utime(path, ns=(mtime, mtime))
    with pytest.raises(ImageError, match="changed after it was hashed"):
        source.read()


def test_known_hash_miss_reads_and_hashes(tmp_path: Path) -> None:
    data = save(gradient(64, 64), tmp_path / "a.png", "PNG")
    source = identify(tmp_path / "a.png", known_hash=lambda stat: None)
    assert source.sha256 == hashlib.sha256(data).hexdigest()


def test_lazy_read_refuses_a_file_that_changed(tmp_path: Path) -> None:
    path = tmp_path / "a.png"
    save(gradient(64, 64), path, "PNG")
    source = identify(path, known_hash=lambda stat: "0" * 64)
    save(gradient(96, 64), path, "PNG")
    with pytest.raises(ImageError, match="changed after it was hashed"):
        prepare(source, QWEN)
    path.unlink()
    with pytest.raises(ImageNotFoundError, match="no longer exists"):
        source.read()


# -- bytes, data URLs, PIL, arrays ----------------------------------------------------------------
def test_bytes_kinds_and_data_urls_share_the_content_hash(tmp_path: Path) -> None:
    data = save(gradient(100, 80), tmp_path / "a.png", "PNG")
    digest = hashlib.sha256(data).hexdigest()
    for value in (data, bytearray(data), memoryview(data)):
        source = identify(value)
        assert source.sha256 == digest and source.stat is None
        assert source.description == f"bytes ({len(data):,} B)"
        assert sent_bytes(prepare(source, QWEN)) == data
    b64 = "data:image/png;base64," + base64.b64encode(data).decode()
    pct = "data:image/png," + "".join(f"%{b:02X}" for b in data)
    urlsafe = "data:image/png;base64," + base64.urlsafe_b64encode(data).decode().rstrip("=")
    for url in (b64, pct, urlsafe):
        source = identify(url)
        assert source.sha256 == digest
        assert source.description == f"data URL (image/png, {len(data):,} B)"
        assert prepare(source, QWEN).reencoded is False
    with pytest.raises(ImageDecodeError, match="base64"):
        identify("data:image/png;base64,@@@not base64@@@")


def test_pil_input_is_reencoded_and_left_untouched() -> None:
    img = Image.new("RGBA", (200, 150), (0, 0, 255, 0))
    img.paste((0, 0, 255, 255), (0, 0, 100, 150))
    snapshot = img.tobytes()
    source = identify(img)
    assert source.description == "PIL image 200x150 RGBA"
    assert source.read() is img
    payload = prepare(source, QWEN)
    assert payload.reencoded and payload.mime == "image/png"
    out = sent_image(payload)
    assert out.getpixel((50, 75)) == (0, 0, 255) and out.getpixel((150, 75)) == (255, 255, 255)
    assert img.mode == "RGBA" and img.tobytes() == snapshot


def test_pil_jpeg_input_goes_out_as_jpeg(tmp_path: Path) -> None:
    save(gradient(300, 200), tmp_path / "a.jpg", "JPEG")
    with Image.open(tmp_path / "a.jpg") as img:
        payload = prepare(identify(img), QWEN)
    assert payload.reencoded and payload.mime == "image/jpeg"


def test_array_and_equal_pil_image_hash_alike() -> None:
    arr = np.asarray(gradient(80, 60))
    source = identify(arr)
    assert source.description == "array 60x80x3 uint8"
    assert source.sha256 == identify(Image.fromarray(arr)).sha256
    assert source.sha256 != identify(arr[::-1]).sha256
    payload = prepare(source, QWEN)
    assert np.array_equal(np.asarray(sent_image(payload)), arr)  # PNG: lossless


@pytest.mark.parametrize(
    ("arr", "expected"),
    [
        (np.array([[False, True]] * 64), (0, 255)),
        (np.array([[0, 65535]] * 64, dtype=np.uint16), (0, 255)),
        (np.array([[0, 32768]] * 64, dtype=np.uint16), (0, 128)),  # >> 8
        (np.array([[0.0, 1.0]] * 64), (0, 255)),  # floats in 0..1 are scaled by 255
        (np.array([[0.0, 0.5]] * 64, dtype=np.float32), (0, 128)),
        (np.array([[0, 200]] * 64, dtype=np.int64), (0, 200)),  # ints in 0..255 kept
        (np.array([[-5.0, 5.0]] * 64), (0, 255)),  # anything else is stretched
    ],
    ids=["bool", "uint16-full", "uint16-half", "float-unit", "float32-half", "int64", "float-signed"],
)
def test_array_dtypes_are_scaled_sensibly(arr: np.ndarray, expected: tuple[int, int]) -> None:
    img = identify(np.repeat(arr, 32, axis=1)).read()
    assert isinstance(img, Image.Image) and img.mode == "L"
    assert (img.getpixel((0, 0)), img.getpixel((63, 0))) == expected


def test_array_shapes(tmp_path: Path) -> None:
    assert identify(np.zeros((40, 40, 1), np.uint8)).read().mode == "L"  # type: ignore[union-attr]
    rgba = np.zeros((60, 60, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[:, :30, 3] = 255
    out = sent_image(prepare(identify(rgba), QWEN))
    assert out.getpixel((10, 10)) == (255, 0, 0) and out.getpixel((50, 10)) == (255, 255, 255)
    arr = np.ones((40, 40, 3), np.uint8)
    source = identify(arr)
    arr[:] = 200  # later changes to the caller's array do not reach the source
    assert source.read().getpixel((0, 0)) == (1, 1, 1)  # type: ignore[union-attr]


def test_large_array_goes_out_as_jpeg() -> None:
    arr = np.random.default_rng(0).integers(0, 256, (1500, 2800, 3), dtype=np.uint8)  # 4.2 MP
    payload = prepare(identify(arr), QWEN)
    assert payload.mime == "image/jpeg" and (payload.width, payload.height) == (2800, 1500)


def test_prepare_is_safe_to_run_in_parallel_threads(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    paths = []
    for i, (fmt, suffix) in enumerate([("JPEG", "jpg"), ("PNG", "png"), ("WEBP", "webp"), ("GIF", "gif")] * 3):
        paths.append(tmp_path / f"{i}.{suffix}")
        save(gradient(900 + 10 * i, 700), paths[-1], fmt)
    serial = [prepare(identify(p), QWEN, max_image_tokens=400) for p in paths]
    with ThreadPoolExecutor(8) as pool:
        parallel = list(pool.map(lambda p: prepare(identify(p), QWEN, max_image_tokens=400), paths))
    assert parallel == serial


# -- URLs -----------------------------------------------------------------------------------------
class Routes(BaseHTTPRequestHandler):
    png: bytes = b""
    release = threading.Event()

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes, ctype: str = "image/png", length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/img.png":
            self._send(200, self.png)
        elif self.path == "/redirect":
            self.send_response(302)
            self.send_header("Location", "/img.png")
            self.send_header("Content-Length", "0")
            self.end_headers()
        elif self.path == "/page":
            self._send(200, b"<html><body>not an image</body></html>", "text/html; charset=utf-8")
        elif self.path == "/declared-huge":
            self._send(200, b"", length=10**9)
        elif self.path == "/endless":  # no Content-Length: the cap must bite while streaming
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            try:
                for _ in range(64):
                    self.wfile.write(b"\0" * 65536)
            except OSError:  # the client hung up once it had enough
                pass
        elif self.path == "/stall":
            self.send_response(200)
            self.send_header("Content-Length", "100")
            self.end_headers()
            self.wfile.flush()
            self.release.wait(10)  # until the test ends; the client must give up first
        else:
            status = int(self.path.strip("/")) if self.path.strip("/").isdigit() else 404
            self._send(status, b"nope", "text/plain")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("http")
    Routes.png = save(gradient(120, 80), folder / "img.png", "PNG")
    Routes.release.clear()
    with serving(Routes, ready_path="/img.png") as base:
        yield base
        Routes.release.set()  # free any request still held, so the server can shut down


def test_url_image_is_fetched_and_passes_through(server: str) -> None:
    source = identify(f"{server}/img.png")
    assert source.description == f"URL {server}/img.png" and source.stat is None
    assert source.sha256 == hashlib.sha256(Routes.png).hexdigest()
    payload = prepare(source, QWEN)
    assert payload.reencoded is False and sent_bytes(payload) == Routes.png
    assert identify(f"{server}/redirect").sha256 == source.sha256


@pytest.mark.parametrize(("route", "status"), [("/missing", "404"), ("/403", "403"), ("/503", "503"), ("/400", "400")])
def test_url_http_errors_name_the_status(server: str, route: str, status: str) -> None:
    with pytest.raises(ImageNotFoundError, match=f"HTTP {status}") as info:
        identify(server + route)
    assert server in str(info.value)


def test_url_byte_cap_declared_and_streamed(server: str) -> None:
    with pytest.raises(ImageTooLargeError, match="1,000,000,000 B"):
        identify(f"{server}/declared-huge")
    with pytest.raises(ImageTooLargeError, match="max_bytes="):
        identify(f"{server}/endless", max_bytes=1024 * 1024)


def test_url_that_stalls_times_out(server: str) -> None:
    started = time.monotonic()
    with pytest.raises(ImageNotFoundError, match=r"still downloading after 0.3 s \(0 B so far\)"):
        identify(f"{server}/stall", url_timeout=0.3)
    # the bound under test: 0.3 s, with a 10x margin; without it the call would last until the
    # server gives up (10 s) or the 5.3 s guard fires, with the same message
    assert time.monotonic() - started < 3


def test_url_serving_a_web_page_says_so(server: str) -> None:
    with pytest.raises(ImageDecodeError, match="sent text/html .*not an image: probably a web page"):
        identify(f"{server}/page")  # before the image pipeline sees it


def test_url_nobody_listens_on() -> None:
    import socket

    with socket.socket() as sock:  # a port that was free a moment ago and has no listener
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(ImageNotFoundError, match="Could not fetch"):
        identify(f"http://127.0.0.1:{port}/a.png", url_timeout=2)


def test_image_source_is_a_plain_dataclass() -> None:
    fields = [f.name for f in dataclasses.fields(ImageSource) if not f.name.startswith("_")]
    assert fields == ["description", "sha256", "stat"]


# -- one image or many: how an argument becomes rows ----------------------------------------------
@pytest.mark.parametrize(
    ("images", "rows"),
    [
        (np.zeros((48, 64, 3), np.uint8), 1),  # one HxWx3 image, not 48 rows of pixels
        (np.zeros((48, 64), np.uint8), 1),
        (np.zeros((48, 64, 4), np.uint8), 1),
        (np.zeros((48, 64, 1), np.uint8), 1),
        (np.zeros((5, 48, 64, 3), np.uint8), 5),  # a batch: one row per image
        (np.zeros((7, 48, 64), np.uint8), 7),  # a stack of gray images
        (np.array(["a.png", "b.png"], dtype=object), 2),
        (bytearray(b"\x89PNG..."), 1),  # not one row per byte
        (memoryview(b"\x89PNG..."), 1),
        (b"\x89PNG...", 1),
        ("a.png", 1),
        (Path("a.png"), 1),
        (Image.new("RGB", (4, 4)), 1),
        ((f"{i}.png" for i in range(4)), 4),  # a generator: one row per item
        (iter(["a.png", "b.png"]), 2),
        (range(3), 3),
        (pd.Index(["a.png", "b.png"]), 2),
    ],
)
def test_as_series_makes_one_row_per_image(images: object, rows: int) -> None:
    from caprl_nb.frames import as_series

    series = as_series(images)
    assert len(series) == rows and series.dtype == object
    if rows == 1 and not isinstance(images, (str, Path)):
        assert series.iat[0] is images  # the value itself, not a copy or a piece of it


def test_as_series_refuses_an_ambiguous_channels_first_array() -> None:
    from caprl_nb.errors import ConfigError
    from caprl_nb.frames import as_series

    with pytest.raises(ConfigError, match=r"3x48x64 is ambiguous.*transpose\(1, 2, 0\).*list\(arr\)"):
        as_series(np.zeros((3, 48, 64), np.uint8))


def test_caption_takes_a_generator_an_array_and_a_bytearray(tmp_path: Path) -> None:
    import caprl_nb

    from tests.support.vllm_sim import VLLMSimulator

    png = save(gradient(90, 60), tmp_path / "a.png", "PNG")
    arr = np.asarray(gradient(80, 50))
    with VLLMSimulator() as sim:
        kw = {"base_url": sim.base_url, "progress": False}
        one = caprl_nb.caption(arr, **kw)
        assert len(one) == 1 and one.notna().all() and len(sim.requests) == 1
        assert len(caprl_nb.caption(bytearray(png), **kw).dropna()) == 1
        several = caprl_nb.caption((p for p in [str(tmp_path / "a.png"), png, arr]), **kw)
        assert len(several) == 3 and several.notna().all()
        batch = caprl_nb.caption(np.stack([arr, arr[::-1]]), **kw)
        assert len(batch) == 2 and batch.notna().all() and batch.iat[0] != batch.iat[1]


def test_large_decodes_in_parallel_threads_stay_within_one_pixel_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from caprl_nb import payloads

    budget = payloads._PixelBudget(250_000)  # room for two 400x300 decodes, not three
    monkeypatch.setattr(payloads, "_DECODING", budget)
    held: list[int] = []
    real = payloads._convert_and_encode

    def spy(*args: object, **kwargs: object) -> tuple[bytes, str]:
        deadline = time.monotonic() + 1  # poll: give a second decode the chance to start
        while budget.total - budget.free < 240_000 and time.monotonic() < deadline:
            time.sleep(0.005)
        held.append(budget.total - budget.free)
        return real(*args, **kwargs)  # type: ignore[arg-type]  # the real function's own arguments

    monkeypatch.setattr(payloads, "_convert_and_encode", spy)
    paths = []
    for i in range(8):
        paths.append(tmp_path / f"{i}.png")
        save(gradient(400, 300), paths[-1], "PNG", transparency=(0, 0, 90))  # transparency: re-encoded
    with ThreadPoolExecutor(8) as pool:
        payloads = list(pool.map(lambda p: prepare(identify(p), QWEN), paths))
    assert all(p.reencoded for p in payloads)
    assert len(held) == 8 and max(held) <= 250_000 and 240_000 in held  # two at once, never three
    assert budget.free == budget.total
