"""caprl_nb.images on large photos and charts: each is decoded at most once (a JPEG in draft mode)
and encoded at most once, and what is sent stays close to a careful full-resolution resample."""

from __future__ import annotations

import base64
import io
from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw

from caprl_nb.images import Payload, identify, prepare
from caprl_nb.models import PRESETS

QWEN = PRESETS["qwen2.5-vl"]


@pytest.fixture
def codecs(monkeypatch: pytest.MonkeyPatch) -> dict[str, list[str]]:
    """Every decoder and encoder Pillow creates (one per decode or encode of a whole image), by name.

    Tests build their input first, then call :func:`counting` to start from zero."""
    made: dict[str, list[str]] = {"decoders": [], "encoders": []}
    get_decoder, get_encoder = Image._getdecoder, Image._getencoder

    def decoder(mode: str, name: str, *args: Any, **kwargs: Any) -> Any:
        made["decoders"].append(name)
        return get_decoder(mode, name, *args, **kwargs)

    def encoder(mode: str, name: str, *args: Any, **kwargs: Any) -> Any:
        made["encoders"].append(name)
        return get_encoder(mode, name, *args, **kwargs)

    monkeypatch.setattr(Image, "_getdecoder", decoder)
    monkeypatch.setattr(Image, "_getencoder", encoder)
    return made


def counting(codecs: dict[str, list[str]]) -> None:
    for names in codecs.values():
        names.clear()


def encode(img: Image.Image, fmt: str, **kwargs: Any) -> bytes:
    buf = io.BytesIO()
    img.save(buf, fmt, **kwargs)
    return buf.getvalue()


def sent(payload: Payload) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(payload.data_url.partition(",")[2])))
    img.load()
    return img


def chart(width: int, height: int, mode: str = "RGB") -> bytes:
    """A line chart with gridlines and labels, saved as PNG in ``mode``."""
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    for x in range(0, width, 60):
        draw.line((x, 0, x, height), fill=(220, 220, 220), width=2)
    xs = np.arange(0, width, 6)
    ys = height / 2 + np.sin(xs / 90) * height / 3
    draw.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=(31, 119, 180), width=5)
    for x in range(0, width, 200):
        draw.text((x + 4, height - 30), str(x), fill="black")
    return encode(img.convert(mode), "PNG")


def photo(width: int, height: int) -> bytes:
    """A photo-like JPEG (q90): smooth colour fields, mid-scale texture, light grain."""
    rng = np.random.default_rng(1)
    fields = Image.fromarray(rng.integers(0, 256, (6, 8, 3), dtype=np.uint8))
    fields = fields.resize((width, height), Image.Resampling.BICUBIC)
    texture = Image.fromarray(rng.integers(0, 256, (height // 8, width // 8), dtype=np.uint8))
    detail = np.asarray(texture.resize((width, height), Image.Resampling.BICUBIC), dtype=np.float32) - 128
    grain = rng.normal(0, 3, (height, width)).astype(np.float32)
    pixels = np.asarray(fields, dtype=np.float32) + (detail * 0.25 + grain)[:, :, None]
    return encode(Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)), "JPEG", quality=90)


def psnr(a: Image.Image, b: Image.Image) -> float:
    diff = np.asarray(a.convert("RGB"), dtype=np.float64) - np.asarray(b.convert("RGB"), dtype=np.float64)
    return float(10 * np.log10(255**2 / max(float(np.mean(diff * diff)), 1e-12)))


# -- PNG charts -----------------------------------------------------------------------------------
def test_png_chart_that_fits_is_sent_without_decoding_or_encoding(codecs: dict[str, list[str]]) -> None:
    data = chart(1120, 840)
    counting(codecs)
    payload = prepare(identify(data), QWEN)
    assert not payload.reencoded and base64.b64decode(payload.data_url.partition(",")[2]) == data
    assert codecs == {"decoders": [], "encoders": []}


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P"])
def test_png_chart_that_must_shrink_is_decoded_once_and_encoded_once(codecs: dict[str, list[str]], mode: str) -> None:
    data = chart(2400, 1600, mode)
    counting(codecs)
    payload = prepare(identify(data), QWEN, max_image_tokens=1280)
    assert (payload.width, payload.height) == QWEN.target_size(2400, 1600, 1280)
    assert payload.mime == "image/png" and payload.reencoded
    assert codecs == {"decoders": ["zip"], "encoders": ["zip"]}  # "zip" is Pillow's PNG codec
    # and the shrunken chart is the chart: against a careful resample of the original
    reference = Image.open(io.BytesIO(data)).convert("RGB")
    reference = reference.resize((payload.width, payload.height), Image.Resampling.LANCZOS)
    assert psnr(sent(payload), reference) >= 40


def test_png_chart_that_fits_but_has_alpha_is_decoded_once_and_encoded_once(codecs: dict[str, list[str]]) -> None:
    data = chart(1120, 840, "RGBA")
    counting(codecs)
    payload = prepare(identify(data), QWEN)
    assert codecs == {"decoders": ["zip"], "encoders": ["zip"]}
    assert payload.reencoded and sent(payload).mode == "RGB" and (payload.width, payload.height) == (1120, 840)


# -- JPEG photos ----------------------------------------------------------------------------------
@pytest.mark.parametrize("orientation", [1, 6])
def test_big_jpeg_is_decoded_once_in_draft_mode_and_encoded_once(
    codecs: dict[str, list[str]], orientation: int
) -> None:
    exif = Image.Exif()
    exif[0x0112] = orientation
    data = encode(Image.open(io.BytesIO(photo(2400, 1800))), "JPEG", quality=90, exif=exif.tobytes())
    counting(codecs)
    payload = prepare(identify(data), QWEN, max_image_tokens=480)
    upright = (1800, 2400) if orientation == 6 else (2400, 1800)
    assert (payload.width, payload.height) == QWEN.target_size(*upright, 480)
    assert (payload.original_width, payload.original_height) == upright
    assert payload.mime == "image/jpeg"
    assert codecs == {"decoders": ["jpeg"], "encoders": ["jpeg"]}


def test_resized_photo_is_as_close_to_a_full_resolution_lanczos_as_the_jpeg_encode_allows() -> None:
    """What is sent (1/2-scale draft decode, BICUBIC, JPEG q95) against LANCZOS from the full decode.

    Here (Pillow 13, libjpeg-turbo 3) it is 0.6 dB under the q95 encode of the reference itself
    (LANCZOS instead of BICUBIC: 0.25 dB); decoding at 1/4 and scaling up, or a cruder filter
    (BILINEAR, NEAREST), lands 2.9 dB under it and more, and fails."""
    data = photo(1600, 1200)
    payload = prepare(identify(data), QWEN, max_image_tokens=256)
    size = (payload.width, payload.height)
    assert size[0] * 1.5 < 1600  # shrunk enough that the draft decodes at 1/2 and the filter matters
    reference = Image.open(io.BytesIO(data)).convert("RGB").resize(size, Image.Resampling.LANCZOS)
    encode_alone = psnr(Image.open(io.BytesIO(encode(reference, "JPEG", quality=95))), reference)
    assert psnr(sent(payload), reference) >= encode_alone - 1.0
