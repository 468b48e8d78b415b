"""Model presets: what each CapRL family accepts, so requests fit before they are sent.

A preset is chosen from what the server reports (``/v1/models`` ``root`` then ``id``) or by
name. The numbers are the CapRL authors' own serving defaults:

* Qwen-family (CapRL-3B on Qwen2.5-VL, CapRL-Qwen3VL-2B/4B): ``qwen_vl_utils`` limits of
  3,136 .. 12,845,056 pixels and an aspect ratio of at most 200:1; one image token per
  28x28 patch for Qwen2.5-VL (14-px patches merged 2x2) and 32x32 for Qwen3-VL (16-px patches).
* InternVL3.5 (CapRL-InternVL3.5-8B): 448-px tiles, up to 12 tiles plus a thumbnail, 256 tokens
  each.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from caprl_nb.errors import ConfigError, ImageTooLargeError

__all__ = ["PRESETS", "ModelPreset", "preset_for", "preset_named"]


@dataclass(frozen=True)
class ModelPreset:
    """Pixel and token arithmetic for one model family."""

    name: str
    family: str  # "qwen2.5-vl" | "qwen3-vl" | "internvl3.5"
    model_id: str  # the real checkpoint on the Hugging Face hub
    patterns: tuple[str, ...]  # lower-case substrings of a model id/root that select this preset
    factor: int = 28  # pixels per image token along each side (Qwen); tile size for InternVL
    min_pixels: int = 3136
    max_pixels: int = 12_845_056
    max_aspect_ratio: float = 200.0
    max_tiles: int = 12  # InternVL only
    tokens_per_tile: int = 256  # InternVL only

    # -- tokens ---------------------------------------------------------------------------
    def image_tokens(self, width: int, height: int) -> int:
        """An upper-bound estimate of the prompt tokens this image costs the server."""
        if self.family == "internvl3.5":
            tiles = self._internvl_tiles(width, height)
            return (tiles + (1 if tiles > 1 else 0)) * self.tokens_per_tile
        w, h = self._qwen_resize(width, height)
        return math.ceil(w / self.factor) * math.ceil(h / self.factor)

    def _internvl_tiles(self, width: int, height: int) -> int:
        # dynamic_preprocess picks a grid of at most max_tiles tiles matching the aspect
        # ratio; the tiles the pixels could fill bound it from above.
        return max(1, min(self.max_tiles, math.ceil(width / self.factor) * math.ceil(height / self.factor)))

    def _qwen_resize(self, width: int, height: int) -> tuple[int, int]:
        """qwen_vl_utils.smart_resize: the size the server's processor will use."""
        f = self.factor
        h = max(f, round(height / f) * f)
        w = max(f, round(width / f) * f)
        if h * w > self.max_pixels:
            beta = math.sqrt((height * width) / self.max_pixels)
            h = max(f, math.floor(height / beta / f) * f)
            w = max(f, math.floor(width / beta / f) * f)
        elif h * w < self.min_pixels:
            beta = math.sqrt(self.min_pixels / (height * width))
            h = math.ceil(height * beta / f) * f
            w = math.ceil(width * beta / f) * f
        return w, h

    # -- sizes ----------------------------------------------------------------------------
    def check_aspect(self, width: int, height: int) -> None:
        ratio = max(width, height) / max(1, min(width, height))
        if ratio > self.max_aspect_ratio:
            msg = (
                f"The image is {width}x{height}, an aspect ratio of {ratio:.0f}:1; {self.name} "
                f"accepts at most {self.max_aspect_ratio:.0f}:1. Crop or pad it first."
            )
            raise ImageTooLargeError(msg)

    def target_size(
        self, width: int, height: int, max_image_tokens: int | None = None
    ) -> tuple[int, int]:
        """The size to send: inside the pixel limits and under ``max_image_tokens``.

        Returns ``(width, height)`` unchanged when the image already fits, so it can travel as
        its original bytes.
        """
        self.check_aspect(width, height)
        max_pixels = self.max_pixels
        if self.family == "internvl3.5":
            # The tiler never looks at more than max_tiles tiles' worth of pixels.
            max_pixels = self.max_tiles * self.factor * self.factor
        scale = 1.0
        if width * height > max_pixels:
            scale = math.sqrt(max_pixels / (width * height))
        elif self.family != "internvl3.5" and (
            width * height < self.min_pixels or min(width, height) < self.factor
        ):
            scale = max(math.sqrt(self.min_pixels / (width * height)), self.factor / min(width, height))
        w, h = _scaled(width, height, scale)
        if max_image_tokens is not None:
            while self.image_tokens(w, h) > max_image_tokens:
                smaller = _scaled(w, h, 0.9)
                if smaller == (w, h) or min(smaller) < 2:
                    break
                w, h = smaller
        return w, h

    @property
    def min_image_tokens(self) -> int:
        if self.family == "internvl3.5":
            return self.tokens_per_tile
        return math.ceil(self.min_pixels / (self.factor * self.factor))


def _scaled(width: int, height: int, scale: float) -> tuple[int, int]:
    if scale == 1.0:
        return width, height
    # Round towards the limit that made us scale, so the result never overshoots it.
    step = math.floor if scale < 1 else math.ceil
    return max(1, step(width * scale)), max(1, step(height * scale))


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
        ),
        ModelPreset(
            name="CapRL-InternVL3.5-8B (InternVL3.5)",
            family="internvl3.5",
            model_id="internlm/CapRL-InternVL3.5-8B",
            patterns=("internvl",),
            factor=448,
            min_pixels=1,
        ),
    )
}

DEFAULT_PRESET = PRESETS["qwen2.5-vl"]


def preset_named(name: str) -> ModelPreset:
    """A preset by family name (``qwen2.5-vl``, ``qwen3-vl``, ``internvl3.5``) or model id."""
    if name in PRESETS:
        return PRESETS[name]
    found = _match(name)
    if found is None:
        msg = f"No model preset called {name!r}. Known presets: {', '.join(PRESETS)}."
        raise ConfigError(msg)
    return found


def _match(text: str) -> ModelPreset | None:
    low = text.lower()
    # Qwen3-VL ids also contain "qwen", so test the more specific families first.
    for family in ("qwen3-vl", "internvl3.5", "qwen2.5-vl"):
        if any(p in low for p in PRESETS[family].patterns):
            return PRESETS[family]
    return None


def preset_for(*names: str | None) -> ModelPreset:
    """The preset for the first of ``names`` (server root, id, ...) that names a family.

    Falls back to CapRL-3B's Qwen2.5-VL preset, the seed model, when nothing matches.
    """
    for name in names:
        if name:
            found = _match(name)
            if found is not None:
                return found
    return DEFAULT_PRESET
