"""run_one: one image through the core, awaited, with the row's provenance (the server extension's way in)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from caprl_nb.config import resolve_settings
from caprl_nb.prompts import caption_task
from caprl_nb.rows import run_one
from caprl_nb.store import ResultStore

from tests.support.vllm_sim import VLLMSimulator


def test_run_one_returns_the_answer_with_its_stored_provenance(sim: VLLMSimulator, image_files: list[str]) -> None:
    settings = resolve_settings(base_url=sim.base_url)
    first = asyncio.run(run_one(caption_task(max_tokens=8), image_files[0], settings))
    assert first.error is None and first.error_type is None and not first.cached
    assert first.text is not None and first.text.startswith("sim caption")
    assert (first.checkpoint, first.base_url, first.server_version) == (sim.root, sim.base_url, "0.32.0")
    assert first.key is not None and first.created_at is not None
    # what the row says is what the store holds under that key
    with ResultStore(settings.store_path) as store:
        record = store.provenance(first.key)
    assert record is not None
    assert (record["text"], record["created_at"], record["base_url"]) == (first.text, first.created_at, sim.base_url)
    # the same request again: from the store, with the provenance of when it was answered
    again = asyncio.run(run_one(caption_task(max_tokens=8), image_files[0], settings))
    assert again.cached and len(sim.requests) == 1
    assert (again.text, again.key, again.created_at, again.server_version) == (
        first.text, first.key, first.created_at, "0.32.0")


def test_a_failed_row_is_returned_with_its_error_type(sim: VLLMSimulator, tmp_path: Path) -> None:
    settings = resolve_settings(base_url=sim.base_url)
    missing = str(tmp_path / "nope.png")
    result = asyncio.run(run_one(caption_task(max_tokens=8), missing, settings))
    assert result.error_type == "ImageNotFoundError"
    assert result.error is not None and result.error.startswith("ImageNotFoundError: ") and "nope.png" in result.error
    assert result.text is None and result.key is None and sim.requests == []
