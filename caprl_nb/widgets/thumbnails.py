"""Small images for the gallery, made lazily from any image value and kept in a bounded cache.

Thumbnails reuse :func:`caprl_nb.images.prepare` with a "preset" that only bounds the pixel
count, so every input kind, EXIF orientation, colour mode and the decompression-bomb guard
behave exactly as they do for the model.
"""

from __future__ import annotations

import base64
import threading
from collections import OrderedDict
from dataclasses import dataclass

from caprl_nb import images
from caprl_nb.errors import CapRLError
from caprl_nb.models import ModelPreset

__all__ = ["Thumbnail", "ThumbnailCache", "make_thumbnail"]


@dataclass(frozen=True)
class Thumbnail:
    data: bytes
    mime: str
    width: int
    height: int

    @property
    def data_url(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


def _box(side: int) -> ModelPreset:
    return ModelPreset(
        name=f"thumbnail {side}px", family="thumbnail", model_id="", patterns=(), factor=1,
        min_pixels=1, max_pixels=side * side, max_aspect_ratio=float("inf"),
    )


def make_thumbnail(value: object, side: int) -> Thumbnail:
    """``value`` (anything :func:`images.identify` reads) within ``side * side`` pixels.

    Raises :class:`caprl_nb.errors.ImageError` when the image cannot be read.
    """
    source = images.identify(value)
    payload = images.prepare(source, _box(side))
    data = base64.b64decode(payload.data_url.split(",", 1)[1])
    return Thumbnail(data, payload.mime, payload.width, payload.height)


class ThumbnailCache:
    """Thread-safe LRU of thumbnails (or the error message) by (row id, side)."""

    def __init__(self, max_items: int = 2000) -> None:
        self.max_items = max_items
        self._items: OrderedDict[tuple[int, int], Thumbnail | str] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, row: int, value: object, side: int) -> Thumbnail | str:
        key = (row, side)
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        try:
            made: Thumbnail | str = make_thumbnail(value, side)
        except CapRLError as exc:
            made = str(exc)
        with self._lock:
            self._items[key] = made
            while len(self._items) > self.max_items:
                self._items.popitem(last=False)
        return made
