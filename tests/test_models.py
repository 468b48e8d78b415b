import math

import pytest

from caprl_nb.errors import ConfigError, ImageTooLargeError
from caprl_nb.models import PRESETS, preset_for, preset_named

QWEN = PRESETS["qwen2.5-vl"]


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


def test_preset_by_name() -> None:
    assert preset_named("internvl3.5") is PRESETS["internvl3.5"]
    assert preset_named("internlm/CapRL-Qwen3VL-2B").family == "qwen3-vl"
    with pytest.raises(ConfigError, match="Known presets"):
        preset_named("llava")


def test_qwen_token_estimate_is_ceil_of_28px_patches() -> None:
    assert QWEN.image_tokens(280, 280) == 100
    assert QWEN.image_tokens(1000, 700) == math.ceil(1008 / 28) * math.ceil(700 / 28)
    assert PRESETS["qwen3-vl"].image_tokens(320, 320) == 100


def test_target_size_keeps_images_inside_limits() -> None:
    assert QWEN.target_size(640, 480) == (640, 480)  # already fine: untouched
    w, h = QWEN.target_size(8000, 6000)
    assert w * h <= QWEN.max_pixels
    assert abs(w / h - 8000 / 6000) < 0.01
    w, h = QWEN.target_size(20, 20)  # below min_pixels: scaled up
    assert w * h >= QWEN.min_pixels


def test_target_size_honours_token_budget() -> None:
    w, h = QWEN.target_size(4000, 3000, max_image_tokens=500)
    assert QWEN.image_tokens(w, h) <= 500
    assert w > 400  # shrunk only as far as needed


def test_aspect_ratio_over_200_is_refused_with_advice() -> None:
    with pytest.raises(ImageTooLargeError, match="Crop or pad"):
        QWEN.target_size(30000, 100)


def test_internvl_tiles() -> None:
    p = PRESETS["internvl3.5"]
    assert p.image_tokens(448, 448) == 256
    assert p.image_tokens(4000, 4000) == 13 * 256  # 12 tiles + thumbnail
    w, h = p.target_size(4000, 4000)
    assert w * h <= 12 * 448 * 448
