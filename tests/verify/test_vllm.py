"""verify end to end against real vLLM serving the tiny random Qwen2.5-VL (its answers are noise).

Asserted: every row gets a score or an explicit error, structured outputs are accepted (the
question schema and the letter choice), everything is stored with provenance, and the identical
call sends no request (vLLM's own /metrics count). Never the scores themselves.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from caprl_nb.config import resolve_settings
from caprl_nb.errors import CapRLWarning
from caprl_nb.store import ResultStore
from caprl_nb.verify import RESULT_COLUMNS, verify

from tests.conftest import make_images

pytestmark = pytest.mark.vllm


def _finished(base_url: str) -> float:
    text = httpx.get(base_url.removesuffix("/v1") + "/metrics", timeout=10).text
    values = re.findall(r"^vllm:request_success_total\{[^}]*\} ([0-9.e+]+)$", text, re.M)
    assert values, "vLLM's /metrics has no vllm:request_success_total"
    return sum(float(v) for v in values)


def test_twenty_images_scored_or_failed_stored_and_free_the_second_time(vllm_server: str, tmp_path: Path) -> None:
    images = make_images(tmp_path / "img", 20)
    captions = pd.Series([f"A picture of noise, number {i}." for i in range(20)], index=[f"r{i}" for i in range(20)])
    options: dict[str, Any] = {"n_questions": 2, "samples": 1, "max_tokens": 900, "base_url": vllm_server,
                               "progress": False, "details": True, "read_timeout": 300}
    before = _finished(vllm_server)
    with pytest.warns(CapRLWarning):  # noise answers drop most questions: those rows fail
        first = verify(pd.Series(images, index=captions.index), captions, **options)
    sent = _finished(vllm_server) - before
    assert list(first.columns[: len(RESULT_COLUMNS)]) == list(RESULT_COLUMNS)
    scored = first["caption_score"].notna()
    assert (scored ^ first["verify_error"].notna()).all()  # a score or an explicit error, never neither
    assert first.loc[scored, "caption_score"].between(0, 1).all()
    assert first.loc[~scored, "verify_error_type"].notna().all()
    assert sent == first["requests_sent"].sum() > 0
    generated = [q for qs in first["questions"] for q in qs]
    assert generated and {q["source"] for q in generated} == {"generated"}
    assert first["question_checkpoint"].dropna().nunique() == 1

    with ResultStore(resolve_settings().store_path) as store:
        tasks = {row["task"]: row["rows"] for row in store.by_checkpoint()}
        assert tasks.get("verify.generate", 0) > 0 and tasks.get("verify.with_image", 0) > 0
        assert tasks.get("verify.without_image", 0) > 0
        key = store.read("SELECT key FROM results WHERE task = 'verify.with_image' LIMIT 1")[0][0]
        record = store.provenance(key)
    assert record is not None and record["checkpoint"] and record["server_version"]
    assert record["params"]["structured"]["structured_outputs"]["choice"] == ["A", "B", "C", "D"]

    before = _finished(vllm_server)
    with pytest.warns(CapRLWarning):
        again = verify(pd.Series(images, index=captions.index), captions, **options)
    assert _finished(vllm_server) == before, first[["verify_error_type", "verify_error"]].to_string()  # nothing sent
    assert again["requests_sent"].tolist() == [0] * 20
    pd.testing.assert_frame_equal(first[list(RESULT_COLUMNS)], again[list(RESULT_COLUMNS)])
