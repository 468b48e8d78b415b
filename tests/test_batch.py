"""batch.py against the simulator: bounded concurrency, the store, resume, faults, fitting."""

from __future__ import annotations

import _thread
import base64
import io
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from caprl_nb.batch import run_batch, token_budget
from caprl_nb.config import resolve_settings
from caprl_nb.errors import CapRLWarning, RequestRejectedError, ServerUnavailableError
from caprl_nb.models import PRESETS
from caprl_nb.prompts import caption_task

from tests.conftest import make_images
from tests.support.polling import wait_until
from tests.support.vllm_sim import Fault, VLLMSimulator, image_digest


def _settings(sim: VLLMSimulator, **kw: object):
    return resolve_settings(base_url=sim.base_url, max_backoff=0.05, **kw)


def _sha(path: str) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_one_record_per_row_in_order(sim: VLLMSimulator, image_files: list[str]) -> None:
    results = run_batch(image_files, caption_task(max_tokens=8), _settings(sim), progress=False)
    assert len(results) == len(image_files)
    for path, result in zip(image_files, results):
        assert result.error is None
        assert result.text.split()[2] == _sha(path)[:12]  # the caption of *this* image
        assert result.model == "caprl" and not result.cached
        assert result.prompt_tokens and result.completion_tokens and result.latency_s > 0


def test_concurrency_is_bounded(tmp_path: Path) -> None:
    files = make_images(tmp_path / "i", 40)
    with VLLMSimulator(latency=0.05) as sim:
        run_batch(files, caption_task(max_tokens=8), _settings(sim, concurrency=5), progress=False)
        assert sim.max_in_flight == 5
        assert len(sim.requests) == 40


def test_second_identical_call_sends_no_completion(sim: VLLMSimulator, image_files: list[str]) -> None:
    task = caption_task(max_tokens=8)
    first = run_batch(image_files, task, _settings(sim), progress=False)
    sim.reset_log()
    # Only the server's identity is asked for (GET /v1/models); every row comes from the store.
    second = run_batch(image_files, task, _settings(sim), progress=False)
    assert [r.cached for r in second] == [True] * len(image_files)
    assert [r.text for r in second] == [r.text for r in first]
    assert sim.requests == []


def test_changed_params_miss_the_cache(sim: VLLMSimulator, image_files: list[str]) -> None:
    run_batch(image_files[:3], caption_task(max_tokens=8), _settings(sim), progress=False)
    again = run_batch(image_files[:3], caption_task(max_tokens=9), _settings(sim), progress=False)
    assert not any(r.cached for r in again)
    assert len(sim.requests) == 6


def test_cache_false_always_asks(sim: VLLMSimulator, image_files: list[str]) -> None:
    for _ in range(2):
        run_batch(image_files[:2], caption_task(max_tokens=8), _settings(sim), cache=False, progress=False)
    assert len(sim.requests) == 4


def test_no_server_at_all_raises_with_advice(image_files: list[str]) -> None:
    from caprl_nb.engine import free_port

    settings = resolve_settings(base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0)
    with pytest.raises(ServerUnavailableError, match="caprl-nb serve"):
        run_batch(image_files, caption_task(), settings, progress=False)


def test_bad_rows_are_data_not_exceptions(sim: VLLMSimulator, image_files: list[str], tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.png"
    garbage.write_bytes(b"not an image at all")
    values = [image_files[0], str(tmp_path / "missing.png"), str(garbage), None, 42, image_files[1]]
    results = run_batch(values, caption_task(max_tokens=8), _settings(sim), progress=False)
    assert [r.error is None for r in results] == [True, False, False, False, False, True]
    assert "missing.png" in results[1].error and results[1].error.startswith("ImageNotFoundError")
    assert "garbage.png" in results[2].error and results[2].error.startswith("ImageDecodeError")
    assert results[3].error.startswith("UnsupportedImageError")
    assert "int" in results[4].error
    assert len(sim.requests) == 2


def test_failed_rows_are_not_cached(sim: VLLMSimulator, image_files: list[str]) -> None:
    bad = image_files[0]
    sim.fail_image(_sha(bad)[:16], Fault("status", 400))
    first = run_batch(image_files[:3], caption_task(max_tokens=8), _settings(sim), progress=False)
    assert first[0].error and "HTTP 400" in first[0].error
    second = run_batch(image_files[:3], caption_task(max_tokens=8), _settings(sim), progress=False)
    assert [r.cached for r in second] == [False, True, True]


def test_faults_soak_no_row_lost_or_mixed_up(tmp_path: Path) -> None:
    files = make_images(tmp_path / "i", 60)
    with VLLMSimulator(fault_rate=0.3, seed=7) as sim:
        settings = _settings(sim, max_retries=10, read_timeout=1.0, concurrency=16)
        results = run_batch(files, caption_task(max_tokens=8), settings, progress=False)
        outcomes = {r["_outcome"] for r in sim.requests}
    assert len(results) == 60
    assert outcomes - {"ok"}, "the soak injected no faults"
    for path, r in zip(files, results):
        assert (r.text is None) != (r.error is None)
        if r.text is not None:
            assert r.text.split()[2] == _sha(path)[:12]
    assert sum(r.error is None for r in results) >= 55


def test_interrupt_keeps_finished_rows_and_resume_sends_none_again(tmp_path: Path) -> None:
    files = make_images(tmp_path / "i", 30)
    task = caption_task(max_tokens=8)
    with VLLMSimulator(latency=0.2, capacity=2) as sim:
        settings = _settings(sim, concurrency=2)

        def interrupt_when_busy() -> None:
            wait_until(lambda: len(sim.requests) >= 8, 30, "8 requests at the server")
            _thread.interrupt_main()

        threading.Thread(target=interrupt_when_busy, daemon=True).start()
        with pytest.raises(KeyboardInterrupt, match="resume"):
            run_batch(files, task, settings, progress=False)
        first_ok = {image_digest(_url(r)) for r in sim.requests if r["_outcome"] == "ok"}
        sim.reset_log()
        results = run_batch(files, task, settings, progress=False)
        resent = [image_digest(_url(r)) for r in sim.requests]
    assert all(r.error is None for r in results)
    cached = sum(r.cached for r in results)
    assert 6 <= cached < 30
    assert len(resent) == 30 - cached
    assert len(set(resent)) == len(resent)
    # Rows the server finished before the interrupt and that were stored are not sent again.
    stored = {_sha(f) for f, r in zip(files, results) if r.cached}
    assert not stored & set(resent)
    assert stored <= first_ok


def _url(request: dict) -> str:
    return request["messages"][0]["content"][0]["image_url"]["url"]


def test_requests_fit_max_model_len(tmp_path: Path) -> None:
    big = make_images(tmp_path / "i", 1, size=(3000, 2000))
    with VLLMSimulator(max_model_len=1024, context_check="reject") as sim:
        with pytest.warns(CapRLWarning, match="max_tokens lowered"):
            results = run_batch(big, caption_task(), _settings(sim), progress=False)
        assert results[0].error is None
        sent = sim.requests[0]
    assert sent["max_tokens"] < 1024
    data = base64.b64decode(_url(sent).split(",", 1)[1])
    w, h = Image.open(io.BytesIO(data)).size
    assert PRESETS["qwen2.5-vl"].image_tokens(w, h) + sent["max_tokens"] <= 1024


def test_token_budget_rules() -> None:
    qwen = PRESETS["qwen2.5-vl"]
    assert token_budget(caption_task(max_tokens=100), qwen, None) == (None, 100)
    image, out = token_budget(caption_task(max_tokens=100), qwen, 32768)
    assert out == 100 and image > 30000
    image, out = token_budget(caption_task(), qwen, 2048)
    assert image >= 256 and out < 2048 and image + out < 2048
    with pytest.raises(RequestRejectedError, match="max-model-len"):
        token_budget(caption_task(), qwen, 40)


def test_works_inside_a_running_event_loop(sim: VLLMSimulator, image_files: list[str]) -> None:
    import asyncio

    async def notebook_cell() -> list:
        # What a Jupyter cell is: code running while the kernel's loop runs.
        asyncio.get_running_loop()
        return run_batch(image_files[:3], caption_task(max_tokens=8), _settings(sim), progress=False)

    results = asyncio.run(notebook_cell())
    assert [r.error for r in results] == [None, None, None]


def test_rows_answered_by_the_store_in_bulk_read_back_as_one_by_one() -> None:
    # set_stored fills a chunk of rows column by column; every row must read back exactly as
    # set(i, RowResult.from_store(hit, checkpoint)) would have left it, for a run of rows
    # (sliced) and for scattered ones, with unknown tokens, latency and finish reason.
    from caprl_nb.batch import BatchResults, RowResult
    from caprl_nb.store import StoredResult

    hits = [
        StoredResult("k0", "a cat", "caprl", "stop", 10, 4, 0.5, 1.0, "http://h/v1", "0.11"),
        StoredResult("k1", "a dog", "", None, None, None, None, 2.0),
        StoredResult("k2", "", "caprl", "length", 0, 2**40, 1e-9, 3.0),
    ]
    for positions in ([1, 2, 3], [4, 0, 1]):  # over row 1 (a failure before): as set() would
        bulk, single = BatchResults(6), BatchResults(6)
        bulk.set(1, RowResult(error="boom", error_type="ImageError", input="x.png"))
        single.set(1, RowResult(error="boom", error_type="ImageError", input="x.png"))
        bulk.set_stored(positions, hits, "internlm/CapRL-3B")
        for i, hit in zip(positions, hits):
            single.set(i, RowResult.from_store(hit, "internlm/CapRL-3B"))
        assert list(bulk) == list(single)
        for name in ("text", "model", "finish_reason", "checkpoint", "error", "error_type", "input"):
            assert getattr(bulk, name) == getattr(single, name), name
        for name in ("cached", "latency_s", "prompt_tokens", "completion_tokens", "attempts", "done"):
            np.testing.assert_array_equal(getattr(bulk, name), getattr(single, name), err_msg=name)
            assert getattr(bulk, name).dtype == getattr(single, name).dtype, name
        assert bulk.model[positions[0]] is single.model[positions[0]]  # interned: one shared string
