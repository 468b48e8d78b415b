"""caprl_nb.models: per-family image-token arithmetic (checked against vLLM itself in
test_models_vllm.py) and preset lookup."""

import dataclasses

import pytest

from caprl_nb.errors import ConfigError, ImageTooLargeError
from caprl_nb.models import PRESETS, ImageFit, match_preset, preset_for, preset_named

QWEN = PRESETS["qwen2.5-vl"]
QWEN3 = PRESETS["qwen3-vl"]
INTERNVL = PRESETS["internvl3.5"]


# -- lookup ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("names", "family"),
    [
        (("internlm/CapRL-3B", "caprl"), "qwen2.5-vl"),
        (("/models/Qwen2.5-VL-3B-Instruct",), "qwen2.5-vl"),
        (("internlm/CapRL-Qwen3VL-4B",), "qwen3-vl"),
        (("internlm/CapRL-Qwen3VL-2B",), "qwen3-vl"),
        (("internlm/CapRL-InternVL3.5-8B",), "internvl3.5"),
        ((None, "caprl"), "qwen2.5-vl"),  # nothing recognisable: the seed model's preset
    ],
)
def test_preset_from_server_names(names: tuple, family: str) -> None:
    assert preset_for(*names).family == family


def test_match_preset_says_when_it_cannot_tell() -> None:
    assert match_preset(None, "caprl", "/models/my-finetune") is None
    assert match_preset() is None
    assert match_preset(None, "/ckpt/CapRL-InternVL3.5-8B") is INTERNVL
    assert match_preset("/models/x", "qwen3-vl-4b") is QWEN3  # first name that names a family


@pytest.mark.parametrize(
    ("name", "family"),
    [("qwen2.5-vl", "qwen2.5-vl"), ("qwen3-vl", "qwen3-vl"), ("internvl3.5", "internvl3.5"),
     ("internvl", "internvl3.5"), ("InternVL3.5", "internvl3.5"), ("internlm/CapRL-Qwen3VL-2B", "qwen3-vl")],
)
def test_preset_by_name(name: str, family: str) -> None:
    assert preset_named(name) is PRESETS[family]


def test_unknown_preset_name_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="Known presets: qwen2.5-vl, qwen3-vl, internvl3.5"):
        preset_named("llava")


# -- Qwen -----------------------------------------------------------------------------------------
def test_qwen_tokens_are_28px_blocks_after_the_processor_resize() -> None:
    assert QWEN.image_tokens(280, 280) == 100
    assert QWEN.image_tokens(1000, 700) == 36 * 25  # rounded to 1008x700
    assert QWEN.image_tokens(20, 20) == 4  # scaled up to min_pixels (56x56)
    assert QWEN.image_tokens(8000, 6000) == 16_170  # scaled down under 12,845,056 pixels
    assert QWEN.image_tokens(13, 900) == 17  # a side that rounds to 0 takes the min_pixels branch
    assert QWEN.min_image_tokens == 4


def test_qwen3_has_32px_blocks_and_its_own_pixel_bounds() -> None:
    assert (QWEN3.factor, QWEN3.min_pixels, QWEN3.max_pixels) == (32, 65_536, 16_777_216)
    assert QWEN3.image_tokens(320, 320) == 100
    assert QWEN3.image_tokens(20, 20) == 64  # up to 256x256, not Qwen2.5-VL's 56x56
    assert QWEN3.image_tokens(300, 200) == 70  # under 65,536 pixels once rounded: scaled up
    assert QWEN3.image_tokens(8000, 6000) == 16_170  # 3520x4704: under 4096^2 pixels, 16,384 tokens
    assert QWEN3.min_image_tokens == 64


def test_fit_leaves_an_image_that_fits_alone() -> None:
    assert QWEN.fit(640, 480) == ImageFit((640, 480), {}, 391)
    assert QWEN.target_size(640, 480, 391) == (640, 480)


def test_fit_sends_out_of_bounds_images_at_the_size_the_server_would_use() -> None:
    fit = QWEN.fit(8000, 6000)
    assert fit.size == (4116, 3080) and fit.tokens == QWEN.image_tokens(8000, 6000)
    assert QWEN.fit(20, 20) == ImageFit((56, 56), {}, 4)
    assert QWEN3.fit(20, 20) == ImageFit((256, 256), {}, 64)


@pytest.mark.parametrize("preset", [QWEN, QWEN3], ids=lambda p: p.family)
@pytest.mark.parametrize("budget", [100, 500, 2000])
def test_fit_shrinks_qwen_images_only_as_far_as_the_budget_needs(preset, budget: int) -> None:
    fit = preset.fit(4000, 3000, budget)
    w, h = fit.size
    assert fit.tokens == preset.image_tokens(w, h) <= budget
    assert fit.processor_kwargs == {}
    assert w / h == pytest.approx(4 / 3, rel=0.1)
    # Sent at a whole number of blocks, so the server does not resample it again...
    assert (w % preset.factor, h % preset.factor) == (0, 0)
    # ...and one block more each way would be over budget.
    assert preset.image_tokens(w + preset.factor, h + preset.factor) > budget


def test_fit_below_the_minimum_returns_the_cheapest_size() -> None:
    fit = QWEN.fit(28 * 150, 28, max_image_tokens=10)  # 150:1 strip, at least 150 blocks at 28 px
    assert fit.tokens == 150 and fit.size == (4200, 28)
    fit = QWEN3.fit(4000, 3000, max_image_tokens=64)  # 4:3 over 65,536 pixels is 10x8 blocks
    assert fit == ImageFit((320, 256), {}, 80)


def test_aspect_ratio_over_200_is_refused_with_advice() -> None:
    with pytest.raises(ImageTooLargeError, match="Crop or pad"):
        QWEN.fit(30000, 100)
    with pytest.raises(ImageTooLargeError, match="201:1"):
        QWEN3.image_tokens(201, 1)
    assert QWEN.image_tokens(200, 1) == 29  # 200:1 is taken (scaled up to 812x28, as vLLM does)


# -- InternVL -------------------------------------------------------------------------------------
def test_internvl_tiles_follow_the_aspect_ratio_not_the_area() -> None:
    assert INTERNVL.tile_grid(1000, 100) == (10, 1)
    assert INTERNVL.image_tokens(1000, 100) == 2816  # 10 tiles + thumbnail, 256 each
    assert INTERNVL.image_tokens(100, 1000) == 2816
    assert INTERNVL.image_tokens(448, 448) == 256  # one tile, no thumbnail
    assert INTERNVL.image_tokens(1, 1) == 256
    assert INTERNVL.image_tokens(4000, 4000) == 10 * 256  # 3x3 + thumbnail: 4x4 is over 12
    assert INTERNVL.image_tokens(1600, 1200) == 13 * 256  # 4x3 + thumbnail
    assert INTERNVL.image_tokens(100_000, 1) == 13 * 256  # any aspect ratio is taken
    assert INTERNVL.min_image_tokens == 256


def test_internvl_square_grid_depends_on_the_area_tie_break() -> None:
    # 1x1, 2x2 and 3x3 match a square equally; a larger grid wins when the image's area exceeds
    # half of that grid's.
    assert INTERNVL.tile_grid(633, 633) == (1, 1)  # 400,689 <= 0.5 * 4 * 448^2 = 401,408
    assert INTERNVL.tile_grid(634, 634) == (2, 2)
    assert INTERNVL.tile_grid(950, 950) == (2, 2)  # 902,500 <= 0.5 * 9 * 448^2 = 903,168
    assert INTERNVL.tile_grid(951, 951) == (3, 3)


def test_internvl_max_tiles_is_max_dynamic_patch() -> None:
    assert INTERNVL.image_tokens(1000, 100, 3) == 4 * 256  # 3x1 + thumbnail
    assert INTERNVL.image_tokens(1000, 100, 1) == 256
    assert INTERNVL.image_tokens(1600, 1200, 4) == 5 * 256  # 2x2 + thumbnail (ties with 1x1)
    assert INTERNVL.image_tokens(1600, 1200, 3) == 256  # 1x1 is closest to 4:3 among <= 3 tiles


def test_internvl_budget_lowers_max_dynamic_patch_instead_of_shrinking() -> None:
    assert INTERNVL.fit(1000, 100) == ImageFit((1000, 100), {}, 2816)
    assert INTERNVL.fit(1000, 100, 2816) == ImageFit((1000, 100), {}, 2816)  # the default: no kwargs
    fit = INTERNVL.fit(1000, 100, 1500)
    assert fit == ImageFit((1000, 100), {"max_dynamic_patch": 4}, 1280)  # 4x1 + thumbnail
    assert INTERNVL.fit(1000, 100, 1000) == ImageFit((1000, 100), {"max_dynamic_patch": 2}, 768)


def test_internvl_budget_under_one_tile_returns_one_tile() -> None:
    assert INTERNVL.fit(1000, 100, 100) == ImageFit((1000, 100), {"max_dynamic_patch": 1}, 256)


def test_internvl_downscales_only_pixels_vllm_would_throw_away() -> None:
    fit = INTERNVL.fit(4000, 4000)
    assert fit == ImageFit((1344, 1344), {}, 10 * 256)  # exactly the 3x3 grid's pixels
    assert INTERNVL.tile_grid(*fit.size) == INTERNVL.tile_grid(4000, 4000)
    assert INTERNVL.fit(2000, 1500).size == (2000, 1500)  # 4x3 tiles use most of it: untouched
    assert INTERNVL.fit(8000, 6000, 300) == ImageFit((598, 449), {"max_dynamic_patch": 3}, 256)


def test_internvl_downscale_keeps_vllms_grid() -> None:
    # Squares tie between 1x1, 2x2 and 3x3, and the area breaks the tie: a downscaled copy
    # must land on the same grid, or the original is sent.
    for side in (1400, 1900, 2700, 5000, 9000):
        for tiles in (4, 9, 12):
            fit = INTERNVL.fit(side, side, INTERNVL.image_tokens(side, side, tiles))
            assert INTERNVL.tile_grid(*fit.size, tiles) == INTERNVL.tile_grid(side, side, tiles)
            assert fit.tokens == INTERNVL.image_tokens(side, side, tiles)


def test_target_size_is_fit_size_and_works_for_pixel_only_presets() -> None:
    assert QWEN.target_size(4000, 3000, 500) == QWEN.fit(4000, 3000, 500).size
    box = dataclasses.replace(QWEN, family="thumbnail", factor=1, min_pixels=1, max_pixels=64 * 64,
                              max_aspect_ratio=float("inf"))
    assert box.target_size(640, 480) == (73, 55)
    assert box.target_size(10, 5) == (10, 5)
    assert box.target_size(100_000, 1) == (20_238, 1)  # one pixel high cannot shrink further
