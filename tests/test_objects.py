"""fsspec URLs as image cells (caprl_nb.objects): read through fsspec's in-process memory file
system (the s3://-style store a test can own), captioned like file paths, errors per row, and
a cached re-run that does not read an object whose fingerprint still matches."""

from __future__ import annotations

import asyncio
import contextlib
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from caprl_nb import images, objects
from caprl_nb.errors import ImageDecodeError, ImageNotFoundError, ImageTooLargeError, UnsupportedImageError
from caprl_nb.frames import caption

from tests.conftest import make_images
from tests.support.vllm_sim import VLLMSimulator

fsspec = pytest.importorskip("fsspec")
from fsspec.asyn import AsyncFileSystem  # noqa: E402 - after the importorskip
from fsspec.implementations.memory import MemoryFileSystem  # noqa: E402


@pytest.fixture
def bucket() -> Iterator[str]:
    """A fresh ``memory://`` bucket (the memory file system is process-wide), removed afterwards."""
    name = f"bucket-{uuid.uuid4().hex[:8]}"
    fs = fsspec.filesystem("memory")
    yield f"memory://{name}"
    if fs.exists(f"/{name}"):
        fs.rm(f"/{name}", recursive=True)


def upload(paths: list[str], bucket: str) -> list[str]:
    fs = fsspec.filesystem("memory")
    urls = []
    for path in paths:
        url = f"{bucket}/photos/{Path(path).name}"
        fs.pipe(url, Path(path).read_bytes())
        urls.append(url)
    return urls


class EtagMemory(MemoryFileSystem):
    """The memory file system answering info() with an ETag (an MD5 of the content), as S3 and GCS
    do, and counting content reads: what lets a cached re-run skip the download."""

    protocol = "etagmem"
    reads = 0

    @classmethod
    def _strip_protocol(cls, path: Any) -> Any:
        return super()._strip_protocol(path.replace("etagmem://", "memory://", 1) if isinstance(path, str) else path)

    def info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        import hashlib

        found: dict[str, Any] = super().info(path, **kwargs)
        if found["type"] == "file":
            found["ETag"] = hashlib.md5(self.cat_file(path, counted=False)).hexdigest()
        return found

    def cat_file(self, path: str, start: int | None = None, end: int | None = None, counted: bool = True,
                 **kwargs: Any) -> bytes:
        if counted:
            type(self).reads += 1
        data: bytes = super().cat_file(path, start=start, end=end, **kwargs)
        return data


# -- identify ---------------------------------------------------------------------------------------
def test_a_memory_url_is_read_like_its_file(bucket: str, tmp_path: Path) -> None:
    path = make_images(tmp_path / "img", 1)[0]
    (url,) = upload([path], bucket)
    source = images.identify(url)
    assert source.sha256 == images.identify(path).sha256 and source.read() == Path(path).read_bytes()
    assert source.description == f"URL {url}" and images.describe(url) == f"URL {url}"
    assert images.is_remote(url) and not images.is_remote(path)
    assert images.is_remote({"bytes": None, "path": url}) and not images.is_remote({"bytes": b"x", "path": url})
    assert images.identify({"bytes": None, "path": url}).sha256 == source.sha256
    assert images.stat_files([url]) == [None]  # no local stat: the workers read it


def test_file_urls_are_local_paths(tmp_path: Path) -> None:
    path = make_images(tmp_path / "img", 1)[0]
    url = Path(path).as_uri()
    assert images.identify(url).stat == images.identify(path).stat
    assert images.stat_files([url]) == images.stat_files([path])


@pytest.mark.parametrize(
    ("tail", "kind", "words"),
    [
        ("/photos/missing.png", ImageNotFoundError, "No object at URL memory://"),
        ("/photos", ImageNotFoundError, "is a folder"),
        ("/empty.png", ImageDecodeError, "is empty"),
    ],
)
def test_memory_objects_that_are_not_images(bucket: str, tail: str, kind: type[Exception], words: str) -> None:
    fs = fsspec.filesystem("memory")
    fs.pipe(f"{bucket}/photos/a.png", b"x" * 10)
    fs.pipe(f"{bucket}/empty.png", b"")
    with pytest.raises(kind, match=words):
        images.identify(bucket + tail)


def test_the_byte_cap_is_checked_before_reading(bucket: str) -> None:
    fsspec.filesystem("memory").pipe(f"{bucket}/big.png", b"x" * 2000)
    with pytest.raises(ImageTooLargeError, match="2,000 B"):
        images.identify(f"{bucket}/big.png", max_bytes=1000)


def test_unknown_protocols_and_missing_packages_say_what_to_do(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(UnsupportedImageError, match="fsspec knows no 'nosuch' protocol"):
        images.identify("nosuch://host/a.png")
    if "s3fs" not in sys.modules:
        monkeypatch.setitem(sys.modules, "s3fs", None)  # as if it were not installed
        with pytest.raises(UnsupportedImageError, match=r"pip install s3fs"):
            images.identify("s3://bucket/a.png")
    monkeypatch.setitem(sys.modules, "fsspec.core", None)  # fsspec itself missing
    with pytest.raises(UnsupportedImageError, match=r"pip install fsspec gcsfs"):
        images.identify("gs://bucket/a.png")


def test_secrets_in_the_url_never_reach_the_message() -> None:
    with pytest.raises(UnsupportedImageError) as info:
        images.identify("nosuch://user:SECRET@host/a.png?token=SECRET")
    assert "SECRET" not in str(info.value)


def test_fingerprint_is_only_a_validator_that_follows_the_content() -> None:
    assert objects.fingerprint({"size": 5, "type": "file", "created": 1.0, "mtime": 2.0}) is None
    assert objects.fingerprint({"size": 5, "ETag": '"abc"'}) == 'fsspec size=5 ETag="abc"'
    assert objects.fingerprint({"size": 5, "lfs": {"sha256": "f00"}}) == "fsspec size=5 lfs.sha256=f00"


# -- captioned like file paths, against the simulator ------------------------------------------------
def test_memory_urls_caption_like_file_paths(sim: VLLMSimulator, bucket: str, tmp_path: Path) -> None:
    paths = make_images(tmp_path / "img", 5)
    urls = upload(paths, bucket)
    frame = pd.DataFrame({"image": urls})
    opts = {"base_url": sim.base_url, "max_tokens": 8, "progress": False}
    out = frame.caprl.caption("image", details=True, **opts)
    assert out["error"].isna().all() and not out["cached"].any()
    assert list(out["caption"]) == list(caption(paths, cache=False, **opts))
    sim.reset_log()
    again = frame.caprl.caption("image", details=True, **opts)
    assert again["cached"].all() and list(again["caption"]) == list(out["caption"])
    assert sim.requests == []


def test_each_bad_url_fails_alone(sim: VLLMSimulator, bucket: str, tmp_path: Path) -> None:
    (good,) = upload(make_images(tmp_path / "img", 1), bucket)
    fsspec.filesystem("memory").pipe(f"{bucket}/notes.txt", b"just some text")
    column = [good, f"{bucket}/gone.png", "nosuch://x/y.png", f"{bucket}/notes.txt", None]
    with pytest.warns(UserWarning, match="4 row"):
        out = caption(column, details=True, base_url=sim.base_url, max_tokens=8, progress=False)
    assert out["error"].isna().tolist() == [True, False, False, False, False]
    assert out["error_type"].iloc[1:].tolist() == [
        "ImageNotFoundError", "UnsupportedImageError", "ImageDecodeError", "UnsupportedImageError",
    ]
    assert f"{bucket}/gone.png" in out["error"].iloc[1]


@contextlib.contextmanager
def _etag_objects(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int) -> Iterator[tuple[str, list[str]]]:
    """``n`` images as objects of a memory file system that reports an ETag (as S3 does) and
    counts its reads: (the bucket's name, each image's file path); removed afterwards."""
    fsspec.register_implementation("etagmem", EtagMemory, clobber=True)
    monkeypatch.setattr(EtagMemory, "reads", 0)
    name = f"etag-{uuid.uuid4().hex[:8]}"
    paths = make_images(tmp_path / "img", n)
    fs = fsspec.filesystem("memory")
    for path in paths:
        fs.pipe(f"/{name}/{Path(path).name}", Path(path).read_bytes())
    try:
        yield name, paths
    finally:
        fs.rm(f"/{name}", recursive=True)


def test_a_cached_rerun_skips_reading_objects_whose_fingerprint_matches(
    sim: VLLMSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opts = {"base_url": sim.base_url, "max_tokens": 8, "progress": False}
    with _etag_objects(tmp_path, monkeypatch, 3) as (name, paths):
        urls = [f"etagmem://{name}/{Path(p).name}" for p in paths]
        fs = fsspec.filesystem("memory")
        first = caption(urls, details=True, **opts)
        assert EtagMemory.reads == 3 and first["error"].isna().all()
        again = caption(urls, details=True, **opts)
        assert again["cached"].all() and EtagMemory.reads == 3  # nothing read again
        assert list(again["caption"]) == list(first["caption"])
        fs.pipe(f"/{name}/{Path(paths[0]).name}", Path(paths[1]).read_bytes())  # a new object there
        changed = caption(urls, details=True, **opts)
        assert EtagMemory.reads == 4 and changed["caption"].iloc[0] == first["caption"].iloc[1]


def test_an_hf_value_whose_path_is_an_object_url_is_not_read_again_on_a_cached_rerun(
    sim: VLLMSimulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opts = {"base_url": sim.base_url, "max_tokens": 8, "progress": False}
    with _etag_objects(tmp_path, monkeypatch, 2) as (name, paths):
        cells = [{"bytes": None, "path": f"etagmem://{name}/{Path(p).name}"} for p in paths]  # a streamed dataset
        first = caption(cells, details=True, **opts)
        assert EtagMemory.reads == 2 and first["error"].isna().all()
        again = caption(cells, details=True, **opts)
        assert again["cached"].all() and EtagMemory.reads == 2  # the fingerprint was remembered
        assert list(again["caption"]) == list(first["caption"])


class Stalling(AsyncFileSystem):
    """An async file system (as s3fs, gcsfs and adlfs are) whose server never answers."""

    protocol = "stalling"

    async def _info(self, path: str, **kwargs: Any) -> dict[str, Any]:
        await asyncio.sleep(3600)
        raise AssertionError("never answered")


def test_async_file_systems_get_the_url_timeout() -> None:
    fsspec.register_implementation("stalling", Stalling, clobber=True)
    started = time.monotonic()
    with pytest.raises(ImageNotFoundError, match="did not answer within 1 s"):
        images.identify("stalling://bucket/a.png", url_timeout=1)
    assert time.monotonic() - started < 10
