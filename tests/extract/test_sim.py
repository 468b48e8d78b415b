"""The request extract sends and how it reports answers, against the vLLM-shaped simulator.

The simulator does not constrain its output: its answers are "sim caption ..." text, so every
row must come back as a clear parse error, and nothing may raise.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pydantic
import pytest

import caprl_nb
from caprl_nb.extract import CHART_SCHEMA, EXTRACT_PROMPT

from tests.conftest import make_images
from tests.support.vllm_sim import VLLMSimulator


class Receipt(pydantic.BaseModel):
    shop: str
    total: float
    items: int
    paid: bool


@pytest.fixture
def frame(tmp_path: Path) -> pd.DataFrame:
    return pd.DataFrame({"image": make_images(tmp_path / "img", 5), "other": range(5)},
                        index=[f"r{i}" for i in range(5)])


def test_request_carries_schema_and_extraction_sampling(sim: VLLMSimulator, frame: pd.DataFrame) -> None:
    with pytest.warns(caprl_nb.CapRLWarning, match=r"5 row\(s\) failed \(5 ParseError\)"):
        out = frame.caprl.extract("image", Receipt, base_url=sim.base_url, progress=False)
    assert len(sim.requests) == 5
    body = sim.requests[0]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Receipt", "schema": Receipt.model_json_schema(), "strict": True},
    }
    assert body["temperature"] == 0.0
    assert body["max_tokens"] == 2048
    text = body["messages"][0]["content"][1]["text"]
    assert text.startswith(EXTRACT_PROMPT)
    assert json.dumps(Receipt.model_json_schema(), separators=(",", ":")) in text
    # every row: NA fields and a parse error naming the cause; nothing raised
    assert out.index.equals(frame.index)
    assert list(out.columns) == ["shop", "total", "items", "paid", "error"]
    assert out[["shop", "total", "items", "paid"]].isna().all().all()
    assert out["error"].str.startswith("ParseError: no JSON object in the answer (it begins 'sim caption").all()
    assert [str(t) for t in out.dtypes] == ["string", "Float64", "Int64", "boolean", "string"]


def test_details_add_raw_text_and_provenance(sim: VLLMSimulator, frame: pd.DataFrame) -> None:
    with pytest.warns(caprl_nb.CapRLWarning):
        out = frame.caprl.extract("image", Receipt, base_url=sim.base_url, progress=False,
                                  details=True)
    assert list(out.columns) == ["shop", "total", "items", "paid", "error", "error_type", "raw",
                                 "cached", "model", "checkpoint", "base_url", "latency_s", "prompt_tokens",
                                 "completion_tokens", "finish_reason", "attempts"]
    assert (out["error_type"] == "ParseError").all()
    assert out["raw"].str.startswith("sim caption").all()
    assert (out["model"] == "caprl").all()
    # The simulator's answers are not JSON: every row failed to parse. A failure is not an
    # answer, so the same call asks again instead of replaying it from the store.
    assert out["error"].str.startswith("ParseError").all()
    with pytest.warns(caprl_nb.CapRLWarning):
        again = frame.caprl.extract("image", Receipt, base_url=sim.base_url, progress=False,
                                    details=True)
    assert not again["cached"].any() and len(sim.requests) == 10


def test_overrides_reach_the_server(sim: VLLMSimulator, frame: pd.DataFrame) -> None:
    with pytest.warns(caprl_nb.CapRLWarning, match="Truncated"):
        out = frame.caprl.extract("image", Receipt, base_url=sim.base_url, progress=False,
                                  temperature=0.7, max_tokens=4, prompt="Read the receipt.")
    body = sim.requests[0]
    assert (body["temperature"], body["max_tokens"]) == (0.7, 4)
    assert body["messages"][0]["content"][1]["text"].startswith("Read the receipt.\nJSON schema: ")
    assert out["error"].str.startswith("Truncated: cut off at max_tokens=4").all()


def test_errors_raise_reports_every_row_after_the_batch(sim: VLLMSimulator, frame: pd.DataFrame) -> None:
    with pytest.raises(caprl_nb.BatchError) as info:
        frame.caprl.extract("image", Receipt, base_url=sim.base_url, progress=False, errors="raise")
    cases = info.value.failure_cases
    assert list(cases.index) == list(frame.index)
    assert cases["error"].str.startswith("ParseError").all()
    assert (cases["error_type"] == "ParseError").all()
    assert cases["input"].str.contains("img0000").all()
    assert len(sim.requests) == 5


def test_request_failures_and_parse_failures_share_one_warning(sim: VLLMSimulator, frame: pd.DataFrame) -> None:
    images = frame["image"].tolist() + [str(Path(frame["image"].iloc[0]).parent / "missing.png")]
    with pytest.warns(caprl_nb.CapRLWarning) as caught:
        out = caprl_nb.extract.extract(images, Receipt, base_url=sim.base_url, progress=False)
    summaries = [w for w in caught if "failed" in str(w.message)]
    assert len(summaries) == 1
    assert "6 row(s) failed (5 ParseError, 1 ImageNotFoundError)" in str(summaries[0].message)
    assert out["error"].iloc[-1].startswith("ImageNotFoundError")


def test_server_without_version_warns(frame: pd.DataFrame) -> None:
    with VLLMSimulator(version="") as server:
        with pytest.warns(caprl_nb.CapRLWarning) as caught:
            frame.caprl.extract("image", Receipt, base_url=server.base_url, progress=False)
    assert any("did not report a vLLM version" in str(w.message) for w in caught)


def test_chart_table_request_and_failed_rows(sim: VLLMSimulator, frame: pd.DataFrame) -> None:
    with pytest.warns(caprl_nb.CapRLWarning):
        tables = frame.caprl.chart_table("image", base_url=sim.base_url, progress=False)
    assert tables.name == "table" and tables.index.equals(frame.index)
    assert tables.isna().all()
    body = sim.requests[0]
    assert body["response_format"]["json_schema"]["schema"] == CHART_SCHEMA
    assert body["response_format"]["json_schema"]["name"] == "chart_table"
    with pytest.warns(caprl_nb.CapRLWarning):
        details = frame.caprl.chart_table("image", base_url=sim.base_url, progress=False,
                                          details=True)
    assert list(details.columns[:6]) == ["table", "title", "x_label", "y_label", "units", "error"]


def test_series_accessor_and_missing_column(sim: VLLMSimulator, frame: pd.DataFrame) -> None:
    with pytest.raises(caprl_nb.ColumnNotFoundError, match="'image', 'other'"):
        frame.caprl.extract("picture", Receipt)
    with pytest.warns(caprl_nb.CapRLWarning):
        out = frame["image"].caprl.extract(Receipt, base_url=sim.base_url, progress=False)
    assert out.index.equals(frame.index)


def test_fields_clashing_with_result_columns_are_refused(frame: pd.DataFrame) -> None:
    with pytest.raises(caprl_nb.ConfigError, match="'error'"):
        frame.caprl.extract("image", {"type": "object", "properties": {"error": {"type": "string"}}})
    with pytest.raises(caprl_nb.ConfigError, match="'model'"):
        frame.caprl.extract("image", {"type": "object", "properties": {"model": {"type": "string"}}},
                            details=True)


def _completion(content: str, finish_reason: str = "stop", completion_tokens: int = 20) -> str:
    """A chat-completion body as vLLM sends it, with ``content`` as the answer."""
    return json.dumps({
        "id": "chatcmpl-scripted", "object": "chat.completion", "created": 0, "model": "caprl",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                     "finish_reason": finish_reason}],
        "usage": {"prompt_tokens": 50, "completion_tokens": completion_tokens, "total_tokens": 70},
    })


def test_scripted_answers_become_typed_columns(tmp_path: Path) -> None:
    """Answers scripted over real sockets: tolerant parse, strict validation, typed columns."""
    answers = [
        _completion('{"shop": "Corner\x04 Store", "total": 12.5, "items": 3, "paid": true}'),
        _completion('```json\n{"shop": "B", "total": 7, "items": 1, "paid": false}\n```'),
        _completion('Here you go: {"shop": "C", "total": "12.50", "items": 2, "paid": true}'),
        _completion('{"shop": "D", "total": 1.0, "it', "length", 256),
        _completion('{"shop": "E", "total": 1.0}'),
    ]
    from tests.support.vllm_sim import Fault

    faults = [Fault("status", 200, body=body) for body in answers]
    images = make_images(tmp_path / "img", len(answers))
    with VLLMSimulator(faults=faults) as server:
        with pytest.warns(caprl_nb.CapRLWarning, match=r"3 row\(s\) failed"):
            out = caprl_nb.extract.extract(images, Receipt, base_url=server.base_url,
                                           progress=False, concurrency=1, details=True)
    assert out["shop"].tolist()[:2] == ["Corner\x04 Store", "B"]
    assert out["total"].tolist()[:2] == [12.5, 7.0]
    assert out["items"].tolist()[:2] == [3, 1]
    assert out["paid"].tolist()[:2] == [True, False]
    assert out["error"].iloc[:2].isna().all()
    assert out["error"].iloc[2].startswith("ValidationError: field 'total'")  # "12.50" is text
    assert out["error"].iloc[3].startswith("Truncated: cut off at max_tokens=2048 before")  # as sent
    assert out["error"].iloc[4].startswith("ValidationError: field 'items': Field required")
    assert out["finish_reason"].tolist()[3] == "length"


def test_scripted_chart_answer_becomes_a_table(tmp_path: Path) -> None:
    answer = {"title": "Sales", "x_label": "Year", "y_label": "Sales", "units": "USD",
              "x": ["2019", "2020"], "series": [{"name": "A", "values": ["1,200", "(3)"]}]}
    from tests.support.vllm_sim import Fault

    images = make_images(tmp_path / "img", 1)
    with VLLMSimulator(faults=[Fault("status", 200, body=_completion(json.dumps(answer)))]) as server:
        tables = caprl_nb.extract.chart_table(images, base_url=server.base_url, progress=False)
    [table] = tables.tolist()
    assert table.to_dict("list") == {"Year": [2019, 2020], "A": [1200.0, -3.0]}
    assert table.attrs["units"] == "USD"


def test_older_server_gets_guided_json(frame: pd.DataFrame) -> None:
    with VLLMSimulator(version="0.11.2") as server:
        with pytest.warns(caprl_nb.CapRLWarning):
            frame.caprl.extract("image", Receipt, base_url=server.base_url, progress=False)
        body = server.requests[0]
    assert body["guided_json"] == Receipt.model_json_schema()
    assert "response_format" not in body
