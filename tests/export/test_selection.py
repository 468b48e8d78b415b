"""What an export writes for each row: extraction fields and tables as JSON, PDF pages, masks."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from caprl_nb.errors import ColumnNotFoundError, ConfigError
from caprl_nb.export import export, read_manifest
from caprl_nb.widgets.extraction import review_extraction

from tests.conftest import make_images
from tests.export.conftest import load_rows


def test_extracted_fields_export_as_json_with_the_reviewers_edits(tmp_path: Path) -> None:
    images = make_images(tmp_path / "img", 4)
    df = pd.DataFrame({"image": images}, index=["a", "b", "c", "d"])
    result = pd.DataFrame(
        {
            "vendor": pd.array(["ACME", "Globex", "Initech", None], dtype="string"),
            "total": pd.array([10, 20, 30, None], dtype="Int64"),
            "error": pd.array([None, None, None, "ParseError: no JSON"], dtype="string"),
        },
        index=df.index,
    )
    review = review_extraction(df, "image", result)
    review.review("a", "accepted")
    review.edit("b", {"vendor": "Globex Corp", "total": 21})
    review.review("c", "rejected")
    frame = df.join(review.apply(result))
    review.close()
    with pytest.raises(ColumnNotFoundError, match="'caption'"):
        export(frame, tmp_path / "x", progress=False)  # an extraction needs fields= or table=
    out = export(frame, tmp_path / "fields.parquet", fields=["vendor", "total"], progress=False)
    rows = load_rows("parquet", out, tmp_path / "cache")
    assert [(r["index"], json.loads(str(r["fields"])), r["review_status"]) for r in rows] == [
        ("a", {"vendor": "ACME", "total": 10}, "accepted"),
        ("b", {"vendor": "Globex Corp", "total": 21}, "edited"),
    ]
    assert rows[1]["image"] == Path(images[1]).read_bytes() and rows[1]["reviewed_at"]
    with pytest.warns(match=r"1 selected row\(s\) have no extracted values"):
        out = export(frame, tmp_path / "all.parquet", fields=["vendor", "total"], rows="all", progress=False)
    assert read_manifest(out)["rows"] == 3  # d failed: nothing to train on


def test_chart_tables_export_as_json_in_webdataset(tmp_path: Path) -> None:
    import webdataset as wds

    images = make_images(tmp_path / "img", 2)
    first = pd.DataFrame({"year": [2020, 2021], "sales": [1.5, 2.0]})
    first.attrs.update(title="Sales", y_label="EUR m")
    tables = pd.Series([first, None], name="table")
    review = review_extraction(pd.DataFrame({"image": images}), "image", tables)
    review.review(0, "accepted")
    frame = pd.DataFrame({"image": images}).join(review.apply(tables))
    review.close()
    out = export(frame, tmp_path / "charts", format="webdataset", table="table", progress=False)
    samples = list(wds.WebDataset(str(out / "data-000000.tar"), shardshuffle=False, empty_check=False))
    assert len(samples) == 1
    table = json.loads(samples[0]["txt"])
    assert table == {"columns": ["year", "sales"], "rows": [[2020, 1.5], [2021, 2.0]], "title": "Sales",
                     "y_label": "EUR m"}
    assert json.loads(samples[0]["json"])["table"] == samples[0]["txt"].decode()


def test_pdf_pages_export_one_image_per_page(tmp_path: Path) -> None:
    pdf = tmp_path / "doc.pdf"
    pages = [Image.new("RGB", (120, 80), colour) for colour in ("white", "black")]
    pages[0].save(pdf, save_all=True, append_images=pages[1:])
    frame = pd.DataFrame({"image": [str(pdf), str(pdf)], "page": pd.array([1, 2], dtype="Int64"),
                          "title": ["one", "two"]})
    out = export(frame, tmp_path / "pages", fields=["title"], rows="all", progress=False)
    lines = [json.loads(x) for x in (out / "metadata.jsonl").read_text().splitlines()]
    assert [(x["page"], x["file_name"][-4:]) for x in lines] == [(1, ".png"), (2, ".png")]
    shades = [Image.open(out / x["file_name"]).convert("L").getextrema()[1] for x in lines]
    assert shades[0] > 200 > 30 > shades[1]


def test_options_are_checked_before_anything_is_written(tmp_path: Path) -> None:
    frame = pd.DataFrame({"image": ["a.png"], "caption": ["x"], "review_status": ["accepted"]})
    with pytest.raises(ConfigError, match="not both"):
        export(frame, tmp_path / "o", fields=["caption"], table="caption", progress=False)
    with pytest.raises(ConfigError, match="format must be one of"):
        export(frame, tmp_path / "o", format="zip", progress=False)
    with pytest.raises(ConfigError, match="errors must be"):
        export(frame, tmp_path / "o", errors="ignore", progress=False)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="shard_size"):
        export(frame, tmp_path / "o", format="webdataset", shard_size=0, progress=False)
    with pytest.raises(ColumnNotFoundError, match="'img'"):
        export(frame, tmp_path / "o", image="img", progress=False)
    with pytest.raises(ConfigError, match="the frame's index"):
        export(frame, tmp_path / "o", rows=pd.Series([True], index=["z"]), progress=False)
    assert not (tmp_path / "o").exists()
