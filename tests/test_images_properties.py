"""Property-based tests of the image pipeline (hypothesis).

Whatever the input (sizes, modes, formats, EXIF orientations, damaged bytes, arrays of any
dtype and shape), ``identify`` then ``prepare`` either give a payload the model's preset
accepts as sent, within the token budget, or raise an :class:`ImageError`; nothing else.
"""

from __future__ import annotations

import base64
import io
import urllib.parse
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, event, example, given, settings
from hypothesis import strategies as st
from PIL import Image

from caprl_nb.errors import ImageError
from caprl_nb.images import Payload, describe, identify, prepare
from caprl_nb.models import PRESETS, ModelPreset

SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PRESET_NAMES = sorted(PRESETS)
MODES = ["1", "L", "LA", "P", "RGB", "RGBA", "CMYK", "I;16", "I", "F"]
FORMATS = ["PNG", "JPEG", "WEBP", "GIF", "BMP", "TIFF"]

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:PIL")  # Pillow's notes on broken files


def check_payload(payload: Payload, preset: ModelPreset, budget: int | None) -> None:
    """What the server will accept and charge for exactly this payload."""
    w, h = payload.width, payload.height
    head, _, body = payload.data_url.partition(",")
    assert head == f"data:{payload.mime};base64"
    data = base64.b64decode(body)
    assert len(data) == payload.nbytes
    with Image.open(io.BytesIO(data)) as img:
        assert img.size == (w, h)
        if payload.reencoded:
            assert img.mode in ("RGB", "L")
    max_tiles = payload.processor_kwargs.get("max_dynamic_patch")
    tokens = preset.image_tokens(w, h, max_tiles)  # raises for an aspect ratio it refuses
    if preset.tiled:
        assert tokens <= (preset.max_tiles + 1) * preset.tokens_per_tile
    else:
        assert w * h <= preset.max_pixels  # the server will not shrink it further
        assert preset.resized(w, h) == preset.resized(*preset.resized(w, h))
        assert tokens <= preset.max_pixels // preset.factor**2
    if budget is not None:
        assert tokens <= budget


def run_pipeline(value: object, preset: ModelPreset, budget: int | None) -> Payload | None:
    """The payload, or None when the pipeline refused the value with an ImageError."""
    try:
        with warnings.catch_warnings():  # this test runs alone in its thread
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            payload = prepare(identify(value), preset, max_image_tokens=budget)
    except ImageError as exc:
        assert str(exc)  # says something
        event(f"refused: {type(exc).__name__}")
        return None
    event("payload")
    check_payload(payload, preset, budget)
    return payload


sizes = st.one_of(
    st.tuples(st.integers(1, 600), st.integers(1, 600)),
    st.tuples(st.integers(1, 3), st.integers(1, 1500)),  # needles and strips, both ways
    st.tuples(st.integers(1, 1500), st.integers(1, 3)),
)
budgets = st.one_of(st.none(), st.integers(300, 4000))


@st.composite
def images(draw: st.DrawFn) -> bytes:
    width, height = draw(sizes)
    mode = draw(st.sampled_from(MODES))
    fmt = draw(st.sampled_from(FORMATS))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    img = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
    img = img.convert(mode) if mode not in ("I;16", "I", "F") else img.convert("L").convert(mode)
    kwargs: dict[str, object] = {}
    orientation = draw(st.integers(1, 8))
    if fmt in ("JPEG", "PNG", "WEBP", "TIFF") and orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kwargs["exif"] = exif.tobytes()
    buf = io.BytesIO()
    try:
        img.save(buf, fmt, **kwargs)
    except (OSError, ValueError, KeyError, TypeError):  # a mode this format cannot store
        assume(False)
    return buf.getvalue()


@SETTINGS
@given(images(), st.sampled_from(PRESET_NAMES), budgets)
def test_any_encoded_image_fits_the_preset_or_is_an_image_error(data: bytes, preset: str, budget: int | None) -> None:
    run_pipeline(data, PRESETS[preset], budget)


@SETTINGS
@given(images(), st.data())
def test_damaged_images_never_raise_anything_but_image_errors(data: bytes, draw: st.DataObject) -> None:
    cut = draw.draw(st.integers(0, len(data)))
    damaged = bytearray(data[:cut] if draw.draw(st.booleans()) else data)
    for _ in range(draw.draw(st.integers(0, 8))):
        if damaged:
            damaged[draw.draw(st.integers(0, len(damaged) - 1))] = draw.draw(st.integers(0, 255))
    run_pipeline(bytes(damaged), PRESETS["qwen2.5-vl"], draw.draw(budgets))


@SETTINGS
@given(st.binary(max_size=4096), st.sampled_from([b"", b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff", b"GIF89a", b"RIFF\x00\x00\x00\x00WEBP", b"II*\x00", b"BM"]))
def test_random_bytes_are_image_errors_or_images(tail: bytes, magic: bytes) -> None:
    run_pipeline(magic + tail, PRESETS["qwen2.5-vl"], None)


arrays = st.one_of(
    st.tuples(st.integers(1, 300), st.integers(1, 300)),
    st.tuples(st.integers(1, 300), st.integers(1, 300), st.sampled_from([1, 2, 3, 4, 5])),
    st.tuples(st.integers(0, 3), st.integers(0, 3), st.integers(0, 3), st.integers(0, 4)),
    st.tuples(st.integers(0, 5)),
)


@SETTINGS
@given(arrays, st.sampled_from(["uint8", "uint16", "int32", "float32", "float64", "bool", "complex64"]), st.integers(0, 2**16), st.booleans())
def test_arrays_of_any_shape_and_dtype(shape: tuple[int, ...], dtype: str, seed: int, special: bool) -> None:
    rng = np.random.default_rng(seed)
    arr = (rng.standard_normal(shape) * 1000).astype(dtype)
    if special and arr.size and np.issubdtype(arr.dtype, np.floating):
        arr.flat[0] = np.nan
        arr.flat[-1] = np.inf
    run_pipeline(arr, PRESETS["qwen2.5-vl"], 1000)


@SETTINGS
@example("http", "0", "/a.png", "[")  # an unbalanced [ made urlsplit fail; the fallback showed "user:pw["
@given(
    st.sampled_from(["http", "https", "HTTPS", "s3", "ftp"]),
    st.from_regex(r"[a-z0-9]{1,10}(\.[a-z0-9]{1,10}){0,2}", fullmatch=True),
    st.from_regex(r"(/[A-Za-z0-9._~%-]{0,12}){0,4}", fullmatch=True),
    st.text(min_size=1, max_size=40).map(lambda s: s.replace("#", "")),
)
def test_urls_are_described_without_user_info_query_or_fragment(scheme: str, host: str, path: str, secret: str) -> None:
    quoted = urllib.parse.quote(secret, safe="")  # as in any URL that parses
    url = f"{scheme}://user:pw{quoted}@{host}{path}?token=SECRET{quoted}&x=1#frag{quoted}"
    shown = describe(url)
    assert shown.startswith("URL ")
    assert "SECRET" not in shown and "frag" not in shown and "user:" not in shown
    assert host in shown
    malformed = describe(f"{scheme}://user:pw{secret}?x@{host}/a.png?SECRET")  # ? unescaped in the password
    assert "SECRET" not in malformed and "pw" not in malformed


@SETTINGS
@given(st.one_of(st.none(), st.floats(), st.integers(), st.text(max_size=40), st.binary(max_size=40),
                 st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2)))
def test_any_python_value_is_an_image_error_or_an_image(value: object) -> None:
    if isinstance(value, str) and "://" in value:
        assume(False)  # no network in tests: URLs have their own tests
    assert describe(value)
    try:
        identify(value)
    except ImageError:
        pass
