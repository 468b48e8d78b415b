"""The turn runner: stored by checkpoint (never the served alias), images sent only when asked;
rows streamed through a window; a cached re-run read from the store in bulk."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from caprl_nb import store as store_module
from caprl_nb.config import resolve_settings
from caprl_nb.prompts import Sampling
from caprl_nb.store import ResultStore
from caprl_nb.verify import requests
from caprl_nb.verify.requests import Reply, RowTurns, Turn, run_turns, stream_turns

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


def _rows(n: int) -> Iterator[RowTurns]:
    for i in range(n):
        yield RowTurns(i, [Turn("verify.without_image", i, f"Question: Q{i}?\nA. x\nB. y", ("A", "B"), sample=s)
                           for s in range(2)], i)


def test_rows_are_taken_as_turns_are_needed_and_handed_back_when_answered(
    sim: VLLMSimulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(requests, "LOOKUP_TURNS", 8)
    taken: list[int] = []
    seen: list[tuple[int, int, list[str | None]]] = []  # (row, rows taken by then, its replies)

    def rows() -> Iterator[RowTurns]:
        for spec in _rows(400):
            taken.append(spec.row)
            yield spec

    def on_row(spec: RowTurns, replies: list[Reply]) -> None:
        seen.append((spec.context, len(taken), [r.text for r in replies]))

    settings = resolve_settings(base_url=sim.base_url, concurrency=4)
    info = stream_turns(rows(), [None] * 400, settings, SAMPLING, on_row=on_row, total=800, longest=None,
                        progress=False)
    assert info is not None and info.checkpoint == sim.root
    assert sorted(row for row, _, _ in seen) == list(range(400))  # every row handed back once
    assert all(len(texts) == 2 and all(texts) for _, _, texts in seen)
    # A window of rows, not all 400: the first row came back before most rows were built.
    assert seen[0][1] <= 40, seen[0][1]
    assert max(taken_then - row for row, taken_then, _ in seen) <= 40


def test_a_cached_re_run_finds_image_turns_in_bulk(tmp_path: Path, sim: VLLMSimulator,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "RACY_WINDOW_NS", 0)  # remember hashes of files just written
    images = make_images(tmp_path / "img", 3)
    turns = [Turn("verify.with_image", row, f"Question: Q{row}?\nA. x\nB. y", ("A", "B"), image=True, sample=s)
             for row in range(3) for s in range(2)] + [Turn("verify.without_image", 1, "Question: Q?\nA. x\nB. y",
                                                             ("A", "B"))]
    settings = resolve_settings(base_url=sim.base_url)
    first = run_turns(turns, images, settings, SAMPLING, progress=False)
    assert len(sim.requests) == 7 and not any(r.cached for r in first.replies)
    one_by_one: list[str] = []
    real_get = ResultStore.get

    def get(self: ResultStore, key: str) -> Any:
        one_by_one.append(key)
        return real_get(self, key)

    monkeypatch.setattr(ResultStore, "get", get)
    again = run_turns(turns, images, settings, SAMPLING, progress=False)
    assert all(r.cached for r in again.replies) and len(sim.requests) == 7
    assert [r.text for r in again.replies] == [r.text for r in first.replies]
    assert one_by_one == []  # every turn, image turns too, came from the bulk lookups
