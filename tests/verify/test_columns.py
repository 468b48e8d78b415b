"""verify() against a scripted OpenAI-compatible server whose answers are known.

The simulator (tests/support/vllm_sim.py) answers through tests/support/scripted_vqa.py: each
question is answered correctly or not exactly as scripted, so every kept and dropped question,
every score and every request count below is exact.
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

import caprl_nb.accessor  # noqa: F401 - registers df.caprl
from caprl_nb.config import resolve_settings
from caprl_nb.errors import BatchError, CapRLWarning, ColumnNotFoundError, ConfigError
from caprl_nb.fleet import MixedCheckpointsError
from caprl_nb.store import ResultStore
from caprl_nb.verify import RESULT_COLUMNS, verify

from tests.conftest import make_images
from tests.support.polling import wait_until
from tests.support.scripted_vqa import CANNOT, Fact, ScriptedVQA
from tests.support.vllm_sim import Fault, VLLMSimulator

F = [False, False, False]
CAR = Fact("What colour is the car?", ["red", "blue", "green", "white"], "red", [True, True, False], F)
DOGS = Fact("How many dogs are there?", ["one", "two", "three", "four"], "two", [True, False, False], F)
SIGN = Fact("What is written on the sign?", ["STOP", "EXIT", "OPEN", "SALE"], "OPEN",
            [True, True, True], [True, False, False])
SEASON = Fact("Which season is it?", ["winter", "summer"], "winter", [True, True, True], [True, False, False])
ROOF = Fact("What animal is on the roof?", ["cat", "bird", "dog", "fox"], "cat")
BOAT = Fact("What colour is the boat?", ["yellow", "black", "pink"], "yellow", F, F)
TREE = Fact("How tall is the tree?", ["short", "tall"], "tall")
FACTS = [CAR, DOGS, SIGN, SEASON, ROOF, BOAT, TREE]
FAILED = r"row\(s\) failed"
COLOURS = [(200, 30, 30), (30, 30, 200), (30, 200, 30), (200, 200, 30)]


def solid_images(folder: Path, colours: list[tuple[int, int, int]] = COLOURS) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, colour in enumerate(colours):
        path = folder / f"solid{i}.png"
        Image.new("RGB", (120, 90), colour).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture
def script() -> ScriptedVQA:
    return ScriptedVQA(FACTS, styles=("letter", "paren", "answer", "boxed", "text", "dot"))


@pytest.fixture
def server(script: ScriptedVQA) -> Iterator[VLLMSimulator]:
    with VLLMSimulator(respond=script) as sim:
        yield sim


@pytest.fixture
def frame(tmp_path: Path) -> pd.DataFrame:
    out: pd.DataFrame = pd.DataFrame(
        {
            "image": solid_images(tmp_path / "img"),
            "caption": ["A red car parked by a sign.", "A snowy winter street.", "A boat.", None],
            "qs": [[CAR.given(), DOGS.given(), SIGN.given()], [SEASON.given(), ROOF.given()],
                   [BOAT.given()], [TREE.given()]],
        },
        index=["a", "b", "c", "d"],
    )
    return out


def _chat(sim: VLLMSimulator) -> int:
    return len(sim.requests)


def test_scores_filters_and_failed_questions_are_exact(
    server: VLLMSimulator, script: ScriptedVQA, frame: pd.DataFrame
) -> None:
    with pytest.warns(CapRLWarning, match="2 row"):
        out = frame.caprl.verify("image", caption="caption", questions="qs", base_url=server.base_url, progress=False)
    assert list(out.columns) == list(RESULT_COLUMNS) == [
        "caption_score", "questions_kept", "failed_questions", "questions", "verify_error", "verify_error_type"]
    assert list(out.index) == ["a", "b", "c", "d"]
    assert str(out["caption_score"].dtype) == "Float64" and str(out["questions_kept"].dtype) == "Int64"
    assert out["caption_score"].tolist()[:2] == [1.0, 0.5]
    assert out["caption_score"].isna().tolist() == [False, False, True, True]
    assert out["questions_kept"].tolist()[:2] == [1, 2]
    assert out["failed_questions"]["a"] == []
    assert out["failed_questions"]["b"] == [
        "What animal is on the roof? expected: cat; from the caption: cannot answer"]
    kept = {r["question"]: (r["kept"], r["dropped"]) for r in out["questions"]["a"] + out["questions"]["b"]}
    assert kept[CAR.question] == (True, None)
    assert kept[SEASON.question] == (True, None)  # 1 of 3 right blind, chance is 1 in 2
    assert kept[ROOF.question] == (True, None)
    assert not kept[DOGS.question][0] and "with the image in 1 of 3" in kept[DOGS.question][1]
    assert not kept[SIGN.question][0] and "without the image in 1 of 3" in kept[SIGN.question][1]
    roof = next(r for r in out["questions"]["b"] if r["question"] == ROOF.question)
    assert roof == {"question": ROOF.question, "options": ROOF.options, "answer": "cat", "source": "given",
                    "kept": True, "dropped": None, "caption_answer": CANNOT, "correct": False}
    assert out["verify_error_type"].tolist()[2:] == ["NoQuestionKeptError", "NoCaptionError"]
    assert "none of the row's 1 question(s) was kept" in out["verify_error"]["c"]
    assert out["verify_error"][["a", "b"]].isna().all()
    # Requests: 6 questions of rows a-c x (3 with + 3 without the image), then 3 kept answered.
    modes = Counter(entry["mode"] for entry in script.log)
    assert modes == {"with_image": 18, "without_image": 18, "caption": 3}
    assert _chat(server) == 39
    assert all(entry["choice"] == entry["letters"] for entry in script.log)  # structured outputs
    assert sum(bool(r["_images"]) for r in server.requests) == 18  # only with-image tries see it
    # Each question's three tries with the image saw its options in more than one order.
    orders = {tuple(e["options"]) for e in script.log if e["mode"] == "with_image" and e["question"] == ROOF.question}
    assert len(orders) > 1


def test_identical_call_sends_nothing_and_a_changed_caption_only_its_answers(
    server: VLLMSimulator, script: ScriptedVQA, frame: pd.DataFrame
) -> None:
    options = {"caption": "caption", "questions": "qs", "base_url": server.base_url, "progress": False}
    with pytest.warns(CapRLWarning, match=FAILED):
        first = frame.caprl.verify("image", details=True, **options)
    sent = _chat(server)
    with pytest.warns(CapRLWarning, match=FAILED):
        again = frame.caprl.verify("image", details=True, **options)
    assert _chat(server) == sent
    assert again["requests_sent"].tolist() == [0, 0, 0, 0]
    assert again["cached"].tolist() == [True, True, False, False]
    pd.testing.assert_frame_equal(
        first.drop(columns=["requests_sent", "cached"]), again.drop(columns=["requests_sent", "cached"]))

    changed = frame.copy()
    changed.loc["b", "caption"] = "A snowy winter street, a cat on the roof."
    with pytest.warns(CapRLWarning, match=FAILED):
        third = changed.caprl.verify("image", details=True, **options)
    new = script.log[-(_chat(server) - sent):]
    assert _chat(server) - sent == 2
    assert {e["mode"] for e in new} == {"caption"} and {e["question"] for e in new} == {SEASON.question, ROOF.question}
    assert third["caption_score"]["b"] == 1.0 and third["failed_questions"]["b"] == []
    assert third["requests_sent"].tolist() == [0, 2, 0, 0]


def test_answers_and_tries_are_stored_with_provenance(server: VLLMSimulator, frame: pd.DataFrame) -> None:
    with pytest.warns(CapRLWarning, match=FAILED):
        frame.caprl.verify("image", caption="caption", questions="qs", base_url=server.base_url, progress=False)
    with ResultStore(resolve_settings().store_path) as store:
        counts = {row["task"]: row["rows"] for row in store.by_checkpoint() if row["checkpoint"] == server.root}
        assert counts == {"verify.with_image": 18, "verify.without_image": 18, "verify.answer": 3}
        key = store.read("SELECT key FROM results WHERE task = 'verify.answer' LIMIT 1")[0][0]
        record = store.provenance(key)
    assert record is not None
    assert record["model"] == "caprl" and record["checkpoint"] == server.root
    assert record["base_url"] == server.base_url and record["server_version"] == "0.32.0"
    assert "Here is a description of an image" in record["params"]["text"]
    assert record["params"]["structured"]["structured_outputs"]["choice"][-1] in "BCDE"
    assert record["params"]["temperature"] == 0.0


def test_generated_questions_are_filtered_and_scored(tmp_path: Path) -> None:
    good = {"question": "What shape is shown?", "options": ["square", "circle", "star", "heart"], "answer": "square"}
    wrong = {"question": "Is it dark?", "options": ["yes", "no"], "answer": "maybe"}
    other = {"question": "What fills the picture?", "options": ["one colour", "stripes"], "answer": "one colour"}
    facts = [Fact(str(d["question"]), list(d["options"]), str(d["answer"])) for d in (good, other)]
    script = ScriptedVQA(facts, generated={COLOURS[0]: [good, wrong], COLOURS[1]: [other]})
    images = solid_images(tmp_path / "img", COLOURS[:2])
    with VLLMSimulator(respond=script) as sim:
        out = verify(images, ["a square", "one colour everywhere"], n_questions=2, base_url=sim.base_url,
                     progress=False, details=True)
        generation = [r for r in sim.requests if "response_format" in r]
    assert out["caption_score"].tolist() == [1.0, 1.0]
    assert out["questions_kept"].tolist() == [1, 1]
    assert [r["source"] for r in out["questions"][0]] == ["generated", "generated"]
    dropped = out["questions"][0][1]
    assert dropped["kept"] is False and dropped["dropped"].startswith("malformed: its answer 'maybe'")
    assert len(generation) == 2 and all(r["_images"] for r in generation)
    schema = generation[0]["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["questions"]["maxItems"] == 2
    assert out["question_checkpoint"].tolist() == ["internlm/CapRL-3B"] * 2
    assert out["requests_sent"].tolist() == [1 + 6 + 1, 1 + 6 + 1]


def test_failed_rows_are_data_and_raise_lists_them_all(tmp_path: Path, frame: pd.DataFrame) -> None:
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    frame = frame.copy()
    frame.loc["b", "image"] = str(broken)
    script = ScriptedVQA(FACTS)
    # concurrency=1 sends in order: the first request is row a's first try with the image.
    with VLLMSimulator(respond=script, faults=[Fault("status", 400)]) as sim:
        with pytest.raises(BatchError) as info:
            frame.caprl.verify("image", caption="caption", questions="qs", base_url=sim.base_url,
                               concurrency=1, progress=False, errors="raise")
        cases = info.value.failure_cases
        assert list(cases.index) == ["a", "b", "c", "d"]
        assert cases["error_type"].tolist() == ["RequestRejectedError", "ImageDecodeError", "NoQuestionKeptError",
                                                "NoCaptionError"]
        with pytest.warns(CapRLWarning, match=FAILED):
            out = frame.caprl.verify("image", caption="caption", questions="qs", base_url=sim.base_url, progress=False)
    assert out["caption_score"].tolist()[0] == 1.0  # the rejected try was not stored: asked again
    assert out["verify_error_type"].tolist()[1:] == ["ImageDecodeError", "NoQuestionKeptError", "NoCaptionError"]


def test_another_answerer_endpoint_answers_from_the_caption(frame: pd.DataFrame) -> None:
    main, answers = ScriptedVQA(FACTS), ScriptedVQA(FACTS)
    with VLLMSimulator(respond=main) as vision, VLLMSimulator(respond=answers, root="Qwen/Qwen3-0.6B",
                                                              model_id="text") as text:
        with pytest.warns(CapRLWarning, match=FAILED):
            out = frame.caprl.verify("image", caption="caption", questions="qs", base_url=vision.base_url,
                                     answerer_base_url=text.base_url, progress=False, details=True)
        assert len(text.requests) == 3 and not any(r["_images"] for r in text.requests)
        assert len(vision.requests) == 36
        assert {r["model"] for r in text.requests} == {"text"}
    assert out["caption_score"].tolist()[:2] == [1.0, 0.5]
    assert out["answerer_checkpoint"].tolist()[:2] == ["Qwen/Qwen3-0.6B"] * 2
    assert out["answerer_base_url"].tolist()[0] == text.base_url


def test_an_answerer_that_is_not_vllm_gets_a_json_schema_for_the_letter(frame: pd.DataFrame) -> None:
    answers = ScriptedVQA(FACTS, styles=("json",))
    with VLLMSimulator(respond=ScriptedVQA(FACTS)) as vision, VLLMSimulator(respond=answers, version=None) as text:
        with pytest.warns(CapRLWarning, match=FAILED):
            out = frame.caprl.verify("image", caption="caption", questions="qs", base_url=vision.base_url,
                                     answerer_base_url=text.base_url, progress=False)
        formats = [r["response_format"] for r in text.requests]
        assert not any("structured_outputs" in r or "guided_choice" in r for r in text.requests)
    assert [f["json_schema"]["schema"]["properties"]["answer"]["enum"] for f in formats] == [
        e["letters"] for e in answers.log]
    assert out["caption_score"].tolist()[:2] == [1.0, 0.5]


def test_unfiltered_given_questions_are_all_kept(server: VLLMSimulator, frame: pd.DataFrame) -> None:
    with pytest.warns(CapRLWarning, match=FAILED):  # row d: no caption
        out = frame.caprl.verify("image", caption="caption", questions="qs", filter=False,
                                 base_url=server.base_url, progress=False)
    assert out["questions_kept"].tolist()[:3] == [3, 2, 1]
    assert out["caption_score"].tolist()[:3] == [pytest.approx(1 / 3), 0.5, 0.0]
    assert _chat(server) == 6  # answers only: no filter tries


def test_runs_inside_a_running_event_loop(server: VLLMSimulator, frame: pd.DataFrame) -> None:
    async def notebook_cell() -> pd.DataFrame:  # Jupyter runs cells with its loop running
        with pytest.warns(CapRLWarning, match=FAILED):
            out: pd.DataFrame = frame.caprl.verify("image", caption="caption", questions="qs",
                                                   base_url=server.base_url, progress=False)
        return out

    assert asyncio.run(notebook_cell())["caption_score"].tolist()[:2] == [1.0, 0.5]


def test_bad_arguments_fail_before_anything_is_sent(server: VLLMSimulator, frame: pd.DataFrame) -> None:
    bad = frame.copy()
    bad.at["b", "qs"] = [{"question": "Q?", "options": ["x", "y"], "answer": "z"}]
    with pytest.raises(ConfigError, match="Question 0 of row 'b'"):
        bad.caprl.verify("image", caption="caption", questions="qs", base_url=server.base_url, progress=False)
    with pytest.raises(ColumnNotFoundError):
        frame.caprl.verify("image", caption="alt_text", base_url=server.base_url)
    with pytest.raises(ConfigError, match="samples"):
        frame.caprl.verify("image", samples=0, base_url=server.base_url)
    with pytest.raises(ConfigError, match="3 values for 4 images"):
        verify(frame["image"], ["x", "y", "z"], base_url=server.base_url)
    assert _chat(server) == 0


def test_a_question_model_that_writes_no_usable_question_is_not_asked_again(tmp_path: Path) -> None:
    blank = {"question": " ", "options": ["a", "b", "c", "d"], "answer": "A"}
    script = ScriptedVQA([], generated={COLOURS[0]: [blank]})
    images = solid_images(tmp_path / "img", COLOURS[:1])
    with VLLMSimulator(respond=script) as sim:
        for _ in range(2):
            with pytest.warns(CapRLWarning, match="NoQuestionKeptError"):
                out = verify(images, ["a caption"], base_url=sim.base_url, progress=False)
        assert len(sim.requests) == 1  # stored: asked again it would say the same
    assert "none of the row's 1 question(s) was kept" in out["verify_error"][0]
    assert out["questions"][0][0]["dropped"] == "malformed: 'question' must be a non-empty string"


def test_offline_answers_a_verified_frame_from_the_store_alone(script: ScriptedVQA, frame: pd.DataFrame) -> None:
    options = {"caption": "caption", "questions": "qs", "progress": False}
    with VLLMSimulator(respond=script) as sim:
        with pytest.warns(CapRLWarning, match=FAILED):
            online = frame.caprl.verify("image", base_url=sim.base_url, **options)
        url = sim.base_url
    with pytest.warns(CapRLWarning, match=FAILED):
        offline = frame.caprl.verify("image", base_url=url, offline=True, **options)
    pd.testing.assert_frame_equal(online, offline)


def _without_details(out: pd.DataFrame) -> pd.DataFrame:
    kept: pd.DataFrame = out.drop(columns=[c for c in ("requests_sent", "cached") if c in out.columns])
    return kept


def test_two_servers_share_the_turns_and_score_exactly_as_one(frame: pd.DataFrame, tmp_path: Path) -> None:
    options = {"caption": "caption", "questions": "qs", "progress": False}
    with VLLMSimulator(respond=ScriptedVQA(FACTS)) as one, pytest.warns(CapRLWarning, match=FAILED):
        alone = frame.caprl.verify("image", base_url=one.base_url, home=tmp_path / "one", **options)
    script = ScriptedVQA(FACTS)  # one script for both: a question's tries count across servers
    with VLLMSimulator(respond=script, latency=0.05) as a, VLLMSimulator(respond=script, latency=0.05) as b:
        with pytest.warns(CapRLWarning, match=FAILED):
            both = frame.caprl.verify("image", base_url=[a.base_url, b.base_url], home=tmp_path / "two",
                                      details=True, **options)
        assert a.requests and b.requests, (len(a.requests), len(b.requests))
        assert len(a.requests) + len(b.requests) == 39  # each turn sent once, to one of them
        assert sum(bool(r["_images"]) for r in a.requests + b.requests) == 18
    pd.testing.assert_frame_equal(_without_details(both)[list(RESULT_COLUMNS)], alone)
    assert both["requests_sent"].tolist() == [3 * 6 + 1, 2 * 6 + 2, 6, 0]  # tries + kept answers
    with ResultStore(resolve_settings(home=tmp_path / "two").store_path) as store:
        servers = {row[0] for row in store.read("SELECT base_url FROM results WHERE task LIKE 'verify.%'")}
    assert servers == {a.base_url, b.base_url}  # provenance names the server that answered


def test_several_answerer_endpoints_share_the_caption_answers(frame: pd.DataFrame) -> None:
    answers = ScriptedVQA(FACTS)
    with VLLMSimulator(respond=ScriptedVQA(FACTS)) as vision, \
            VLLMSimulator(respond=answers, root="Qwen/Qwen3-0.6B", latency=0.1) as t1, \
            VLLMSimulator(respond=answers, root="Qwen/Qwen3-0.6B", latency=0.1) as t2:
        with pytest.warns(CapRLWarning, match=FAILED):
            out = frame.caprl.verify("image", caption="caption", questions="qs", base_url=vision.base_url,
                                     answerer_base_url=f"{t1.base_url},{t2.base_url}", progress=False)
        assert t1.requests and t2.requests and len(t1.requests) + len(t2.requests) == 3
        assert len(vision.requests) == 36
    assert out["caption_score"].tolist()[:2] == [1.0, 0.5]


def test_a_server_stopped_mid_run_hands_its_turns_to_the_other(tmp_path: Path) -> None:
    n = 30
    facts = [Fact(f"What is in picture {i}, part {k}?", ["sun", "moon", "star", "sky"], ["sun", "moon"][k],
                  with_image=[True] * 6, without_image=[False] * 6) for i in range(n) for k in range(2)]
    frame = pd.DataFrame({
        "image": make_images(tmp_path / "img", n),
        "caption": ["The sun." if i % 2 else "The sun and the moon." for i in range(n)],
        "qs": [[facts[2 * i].given(), facts[2 * i + 1].given()] for i in range(n)],
    })
    script = ScriptedVQA(facts)
    with VLLMSimulator(respond=script, latency=0.05, capacity=8) as a, \
            VLLMSimulator(respond=script, latency=0.05, capacity=8) as b:

        def stop_a() -> None:
            wait_until(lambda: len(a.requests) >= 40, 30, "40 requests at server a")
            a.stop()  # every connection aborted, turns in flight included

        threading.Thread(target=stop_a, daemon=True).start()
        # Stopped during the filter, so the answer pass starts without it, and says so.
        with pytest.warns(CapRLWarning, match="did not answer at the start"):
            out = frame.caprl.verify("image", caption="caption", questions="qs", base_url=[a.base_url, b.base_url],
                                     concurrency=8, max_backoff=0.05, outage_timeout=60.0, progress=False)
        assert len(a.requests) >= 40 and len(b.requests) > n * 2 * 6 + n * 2 - len(a.requests)
    assert out["verify_error"].isna().all(), out["verify_error"].dropna().tolist()[:3]
    assert out["caption_score"].tolist() == [1.0 if i % 2 == 0 else 0.5 for i in range(n)]


def test_servers_serving_different_checkpoints_are_refused_before_any_turn(frame: pd.DataFrame) -> None:
    with VLLMSimulator(respond=ScriptedVQA(FACTS), root="internlm/CapRL-3B") as a, \
            VLLMSimulator(respond=ScriptedVQA(FACTS), root="internlm/CapRL-InternVL3.5-8B") as b:
        with pytest.raises(MixedCheckpointsError, match="serve different checkpoints"):
            frame.caprl.verify("image", caption="caption", questions="qs", base_url=[a.base_url, b.base_url],
                               progress=False)
        assert not a.requests and not b.requests
