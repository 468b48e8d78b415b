"""A reviewed frame of 50 images, captioned through the simulator and reviewed in a real Gallery.

Image cells are PNG files, JPEG files and in-memory PNG bytes. The simulator's captions name
the sha256 of the image they were made from (``sim caption <sha12> ...``), and every edit here
does too (``edited <sha12> ...``), so a test can check that each exported caption sits beside
its own image without trusting the export's bookkeeping.
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from tests.conftest import make_images
from tests.support.vllm_sim import VLLMSimulator

N = 50
# By position i: i % 10 in 0-2 accepted, 3-4 edited, 5-6 rejected, 7-9 unreviewed (15/10/10/15).
ACCEPTED = [i for i in range(N) if i % 10 < 3]
EDITED = [i for i in range(N) if 3 <= i % 10 < 5]
REJECTED = [i for i in range(N) if 5 <= i % 10 < 7]


@dataclass
class Reviewed:
    frame: pd.DataFrame  # gallery.apply(df)
    data: dict[str, bytes]  # index label -> the image's original bytes
    started: float  # before the first review (seconds since the epoch)


def sha12(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def _jpeg(folder: Path, i: int) -> str:
    rng = np.random.default_rng(1000 + i)
    path = folder / f"photo{i:02d}.jpg"
    Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(path, quality=90)
    return str(path)


def _png_bytes(i: int) -> bytes:
    rng = np.random.default_rng(2000 + i)
    out = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)).save(out, format="PNG")
    return out.getvalue()


def images_frame(folder: Path) -> pd.DataFrame:
    """50 image cells, labels r00..r49: a JPEG file where i % 10 == 2 (accepted), PNG bytes where
    i % 10 == 4 (edited), a PNG file everywhere else."""
    pngs = iter(make_images(folder, 40))
    cells: list[object] = [
        _jpeg(folder, i) if i % 10 == 2 else _png_bytes(i) if i % 10 == 4 else next(pngs) for i in range(N)
    ]
    frame = pd.DataFrame({"image": pd.Series(cells, dtype=object)})
    frame.index = pd.Index([f"r{i:02d}" for i in range(N)])
    return frame


def original_bytes(value: object) -> bytes:
    return value if isinstance(value, bytes) else Path(str(value)).read_bytes()


@pytest.fixture
def reviewed(sim: VLLMSimulator, tmp_path: Path) -> Reviewed:
    import time

    from caprl_nb.widgets import Gallery

    df = images_frame(tmp_path / "images")
    captions = df.caprl.caption("image", details=True, base_url=sim.base_url, max_tokens=8, progress=False)
    df = df.join(captions)
    assert df["caption"].notna().all()
    data = {label: original_bytes(v) for label, v in df["image"].items()}
    started = time.time()
    gallery = Gallery(df, "image", "caption")
    labels = list(df.index)
    for i in ACCEPTED:
        gallery.review(labels[i], "accepted")
    for i in EDITED:
        gallery.edit(labels[i], f"edited {sha12(data[labels[i]])} by a reviewer")
    for i in REJECTED:
        gallery.review(labels[i], "rejected")
    frame = gallery.apply(df)
    gallery.close()
    return Reviewed(frame, data, started)


def expected_captions(frame: pd.DataFrame) -> dict[str, str]:
    """Index label -> the caption an accepted-rows export must hold."""
    keep = frame["review_status"].isin(["accepted", "edited"])
    return {str(k): str(v) for k, v in frame.loc[keep, "reviewed_caption"].items()}


@pytest.fixture(autouse=True)
def _hf_offline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """datasets reads and caches under this test's folder only, and never asks the Hub."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def load_rows(builder: str, path: Path, cache: Path) -> list[dict[str, object]]:
    """Every row ``datasets.load_dataset(builder, ...)`` reads from an export, the image as its
    raw bytes (the Image feature undecoded) and its decoded size."""
    import datasets

    if builder == "imagefolder":
        ds = datasets.load_dataset("imagefolder", data_dir=str(path), split="train", cache_dir=str(cache))
    else:
        ds = datasets.load_dataset("parquet", data_files=str(path), split="train", cache_dir=str(cache))
    assert isinstance(ds.features["image"], datasets.Image)
    sizes = [img.size for img in ds["image"]]  # decodes: every image opens
    raw = ds.cast_column("image", datasets.Image(decode=False))
    rows = []
    for row, size in zip(raw, sizes):
        image = row["image"]
        row["image"] = image["bytes"] if image["bytes"] is not None else Path(image["path"]).read_bytes()
        row["size"] = size
        rows.append(row)
    return rows
