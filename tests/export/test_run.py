"""export(): a reviewed frame of 50 images written in each format and read back by the
libraries trainers use (datasets, webdataset): exactly the accepted and edited captions,
each beside its own image, with the review and the answer's provenance."""

from __future__ import annotations

import glob
import json
from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest

from caprl_nb.errors import CapRLWarning, ConfigError
from caprl_nb.export import MANIFEST, export, read_manifest
from caprl_nb.prompts import CAPTION_PROMPT

from tests.export.conftest import Reviewed, expected_captions, load_rows, sha12


def _check_rows(rows: list[dict[str, object]], reviewed: Reviewed) -> None:
    """Exactly the accepted/edited rows, each caption beside its own image's bytes."""
    expected = expected_captions(reviewed.frame)
    assert sorted(str(r["index"]) for r in rows) == sorted(expected)
    for row in rows:
        label = str(row["index"])
        data = reviewed.data[label]
        assert row["image"] == data  # the original bytes, not re-encoded
        assert row["caption"] == expected[label]
        assert sha12(data) in str(row["caption"])  # the caption names this very image
        status = reviewed.frame.loc[label, "review_status"]
        assert row["review_status"] == status
        assert row["original_caption"] == reviewed.frame.loc[label, "caption"]
        assert row["edited_caption"] == (row["caption"] if status == "edited" else None)


def test_imagefolder_loads_with_datasets(reviewed: Reviewed, tmp_path: Path) -> None:
    out = export(reviewed.frame, tmp_path / "set", progress=False)
    assert out == tmp_path / "set" and (out / "metadata.jsonl").is_file()
    rows = load_rows("imagefolder", out, tmp_path / "cache")
    assert len(rows) == 25
    _check_rows(rows, reviewed)
    assert {p.suffix for p in out.iterdir()} == {".png", ".jpg", ".jsonl", ".json"}  # extensions kept


def test_parquet_loads_with_datasets_as_an_image_feature(reviewed: Reviewed, tmp_path: Path) -> None:
    out = export(reviewed.frame, tmp_path / "set.parquet", progress=False)  # format from the suffix
    rows = load_rows("parquet", out, tmp_path / "cache")
    _check_rows(rows, reviewed)
    assert read_manifest(out)["rows"] == 25


def test_webdataset_shards_read_by_webdataset(reviewed: Reviewed, tmp_path: Path) -> None:
    import webdataset as wds

    out = export(reviewed.frame, tmp_path / "shards", format="webdataset", shard_size=10, progress=False)
    shards = sorted(glob.glob(str(out / "*.tar")))
    assert [Path(s).name for s in shards] == ["data-000000.tar", "data-000001.tar", "data-000002.tar"]
    assert read_manifest(out)["files"] == [Path(s).name for s in shards]
    rows = []
    for sample in wds.WebDataset(shards, shardshuffle=False, empty_check=False):
        meta = json.loads(sample["json"])
        image = sample.get("png", sample.get("jpg"))
        assert sample["txt"].decode() == meta["caption"]
        rows.append({**meta, "image": image})
    assert len(rows) == 25
    _check_rows(rows, reviewed)


def test_provenance_and_decision_time(reviewed: Reviewed, tmp_path: Path) -> None:
    out = export(reviewed.frame, tmp_path / "set.parquet", progress=False)
    rows = load_rows("parquet", out, tmp_path / "cache")
    for row in rows:
        assert row["task"] == "caption" and row["prompt"] == CAPTION_PROMPT
        assert row["checkpoint"] == reviewed.frame.loc[str(row["index"]), "checkpoint"]
        assert json.loads(str(row["sampling"]))["max_tokens"] == 8
        assert row["image_sha256"] and row["server_version"]
        decided = datetime.fromisoformat(str(row["reviewed_at"])).timestamp()
        answered = datetime.fromisoformat(str(row["answered_at"])).timestamp()
        assert answered <= reviewed.started <= decided


def test_rows_reviewed_all_and_a_mask(reviewed: Reviewed, tmp_path: Path) -> None:
    frame = reviewed.frame
    out = export(frame, tmp_path / "reviewed.parquet", rows="reviewed", progress=False)
    statuses = pd.read_parquet(out)["review_status"].value_counts().to_dict()
    assert statuses == {"accepted": 15, "rejected": 10, "edited": 10}
    out = export(frame, tmp_path / "all.parquet", rows="all", progress=False)
    assert len(pd.read_parquet(out)) == 50
    mask = frame.index.str.endswith("5")  # rejected or not, a mask picks what it says
    out = export(frame, tmp_path / "mask.parquet", rows=mask, progress=False)
    assert sorted(pd.read_parquet(out)["index"]) == ["r05", "r15", "r25", "r35", "r45"]
    with pytest.raises(ConfigError, match="booleans"):
        export(frame, tmp_path / "bad.parquet", rows=[1, 2], progress=False)
    with pytest.raises(ConfigError, match="rows must be one of"):
        export(frame, tmp_path / "bad.parquet", rows="accept", progress=False)


def test_a_frame_without_reviews_says_what_to_do(reviewed: Reviewed, tmp_path: Path) -> None:
    plain = reviewed.frame.drop(columns=["review_status", "reviewed_caption", "reviewed_at"])
    with pytest.raises(ConfigError, match=r"gallery\.apply\(df\).*rows='all'"):
        export(plain, tmp_path / "out", progress=False)
    assert not (tmp_path / "out").exists()
    out = export(plain, tmp_path / "out", rows="all", progress=False)
    assert read_manifest(out)["rows"] == 50


def test_rows_without_a_caption_are_left_out_and_counted(reviewed: Reviewed, tmp_path: Path) -> None:
    frame = reviewed.frame.copy()
    frame.loc[["r47", "r48"], ["caption", "reviewed_caption"]] = pd.NA  # failed captions
    with pytest.warns(CapRLWarning, match=r"2 selected row\(s\) have no caption"):
        out = export(frame, tmp_path / "out", rows="all", progress=False)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["rows"] == 48 and manifest["without_text"] == {"count": 2, "index": ["r47", "r48"]}


def test_extra_columns_travel_typed(reviewed: Reviewed, tmp_path: Path) -> None:
    frame = reviewed.frame.assign(
        caption_score=[i / 50 for i in range(50)],
        failed_questions=[["What colour?"] if i % 2 else [] for i in range(50)],
    )
    out = export(frame, tmp_path / "set.parquet", columns=["caption_score", "failed_questions"], progress=False)
    rows = load_rows("parquet", out, tmp_path / "cache")
    row = next(r for r in rows if r["index"] == "r01")
    assert row["caption_score"] == pytest.approx(0.02)
    assert json.loads(str(row["failed_questions"])) == ["What colour?"]
    with pytest.raises(ConfigError, match="clashes"):
        export(frame.assign(source=1), tmp_path / "x.parquet", columns=["source"], progress=False)


def test_progress_bar_counts_images(reviewed: Reviewed, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    export(reviewed.frame, tmp_path / "set")
    err = capsys.readouterr().err
    assert "caprl export imagefolder" in err and "25/25" in err
