"""Pixels: numpy arrays to 8-bit PIL images, and any Pillow mode flattened to RGB or L.

The image pipeline (:mod:`caprl_nb.images`) uses these on the way to a payload; they never
modify their input.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from caprl_nb.errors import UnsupportedImageError

__all__ = ["array_to_image", "cmyk_to_rgb", "flatten", "to_uint8"]


def array_to_image(arr: np.ndarray) -> Image.Image:
    """A numpy array as an 8-bit PIL image (a copy; later changes to ``arr`` do not leak in).

    Shapes: HxW and HxWx1 -> L, HxWx3 -> RGB, HxWx4 -> RGBA. Values go to 0..255 as
    :func:`to_uint8` describes: bool -> 0/255, uint16 -> ``>> 8``, floats in 0..1 -> ``* 255``.
    """
    shape = "x".join(map(str, arr.shape))
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[:, :, 0]
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (3, 4)) or arr.size == 0:
        hint = ""
        if arr.ndim == 3 and arr.shape[0] in (1, 3, 4) and arr.shape[2] > 4:
            hint = " It looks channels-first; pass arr.transpose(1, 2, 0)."
        elif arr.ndim == 4:
            hint = " For a batch, put one image per row."
        msg = f"Cannot read an array of shape {shape} ({arr.dtype}) as an image: use HxW, HxWx1, HxWx3 or HxWx4.{hint}"
        raise UnsupportedImageError(msg)
    if not (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        msg = (f"Cannot read an array of dtype {arr.dtype} (shape {shape}) as an image: "
               "use bool, integer or float pixels.")
        raise UnsupportedImageError(msg)
    pixels = np.ascontiguousarray(to_uint8(arr))
    mode = "L" if pixels.ndim == 2 else ("RGB" if pixels.shape[2] == 3 else "RGBA")
    return Image.frombytes(mode, (pixels.shape[1], pixels.shape[0]), pixels)


def to_uint8(arr: np.ndarray) -> np.ndarray:
    """Scale pixel values to uint8.

    bool -> 0/255; uint8 as is; uint16 -> ``>> 8``; other integers: kept if within 0..255,
    ``>> 8`` if within 0..65535, else stretched min..max -> 0..255; floats (NaN -> 0): ``* 255``
    if within 0..1, kept (rounded) if within 0..255, else stretched min..max -> 0..255.
    """
    kind = arr.dtype.type
    if kind is np.bool_:
        scaled: np.ndarray = arr.astype(np.uint8) * np.uint8(255)  # numpy's stubs lose the type here
        return scaled
    if kind is np.uint8:
        return arr
    if kind is np.uint16:  # either byte order
        return (arr >> 8).astype(np.uint8)
    floating = np.issubdtype(arr.dtype, np.floating)
    if floating:
        arr = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    lo, hi = float(arr.min()), float(arr.max())
    if floating and lo >= 0 and hi <= 1:
        arr = arr * 255
    elif not (lo >= 0 and hi <= 255):
        if not floating and lo >= 0 and hi <= 65535:
            return (arr >> 8).astype(np.uint8)
        arr = (arr.astype(np.float64) - lo) * (255.0 / (hi - lo)) if hi > lo else np.clip(arr, 0, 255)
    return np.rint(arr.astype(np.float64, copy=False)).astype(np.uint8)


def flatten(img: Image.Image) -> Image.Image:
    """RGB or L, 8-bit, transparency composited on white. Never modifies ``img``."""
    mode = img.mode
    if mode in ("RGB", "L") and "transparency" not in img.info:
        return img
    if mode == "1":
        return img.convert("L")
    if mode.startswith("I") or mode == "F":  # I;16*, I (32-bit), F: scaled, not clipped
        return Image.fromarray(np.ascontiguousarray(to_uint8(np.asarray(img))))
    if mode == "CMYK":
        return cmyk_to_rgb(img)
    if img.has_transparency_data:
        gray = mode in ("L", "LA", "La")
        rgba = img.convert("LA" if gray else "RGBA")  # also un-premultiplies La / RGBa
        base = Image.new("L" if gray else "RGB", img.size, 255 if gray else (255, 255, 255))
        base.paste(rgba.convert(base.mode), mask=rgba.getchannel("A"))
        return base
    return img.convert("RGB")  # P, YCbCr, LAB, HSV, RGBX, ...


def cmyk_to_rgb(img: Image.Image) -> Image.Image:
    """Through the embedded ICC profile when there is one, else Pillow's plain conversion.

    Pillow already reads Adobe (inverted) CMYK JPEGs the right way round ("CMYK;I").
    """
    icc = img.info.get("icc_profile")
    try:
        from PIL import ImageCms  # needs LittleCMS: in Pillow's wheels, maybe not in a source build
    except ImportError:
        return img.convert("RGB")
    try:
        srgb = ImageCms.createProfile("sRGB")
        converted = ImageCms.profileToProfile(img, io.BytesIO(icc), srgb, outputMode="RGB") if icc else None
    except (ImageCms.PyCMSError, OSError, ValueError):  # a broken embedded profile
        converted = None
    return converted if converted is not None else img.convert("RGB")
