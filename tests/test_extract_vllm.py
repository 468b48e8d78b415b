"""Extraction against real vLLM (CPU) serving the tiny random Qwen2.5-VL, which honours
``response_format`` (xgrammar) but writes noise: assertions are on shapes, types, validity and
explanations, never on values.
"""

from __future__ import annotations

import re
import time
import warnings
from pathlib import Path
from typing import Literal

import pandas as pd
import pydantic
import pytest

import caprl_nb
from caprl_nb.extract import chart_table, groundtruth, parse_number

from .conftest import make_images

pytestmark = pytest.mark.vllm

# Every failure must say why; these are the reasons an answer of the tiny model can fail.
EXPLAINED = re.compile(
    r"^(Truncated: cut off at max_tokens=\d+ before the JSON object was complete; raise max_tokens"
    r"|ValidationError: (field '[^']+': )?\S"
    r"|ParseError: \S)"
)


class PageFacts(pydantic.BaseModel):
    """Six fields of every JSON type the column typing handles."""

    title: str = pydantic.Field(max_length=40)
    kind: Literal["chart", "document", "photo", "other"]
    count: int
    amount: float
    has_text: bool
    labels: list[str] = pydantic.Field(max_length=3)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("mixed")
    charts = groundtruth.charts(root / "charts", 20)
    docs = groundtruth.documents(root / "docs", 10)
    noise = make_images(root / "noise", 20, size=(160, 120))
    images = list(charts["image"]) + list(docs["image"]) + noise
    return pd.DataFrame({"image": images}, index=[f"img{i}" for i in range(len(images))])


def test_extract_50_mixed_images(vllm_server: str, mixed: pd.DataFrame) -> None:
    started = time.monotonic()
    with _recorded():
        out = mixed.caprl.extract("image", PageFacts, base_url=vllm_server, max_tokens=256,
                                  details=True, progress=False)
    elapsed = time.monotonic() - started
    print(f"extract: 50 images in {elapsed:.1f} s; errors: "
          f"{out['error'].str.split(':').str[0].value_counts(dropna=False).to_dict()}")
    assert elapsed < 60
    assert len(out) == 50 and out.index.equals(mixed.index)
    assert {c: str(t) for c, t in out.dtypes.items() if c in PageFacts.model_fields} == {
        "title": "string", "kind": "string", "count": "Int64", "amount": "Float64",
        "has_text": "boolean", "labels": "object",
    }
    ok = out[out["error"].isna()]
    assert len(ok) >= 1, "the grammar should let at least some answers finish within 256 tokens"
    for _, row in ok.iterrows():
        values = {name: row[name] for name in PageFacts.model_fields}
        values = {k: (v.item() if hasattr(v, "item") else v) for k, v in values.items()}
        PageFacts.model_validate(values, strict=True)  # raises if a "successful" row is invalid
        assert row["finish_reason"] == "stop"
    failed = out[out["error"].notna()]
    assert failed[list(PageFacts.model_fields)].isna().all().all()
    unexplained = [e for e in failed["error"] if not EXPLAINED.match(e)]
    assert not unexplained
    truncated = failed[failed["error"].str.startswith("Truncated")]
    assert (truncated["finish_reason"] == "length").all()


def test_chart_table_numeric_columns(vllm_server: str, mixed: pd.DataFrame) -> None:
    charts = mixed["image"].iloc[:10]
    with _recorded():
        tables = chart_table(charts, base_url=vllm_server, max_tokens=1024, progress=False)
    assert tables.name == "table" and tables.index.equals(charts.index)
    got = tables.dropna()
    assert len(got) >= 1, "with bounded strings most tiny-model answers finish in 1024 tokens"
    for table in got:
        assert isinstance(table, pd.DataFrame)
        assert set(table.attrs) == {"title", "x_label", "y_label", "units"}
        for name in table.columns[1:]:
            values = table[name].dropna().tolist()
            if values and all(parse_number(v) is not None for v in values):
                assert str(table[name].dtype) == "Float64", (name, table[name].dtype)
            else:
                assert str(table[name].dtype) in ("string", "Float64")
    long = caprl_nb.extract.concat_tables(tables)
    assert set(long["row"]) <= set(charts.index)


def test_pdf_pages(vllm_server: str, tmp_path: Path) -> None:
    path = tmp_path / "three.pdf"
    truth = groundtruth.pdf(path, 3)
    frame = pd.DataFrame({"doc": [str(path)]}, index=["contract"])
    with _recorded():
        out = frame.caprl.extract("doc", groundtruth.INVOICE_SCHEMA, base_url=vllm_server,
                                  max_tokens=128, progress=False)
    assert out.index.tolist() == ["contract"] * 3
    assert out["page"].tolist() == [1, 2, 3] == truth["page"].tolist()
    assert all(EXPLAINED.match(e) for e in out["error"].dropna())


def _recorded() -> warnings.catch_warnings:
    """Record the failed-rows warning without requiring one: how many rows fail is up to noise."""
    return warnings.catch_warnings(record=True)
