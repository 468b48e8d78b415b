"""Image cells as datasets hold them (caprl_nb.sources): Hugging Face Image values from a real
``datasets.Dataset.to_pandas()``, pyarrow binary columns and arrays, each captioned like the same
images given as file paths, with errors per row."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from PIL import Image

from caprl_nb import images
from caprl_nb.errors import ImageDecodeError, ImageNotFoundError, UnsupportedImageError
from caprl_nb.frames import as_series, caption

from tests.conftest import make_images
from tests.support.vllm_sim import VLLMSimulator


@pytest.fixture
def datasets_lib(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):  # type: ignore[no-untyped-def]
    """The real `datasets`, offline, its cache under tmp_path."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    return pytest.importorskip("datasets")


def hf_frame(datasets_lib, paths: list[str], *, embed: bool) -> pd.DataFrame:  # type: ignore[no-untyped-def]
    """``Dataset.to_pandas()`` of an Image column made from ``paths``: with ``embed``, the bytes are
    in the dataset (as push_to_hub and Parquet files from the Hub have them, with the file name as
    path); without, each value is only its absolute path."""
    from datasets.table import embed_table_storage

    ds = datasets_lib.Dataset.from_dict({"image": paths}).cast_column("image", datasets_lib.Image())
    if embed:
        ds = ds.with_format("arrow").map(embed_table_storage, batched=True).with_format(None)
    frame: pd.DataFrame = ds.to_pandas()
    return frame


def _png(color: str = "red") -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (16, 12), color).save(buf, "PNG")
    return buf.getvalue()


# -- the shapes datasets really gives ---------------------------------------------------------------
def test_to_pandas_gives_the_dicts_identify_reads(datasets_lib, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    paths = make_images(tmp_path / "img", 2)
    embedded = hf_frame(datasets_lib, paths, embed=True)["image"]
    linked = hf_frame(datasets_lib, paths, embed=False)["image"]
    assert set(embedded.iloc[0]) == {"bytes", "path"} and embedded.iloc[0]["path"] == "img00000.png"
    assert linked.iloc[0] == {"bytes": None, "path": paths[0]}
    for value, path in [(embedded.iloc[0], paths[0]), (linked.iloc[0], paths[0])]:
        source = images.identify(value)
        assert source.sha256 == images.identify(path).sha256  # the same image, the same store key
        assert source.description.startswith("Hugging Face image")
    size = Path(paths[1]).stat().st_size
    assert images.describe(embedded.iloc[1]) == f"Hugging Face image 'img00001.png' ({size:,} B)"


def test_bytes_win_over_the_path(tmp_path: Path) -> None:
    other = make_images(tmp_path / "img", 1)[0]
    value = {"bytes": _png("blue"), "path": other}
    assert images.identify(value).read() == _png("blue")


def test_a_relative_path_without_bytes_says_why(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ImageNotFoundError) as info:
        images.identify({"bytes": None, "path": "train/0001.jpg"})
    text = str(info.value)
    assert "'train/0001.jpg' is relative" in text and str(tmp_path) in text and "to_parquet" in text


@pytest.mark.parametrize(
    ("value", "kind", "words"),
    [
        ({"bytes": None, "path": None}, UnsupportedImageError, "neither bytes nor a path"),
        ({"bytes": b"", "path": None}, ImageDecodeError, "empty bytes"),
        ({"bytes": 12, "path": None}, UnsupportedImageError, "holds a int under 'bytes'"),
        ({"bytes": None, "path": 3.5}, UnsupportedImageError, "holds a float under 'path'"),
        (pa.scalar(None, pa.binary()), UnsupportedImageError, "missing value"),
        (pa.scalar({"bytes": None, "path": None}, pa.struct({"bytes": pa.binary(), "path": pa.string()})),
         UnsupportedImageError, "neither bytes nor a path"),
    ],
)
def test_values_with_no_image_are_clear_errors(value: object, kind: type[Exception], words: str) -> None:
    with pytest.raises(kind, match=words):
        images.identify(value)
    assert images.describe(value)  # never raises


def test_arrow_arrays_and_scalars_are_their_values() -> None:
    png = _png()
    sha = images.identify(png).sha256
    assert images.identify(pa.scalar(png, pa.large_binary())).sha256 == sha
    struct = pa.array([{"bytes": png, "path": "a.png"}])
    assert images.identify(struct[0]).sha256 == sha
    series = as_series(pa.chunked_array([pa.array([png, None], pa.binary())]))
    assert series.dtype == pd.ArrowDtype(pa.binary()) and series.iloc[0] == png and pd.isna(series.iloc[1])
    assert as_series(struct).iloc[0] == {"bytes": png, "path": "a.png"}


def test_stat_files_sees_hf_paths_and_skips_bytes(tmp_path: Path) -> None:
    path = make_images(tmp_path / "img", 1)[0]
    stats = images.stat_files([{"bytes": None, "path": path}, {"bytes": _png(), "path": path}, pa.scalar(_png())])
    assert stats[0] == images.stat_files([path])[0] and stats[0] is not None
    assert stats[1:] == [None, None]


# -- captioned like file paths, against the simulator --------------------------------------------
def test_hf_image_column_captions_like_file_paths(datasets_lib, sim: VLLMSimulator, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    paths = make_images(tmp_path / "img", 6)
    embedded = hf_frame(datasets_lib, paths[:3], embed=True)["image"]
    linked = hf_frame(datasets_lib, paths[3:], embed=False)["image"]
    column = pd.Series(list(embedded) + list(linked), index=list("abcdef"))
    opts = {"base_url": sim.base_url, "max_tokens": 8, "progress": False}
    out = caption(column, details=True, **opts)
    assert out["error"].isna().all() and not out["cached"].any()
    by_path = caption(paths, cache=False, **opts)
    assert list(out["caption"]) == list(by_path)  # the simulator's captions come from the image bytes
    sim.reset_log()
    again = caption(column, details=True, **opts)
    assert again["cached"].all() and list(again["caption"]) == list(out["caption"])
    assert sim.requests == []  # no completion was asked for


def test_arrow_binary_column_captions_like_file_paths(sim: VLLMSimulator, tmp_path: Path) -> None:
    paths = make_images(tmp_path / "img", 3)
    data = [Path(p).read_bytes() for p in paths]
    frame = pd.DataFrame({"image": pd.Series([*data, None], dtype=pd.ArrowDtype(pa.large_binary()))})
    opts = {"base_url": sim.base_url, "max_tokens": 8, "progress": False}
    with pytest.warns(UserWarning, match="1 row"):
        out = frame.caprl.caption("image", details=True, **opts)
    assert list(out["caption"].iloc[:3]) == list(caption(paths, cache=False, **opts))
    assert out["error_type"].iloc[3] == "UnsupportedImageError" and "missing value" in out["error"].iloc[3]
    arrays = caption(pa.array(data, pa.binary()), **opts)  # a pyarrow Array passed as the images
    assert list(arrays) == list(out["caption"].iloc[:3])
    # read_parquet(..., dtype_backend="pyarrow") of a Hugging Face Image column: struct<bytes, path>
    structs = pa.array([{"bytes": b, "path": Path(p).name} for b, p in zip(data, paths)])
    assert structs.type == pa.struct({"bytes": pa.binary(), "path": pa.string()})
    by_struct = caption(pd.Series(pd.arrays.ArrowExtensionArray(structs)), **opts)
    assert list(by_struct) == list(arrays)


def test_each_bad_row_fails_alone(sim: VLLMSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    good = make_images(tmp_path / "img", 1)[0]
    column = pd.Series([
        {"bytes": None, "path": good},
        {"bytes": None, "path": "elsewhere/1.png"},
        {"bytes": None, "path": None},
        {"bytes": b"not an image at all", "path": "x.png"},
        None,
    ])
    with pytest.warns(UserWarning, match="4 row"):
        out = caption(column, details=True, base_url=sim.base_url, max_tokens=8, progress=False)
    assert out["error"].isna().tolist() == [True, False, False, False, False]
    assert out["error_type"].iloc[1:].tolist() == [
        "ImageNotFoundError", "UnsupportedImageError", "ImageDecodeError", "UnsupportedImageError",
    ]
    assert "is relative" in out["error"].iloc[1] and "Hugging Face image 'x.png'" in out["error"].iloc[3]
