"""An export appears whole or not at all: failures leave the target as it was and no staging
copy behind; overwrite=True replaces only an earlier export."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from caprl_nb.errors import CapRLWarning
from caprl_nb.export import MANIFEST, ExportImageError, ExportTargetError, export, read_manifest

from tests.export.conftest import Reviewed


def _staging(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".caprl-" in p.name)


def test_unreadable_images_raise_all_at_once_and_publish_nothing(reviewed: Reviewed, tmp_path: Path) -> None:
    frame = reviewed.frame
    for label in ("r00", "r11"):  # accepted PNG files, gone since they were reviewed
        os.remove(frame.loc[label, "image"])
    with pytest.raises(ExportImageError) as caught:
        export(frame, tmp_path / "set", progress=False)
    assert sorted(caught.value.failure_cases.index) == ["r00", "r11"]
    assert caught.value.failure_cases["error"].str.contains("No such file").all()
    assert "errors='skip'" in str(caught.value) and "2 of 25" in str(caught.value)
    assert not (tmp_path / "set").exists() and _staging(tmp_path) == []


def test_errors_skip_writes_the_rest_and_lists_the_skipped(reviewed: Reviewed, tmp_path: Path) -> None:
    os.remove(reviewed.frame.loc["r01", "image"])
    with pytest.warns(CapRLWarning, match=r"1 row\(s\) were left out because their image cannot be read"):
        out = export(reviewed.frame, tmp_path / "set.parquet", errors="skip", progress=False)
    manifest = read_manifest(out)
    assert manifest["rows"] == 24
    assert [s["index"] for s in manifest["skipped"]] == ["r01"]
    assert "No such file" in manifest["skipped"][0]["error"]


def test_a_failure_midway_leaves_the_earlier_export_untouched(
    reviewed: Reviewed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "shards"
    export(reviewed.frame, target, format="webdataset", shard_size=5, progress=False)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    members = 0
    real_addfile = tarfile.TarFile.addfile

    def disk_full_later(self: tarfile.TarFile, *args: object, **kwargs: object) -> None:
        nonlocal members
        members += 1
        if members > 30:  # ten rows (three shards) in: the disk fills up
            raise OSError(28, "No space left on device")
        real_addfile(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tarfile.TarFile, "addfile", disk_full_later)
    with pytest.raises(OSError, match="No space left"):
        export(reviewed.frame, target, format="webdataset", rows="all", shard_size=5, overwrite=True, progress=False)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before  # the old export, intact
    assert _staging(tmp_path) == []


def test_a_parquet_failure_at_the_last_write_publishes_nothing(
    reviewed: Reviewed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    def fail(self: object, *args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", fail)
    with pytest.raises(OSError, match="Input/output"):
        export(reviewed.frame, tmp_path / "set.parquet", progress=False)
    assert not (tmp_path / "set.parquet").exists()
    assert _staging(tmp_path) == []


def test_overwrite_rules(reviewed: Reviewed, tmp_path: Path) -> None:
    frame = reviewed.frame
    target = export(frame, tmp_path / "set", progress=False)
    with pytest.raises(ExportTargetError, match="overwrite=True") as caught:
        export(frame, target, progress=False)
    assert isinstance(caught.value, FileExistsError)
    assert read_manifest(target)["rows"] == 25
    export(frame, target, rows="all", overwrite=True, progress=False)  # an earlier export: replaced
    assert read_manifest(target)["rows"] == 50 and _staging(tmp_path) == []
    assert len(list(target.glob("*.png"))) + len(list(target.glob("*.jpg"))) == 50  # no stale files

    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(ExportTargetError, match="not an export made by caprl_nb"):
        export(frame, precious, overwrite=True, progress=False)
    assert (precious / "thesis.tex").read_text() == "years of work"

    empty = tmp_path / "empty"
    empty.mkdir()
    assert (export(frame, empty, progress=False) / MANIFEST).is_file()  # an empty folder is filled

    text = tmp_path / "table.parquet"
    text.write_text("not parquet")
    with pytest.raises(ExportTargetError, match="not an export"):
        export(frame, text, overwrite=True, progress=False)
    parquet = export(frame, tmp_path / "set.parquet", progress=False)
    export(frame, parquet, rows="reviewed", overwrite=True, progress=False)
    assert json.loads(json.dumps(read_manifest(parquet)))["rows"] == 35
