"""plan.py and the store's identity rules: a stored answer is re-used only for this request to
these weights. Against the simulator, whose /v1/models root and max_model_len tests can change."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from caprl_nb.batch import run_batch
from caprl_nb.client import ServerInfo
from caprl_nb.config import resolve_settings
from caprl_nb.errors import CapRLWarning, ConfigError, ServerUnavailableError
from caprl_nb.extract.columns import extraction_task
from caprl_nb.plan import plan_request
from caprl_nb.prompts import ask_task, caption_task
from caprl_nb.store import ResultStore

from tests.conftest import make_legacy_store
from tests.support.vllm_sim import Fault, VLLMSimulator

CAPRL_3B = "internlm/CapRL-3B"
INTERNVL = "internlm/CapRL-InternVL3.5-8B"


def _run(sim: VLLMSimulator, files: list[str], task=None, **settings):
    options = {"base_url": sim.base_url, "max_backoff": 0.05, **settings}
    return run_batch(files, task or caption_task(max_tokens=8), resolve_settings(**options), progress=False)


def _chats(sim: VLLMSimulator) -> int:
    return len(sim.requests)


def test_another_checkpoint_behind_the_same_alias_never_gets_the_first_ones_answers(
    image_files: list[str],
) -> None:
    files = image_files[:3]
    with VLLMSimulator(root=CAPRL_3B) as sim:
        first = _run(sim, files)
        assert _chats(sim) == 3
        # The same URL and alias now serve other weights.
        sim.root = INTERNVL
        second = _run(sim, files, preset="qwen2.5-vl")
        assert not any(r.cached for r in second)
        assert _chats(sim) == 6
        # Back to the first checkpoint: its answers are found again, no completion is asked for.
        sim.root = CAPRL_3B
        third = _run(sim, files)
        assert all(r.cached for r in third)
        assert [r.text for r in third] == [r.text for r in first]
        assert _chats(sim) == 6


def test_the_store_records_the_checkpoint_and_what_was_sent(sim: VLLMSimulator, image_files: list[str]) -> None:
    _run(sim, image_files[:1])
    with ResultStore(resolve_settings().store_path) as store:
        (key,), = store.read("SELECT key FROM results")
        record = store.provenance(key)
    assert record["checkpoint"] == CAPRL_3B and record["model"] == "caprl"
    assert record["key_version"] == 2
    assert record["params"]["max_tokens"] == 8
    assert record["params"]["image"]["preset"] == "qwen2.5-vl"
    assert record["params"]["max_model_len"] == sim.max_model_len
    assert (record["sent_width"], record["sent_height"]) == (96, 64)


@pytest.mark.parametrize(
    "change",
    [
        {"task": caption_task("Describe briefly.", max_tokens=8)},
        {"task": caption_task(max_tokens=8, temperature=0.5)},
        {"task": caption_task(max_tokens=8, top_p=0.9)},
        {"task": caption_task(max_tokens=8, repetition_penalty=1.1)},
        {"task": caption_task(max_tokens=9)},
        {"task": caption_task(max_tokens=8, seed=7)},
        {"task": ask_task("Please describe this image in detail.", max_tokens=8)},
        {"preset": "internvl3.5"},
    ],
    ids=["prompt", "temperature", "top_p", "repetition_penalty", "max_tokens", "seed", "task", "preset"],
)
def test_everything_sent_that_changes_the_answer_is_in_the_key(
    sim: VLLMSimulator, image_files: list[str], change: dict
) -> None:
    _run(sim, image_files[:2])
    assert all(r.cached for r in _run(sim, image_files[:2]))  # unchanged: a hit
    again = _run(sim, image_files[:2], **change)
    assert not any(r.cached for r in again)
    assert _chats(sim) == 4


def test_max_tokens_as_sent_and_image_budget_are_in_the_key(image_files: list[str]) -> None:
    # A smaller max_model_len lowers the max_tokens sent and the image budget: another request.
    with VLLMSimulator() as sim:
        _run(sim, image_files[:2], caption_task())
        sim.max_model_len = 1024
        with pytest.warns(CapRLWarning, match="max_tokens lowered"):
            again = _run(sim, image_files[:2], caption_task())
        assert not any(r.cached for r in again)
        assert sim.requests[-1]["max_tokens"] < 1024 < sim.requests[0]["max_tokens"]


def test_the_response_schema_is_in_the_key() -> None:
    info = ServerInfo("http://h/v1", "caprl", CAPRL_3B, 32768, "0.32.0")
    a = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]}
    b = {"type": "object", "properties": {"b": {"type": "string"}}, "required": ["b"]}
    key_a = plan_request(extraction_task(a), info)[0].key("sha")
    key_b = plan_request(extraction_task(b), info)[0].key("sha")
    assert key_a != key_b


def test_keys_are_the_digest_of_the_documented_document() -> None:
    """Keys stored by earlier versions stay valid: the key is sha256 of the sorted, compact JSON
    of {v, image, checkpoint, request}, however it is computed (a re-run computes thousands)."""
    import hashlib

    info = ServerInfo("http://h/v1", "caprl", CAPRL_3B, 32768, "0.32.0")
    tricky = caption_task('a "quoted" prompt \\ with "image":"' + "0" * 64 + '" inside')
    for task in (caption_task(), ask_task("What is it?", seed=3), tricky):
        plan = plan_request(task, info)[0]
        for sha in (hashlib.sha256(b"x").hexdigest(), "sha", "not hex: \"\\", "0" * 64):
            document = {"v": 2, "image": sha, "checkpoint": plan.checkpoint, "request": plan.request}
            blob = json.dumps(document, sort_keys=True, separators=(",", ":")).encode()
            assert plan.key(sha) == hashlib.sha256(blob).hexdigest()
        shas = [hashlib.sha256(b"x").hexdigest(), "sha", "not hex: \"\\", "0" * 64, "\u00e9t\u00e9", ""]
        assert plan.keys(shas) == [plan.key(sha) for sha in shas]  # in bulk, the same keys


def test_the_alias_is_provenance_not_identity() -> None:
    task = caption_task()
    one = ServerInfo("http://a/v1", "caprl", CAPRL_3B, 32768, "0.32.0")
    two = ServerInfo("http://b/v1", "captioner", CAPRL_3B, 32768, "0.31.0")
    other = ServerInfo("http://a/v1", "caprl", "internlm/CapRL-Qwen3VL-4B", 32768, "0.32.0")
    assert plan_request(task, one)[0].key("x") == plan_request(task, two)[0].key("x")
    assert plan_request(task, one)[0].key("x") != plan_request(task, other)[0].key("x")
    lora = ServerInfo("http://a/v1", "caprl", "/adapters/mine", 32768, "0.32.0", parent=CAPRL_3B)
    assert lora.checkpoint == f"/adapters/mine+{CAPRL_3B}"


def test_a_server_that_names_no_checkpoint_is_keyed_by_alias_at_its_url() -> None:
    a = ServerInfo("http://a/v1", "caprl", None, None, None)
    b = ServerInfo("http://b/v1", "caprl", None, None, None)
    assert a.checkpoint != b.checkpoint and not a.verified
    plan, notes = plan_request(caption_task(), a)
    assert any("does not say which checkpoint" in n for n in notes)


def test_an_unknown_family_is_guessed_out_loud_and_preset_says_which() -> None:
    info = ServerInfo("http://h/v1", "caprl", "/models/my-finetune", 32768, "0.32.0")
    plan, notes = plan_request(caption_task(), info)
    assert plan.preset.family == "qwen2.5-vl"
    assert any("Cannot tell the model family" in n and "preset=" in n for n in notes)
    plan, notes = plan_request(caption_task(), info, preset="internvl3.5")
    assert plan.preset.family == "internvl3.5" and not notes
    with pytest.raises(ConfigError, match="Known presets"):
        resolve_settings(preset="llava")


def test_empty_answers_are_failures_and_are_retried(sim: VLLMSimulator, image_files: list[str]) -> None:
    empty = {
        "id": "x", "object": "chat.completion", "created": 0, "model": "caprl",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ""},
                     "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 10, "completion_tokens": 0, "total_tokens": 10},
    }
    sim.add_faults(Fault("status", 200, body=json.dumps(empty)))
    first = _run(sim, image_files[:1])
    assert first[0].error.startswith("EmptyAnswerError") and first[0].text is None
    second = _run(sim, image_files[:1])
    assert second[0].error is None and not second[0].cached and second[0].text
    assert _chats(sim) == 2


def test_a_stored_empty_answer_from_an_older_version_is_not_replayed(
    sim: VLLMSimulator, image_files: list[str]
) -> None:
    _run(sim, image_files[:1])
    with ResultStore(resolve_settings().store_path) as store:
        store.write("UPDATE results SET text = ''")
    again = _run(sim, image_files[:1])
    assert again[0].error is None and not again[0].cached and again[0].text


def test_nothing_is_answered_from_the_store_without_the_server_unless_offline(
    image_files: list[str],
) -> None:
    with VLLMSimulator() as sim:
        first = _run(sim, image_files[:2])
        url = sim.base_url
    with pytest.raises(ServerUnavailableError, match="wait_for_server"):
        run_batch(image_files[:2], caption_task(max_tokens=8), resolve_settings(base_url=url), progress=False)
    with pytest.warns(CapRLWarning, match=f"Offline.*{CAPRL_3B}"):
        offline = run_batch(image_files[:3], caption_task(max_tokens=8),
                            resolve_settings(base_url=url, offline=True), progress=False)
    assert [offline[i].text for i in (0, 1)] == [r.text for r in first]
    assert offline[0].cached and offline[1].cached
    assert offline[2].error.startswith("NotStoredError")


def test_offline_needs_a_server_seen_before() -> None:
    with pytest.raises(ConfigError, match="no server was ever seen"):
        run_batch(["x.png"], caption_task(), resolve_settings(base_url="http://127.0.0.1:9/v1", offline=True),
                  progress=False)


def test_rows_keyed_by_alias_answer_nothing_until_adopted(sim: VLLMSimulator, image_files: list[str]) -> None:
    path = resolve_settings().store_path
    path.parent.mkdir(parents=True)
    make_legacy_store(path, image_files[0], "an old caption")
    fresh = _run(sim, image_files[:1])
    assert not fresh[0].cached and fresh[0].text != "an old caption"
    with ResultStore(path) as store:
        assert store.legacy_summary()[0]["rows"] == 1  # still readable
        assert store.adopt("caprl", CAPRL_3B) == 1
    # Drop the fresh answer so only the adopted row can answer.
    with ResultStore(path) as store:
        store.write("DELETE FROM results WHERE key_version = 2")
    adopted = _run(sim, image_files[:1])
    assert adopted[0].cached and adopted[0].text == "an old caption"
    sim.root = INTERNVL  # adopted for CapRL-3B only
    other = _run(sim, image_files[:1], preset="qwen2.5-vl")
    assert not other[0].cached


def test_the_file_hash_memo_is_not_fooled_by_a_rewrite_within_the_timestamp_tick(
    sim: VLLMSimulator, tmp_path: Path
) -> None:
    import os

    from PIL import Image

    path = tmp_path / "same.bmp"
    Image.new("RGB", (64, 64), "red").save(path)
    st = path.stat()
    first = _run(sim, [str(path)])
    # Same size, same mtime (a coarse filesystem would show no change), other pixels.
    Image.new("RGB", (64, 64), "blue").save(path)
    assert path.stat().st_size == st.st_size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    second = _run(sim, [str(path)])
    assert not second[0].cached and second[0].text != first[0].text
