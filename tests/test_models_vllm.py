"""ModelPreset's token arithmetic against the real vLLM 0.32 / transformers code in the engine.

Two checks. A probe script, run by the engine's python, asks vLLM's own functions how many image
tokens each size costs: the ``smart_resize`` vLLM's Qwen2-VL / Qwen3-VL ``_get_vision_info``
calls (and transformers' ``Qwen2VLImageProcessor``, built offline with the checkpoints' pixel
bounds), and vLLM's ``InternVLProcessingInfo`` with per-request ``max_dynamic_patch`` (its
real kwarg merging, the InternVL3.5 config's values). Then the real tiny Qwen2.5-VL server
reports ``usage.prompt_tokens`` for images of known sizes.

Without CAPRL_VLLM_PYTHON these skip, unless CAPRL_REQUIRE_VLLM=1, where they fail.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import os
import random
import subprocess
from typing import Any

import httpx
import numpy as np
import pytest
from PIL import Image

from caprl_nb import tiny_model
from caprl_nb.errors import ImageTooLargeError
from caprl_nb.images import identify, prepare
from caprl_nb.models import PRESETS, ModelPreset

pytestmark = pytest.mark.vllm

QWEN = PRESETS["qwen2.5-vl"]
QWEN3 = PRESETS["qwen3-vl"]
INTERNVL = PRESETS["internvl3.5"]

PROBE = r'''
import json, sys, types
from PIL import Image

req = json.load(sys.stdin)
out = {}

# Qwen: the smart_resize that vLLM's _get_vision_info calls, the formula it counts with, and
# the HF image processor (token count from get_number_of_image_patches and from real pixels).
from transformers import Qwen2VLImageProcessor
from vllm.model_executor.models import qwen2_vl, qwen3_vl

def qwen(resize, family):
    processor = Qwen2VLImageProcessor(**req[family]["processor"])
    p, m = processor.patch_size, processor.merge_size
    bounds = processor.size["shortest_edge"], processor.size["longest_edge"]
    counts = []
    for w, h in req[family]["sizes"]:
        try:
            rh, rw = resize(height=h, width=w, factor=p * m, min_pixels=bounds[0], max_pixels=bounds[1])
        except ValueError:  # aspect ratio over 200
            counts.append(None)
            continue
        counts.append([(rh // p) * (rw // p) // (m * m), processor.get_number_of_image_patches(h, w, {}) // (m * m)])
    pixels = []
    for w, h in req["qwen_pixels"]:
        image = Image.new("RGB", (w, h), (120, 30, 200))
        t, gh, gw = processor(images=[image], return_tensors="pt")["image_grid_thw"][0].tolist()
        pixels.append(t * gh * gw // (m * m))
    return {"counts": counts, "pixels": pixels}

out["qwen2.5-vl"] = qwen(qwen2_vl.smart_resize, "qwen2.5-vl")
out["qwen3-vl"] = qwen(qwen3_vl.image_smart_resize, "qwen3-vl")

# InternVL: vLLM's processing info merges the request's mm_processor_kwargs over the config.
from vllm.config.multimodal import MultiModalConfig
from vllm.model_executor.models.internvl import InternVLProcessingInfo
from vllm.multimodal.processing.context import InputProcessingContext
from vllm.transformers_utils.processors.internvl import InternVLProcessor

config = req["internvl_config"]
hf_config = types.SimpleNamespace(vision_config=types.SimpleNamespace(**config.pop("vision_config")), **config)

class Context:  # the parts of InputProcessingContext the image processor needs, its merging real
    model_config = types.SimpleNamespace(get_multimodal_config=lambda: MultiModalConfig(mm_device_do_normalize=False))
    get_merged_mm_kwargs = InputProcessingContext.get_merged_mm_kwargs
    def get_hf_config(self, *args, **kwargs):
        return hf_config

class Tokenizer:
    def convert_tokens_to_ids(self, token):
        return 0

info = InternVLProcessingInfo(Context())
vision = hf_config.vision_config
seq = int((vision.image_size // vision.patch_size) ** 2 * hf_config.downsample_ratio ** 2)

def internvl(w, h, n, pixels):
    kwargs = {} if n is None else {"max_dynamic_patch": n}
    processor = InternVLProcessor(info.get_image_processor(**kwargs), Tokenizer(), image_seq_length=seq)
    if pixels:
        done = processor(images=[Image.new("RGB", (w, h), (10, 200, 90))], return_tensors="pt", **kwargs)
        return int(done["image_num_patches"][0]) * seq
    return info.get_num_image_tokens(image_width=w, image_height=h, processor=processor)

out["internvl3.5"] = [internvl(w, h, n, False) for w, h, n in req["internvl"]]
out["internvl3.5-pixels"] = [internvl(w, h, n, True) for w, h, n in req["internvl_pixels"]]
print(json.dumps(out))
'''

# Hand-picked sizes: tiny, on the rounding edges of one block, extreme aspect ratios (200:1 is
# the Qwen limit), over the pixel limits, and squares / 2:1 images on InternVL's area tie-break.
QWEN_SIZES = [
    (1, 1), (1, 200), (200, 1), (1, 201), (13, 13), (14, 14), (15, 15), (20, 20), (27, 28),
    (28, 28), (42, 42), (55, 57), (56, 56), (100, 30), (13, 900), (14, 2800), (28, 5600),
    (5600, 28), (41, 8200), (10, 2000), (10, 2001), (30000, 100), (640, 480), (1000, 100),
    (1000, 700), (1920, 1080), (256, 256), (255, 257), (3584, 3584), (3585, 3585), (4096, 4096),
    (4097, 4097), (8000, 6000), (20000, 15000), (100000, 600), (600, 100000),
]
INTERNVL_SIZES = [
    (1, 1), (2, 3), (1, 10000), (10000, 1), (1000, 100), (100, 1000), (6000, 448), (448, 448),
    (447, 447), (633, 633), (634, 634), (950, 950), (951, 951), (1267, 1267), (1268, 1268),
    (4000, 4000), (672, 448), (548, 366), (549, 366), (896, 448), (633, 316), (634, 317),
    (500, 400), (1600, 1200), (1920, 1080), (1080, 1920), (20000, 15000), (4000, 3000),
    (3000, 1000), (1344, 448), (5, 4), (1250, 1000),
]
MAX_DYNAMIC_PATCH = [None, 1, 2, 3, 4, 5, 6, 8, 9, 12]
BUDGETS = {"qwen2.5-vl": [4, 50, 256, 1000, 4096], "qwen3-vl": [64, 100, 256, 1000, 4096],
           "internvl3.5": [256, 300, 700, 1024, 1500, 2816, 3328]}
FIT_SIZES = [(4000, 3000), (1000, 100), (100, 1000), (20, 20), (28, 5600), (1920, 1080), (640, 480),
             (4000, 4000), (20000, 15000)]


def _random_sizes(seed: int, n: int) -> list[tuple[int, int]]:
    rng = random.Random(seed)
    return [(round(10 ** rng.uniform(0, 4.3)), round(10 ** rng.uniform(0, 4.3))) for _ in range(n)]


def _fits(preset: ModelPreset) -> list[tuple[tuple[int, int], int | None, Any]]:
    """(size, budget, fit) for every FIT_SIZES x budget the preset accepts."""
    found = []
    for size in FIT_SIZES:
        for budget in BUDGETS[preset.family]:
            try:
                found.append((size, budget, preset.fit(*size, budget)))
            except ImageTooLargeError:
                continue
    return found


QWEN_ALL = QWEN_SIZES + _random_sizes(1, 80)
QWEN_FITS = {p.family: _fits(p) for p in (QWEN, QWEN3)}
INTERNVL_ALL = [(w, h, n) for w, h in INTERNVL_SIZES + _random_sizes(2, 60) for n in MAX_DYNAMIC_PATCH]
INTERNVL_FITS = _fits(INTERNVL)
QWEN_PIXELS = [(1, 1), (20, 20), (300, 200), (1000, 100), (28, 5600), (13, 900), (2000, 1500)]
INTERNVL_PIXELS = [(1000, 100, None), (1000, 100, 3), (448, 448, None), (634, 634, 4), (633, 633, 4),
                   (1, 1, None), (3000, 1000, 6), (549, 366, 2), (548, 366, 2)]


@pytest.fixture(scope="module")
def engine_python() -> str:
    python = os.environ.get("CAPRL_VLLM_PYTHON")
    if not python:
        if os.environ.get("CAPRL_REQUIRE_VLLM") == "1":
            pytest.fail("CAPRL_REQUIRE_VLLM=1 but CAPRL_VLLM_PYTHON is not set; run .ci/run.")
        pytest.skip("set CAPRL_VLLM_PYTHON to the vLLM CPU engine's python (see .ci/run)")
    return python


@pytest.fixture(scope="module")
def vllm_counts(engine_python: str, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What vLLM's code says each size costs; one subprocess for the whole module."""
    # The checkpoints' preprocessor_config.json (CapRL-3B = Qwen2.5-VL-3B's; CapRL-Qwen3VL = Qwen3-VL's).
    processors = {
        "qwen2.5-vl": {"size": {"shortest_edge": 3136, "longest_edge": 12845056}},
        "qwen3-vl": {"size": {"shortest_edge": 65536, "longest_edge": 16777216}, "patch_size": 16},
    }
    request = {
        **{family: {"processor": processors[family], "sizes": QWEN_ALL + [fit.size for _, _, fit in fits]}
           for family, fits in QWEN_FITS.items()},
        "qwen_pixels": QWEN_PIXELS,
        # CapRL-InternVL3.5-8B's config.json (InternVLChatConfig).
        "internvl_config": {"vision_config": {"image_size": 448, "patch_size": 14}, "min_dynamic_patch": 1,
                            "max_dynamic_patch": 12, "dynamic_image_size": True, "use_thumbnail": True,
                            "downsample_ratio": 0.5},
        "internvl": INTERNVL_ALL + [(*fit.size, fit.processor_kwargs.get("max_dynamic_patch"))
                                    for _, _, fit in INTERNVL_FITS],
        "internvl_pixels": INTERNVL_PIXELS,
    }
    script = tmp_path_factory.mktemp("probe") / "probe.py"
    script.write_text(PROBE, encoding="utf-8")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run([engine_python, str(script)], input=json.dumps(request), capture_output=True,
                          text=True, timeout=600, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def _ours(preset: ModelPreset, width: int, height: int, max_tiles: int | None = None) -> int | None:
    try:
        return preset.image_tokens(width, height, max_tiles)
    except ImageTooLargeError:
        return None


@pytest.mark.parametrize("preset", [QWEN, QWEN3], ids=lambda p: p.family)
def test_qwen_image_tokens_equal_vllm(preset: ModelPreset, vllm_counts: dict[str, Any]) -> None:
    got = vllm_counts[preset.family]
    sizes = QWEN_ALL + [fit.size for _, _, fit in QWEN_FITS[preset.family]]
    theirs = {size: None if c is None else c[0] for size, c in zip(sizes, got["counts"], strict=True)}
    # vLLM's formula and the HF processor's own count agree (or the test data is wrong).
    assert all(c is None or c[0] == c[1] for c in got["counts"])
    mismatches = {size: (_ours(preset, *size), n) for size, n in theirs.items() if _ours(preset, *size) != n}
    assert not mismatches, f"(ours, vLLM) by (width, height): {mismatches}"
    refused = [size for size, n in theirs.items() if n is None]
    assert (1, 201) in refused and (30000, 100) in refused and (1, 200) not in refused
    assert got["pixels"] == [preset.image_tokens(w, h) for w, h in QWEN_PIXELS]  # real pixels, same


@pytest.mark.parametrize("preset", [QWEN, QWEN3], ids=lambda p: p.family)
def test_qwen_fit_costs_what_it_says_and_stays_in_budget(preset: ModelPreset, vllm_counts: dict[str, Any]) -> None:
    fits = QWEN_FITS[preset.family]
    counts = vllm_counts[preset.family]["counts"][len(QWEN_ALL):]
    for (size, budget, fit), count in zip(fits, counts, strict=True):
        assert count is not None, f"vLLM refuses {fit.size}, the size fit{size} sends"
        assert fit.tokens == count[0], (size, budget, fit)
        assert fit.tokens <= budget or fit.tokens == min(f.tokens for s, _, f in fits if s == size), (size, budget, fit)


def test_internvl_image_tokens_equal_vllm(vllm_counts: dict[str, Any]) -> None:
    theirs = vllm_counts["internvl3.5"][: len(INTERNVL_ALL)]
    mismatches = {
        (w, h, n): (INTERNVL.image_tokens(w, h, n), count)
        for (w, h, n), count in zip(INTERNVL_ALL, theirs, strict=True)
        if INTERNVL.image_tokens(w, h, n) != count
    }
    assert not mismatches, f"(ours, vLLM) by (width, height, max_dynamic_patch): {mismatches}"
    assert dict(zip(INTERNVL_ALL, theirs, strict=True))[(1000, 100, None)] == 2816
    # vLLM's image processor, run on real pixels with the request's max_dynamic_patch, agrees.
    assert vllm_counts["internvl3.5-pixels"] == [INTERNVL.image_tokens(w, h, n) for w, h, n in INTERNVL_PIXELS]


def test_internvl_fit_costs_what_it_says_and_stays_in_budget(vllm_counts: dict[str, Any]) -> None:
    counts = vllm_counts["internvl3.5"][len(INTERNVL_ALL):]
    for (size, budget, fit), count in zip(INTERNVL_FITS, counts, strict=True):
        assert fit.tokens == count, (size, budget, fit)
        assert fit.tokens <= budget, (size, budget, fit)  # every budget here is >= one tile
        # A downscaled image keeps vLLM's grid: same tokens as the original would cost.
        n = fit.processor_kwargs.get("max_dynamic_patch")
        assert fit.tokens == INTERNVL.image_tokens(*size, n)


# -- the real server ------------------------------------------------------------------------------
TINY = dataclasses.replace(QWEN, min_pixels=tiny_model.MIN_PIXELS, max_pixels=tiny_model.MAX_PIXELS)
WRAPPER = 2  # <|vision_start|> ... <|vision_end|> around the image's <|image_pad|> tokens


def _png_url(width: int, height: int, seed: int = 0) -> str:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _prompt_tokens(base_url: str, image_url: str | None) -> int:
    content: list[dict[str, Any]] = [{"type": "text", "text": "Please describe this image in detail."}]
    if image_url is not None:
        content.insert(0, {"type": "image_url", "image_url": {"url": image_url}})
    body = {"model": "caprl", "messages": [{"role": "user", "content": content}], "max_tokens": 1}
    resp = httpx.post(f"{base_url}/chat/completions", json=body, timeout=120)
    assert resp.status_code == 200, resp.text
    return int(resp.json()["usage"]["prompt_tokens"])


def test_server_prompt_tokens_match_image_tokens(vllm_server: str) -> None:
    # Below min_pixels, the quirky round-to-zero side, a 2:1 strip, exact blocks, over max_pixels.
    sizes = [(56, 56), (20, 20), (100, 30), (13, 900), (224, 196), (300, 200), (2000, 1500), (150, 400)]
    text_only = _prompt_tokens(vllm_server, None)
    shares = {size: _prompt_tokens(vllm_server, _png_url(*size)) - text_only - WRAPPER for size in sizes}
    assert shares == {size: TINY.image_tokens(*size) for size in sizes}
    assert len(set(shares.values())) >= 5  # the sizes really cost different amounts


def test_server_agrees_with_a_prepared_payload(vllm_server: str) -> None:
    text_only = _prompt_tokens(vllm_server, None)
    photo = np.random.default_rng(3).integers(0, 256, (1200, 1600, 3), dtype=np.uint8)
    for budget in (9, 30, 64):
        payload = prepare(identify(photo), TINY, max_image_tokens=budget)
        assert payload.processor_kwargs == {}
        share = _prompt_tokens(vllm_server, payload.data_url) - text_only - WRAPPER
        assert share == TINY.image_tokens(payload.width, payload.height) == TINY.fit(1600, 1200, budget).tokens
        assert share <= budget

