"""chat.py: the request built for engines caprl_nb does not drive is the one it sends.

The batch's requests are captured at the simulator (their JSON bodies as received) and compared
field by field with :func:`caprl_nb.chat.chat_request` for the same images, server checkpoint and
max_model_len; an answer stored through :meth:`ChatRequest.store` is then found by an ordinary
``df.caprl.caption`` call without any request.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

import caprl_nb
from caprl_nb.chat import chat_request, store_engine_answer
from caprl_nb.prompts import caption_task
from caprl_nb.store import ResultStore

from tests.conftest import make_images
from tests.support.vllm_sim import VLLMSimulator


@pytest.fixture
def pictures(tmp_path: Path) -> list[str]:
    files = make_images(tmp_path / "i", 3)
    big = tmp_path / "i" / "big.jpg"  # must shrink: the image budget applies
    Image.new("RGB", (4000, 3400), (120, 30, 200)).save(big, quality=80)
    return [*files, str(big)]


@pytest.mark.parametrize("max_model_len", [32768, 4096])
def test_chat_request_is_the_body_the_batch_sends(pictures: list[str], tmp_path: Path, max_model_len: int) -> None:
    with VLLMSimulator(max_model_len=max_model_len) as sim:
        out = pd.DataFrame({"image": pictures}).caprl.caption(
            "image", base_url=sim.base_url, home=tmp_path / "h", progress=False, details=True,
        )
        assert out["error"].isna().all()
        sent = {tuple(r["_images"]): {k: v for k, v in r.items() if not k.startswith("_")} for r in sim.requests}
        for path in pictures:
            request = chat_request(path, checkpoint=sim.root, max_model_len=max_model_len, vllm_version=sim.version)
            body = next((b for b in sent.values() if b["messages"] == request.fields["messages"]), None)
            assert body is not None, f"no request at the server carried {path}'s image as chat_request builds it"
            assert body == request.fields
    # The big image was shrunk to the budget in both (the same bytes were sent).
    assert len({str(b["messages"]) for b in sent.values()}) == len(pictures)


def test_engine_row_carries_the_same_messages_and_sampling(pictures: list[str]) -> None:
    request = chat_request(pictures[0], task=caption_task(max_tokens=64, seed=7))
    row = request.engine_row()
    assert row["messages"] == request.fields["messages"]
    assert row["messages"][0]["content"][1]["text"] == "Please describe this image in detail."
    assert row["sampling_params"] == {
        "temperature": 1.0, "top_p": 1.0, "max_tokens": 64, "repetition_penalty": 1.0, "seed": 7,
    }


def test_an_answer_stored_from_elsewhere_is_found_by_caption(pictures: list[str], tmp_path: Path) -> None:
    home = tmp_path / "h"
    with VLLMSimulator(max_model_len=32768) as sim:
        store = ResultStore(home / "results.sqlite3")
        for i, path in enumerate(pictures):
            request = chat_request(path, checkpoint=sim.root, max_model_len=32768, vllm_version=sim.version)
            answer = f"engine answer for {Path(path).name}"
            if i % 2:
                request.store(store, answer, completion_tokens=5)
            else:  # as a Ray Data LLM job's output row comes back: the engine row plus its text
                row = {**request.engine_row(), "generated_text": answer}
                assert store_engine_answer(store, row, row["generated_text"], checkpoint=sim.root,
                                           vllm_version=sim.version)
        assert not store_engine_answer(store, row, "  ", checkpoint=sim.root)  # an empty answer is not kept
        store.close()
        out = caprl_nb.caption(pd.Series(pictures), base_url=sim.base_url, home=home, progress=False, details=True)
        assert not sim.requests  # every row came from the store
        assert out["cached"].all()
        assert list(out["caption"]) == [f"engine answer for {Path(p).name}" for p in pictures]
        assert (out["base_url"] == "ray-data-llm").all()
