"""An identified image -> a bounded, encoded payload for the model server (:func:`prepare`).

:func:`prepare` fits an :class:`caprl_nb.images.ImageSource` to a :class:`ModelPreset`. Original
JPEG/PNG/WebP bytes that already fit (right size, upright, 8-bit RGB or gray) travel untouched;
anything else is decoded once, made upright, flattened to RGB or L, resized once with BICUBIC (the
filter the models' own image processors use) and encoded once (JPEG q95 for photos, PNG
otherwise). A JPEG that must shrink is decoded in draft mode, already scaled by 1/2, 1/4 or 1/8 in
the DCT, so a 12 MP photo is never decoded whole. Pillow failures become :mod:`caprl_nb.errors`
that name the input. Re-exported by :mod:`caprl_nb.images`.

Decompression bombs: the header size is checked against ``max_decode_pixels`` before any pixel is
decoded, and Pillow's global ``Image.MAX_IMAGE_PIXELS`` is never changed. Memory stays bounded
across worker threads too: at most ``DEFAULT_MAX_DECODE_PIXELS`` pixels (after JPEG's free
1/2..1/8 draft scaling) are decoded at once in the process; other decodes wait their turn.
Pillow's own check in ``Image.open`` still raises above twice its ``MAX_IMAGE_PIXELS``
(178,956,970, our default too; translated here) and warns between 1x and 2x. That
``DecompressionBombWarning`` is left alone: silencing it would swap the process-wide warning
filters from many threads (``warnings.catch_warnings`` is not thread-safe). Where warnings are
errors, it is translated like the error.
"""

from __future__ import annotations

import io
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pybase64
from PIL import Image, UnidentifiedImageError

from caprl_nb.errors import ImageDecodeError, ImageError, ImageTooLargeError
from caprl_nb.formats import open_image, unidentified
from caprl_nb.models import ImageFit, ModelPreset
from caprl_nb.pixels import flatten

if TYPE_CHECKING:
    from caprl_nb.images import ImageSource

__all__ = ["DEFAULT_MAX_DECODE_PIXELS", "Payload", "prepare"]

DEFAULT_MAX_DECODE_PIXELS = 178_956_970
"""Decompression-bomb guard: twice Pillow's default ``MAX_IMAGE_PIXELS``, checked before decoding."""

_PHOTO_PIXELS = 4_000_000  # decoded images above this (with no lossless origin) go out as JPEG
_JPEG_QUALITY = 95
_ORIENTATION = 0x0112  # EXIF tag 274
_T = Image.Transpose  # EXIF orientation -> transpose, the table ImageOps.exif_transpose uses
_TRANSPOSE = {
    2: _T.FLIP_LEFT_RIGHT, 3: _T.ROTATE_180, 4: _T.FLIP_TOP_BOTTOM, 5: _T.TRANSPOSE,
    6: _T.ROTATE_270, 7: _T.TRANSVERSE, 8: _T.ROTATE_90,
}
# What Pillow's decoders raise on corrupt input besides OSError; translated only around Pillow calls.
_PILLOW_ERRORS = (
    OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError, KeyError, TypeError, ZeroDivisionError,
)


@dataclass(frozen=True)
class Payload:
    """An image ready for an OpenAI ``image_url`` content part."""

    data_url: str  # "data:image/jpeg;base64,..."
    mime: str  # image/jpeg | image/png | image/webp
    width: int  # the size sent
    height: int
    original_width: int  # after EXIF orientation
    original_height: int
    reencoded: bool  # False when the original bytes went out untouched
    nbytes: int  # encoded bytes sent (before base64)
    processor_kwargs: dict[str, Any] = field(default_factory=dict)  # send as mm_processor_kwargs


_MIMES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}


def prepare(
    source: ImageSource,
    preset: ModelPreset,
    *,
    max_image_tokens: int | None = None,
    max_decode_pixels: int = DEFAULT_MAX_DECODE_PIXELS,
) -> Payload:
    """Make ``source`` fit ``preset`` (pixel limits, aspect ratio, ``max_image_tokens``).

    The size and the ``mm_processor_kwargs`` to send come from :meth:`ModelPreset.fit`; send
    ``Payload.processor_kwargs`` with the request when it is not empty (InternVL under a tight
    budget), or the server will cut the image into more tiles than the budget allows.

    Raises :class:`ImageTooLargeError` for images with more than ``max_decode_pixels`` pixels
    (checked from the header, before decoding) or an aspect ratio the model refuses, and
    :class:`ImageDecodeError` for bytes Pillow cannot read. PIL and ndarray sources are always
    re-encoded and are not checked against ``max_decode_pixels`` (they are decoded already).
    """
    content = source.read()
    if isinstance(content, Image.Image):
        return _prepare_decoded(source, content, preset, max_image_tokens)
    with pillow_errors(source.description, source._content_type, content):
        img = open_image(content)
    try:
        return _prepare_encoded(source, img, content, preset, max_image_tokens, max_decode_pixels)
    finally:
        img.close()


def _prepare_encoded(
    source: ImageSource, img: Image.Image, content: bytes, preset: ModelPreset, max_image_tokens: int | None,
    max_decode_pixels: int,
) -> Payload:
    w0, h0 = img.size
    if w0 * h0 > max_decode_pixels:
        msg = f"{source.description} claims {w0}x{h0} = {w0 * h0:,} pixels, "
        msg += f"over the {max_decode_pixels:,}-pixel limit on decoding (a guard against decompression bombs). "
        msg += "If you trust it, pass a larger max_decode_pixels=, or shrink it first."
        raise ImageTooLargeError(msg)
    fmt = img.format or ""
    if fmt == "PNG" and "exif" not in img.info and b"eXIf" in content:  # EXIF after the pixels
        with _DECODING.hold(w0 * h0), pillow_errors(source.description, source._content_type, content):
            img.load()
    orientation = exif_orientation(img)
    (ow, oh), fit, pre_target = _geometry(img.size, orientation, preset, max_image_tokens)
    if orientation == 1 and fit.size == (ow, oh) and _passes_through(img, content):
        return _payload(content, _MIMES[fmt], fit, (ow, oh), reencoded=False)
    photo = fmt in ("JPEG", "MPO", "AVIF", "HEIF") or (fmt == "WEBP" and content[12:16] == b"VP8 ")
    with pillow_errors(source.description, source._content_type, content):
        if fmt in ("JPEG", "MPO") and pre_target[0] < w0 and pre_target[1] < h0:
            img.draft(None, pre_target)  # the decoder scales by 1/2, 1/4 or 1/8 at no cost
    with _DECODING.hold(img.width * img.height), pillow_errors(source.description, source._content_type, content):
        img.load()  # the first frame of an animation
        data, mime = _convert_and_encode(img, pre_target, orientation, photo)
    return _payload(data, mime, fit, (ow, oh), reencoded=True)


class _PixelBudget:
    """Pixels being decoded at once in this process, at most ``total``: many worker threads
    decoding large images wait for each other instead of multiplying the peak memory."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.free = total
        self._cond = threading.Condition()

    @contextmanager
    def hold(self, pixels: int) -> Iterator[None]:
        need = max(1, min(pixels, self.total))  # one image over the total runs alone
        with self._cond:
            self._cond.wait_for(lambda: self.free >= need)
            self.free -= need
        try:
            yield
        finally:
            with self._cond:
                self.free += need
                self._cond.notify_all()


_DECODING = _PixelBudget(DEFAULT_MAX_DECODE_PIXELS)


def _prepare_decoded(
    source: ImageSource, img: Image.Image, preset: ModelPreset, max_image_tokens: int | None
) -> Payload:
    orientation = exif_orientation(img, png_getexif=True)
    (ow, oh), fit, pre_target = _geometry(img.size, orientation, preset, max_image_tokens)
    photo = img.format in ("JPEG", "MPO") or (img.format is None and ow * oh > _PHOTO_PIXELS)
    with pillow_errors(source.description):
        img.load()
        data, mime = _convert_and_encode(img, pre_target, orientation, photo)
    return _payload(data, mime, fit, (ow, oh), reencoded=True)


def _geometry(
    size: tuple[int, int], orientation: int, preset: ModelPreset, max_image_tokens: int | None
) -> tuple[tuple[int, int], ImageFit, tuple[int, int]]:
    """(upright size, how to send it upright, the size to send in the stored orientation)."""
    swap = orientation in (5, 6, 7, 8)
    upright = (size[1], size[0]) if swap else size
    fit = preset.fit(*upright, max_image_tokens)
    target = fit.size
    return upright, fit, ((target[1], target[0]) if swap else target)


def exif_orientation(img: Image.Image, *, png_getexif: bool = False) -> int:
    """The EXIF orientation (1 when there is none, or the EXIF is malformed: it is only a hint)."""
    # Image.getexif, not PngImageFile.getexif, which decodes everything to look for a late eXIf.
    try:
        value = (img.getexif() if png_getexif else Image.Image.getexif(img)).get(_ORIENTATION, 1)
    except _PILLOW_ERRORS:  # a broken EXIF block must not cost the picture
        return 1
    return value if value in _TRANSPOSE else 1


def _passes_through(img: Image.Image, content: bytes) -> bool:
    """Whether the original bytes can go out as they are (the size was checked by the caller)."""
    fmt = img.format
    if fmt not in _MIMES or img.mode not in ("RGB", "L") or "transparency" in img.info:
        return False
    if getattr(img, "n_frames", 1) != 1:
        return False
    if fmt == "PNG":  # 8-bit gray or truecolour (IHDR bit depth, colour type), ends with IEND
        return content[24] == 8 and content[25] in (0, 2) and content.endswith(b"IEND\xaeB`\x82")
    if fmt == "JPEG":  # a truncated JPEG has no end-of-image marker; decode it to find out
        return content.endswith(b"\xff\xd9")
    return int.from_bytes(content[4:8], "little") + 8 in (len(content), len(content) - 1)  # RIFF size


def _convert_and_encode(img: Image.Image, size: tuple[int, int], orientation: int, photo: bool) -> tuple[bytes, str]:
    """Flatten to RGB/L, resize to ``size`` (pre-rotation), rotate upright, encode once."""
    out = flatten(img)
    if out.size != size:
        # reducing_gap: reduce() by whole factors first when shrinking 6x or more. BICUBIC, not LANCZOS: it is
        # what the servers' processors resample with (transformers 5.19 models/qwen2_vl/
        # image_processing_qwen2_vl.py and image_processing_pil_qwen2_vl.py: ``resample =
        # PILImageResampling.BICUBIC``, used for Qwen2.5-VL and Qwen3-VL; vLLM's
        # transformers_utils/processors/internvl.py: InterpolationMode.BICUBIC and Pillow's default
        # resize, BICUBIC). It costs about 25% less than LANCZOS on a 12 MP photo's 1/2-scale draft
        # and differs from LANCZOS's output by far less than the JPEG q95 encode that follows
        # (bench/prepare_image.py prints both PSNRs).
        out = out.resize(size, Image.Resampling.BICUBIC, reducing_gap=3.0)
    if orientation in _TRANSPOSE:
        out = out.transpose(_TRANSPOSE[orientation])
    buf = io.BytesIO()
    if photo:
        out.save(buf, "JPEG", quality=_JPEG_QUALITY)
        return buf.getvalue(), "image/jpeg"
    out.save(buf, "PNG", optimize=False, compress_level=1, icc_profile=None)
    return buf.getvalue(), "image/png"


def _payload(data: bytes, mime: str, fit: ImageFit, original: tuple[int, int], *, reencoded: bool) -> Payload:
    url = f"data:{mime};base64,{pybase64.b64encode(data).decode('ascii')}"  # SIMD: ~70x base64's speed
    (width, height), kwargs = fit.size, dict(fit.processor_kwargs)
    return Payload(url, mime, width, height, original[0], original[1], reencoded, len(data), kwargs)


@contextmanager
def pillow_errors(desc: str, content_type: str | None = None, content: bytes | None = None) -> Iterator[None]:
    """Translate what Pillow raises inside the block into ImageTooLargeError / ImageDecodeError."""
    try:
        yield
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        msg = (f"{desc} is too large to decode safely ({exc}). If you trust it, raise PIL.Image.MAX_IMAGE_PIXELS "
               "and max_decode_pixels=, or shrink it first.")
        raise ImageTooLargeError(msg) from exc
    except _PILLOW_ERRORS as exc:
        hint = ""
        if content_type and not content_type.lower().startswith("image/"):
            hint = f" The server sent {content_type.split(';')[0]}, probably a web page rather than the image itself."
        if isinstance(exc, UnidentifiedImageError):
            msg = unidentified(desc, content or b"", hint)
        else:
            msg = (f"{desc} could not be decoded ({exc or type(exc).__name__}).{hint} "
                   "It may be truncated or corrupt; re-save or re-download it.")
        raise ImageDecodeError(msg) from exc

