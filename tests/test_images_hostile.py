"""Hostile and broken inputs: each is one row's error that names its cause, and the batch goes on.

Real files on disk, a real threaded HTTP server on loopback (404, redirect loops, a slow-loris
trickle, a web page, presigned query strings), and one column mixing all of them captioned
against the simulator.
"""

from __future__ import annotations

import io
import os
import resource
import struct
import threading
import time
import warnings
import zlib
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, features

from caprl_nb.errors import (
    ImageDecodeError,
    ImageError,
    ImageNotFoundError,
    ImageTooLargeError,
    UnsupportedImageError,
    error_class,
)
from caprl_nb.images import describe, identify, prepare
from caprl_nb.models import PRESETS

from tests.support.loopback import serving
from tests.support.vllm_sim import VLLMSimulator

QWEN = PRESETS["qwen2.5-vl"]
# Pillow warns once per broken EXIF entry; the EXIF bomb has thousands.
pytestmark = [
    pytest.mark.filterwarnings("ignore:Tag data larger than file:UserWarning"),
    pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning"),
]
SECRET = "X-Amz-Signature=0123456789abcdefSECRET"
HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64


def has_pillow_heif() -> bool:
    try:
        import pillow_heif  # type: ignore[import-not-found]  # optional plugin  # noqa: F401
    except ImportError:
        return False
    return True


def photo(width: int = 160, height: int = 120) -> Image.Image:
    rng = np.random.default_rng(width * 7 + height)
    return Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))


def encoded(img: Image.Image, fmt: str, **kwargs: object) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def zero_png(width: int, height: int) -> bytes:
    """A real 1-bit PNG of width x height zeros: tiny on disk, huge once decoded."""
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    comp = zlib.compressobj(9)
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def exif_bomb() -> bytes:
    """A JPEG whose EXIF claims 65,535 entries, each an orientation tag pointing past the file."""
    entries = struct.pack("<HHII", 274, 3, 0x0FFFFFFF, 0xFFFFFF00) * 2000
    exif = b"Exif\x00\x00II*\x00\x08\x00\x00\x00\xff\xff" + entries
    return encoded(photo(), "JPEG", exif=exif)


# -- the files ------------------------------------------------------------------------------------
GOOD = ["photo.jpg", "one_pixel.png", "sixteen_bit.png", "cmyk.jpg", "palette_alpha.png",
        "animated.gif", "animated.webp", "exif_bomb.jpg"]
# name -> (error class, words the message must hold)
BAD: dict[str, tuple[type[ImageError], str]] = {
    "truncated.jpg": (ImageDecodeError, "truncated"),
    "truncated.png": (ImageDecodeError, "truncated"),
    "zero.png": (ImageDecodeError, "is empty (0 B)"),
    "text.jpg": (ImageDecodeError, "holds text"),
    "drawing.svg": (ImageDecodeError, "SVG drawing"),
    "page.html": (ImageDecodeError, "HTML web page"),
    "folder.png": (ImageNotFoundError, "is a folder"),
    "dangling.png": (ImageNotFoundError, "broken symbolic link"),
    "bomb.png": (ImageTooLargeError, "too large to decode safely"),
    "wide.png": (ImageTooLargeError, "aspect ratio of 10000:1"),
    "scan.pdf": (ImageDecodeError, "is a PDF, not an image"),  # caption does not expand PDFs; extract does
}
if not has_pillow_heif():
    BAD["photo.heic"] = (ImageDecodeError, "unsupported format: HEIC")


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("hostile")
    jpg = encoded(photo(), "JPEG")
    png = encoded(photo(), "PNG")
    (d / "photo.jpg").write_bytes(jpg)
    (d / "truncated.jpg").write_bytes(jpg[: len(jpg) // 2])
    (d / "truncated.png").write_bytes(png[: len(png) // 2])
    (d / "zero.png").write_bytes(b"")
    (d / "text.jpg").write_text("this is a caption, not a picture\n")
    (d / "drawing.svg").write_text('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>')
    (d / "page.html").write_text("<!DOCTYPE html><html><body>Access denied</body></html>")
    (d / "folder.png").mkdir()
    (d / "dangling.png").symlink_to(d / "nowhere.png")
    (d / "bomb.png").write_bytes(zero_png(20_000, 20_000))  # 400 MP in ~50 KB
    Image.new("RGB", (100_000, 10), "white").save(d / "wide.png")
    Image.new("RGB", (1, 1), (200, 30, 30)).save(d / "one_pixel.png")
    Image.fromarray(np.linspace(0, 65535, 64 * 48, dtype=np.uint16).reshape(48, 64)).save(d / "sixteen_bit.png")
    Image.new("CMYK", (64, 48), (0, 255, 255, 0)).save(d / "cmyk.jpg")
    pal = Image.new("P", (64, 48), 1)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.save(d / "palette_alpha.png", transparency=0)
    frames = [Image.new("RGB", (64, 48), c) for c in ("red", "green", "blue")]
    frames[0].save(d / "animated.gif", save_all=True, append_images=frames[1:], duration=50, loop=0)
    frames[0].save(d / "animated.webp", save_all=True, append_images=frames[1:], duration=50)
    (d / "exif_bomb.jpg").write_bytes(exif_bomb())
    (d / "photo.heic").write_bytes(HEIC)
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument.new()
    pdf.new_page(612, 792).close()
    pdf.save(str(d / "scan.pdf"))
    pdf.close()
    if features.check("avif"):
        photo().save(d / "photo.avif")
    return d


@pytest.mark.parametrize("name", GOOD)
def test_odd_but_valid_images_are_prepared(files: Path, name: str) -> None:
    payload = prepare(identify(files / name), QWEN)
    w, h = payload.width, payload.height
    assert QWEN.min_pixels <= w * h <= QWEN.max_pixels
    with Image.open(io.BytesIO(_sent(payload.data_url))) as img:
        assert img.size == (w, h) and img.mode in ("RGB", "L")


def test_animated_images_send_their_first_frame(files: Path) -> None:
    for name in ("animated.gif", "animated.webp"):
        payload = prepare(identify(files / name), QWEN)
        with Image.open(io.BytesIO(_sent(payload.data_url))) as img:
            r, g, b = img.convert("RGB").getpixel((img.width // 2, img.height // 2))
        assert r > 200 and g < 60 and b < 60, name  # red, the first frame


@pytest.mark.skipif(not features.check("avif"), reason="this Pillow build has no AVIF codec")
def test_avif_is_read_natively(files: Path) -> None:
    payload = prepare(identify(files / "photo.avif"), QWEN)
    assert payload.reencoded and payload.mime == "image/jpeg"
    assert (payload.original_width, payload.original_height) == (160, 120)


@pytest.mark.skipif(has_pillow_heif(), reason="pillow-heif is installed: HEIC is read")
def test_heic_without_the_plugin_says_what_to_install(files: Path) -> None:
    with pytest.raises(ImageDecodeError, match=r"unsupported format: HEIC.*pip install pillow-heif"):
        prepare(identify(files / "photo.heic"), QWEN)


@pytest.mark.parametrize("name", sorted(BAD))
def test_each_broken_file_is_an_image_error_naming_its_cause(files: Path, name: str) -> None:
    kind, words = BAD[name]
    with pytest.raises(kind, match=words.replace("(", r"\(").replace(")", r"\)")) as info:
        prepare(identify(files / name), QWEN)
    if name != "wide.png":  # the aspect-ratio message names the size; the batch adds the input
        assert name.split(".")[0] in str(info.value)


def test_unreadable_file() -> None:
    import shutil
    import subprocess
    import sys
    import tempfile

    folder = Path(tempfile.mkdtemp(prefix="caprl-unreadable-"))  # world-traversable, unlike tmp_path
    try:
        folder.chmod(0o755)
        path = folder / "locked.png"
        path.write_bytes(encoded(photo(), "PNG"))
        path.chmod(0)
        if os.geteuid() != 0:
            with pytest.raises(ImageError, match="Permission denied.*permissions"):
                identify(path)
            return
        # root reads anything: ask in a child process that runs as nobody
        code = (
            "import sys\nfrom caprl_nb.images import identify\n"
            "try:\n    identify(sys.argv[1])\nexcept Exception as exc:\n"
            "    print(type(exc).__name__ + ': ' + str(exc))\n"
        )
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "HOME": str(folder)}
        try:
            done = subprocess.run(
                [sys.executable, "-c", code, str(path)], user="nobody", env=env, cwd=folder,
                capture_output=True, text=True, timeout=120, check=False,
            )
        except (PermissionError, OSError) as exc:  # a container that cannot switch users
            pytest.skip(f"running as root and cannot run as nobody ({exc})")
        if "No module named" in done.stderr:
            pytest.skip("running as root, and nobody cannot import this checkout")
        assert done.stdout.startswith("ImageError: Cannot read file "), done.stdout + done.stderr
        assert "Permission denied. Check its permissions." in done.stdout
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_decompression_bomb_is_refused_before_any_pixel_is_decoded(files: Path) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    with pytest.raises(ImageTooLargeError, match="400,000,000 pixels|too large to decode safely"):
        prepare(identify(files / "bomb.png"), QWEN)
    grown = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown < 100 * 1024  # decoding would need 400 MB at least


def test_pillows_bomb_warning_maps_to_our_error_where_warnings_are_errors() -> None:
    source = identify(zero_png(10_000, 10_000))  # 100 MP: over Pillow's warning line, under its error line
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with pytest.raises(ImageTooLargeError, match="too large to decode safely"):
            prepare(source, QWEN)


def test_our_pixel_cap_refuses_from_the_header(files: Path) -> None:
    with pytest.raises(ImageTooLargeError, match="claims 100000x10 = 1,000,000 pixels.*max_decode_pixels="):
        prepare(identify(files / "wide.png"), QWEN, max_decode_pixels=500_000)


@pytest.mark.parametrize(
    ("value", "kind", "words"),
    [
        (None, UnsupportedImageError, "missing value (None)"),
        (float("nan"), UnsupportedImageError, "missing value (nan)"),
        (pd.NA, UnsupportedImageError, "missing value (<NA>)"),
        ("", UnsupportedImageError, "empty string"),
        ("   ", UnsupportedImageError, "empty string"),
        (b"", ImageDecodeError, "empty bytes"),
        (42, UnsupportedImageError, "Cannot read int 42"),
        ({"url": "a.png"}, UnsupportedImageError, "Cannot read dict"),
        ("a\0b.png", UnsupportedImageError, "NUL byte"),
        ("\ud800.png", UnsupportedImageError, "not a name the file system can hold"),
        ("file://otherhost/a.png", UnsupportedImageError, "names a file on another machine"),
    ],
)
def test_values_that_are_not_images(value: object, kind: type[ImageError], words: str) -> None:
    with pytest.raises(kind) as info:
        identify(value)
    assert words in str(info.value)


# -- URLs -----------------------------------------------------------------------------------------
class Hostile(BaseHTTPRequestHandler):
    png: bytes = b""
    stop = threading.Event()

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        route = self.path.split("?", 1)[0]
        if route == "/img.png":
            self._send(200, self.png, "image/png")
        elif route == "/loop":
            self._redirect("/loop")
        elif route == "/ping":
            self._redirect("/pong")
        elif route == "/pong":
            self._redirect("/ping")
        elif route == "/html":
            self._send(200, b"<!doctype html><html><body>Sign in to view this image</body></html>", "text/html; charset=utf-8")
        elif route == "/trickle":  # a valid-looking body, one byte every 50 ms, for ever
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.end_headers()
            self._trickle(self.png * 1000)
        elif route == "/trickle-headers":  # never finishes its headers
            self.wfile.write(b"HTTP/1.1 200 OK\r\n")
            self._trickle(b"X-Slow: " + b"a" * 100_000)
        else:
            self._send(404, b"no such thing", "text/plain")

    def _send(self, status: int, body: bytes, ctype: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, to: str) -> None:
        self.send_response(302)
        self.send_header("Location", to + "?" + SECRET)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _trickle(self, data: bytes) -> None:
        try:
            for byte in data:
                if self.stop.wait(0.05):
                    return
                self.wfile.write(bytes([byte]))
                self.wfile.flush()
        except OSError:  # the client gave up, as it should
            return


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    Hostile.png = encoded(photo(), "PNG")
    Hostile.stop.clear()
    with serving(Hostile, ready_path="/img.png") as base:
        yield base
        Hostile.stop.set()  # end any trickle still going, so the server can shut down


def test_url_404_names_the_status_without_the_query(server: str) -> None:
    with pytest.raises(ImageNotFoundError, match="HTTP 404") as info:
        identify(f"{server}/gone.png?{SECRET}")
    assert "SECRET" not in str(info.value) and f"{server}/gone.png" in str(info.value)


@pytest.mark.parametrize("route", ["/loop", "/ping"])
def test_redirect_loops_are_named(server: str, route: str) -> None:
    with pytest.raises(ImageNotFoundError, match="redirect loop") as info:
        identify(server + route)
    assert "SECRET" not in str(info.value)


@pytest.mark.parametrize("route", ["/trickle", "/trickle-headers"])
def test_slow_loris_fails_within_the_total_timeout(server: str, route: str) -> None:
    started = time.monotonic()
    with pytest.raises(ImageNotFoundError, match=r"within 1 s|after 1 s"):
        identify(server + route, url_timeout=1.0)  # each byte comes well within any read timeout
    assert time.monotonic() - started < 4


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_caption_passes_its_url_timeout_to_the_download(
    sim: VLLMSimulator, server: str, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    options: dict[str, object] = {"url_timeout": 1.5} if how == "argument" else {}
    if how == "environment":
        monkeypatch.setenv("CAPRL_URL_TIMEOUT", "1.5")
    frame = pd.DataFrame({"img": [f"{server}/trickle", f"{server}/img.png"]})
    with pytest.warns(UserWarning, match="1 row"):
        out = frame.caprl.caption("img", details=True, base_url=sim.base_url, progress=False, **options)
    assert "still downloading after 1.5 s" in out["error"].iat[0]  # the 60 s default was not used
    assert out["caption"].iat[1] and pd.isna(out["error"].iat[1])
    assert len(sim.requests) == 1


def test_slow_loris_also_meets_the_byte_cap(server: str) -> None:
    with pytest.raises(ImageTooLargeError, match=r"\(so far\)"):
        identify(f"{server}/trickle", max_bytes=5, url_timeout=10)


def test_web_page_instead_of_an_image(server: str) -> None:
    with pytest.raises(ImageDecodeError, match="sent text/html"):
        identify(f"{server}/html")


def test_presigned_and_userinfo_urls_are_described_without_secrets(server: str) -> None:
    port = server.rsplit(":", 1)[1]
    url = f"http://user:hunter2@127.0.0.1:{port}/img.png?{SECRET}#frag"
    source = identify(url)
    assert source.description == f"URL {server}/img.png"
    assert describe(url) == f"URL {server}/img.png"
    assert describe(f"https://b.s3.amazonaws.com/x.png?{SECRET}") == "URL https://b.s3.amazonaws.com/x.png"
    assert source.sha256 == identify(f"{server}/img.png").sha256  # the cache key is the content


# -- all of it in one column ----------------------------------------------------------------------
def test_one_column_of_everything_captions_the_good_and_names_each_bad(
    sim: VLLMSimulator, files: Path, server: str, tmp_path: Path
) -> None:
    good: list[object] = [str(files / name) for name in GOOD]
    good += [f"{server}/img.png?{SECRET}", encoded(photo(90, 70), "PNG"), photo(70, 90),
             np.zeros((40, 30, 3), np.uint8)]
    bad: list[tuple[object, str]] = [(str(files / name), words) for name, (_, words) in BAD.items()]
    bad += [
        (f"{server}/gone.png?{SECRET}", "HTTP 404"),
        (f"{server}/loop", "redirect loop"),
        (f"{server}/html", "sent text/html"),
        (None, "missing value"),
        (float("nan"), "missing value"),
        ("", "empty string"),
        (42, "Cannot read int"),
        (b"GIF89a broken", "starts like a GIF file, but Pillow cannot read it"),
    ]
    values = good + [v for v, _ in bad]
    frame = pd.DataFrame({"img": pd.Series(values, dtype=object)})
    with pytest.warns(UserWarning, match=f"{len(bad)} row"):
        out = frame.caprl.caption("img", details=True, base_url=sim.base_url, progress=False)
    assert out["caption"].iloc[: len(good)].notna().all(), out["error"].iloc[: len(good)].tolist()
    assert out["error"].iloc[: len(good)].isna().all()
    for i, (value, words) in enumerate(bad, start=len(good)):
        error = out["error"].iat[i]
        assert pd.isna(out["caption"].iat[i]) and words in error, (value, error)
        # a caprl_nb error, by class: its name starts the text
        kind = out["error_type"].iat[i]
        assert error_class(kind) is not None and error.startswith(f"{kind}: "), (value, kind)
    assert len(sim.requests) == len(good)
    shown = "\n".join(out["error"].dropna())
    assert "SECRET" not in shown
    home = Path(os.environ["CAPRL_HOME"])  # nothing stored holds the query string either
    for path in home.rglob("*"):
        if path.is_file():
            assert b"SECRET" not in path.read_bytes(), path


def _sent(data_url: str) -> bytes:
    import base64

    return base64.b64decode(data_url.partition(",")[2])
