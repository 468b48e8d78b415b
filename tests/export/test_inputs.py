"""Exports of image columns as datasets hold them: Hugging Face ``Image`` values (bytes embedded,
and path only), a pyarrow binary column and fsspec ``memory://`` URLs, each captioned through the
simulator, reviewed in a real Gallery, exported in every format and read back by ``datasets`` and
``webdataset``: the right image bytes beside the right captions, with a file extension that
follows the bytes (a TGA among them: a format the export has no fixed name for)."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from caprl_nb.export import export, read_manifest
from caprl_nb.export.media import encoded, source_text

from tests.export.conftest import load_rows, sha12
from tests.support.vllm_sim import VLLMSimulator

N = 8  # by position i: i % 4 == 0 accepted, 1 edited, 2 rejected, 3 unreviewed
KINDS = ("hf_embedded", "hf_path", "arrow_binary", "memory_url")
FORMATS = ("imagefolder", "parquet", "webdataset")
TGA = 5  # an edited row (exported) whose image is a TGA file


def _image_files(folder: Path) -> list[Path]:
    """PNG and JPEG files, and one TGA (which Pillow reads and the model payload re-encodes)."""
    folder.mkdir(parents=True)
    paths = []
    for i in range(N):
        rng = np.random.default_rng(300 + i)
        pixels = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
        suffix, fmt = (".tga", "TGA") if i == TGA else (".jpg", "JPEG") if i % 3 == 0 else (".png", "PNG")
        path = folder / f"pic{i}{suffix}"
        Image.fromarray(pixels).save(path, format=fmt)
        paths.append(path)
    return paths


def _hf_values(paths: list[Path], *, embed: bool) -> list[Any]:
    """The image column of a real ``datasets.Dataset.to_pandas()``; with ``embed`` the bytes are
    in the table as ``push_to_hub`` writes them (``embed_table_storage``), beside the file name."""
    datasets = pytest.importorskip("datasets")
    from datasets.table import embed_table_storage

    ds = datasets.Dataset.from_dict({"image": [str(p) for p in paths]}).cast_column("image", datasets.Image())
    if embed:
        ds = ds.with_format("arrow").map(embed_table_storage, batched=True).with_format(None)
    values: list[Any] = ds.to_pandas()["image"].tolist()
    return values


@pytest.fixture
def memory_bucket(tmp_path: Path) -> Iterator[str]:
    """A bucket of this test's own in fsspec's (process-wide) memory file system, emptied after."""
    fsspec = pytest.importorskip("fsspec")
    fs = fsspec.filesystem("memory")
    bucket = f"memory://caprl-export-{tmp_path.name}"
    yield bucket
    if fs.exists(bucket):
        fs.rm(bucket, recursive=True)


def _column(kind: str, paths: list[Path], bucket: str) -> tuple[pd.Series, list[str | None]]:
    """The image column of ``kind`` and each row's expected ``source``."""
    if kind == "hf_embedded":
        values = _hf_values(paths, embed=True)
        assert all(v["bytes"] and v["path"] == p.name for v, p in zip(values, paths))
        return pd.Series(values, dtype=object), [p.name for p in paths]
    if kind == "hf_path":
        values = _hf_values(paths, embed=False)
        assert all(v["bytes"] is None and v["path"] == str(p) for v, p in zip(values, paths))
        return pd.Series(values, dtype=object), [str(p) for p in paths]
    if kind == "arrow_binary":
        import pyarrow as pa

        series = pd.Series([p.read_bytes() for p in paths], dtype=pd.ArrowDtype(pa.binary()))
        return series, [None] * len(paths)
    import fsspec

    fs = fsspec.filesystem("memory")
    urls = [f"{bucket}/photos/{p.name}" for p in paths]
    for url, p in zip(urls, paths):
        fs.pipe_file(url, p.read_bytes())
    return pd.Series(urls, dtype=object), list(urls)


def _reviewed(kind: str, sim: VLLMSimulator, tmp_path: Path, bucket: str) -> tuple[pd.DataFrame, list[Path], list[Any]]:
    from caprl_nb.widgets import Gallery

    paths = _image_files(tmp_path / "images")
    column, sources = _column(kind, paths, bucket)
    df = pd.DataFrame({"image": column})
    df.index = pd.Index([f"r{i}" for i in range(N)])
    captions = df.caprl.caption("image", details=True, base_url=sim.base_url, max_tokens=8, progress=False)
    assert captions["error"].isna().all(), captions["error"].tolist()
    df = df.join(captions)
    gallery = Gallery(df, "image", "caption")
    for i, label in enumerate(df.index):
        if i % 4 == 0:
            gallery.review(label, "accepted")
        elif i % 4 == 1:
            gallery.edit(label, f"edited {sha12(paths[i].read_bytes())} by a reviewer")
        elif i % 4 == 2:
            gallery.review(label, "rejected")
    frame = gallery.apply(df)
    gallery.close()
    return frame, paths, sources


def _webdataset_rows(folder: Path) -> list[dict[str, Any]]:
    import webdataset as wds

    shards = sorted(str(p) for p in folder.glob("*.tar"))
    rows = []
    for sample in wds.WebDataset(shards, shardshuffle=False, empty_check=False):
        meta = json.loads(sample["json"])
        assert sample["txt"].decode() == meta["caption"]
        [extension] = [k for k in sample if not k.startswith("__") and k not in ("txt", "json")]
        rows.append({**meta, "image": sample[extension], "extension": extension})
    return rows


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("kind", KINDS)
def test_dataset_image_columns_export_and_load_back(
    kind: str, fmt: str, sim: VLLMSimulator, tmp_path: Path, memory_bucket: str
) -> None:
    frame, paths, sources = _reviewed(kind, sim, tmp_path, memory_bucket)
    target = tmp_path / ("set.parquet" if fmt == "parquet" else "set")
    out = export(frame, target, format=fmt, progress=False)
    rows = _webdataset_rows(out) if fmt == "webdataset" else load_rows(fmt, out, tmp_path / "cache")
    exported = [i for i in range(N) if i % 4 in (0, 1)]
    assert sorted(str(r["index"]) for r in rows) == [f"r{i}" for i in exported]
    assert read_manifest(out)["rows"] == len(exported)
    for row in rows:
        i = int(str(row["index"])[1:])
        data = paths[i].read_bytes()
        assert row["image"] == data  # the original bytes, whatever the cell held
        assert row["caption"] == frame.loc[f"r{i}", "reviewed_caption"]
        if i != TGA:  # the simulator's caption names the bytes it was sent (a TGA is sent re-encoded)
            assert sha12(data) in str(row["caption"])
        assert row["review_status"] == ("accepted" if i % 4 == 0 else "edited")
        assert row["source"] == sources[i]
        assert row["image_sha256"] is not None and row["model"]  # provenance found in the store
    if fmt == "imagefolder":
        names = sorted(p.name for p in out.iterdir() if p.suffix not in (".json", ".jsonl"))
        assert names == ["00000000.jpg", "00000001.png", "00000002.png", "00000003.tga"]
    if fmt == "webdataset":
        assert {int(str(r["index"])[1:]): r["extension"] for r in rows}[TGA] == "tga"


def test_source_text_of_dataset_cells() -> None:
    import pyarrow as pa

    assert source_text({"bytes": b"\x89PNG", "path": "0001.png"}) == "0001.png"  # the name beside the bytes
    assert source_text({"bytes": None, "path": "s3://bucket/a.png?X-Amz-Signature=s"}) == "s3://bucket/a.png"
    assert source_text({"bytes": b"\x89PNG", "path": None}) is None
    assert source_text(pa.scalar({"bytes": None, "path": "/data/a.png"})) == "/data/a.png"
    assert source_text(pa.scalar(b"\x89PNG")) is None
    assert source_text("memory://bucket/a.png") == "memory://bucket/a.png"


@pytest.mark.parametrize(
    ("fmt", "path", "extension"),
    [("TGA", "scan.TGA", "tga"), ("PPM", "gray.pgm", "pgm"), ("PPM", None, "ppm"), ("PNG", "mislabelled.jpg", "png")],
)
def test_extension_follows_the_bytes_and_keeps_a_fitting_suffix(fmt: str, path: str | None, extension: str) -> None:
    out = io.BytesIO()
    Image.new("RGB", (8, 6), "red").save(out, format=fmt)
    got = encoded({"bytes": out.getvalue(), "path": path})
    assert got.extension == extension and got.data == out.getvalue()
