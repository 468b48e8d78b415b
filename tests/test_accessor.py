"""df.caprl / s.caprl and the frames they return (simulator backend)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import caprl_nb
from caprl_nb.errors import BatchError, CapRLWarning, ColumnNotFoundError

from tests.support.vllm_sim import VLLMSimulator


@pytest.fixture
def frame(image_files: list[str], tmp_path: Path) -> pd.DataFrame:
    return pd.DataFrame(
        {"img": image_files[:4] + [str(tmp_path / "nope.png")], "n": range(5)},
        index=["a", "b", "c", "d", "e"],
    )


def test_caption_series_aligned_on_index(sim: VLLMSimulator, frame: pd.DataFrame) -> None:
    before = frame.copy(deep=True)
    with pytest.warns(CapRLWarning, match=r"1 row\(s\) failed \(1 ImageNotFoundError\)"):
        captions = frame.caprl.caption("img", base_url=sim.base_url, max_tokens=8, progress=False)
    assert isinstance(captions, pd.Series) and captions.name == "caption"
    assert captions.index.equals(frame.index)
    assert captions.notna().tolist() == [True, True, True, True, False]
    pd.testing.assert_frame_equal(frame, before)  # the caller's frame is untouched
    assert "caption" not in frame.columns


def test_details_columns_and_dtypes(sim: VLLMSimulator, frame: pd.DataFrame) -> None:
    with pytest.warns(CapRLWarning):
        out = frame.caprl.caption("img", details=True, base_url=sim.base_url, max_tokens=8, progress=False)
    assert list(out.columns[:11]) == [
        "caption", "error", "error_type", "cached", "model", "checkpoint", "base_url", "latency_s",
        "prompt_tokens", "completion_tokens", "finish_reason",
    ]
    ok = out["error"].isna()
    assert (out.loc[ok, "checkpoint"] == sim.root).all() and (out.loc[ok, "model"] == "caprl").all()
    assert (out.loc[ok, "base_url"] == sim.base_url).all()
    assert out.index.equals(frame.index)
    assert out["cached"].dtype == bool and out["prompt_tokens"].dtype == "Int64"
    assert pd.isna(out.loc["e", "caption"]) and "nope.png" in out.loc["e", "error"]
    assert out.loc["a", "error"] is pd.NA and out.loc["a", "model"] == "caprl"
    # the kind of each failure, typed: the class in caprl_nb.errors, NA where the row succeeded
    assert out.loc["e", "error_type"] == "ImageNotFoundError" and out.loc["a", "error_type"] is pd.NA
    assert out["error_type"].dtype == "string"


def test_errors_raise_reports_every_failure_after_storing_the_rest(
    sim: VLLMSimulator, frame: pd.DataFrame, tmp_path: Path
) -> None:
    frame = frame.copy()
    frame.loc["b", "img"] = str(tmp_path / "also-missing.png")
    with pytest.raises(BatchError) as info:
        frame.caprl.caption("img", errors="raise", base_url=sim.base_url, max_tokens=8, progress=False)
    cases = info.value.failure_cases
    assert list(cases.index) == ["b", "e"]
    assert {"input", "error", "error_type"} <= set(cases.columns)
    assert (cases["error_type"] == "ImageNotFoundError").all()
    assert "2 of 5 rows failed" in str(info.value)
    # The good rows were stored: the next call does not send them again.
    sim.reset_log()
    with pytest.warns(CapRLWarning):
        again = frame.caprl.caption("img", details=True, base_url=sim.base_url, max_tokens=8, progress=False)
    assert again["cached"].sum() == 3 and sim.requests == []


def test_missing_column_lists_the_columns(frame: pd.DataFrame) -> None:
    with pytest.raises(ColumnNotFoundError, match="'img', 'n'") as info:
        frame.caprl.caption("image")
    assert isinstance(info.value, KeyError)


def test_series_accessor_and_ask(sim: VLLMSimulator, image_files: list[str]) -> None:
    s = pd.Series(image_files[:3], index=[10, 20, 30])
    answers = s.caprl.ask("What is shown?", base_url=sim.base_url, max_tokens=8, progress=False)
    assert answers.name == "answer" and list(answers.index) == [10, 20, 30]
    assert sim.requests[0]["messages"][0]["content"][1]["text"] == "What is shown?"
    assert s.caprl.caption(base_url=sim.base_url, max_tokens=8, progress=False).notna().all()


def test_mixed_python_objects(sim: VLLMSimulator) -> None:
    from PIL import Image

    values = [
        Image.new("RGB", (40, 30), "red"),
        np.zeros((30, 40, 3), dtype=np.uint8),
        np.ones((30, 40), dtype=np.float32) * 0.5,
    ]
    out = caprl_nb.caption(values, base_url=sim.base_url, max_tokens=8, progress=False)
    assert out.notna().all() and list(out.index) == [0, 1, 2]


def test_configure_then_call(sim: VLLMSimulator, image_files: list[str]) -> None:
    caprl_nb.configure(base_url=sim.base_url)
    out = caprl_nb.caption(image_files[:2], max_tokens=8, progress=False)
    assert out.notna().all()


def test_progress_bar_reports_counts(sim: VLLMSimulator, image_files: list[str], capsys: pytest.CaptureFixture) -> None:
    caprl_nb.caption(image_files[:3], base_url=sim.base_url, max_tokens=8, progress=True)
    err = capsys.readouterr().err
    assert "3/3" in err and "errors=0" in err
