"""The turn runner: stored by checkpoint (never the served alias), images sent only when asked."""

from __future__ import annotations

from pathlib import Path

from caprl_nb.config import resolve_settings
from caprl_nb.prompts import Sampling
from caprl_nb.verify.requests import Turn, run_turns

from tests.conftest import make_images
from tests.support.vllm_sim import VLLMSimulator

SAMPLING = Sampling(temperature=0.0, max_tokens=16)


def _turns() -> list[Turn]:
    return [Turn("verify.with_image", 0, "Question: Q?\nA. x\nB. y", ("A", "B"), image=True),
            Turn("verify.without_image", 0, "Question: Q?\nA. x\nB. y", ("A", "B")),
            Turn("verify.with_image", 0, "Question: Q?\nA. x\nB. y", ("A", "B"), image=True, sample=1)]


def test_answers_are_keyed_by_checkpoint_not_alias(tmp_path: Path) -> None:
    images = make_images(tmp_path / "img", 1)
    with VLLMSimulator(model_id="caprl") as one, VLLMSimulator(model_id="other-alias") as two, \
            VLLMSimulator(root="Qwen/Qwen2.5-VL-7B-Instruct") as three:
        first = run_turns(_turns(), images, resolve_settings(base_url=one.base_url), SAMPLING, progress=False)
        assert [r.cached for r in first.replies] == [False, False, False]
        assert sorted(bool(r["_images"]) for r in one.requests) == [False, True, True]
        assert all(r["structured_outputs"] == {"choice": ["A", "B"]} for r in one.requests)
        same = run_turns(_turns(), images, resolve_settings(base_url=two.base_url), SAMPLING, progress=False)
        assert [r.cached for r in same.replies] == [True, True, True] and two.requests == []
        assert [r.text for r in same.replies] == [r.text for r in first.replies]
        other = run_turns(_turns(), images, resolve_settings(base_url=three.base_url), SAMPLING, progress=False)
        assert len(three.requests) == 3 and not any(r.cached for r in other.replies)


def test_a_row_whose_image_cannot_be_read_fails_only_its_image_turns(tmp_path: Path, sim: VLLMSimulator) -> None:
    missing = str(tmp_path / "nowhere.png")
    ran = run_turns(_turns(), [missing], resolve_settings(base_url=sim.base_url), SAMPLING, progress=False)
    assert [r.error_type for r in ran.replies] == ["ImageNotFoundError", None, "ImageNotFoundError"]
    assert "nowhere.png" in (ran.replies[0].error or "")
    assert len(sim.requests) == 1
