"""Model presets: what each CapRL family costs per image, so requests fit before they are sent.

A preset is chosen from what the server reports (``/v1/models`` ``root`` then ``id``) or by
name. :meth:`ModelPreset.image_tokens` is the exact number of image tokens vLLM puts in the
prompt for an image of a given size, and :meth:`ModelPreset.fit` picks the size (and, for
InternVL, the per-request ``mm_processor_kwargs``) that keeps an image under a token budget.
Every number below was checked against vLLM 0.32.0 and transformers 5.19.0:

* Qwen2.5-VL (CapRL-3B) and Qwen3-VL (CapRL-Qwen3VL-2B/4B): vLLM runs the checkpoint's
  ``Qwen2VLImageProcessor`` (transformers ``models/auto/image_processing_auto.py`` maps both
  ``qwen2_5_vl`` and ``qwen3_vl`` to it) and counts tokens in
  ``vllm/model_executor/models/qwen2_vl.py`` / ``qwen3_vl.py`` ``_get_vision_info``:
  ``smart_resize`` from ``transformers/models/qwen2_vl/image_processing_qwen2_vl.py`` with
  ``factor = patch_size * merge_size``, then one token per ``factor x factor`` block. It refuses
  aspect ratios over 200:1. The pixel bounds are the checkpoints' ``preprocessor_config.json``
  ``size`` (the processor's class defaults are overridden): Qwen2.5-VL 14-px patches, factor 28,
  ``min_pixels`` 3,136 .. ``max_pixels`` 12,845,056 (4 .. 16,384 tokens); Qwen3-VL 16-px
  patches, factor 32, ``shortest_edge`` 65,536 .. ``longest_edge`` 16,777,216 (64 .. 16,384
  tokens).
* InternVL3.5 (CapRL-InternVL3.5-8B): ``vllm/transformers_utils/processors/internvl.py``
  ``InternVLProcessor.get_num_image_tokens``: ``get_internvl_target_ratios(min, max)`` lists the
  grids ``i x j`` with ``min_dynamic_patch <= i*j <= max_dynamic_patch`` (1 and 12 in the
  checkpoint's config), ``find_closest_aspect_ratio`` picks the grid closest to the image's
  aspect ratio (on a tie, the later grid wins when the image's area exceeds half the grid's),
  ``calculate_internvl_targets`` adds a thumbnail tile when the grid has more than one tile, and
  each 448-px tile costs 256 tokens ((448 / 14)^2 * 0.5^2). The tile count depends on the aspect
  ratio, not on the pixel count, so shrinking an image does not make it cheaper: a budget is met
  by lowering ``max_dynamic_patch`` per request (``mm_processor_kwargs``; vLLM's
  ``InternVLProcessingInfo.get_image_processor`` merges it over the config's value). vLLM 0.32
  rejects non-empty per-request ``mm_processor_kwargs`` unless the server runs with
  ``--trust-request-mm-kwargs``.

Counts are of the image's placeholder tokens only; the template adds a few around each image
(Qwen ``<|vision_start|>``/``<|vision_end|>``, InternVL ``<img>``/``</img>``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from caprl_nb.errors import ConfigError, ImageTooLargeError

__all__ = ["PRESETS", "ImageFit", "ModelPreset", "match_preset", "preset_for", "preset_named"]


@dataclass(frozen=True)
class ImageFit:
    """How to send one image: its size, the ``mm_processor_kwargs`` to send with it, its cost."""

    size: tuple[int, int]  # (width, height) to send
    processor_kwargs: dict[str, Any]  # {} for the server's defaults
    tokens: int  # image tokens vLLM will put in the prompt for it


@dataclass(frozen=True)
class ModelPreset:
    """Pixel and token arithmetic for one model family."""

    name: str
    family: str  # "qwen2.5-vl" | "qwen3-vl" | "internvl3.5" (anything else: pixel bounds only)
    model_id: str  # the real checkpoint on the Hugging Face hub
    patterns: tuple[str, ...]  # lower-case substrings of a model id/root that select this preset
    factor: int = 28  # pixels per image token along each side (Qwen); tile size for InternVL
    min_pixels: int = 3136  # Qwen: the processor's pixel bounds; tiled families have none
    max_pixels: int = 12_845_056
    max_aspect_ratio: float = 200.0
    max_tiles: int = 12  # InternVL: the config's max_dynamic_patch
    tokens_per_tile: int = 256  # InternVL only
    min_tiles: int = 1  # InternVL: the config's min_dynamic_patch
    use_thumbnail: bool = True  # InternVL: a thumbnail tile is added to multi-tile grids

    @property
    def tiled(self) -> bool:
        return self.family == "internvl3.5"

    # -- tokens ---------------------------------------------------------------------------
    def image_tokens(self, width: int, height: int, max_tiles: int | None = None) -> int:
        """The image tokens vLLM produces for an image sent at ``width x height``.

        ``max_tiles`` is InternVL's ``max_dynamic_patch`` (default: :attr:`max_tiles`); the
        Qwen families have no tiles and ignore it. Raises :class:`ImageTooLargeError` for an
        aspect ratio the family refuses.
        """
        self.check_aspect(width, height)
        if self.tiled:
            cols, rows = self.tile_grid(width, height, max_tiles)
            tiles = cols * rows
            if self.use_thumbnail and tiles != 1:
                tiles += 1
            return tiles * self.tokens_per_tile
        w, h = self.resized(width, height)
        return (w // self.factor) * (h // self.factor)

    def tile_grid(self, width: int, height: int, max_tiles: int | None = None) -> tuple[int, int]:
        """InternVL: the (columns, rows) of 448-px tiles vLLM cuts the image into."""
        ratios = _internvl_target_ratios(self.min_tiles, self.max_tiles if max_tiles is None else max_tiles)
        return _closest_aspect_ratio(width, height, ratios, self.factor)

    def resized(self, width: int, height: int) -> tuple[int, int]:
        """Qwen: the (width, height) the server's processor resizes the image to."""
        h, w = _smart_resize(height, width, self.factor, self.min_pixels, self.max_pixels)
        return w, h

    @property
    def min_image_tokens(self) -> int:
        """The fewest image tokens any image costs."""
        if self.tiled:
            return self.tokens_per_tile
        return math.ceil(self.min_pixels / (self.factor * self.factor))

    # -- sizes ----------------------------------------------------------------------------
    def check_aspect(self, width: int, height: int) -> None:
        ratio = max(width, height) / max(1, min(width, height))
        if ratio > self.max_aspect_ratio:
            msg = (
                f"The image is {width}x{height}, an aspect ratio of {ratio:.0f}:1; {self.name} "
                f"accepts at most {self.max_aspect_ratio:.0f}:1. Crop or pad it first."
            )
            raise ImageTooLargeError(msg)

    def fit(self, width: int, height: int, max_image_tokens: int | None = None) -> ImageFit:
        """The size to send and the ``mm_processor_kwargs`` that keep the image's cost in budget.

        Qwen families (and any pixel-bounded preset): an image that already fits keeps its size,
        so it can travel as its original bytes; one outside the pixel limits, or over
        ``max_image_tokens``, is sent at exactly the size the server's processor would resize
        it to. InternVL: the largest ``max_dynamic_patch`` (at most :attr:`max_tiles`) whose
        tiles fit; the size only shrinks to save bandwidth, never to save tokens. When not even
        the cheapest choice fits the budget, that cheapest choice is returned; the caller
        compares ``tokens`` with the budget. Raises :class:`ImageTooLargeError` for an aspect
        ratio the family refuses.
        """
        self.check_aspect(width, height)
        if self.tiled:
            return self._fit_tiles(width, height, max_image_tokens)
        return self._fit_pixels(width, height, max_image_tokens)

    def target_size(self, width: int, height: int, max_image_tokens: int | None = None) -> tuple[int, int]:
        """``fit(...).size``: the size to send."""
        return self.fit(width, height, max_image_tokens).size

    def _fit_pixels(self, width: int, height: int, budget: int | None) -> ImageFit:
        if budget is None or self.image_tokens(width, height) <= budget:
            size = (width, height)
            in_bounds = self.min_pixels <= width * height <= self.max_pixels
            if not in_bounds or min(width, height) < self.factor:
                # Outside the processor's bounds, or under one block on a side (which older
                # transformers refuse): send what the server would resize it to.
                size = self._as_resized(width, height) or self._rescaled(width, height)
            return ImageFit(size, {}, self.image_tokens(*size))
        # The largest size of the same aspect ratio within budget, searched by its long side,
        # never with the short side under one block (smaller would distort, not save). The short
        # side rounds up, so the aspect ratio never grows past the limit.
        long, short = max(width, height), min(width, height)

        def scaled(side: int) -> tuple[int, int]:
            other = math.ceil(short * side / long)
            return (side, other) if width >= height else (other, side)

        lo, hi = min(long, math.ceil(self.factor * long / short)), long
        if self.image_tokens(*scaled(lo)) <= budget:
            while hi - lo > 1:  # image_tokens(scaled(lo)) <= budget < image_tokens(scaled(hi))
                mid = (lo + hi) // 2
                if self.image_tokens(*scaled(mid)) <= budget:
                    lo = mid
                else:
                    hi = mid
        size = scaled(lo)
        size = self._as_resized(*size) or size
        return ImageFit(size, {}, self.image_tokens(*size))

    def _as_resized(self, width: int, height: int) -> tuple[int, int] | None:
        """The size the server resizes ``width x height`` to, if sending that changes nothing."""
        size = self.resized(width, height)
        try:
            same = self.image_tokens(*size) == self.image_tokens(width, height) and self.resized(*size) == size
        except ImageTooLargeError:  # rounding pushed the aspect ratio past the limit
            return None
        return size if same else None

    def _rescaled(self, width: int, height: int) -> tuple[int, int]:
        """``width x height`` scaled into the pixel bounds, its aspect ratio no more extreme."""
        pixels = width * height
        scale = math.sqrt(min(max(pixels, self.min_pixels), self.max_pixels) / pixels)
        long = max(1, math.floor(max(width, height) * scale))
        short = max(1, math.ceil(min(width, height) * scale))
        return (long, short) if width >= height else (short, long)

    def _fit_tiles(self, width: int, height: int, budget: int | None) -> ImageFit:
        tiles = self.max_tiles
        while tiles > 1 and budget is not None and self.image_tokens(width, height, tiles) > budget:
            tiles -= 1
        kwargs: dict[str, Any] = {} if tiles == self.max_tiles else {"max_dynamic_patch": tiles}
        size = (width, height)
        cols, rows = self.tile_grid(width, height, tiles)
        # vLLM resamples the image to cols x rows tiles (and a thumbnail); pixels beyond that are
        # wasted bandwidth. Downscale only when that leaves vLLM's choice of grid unchanged: the
        # choice depends on the exact aspect ratio and, on ties, on the area.
        scale = max(cols * self.factor / width, rows * self.factor / height)
        if scale * scale < 0.5:
            smaller = (math.ceil(width * scale), math.ceil(height * scale))
            if self.tile_grid(*smaller, tiles) == (cols, rows):
                size = smaller
        return ImageFit(size, kwargs, self.image_tokens(*size, tiles))


def _smart_resize(height: int, width: int, factor: int, min_pixels: int, max_pixels: int) -> tuple[int, int]:
    """transformers' qwen2_vl ``smart_resize`` (5.19.0), less its aspect-ratio check."""
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@lru_cache(maxsize=64)
def _internvl_target_ratios(min_num: int, max_num: int) -> tuple[tuple[int, int], ...]:
    """vLLM's ``get_internvl_target_ratios``, built the same way so that ties keep its order."""
    target_ratios = {
        (i, j)
        for n in range(min_num, max_num + 1)
        for i in range(1, n + 1)
        for j in range(1, n + 1)
        if min_num <= i * j <= max_num
    }
    return tuple(sorted(target_ratios, key=lambda x: x[0] * x[1]))


def _closest_aspect_ratio(
    width: int, height: int, target_ratios: tuple[tuple[int, int], ...], image_size: int
) -> tuple[int, int]:
    """vLLM's ``find_closest_aspect_ratio``, including its area tie-break."""
    aspect_ratio = width / height
    best_ratio_diff = float("inf")
    best_ratio = (1, 1)
    area = width * height
    for ratio in target_ratios:
        ratio_diff = abs(aspect_ratio - ratio[0] / ratio[1])
        if ratio_diff < best_ratio_diff:
            best_ratio_diff = ratio_diff
            best_ratio = ratio
        elif ratio_diff == best_ratio_diff and area > 0.5 * image_size * image_size * ratio[0] * ratio[1]:
            best_ratio = ratio
    return best_ratio


PRESETS: dict[str, ModelPreset] = {
    p.family: p
    for p in (
        ModelPreset(
            name="CapRL-3B (Qwen2.5-VL)",
            family="qwen2.5-vl",
            model_id="internlm/CapRL-3B",
            patterns=("qwen2.5-vl", "qwen2_5_vl", "qwen2.5vl", "caprl-3b", "qwen2-vl", "qwen2_vl"),
        ),
        ModelPreset(
            name="CapRL-Qwen3VL (Qwen3-VL)",
            family="qwen3-vl",
            model_id="internlm/CapRL-Qwen3VL-4B",
            patterns=("qwen3-vl", "qwen3vl", "qwen3_vl"),
            factor=32,
            min_pixels=65_536,
            max_pixels=16_777_216,
        ),
        ModelPreset(
            name="CapRL-InternVL3.5-8B (InternVL3.5)",
            family="internvl3.5",
            model_id="internlm/CapRL-InternVL3.5-8B",
            patterns=("internvl",),
            factor=448,
            max_aspect_ratio=math.inf,  # the tiler takes any aspect ratio
        ),
    )
}

DEFAULT_PRESET = PRESETS["qwen2.5-vl"]
_ALIASES = {"internvl": "internvl3.5"}


def preset_named(name: str) -> ModelPreset:
    """A preset by family name (``qwen2.5-vl``, ``qwen3-vl``, ``internvl3.5`` or ``internvl``) or
    by a model id that names one."""
    key = _ALIASES.get(name.strip().lower(), name.strip().lower())
    if key in PRESETS:
        return PRESETS[key]
    found = _match(name)
    if found is None:
        msg = f"No model preset called {name!r}. Known presets: {', '.join(PRESETS)} (or 'internvl')."
        raise ConfigError(msg)
    return found


def _match(text: str) -> ModelPreset | None:
    low = text.lower()
    # Qwen3-VL ids also contain "qwen", so test the more specific families first.
    for family in ("qwen3-vl", "internvl3.5", "qwen2.5-vl"):
        if any(p in low for p in PRESETS[family].patterns):
            return PRESETS[family]
    return None


def match_preset(*names: str | None) -> ModelPreset | None:
    """The preset for the first of ``names`` (server root, id, ...) that names a family, or None."""
    for name in names:
        if name:
            found = _match(name)
            if found is not None:
                return found
    return None


def preset_for(*names: str | None) -> ModelPreset:
    """Like :func:`match_preset`, falling back to CapRL-3B's Qwen2.5-VL preset (the seed model)."""
    found = match_preset(*names)
    return DEFAULT_PRESET if found is None else found
