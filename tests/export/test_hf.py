"""to_hf_dataset(): the same rows as export(), as a datasets.Dataset in memory."""

from __future__ import annotations

from pathlib import Path

from tests.export.conftest import Reviewed, expected_captions, sha12


def test_to_hf_dataset_holds_the_accepted_rows_with_image_features(reviewed: Reviewed, tmp_path: Path) -> None:
    import datasets

    from caprl_nb.export import to_hf_dataset

    ds = to_hf_dataset(reviewed.frame, progress=False)
    assert isinstance(ds, datasets.Dataset) and len(ds) == 25
    assert isinstance(ds.features["image"], datasets.Image)
    assert ds[0]["image"].size == (96, 64)  # decodes like any Image column
    expected = expected_captions(reviewed.frame)
    raw = ds.cast_column("image", datasets.Image(decode=False))
    for row in raw:
        assert row["caption"] == expected[row["index"]]
        assert row["image"]["bytes"] == reviewed.data[row["index"]]
        assert sha12(row["image"]["bytes"]) in row["caption"]
    assert list(tmp_path.glob("**/*.arrow")) == []  # nothing written to disk


def test_the_accessor_delegates(reviewed: Reviewed, tmp_path: Path) -> None:
    from caprl_nb.export import read_manifest

    ds = reviewed.frame.caprl.to_hf_dataset(rows="reviewed", progress=False)
    assert len(ds) == 35
    out = reviewed.frame.caprl.export(tmp_path / "set", format="webdataset", progress=False)
    assert read_manifest(out)["format"] == "webdataset" and read_manifest(out)["rows"] == 25
