"""caprl_nb.ray on a local Ray cluster (2 CPUs, started once for the module) over the simulator.

The simulator runs in this process; the actors are Ray worker processes that reach it over
loopback and write to a store under the test's tmp_path (``home=`` travels with the job).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

pytest.importorskip("ray", reason="Ray is not installed: pip install 'caprl-nb[ray]'")
import ray
import ray.data

import caprl_nb
import caprl_nb.ray
from caprl_nb.errors import CapRLWarning, ConfigError
from caprl_nb.frames import DETAIL_COLUMNS
from caprl_nb.store import ResultStore

from tests.conftest import make_images
from tests.support.polling import wait_until
from tests.support.vllm_sim import Fault, VLLMSimulator, image_digest

pytestmark = pytest.mark.ray

ROOT = Path(__file__).resolve().parent.parent
# Compared with the pandas path: everything but latency (and attempts, equal here anyway).
SAME = ["caption", "error", "error_type", "cached", "model", "checkpoint", "prompt_tokens",
        "completion_tokens", "finish_reason"]


@pytest.fixture(scope="module", autouse=True)
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local Ray cluster for the module; its workers see this worktree and a scratch home."""
    saved = {k: os.environ.get(k) for k in ("PYTHONPATH", "CAPRL_HOME")}
    # Workers inherit the environment ray.init sees: this checkout's caprl_nb and tests, and a
    # CAPRL_HOME that is never the real one (every test passes home= anyway).
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), saved["PYTHONPATH"]) if p)
    os.environ["CAPRL_HOME"] = str(tmp_path_factory.mktemp("ray-home"))
    context = _start_ray()
    ray.data.DataContext.get_current().enable_progress_bars = False
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _start_ray() -> Any:
    # Ray waits a fixed 30 s for its raylet to register; on a loaded 2-core machine it can miss
    # that once. A second start is the remedy Ray's message suggests short of its config.
    for attempt in (1, 2):
        try:
            return ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
        except Exception as exc:  # Ray raises a bare Exception for this timeout (re-raised below)
            ray.shutdown()
            if attempt == 2 or "timed out during startup" not in str(exc):
                raise
    raise AssertionError("unreachable")


@pytest.fixture
def ordered() -> Iterator[None]:
    options = ray.data.DataContext.get_current().execution_options
    before = options.preserve_order
    options.preserve_order = True
    yield
    options.preserve_order = before


def _caption(ds: Any, column: str, base_url: str | list[str], home: Path, **kw: Any) -> pd.DataFrame:
    kw.setdefault("concurrency", 2)
    kw.setdefault("batch_size", 4)
    # Half a CPU per actor: two actors and a read task fit the cluster's two CPUs.
    kw.setdefault("ray_args", {"num_cpus": 0.5})
    out = caprl_nb.ray.caption(
        ds, column, base_url=base_url, home=str(home), max_tokens=8, max_backoff=0.05, **kw
    )
    frame: pd.DataFrame = out.to_pandas()
    return frame


def _pandas(values: list[Any], sim: VLLMSimulator, home: Path) -> pd.DataFrame:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"\d+ row\(s\) failed", CapRLWarning)  # the rows say it
        frame = caprl_nb.caption(
            values, base_url=sim.base_url, home=str(home), max_tokens=8, max_backoff=0.05,
            details=True, progress=False,
        )
    assert isinstance(frame, pd.DataFrame)
    return frame


def _plain(values: pd.Series) -> list[Any]:
    return [None if pd.isna(v) else v for v in values]


def _same_as_pandas(got: pd.DataFrame, expected: pd.DataFrame) -> None:
    for name in SAME:
        assert _plain(got[name]) == _plain(expected[name]), name


def test_results_equal_the_pandas_path_and_a_second_run_sends_nothing(
    sim: VLLMSimulator, image_files: list[str], tmp_path: Path, ordered: None
) -> None:
    ds = ray.data.from_items([{"id": i, "path": p} for i, p in enumerate(image_files)])
    with VLLMSimulator() as other:
        servers = [sim.base_url, other.base_url]
        got = _caption(ds, "path", servers, tmp_path / "ray-home")
        assert len(sim.requests) + len(other.requests) == len(image_files)
        assert set(got["base_url"]) == set(servers)  # both servers answered
        assert list(got.columns) == ["id", "path", "caption", *DETAIL_COLUMNS]
        assert got["id"].tolist() == list(range(len(image_files)))
        assert got["path"].tolist() == image_files
        expected = _pandas(image_files, sim, tmp_path / "pandas-home")
        _same_as_pandas(got, expected)
        assert got["caption"].notna().all()
        assert not got["cached"].any()

        sim.reset_log()
        other.reset_log()
        again = _caption(ds, "path", servers, tmp_path / "ray-home")
        assert sim.requests == other.requests == []
    assert again["cached"].all()
    assert again["caption"].tolist() == got["caption"].tolist()


def test_bytes_and_read_images_arrays(sim: VLLMSimulator, image_files: list[str], tmp_path: Path,
                                      ordered: None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    blobs = [Path(p).read_bytes() for p in image_files[:4]] + [b"not an image", b""]
    pq.write_table(pa.table({"id": list(range(len(blobs))), "image": blobs}), tmp_path / "b.parquet")
    parquet = ray.data.read_parquet(str(tmp_path / "b.parquet"), override_num_blocks=1)
    got = _caption(parquet, "image", sim.base_url, tmp_path / "h1", concurrency=1)
    assert got["id"].tolist() == list(range(len(blobs)))
    _same_as_pandas(got, _pandas(blobs, sim, tmp_path / "h2"))
    assert got["error_type"].tolist()[4:] == ["ImageDecodeError", "ImageDecodeError"]
    assert got["caption"].iloc[:4].notna().all()

    folder = Path(image_files[0]).parent
    read = ray.data.read_images(str(folder), include_paths=True, override_num_blocks=2)
    got = _caption(read, "image", sim.base_url, tmp_path / "h3", concurrency=1).sort_values("path")
    arrays = [np.asarray(Image.open(p)) for p in sorted(image_files)]
    _same_as_pandas(got, _pandas(arrays, sim, tmp_path / "h4"))
    assert got["caption"].notna().all()


def test_broken_inputs_are_error_rows_not_a_failed_job(
    sim: VLLMSimulator, image_files: list[str], tmp_path: Path, ordered: None
) -> None:
    text = tmp_path / "notes.txt"
    text.write_text("not an image")
    rejected = image_files[1]
    sim.fail_image(hashlib.sha256(Path(rejected).read_bytes()).hexdigest()[:16], Fault("status", 400))
    values = [image_files[0], str(tmp_path / "missing.png"), str(text), None, rejected, image_files[2]]
    ds = ray.data.from_pandas(pd.DataFrame({"path": pd.Series(values, dtype=object)}))
    got = _caption(ds, "path", sim.base_url, tmp_path / "home", concurrency=1)
    assert _plain(got["error_type"]) == [
        None, "ImageNotFoundError", "ImageDecodeError", "UnsupportedImageError", "RequestRejectedError", None,
    ]
    assert got["caption"].isna().tolist() == [False, True, True, True, True, False]
    assert got["error"].iloc[1:5].str.len().gt(0).all()
    _same_as_pandas(got, _pandas(values, sim, tmp_path / "pandas-home"))


def test_a_killed_job_run_again_sends_only_what_it_had_not_finished(
    cluster: str, tmp_path: Path
) -> None:
    files = make_images(tmp_path / "i", 40)
    home = tmp_path / "home"
    # Two servers, two actors, 2 rows in flight each, 0.1 s a request: ~1 s for the whole job.
    with VLLMSimulator(latency=0.1, capacity=2) as one, VLLMSimulator(latency=0.1, capacity=2) as two:
        sims = (one, two)
        servers = [one.base_url, two.base_url]

        def requests() -> list[dict[str, Any]]:
            return one.requests + two.requests

        spec = {"paths": files, "base_url": servers, "home": str(home), "max_tokens": 8,
                "concurrency": 2, "batch_size": 2, "in_flight": 2, "ray_args": {"num_cpus": 0.5}}
        (tmp_path / "spec.json").write_text(json.dumps(spec))
        driver = subprocess.Popen(
            [sys.executable, "-m", "tests.support.ray_job", cluster, str(tmp_path / "spec.json")],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            wait_until(lambda: len(requests()) >= 12 or driver.poll() is not None, 60, "12 requests")
            assert driver.poll() is None, "the job ended before it could be killed"
        finally:
            driver.kill()
            driver.wait(10)
        # Its actors die with their driver: every CPU free again.
        wait_until(lambda: ray.available_resources().get("CPU", 0) >= 2, 30, "the killed job's actors to go")
        answered = {image_digest(_url(r)) for r in requests() if r["_outcome"] == "ok"}
        with ResultStore(home / "results.sqlite3") as store:
            stored = store.count()
        assert 0 < stored < len(files)
        for sim in sims:
            sim.reset_log()
        ds = ray.data.from_items([{"id": i, "path": p} for i, p in enumerate(files)])
        got = _caption(ds, "path", servers, home, batch_size=2, in_flight=2)
        resent = [image_digest(_url(r)) for r in requests()]
    assert got["caption"].notna().all()
    assert sorted(got["id"]) == list(range(len(files)))
    cached = {_sha(p) for p, hit in zip(got["path"], got["cached"]) if hit}
    # Only what was not stored is sent again, once; everything stored was answered in run one.
    assert len(cached) >= stored
    assert len(resent) == len(files) - len(cached)
    assert len(set(resent)) == len(resent)
    assert not cached & set(resent)
    assert cached <= answered


def test_settings_are_checked_before_the_job_starts(tmp_path: Path) -> None:
    ds = ray.data.from_items([{"path": "x.png"}])
    with pytest.raises(ConfigError, match="Unknown setting"):
        caprl_nb.ray.caption(ds, "path", base_url="http://127.0.0.1:9/v1", colour="red")
    with pytest.raises(ConfigError, match="base_url must start with http"):
        caprl_nb.ray.caption(ds, "path", base_url="localhost:8000")
    with pytest.raises(ConfigError, match="details"):
        caprl_nb.ray.caption(ds, "path", details=False)


def _url(request: dict[str, Any]) -> str:
    url: str = request["messages"][0]["content"][0]["image_url"]["url"]
    return url


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_ask_equals_the_pandas_path(sim: VLLMSimulator, image_files: list[str], tmp_path: Path) -> None:
    ds = ray.data.from_items([{"path": p} for p in image_files[:3]])
    out = caprl_nb.ray.ask(
        ds, "path", "What is in the picture?", base_url=sim.base_url, home=str(tmp_path / "h1"),
        max_tokens=8, concurrency=1, ray_args={"num_cpus": 0.5},
    ).to_pandas().sort_values("path")
    expected = caprl_nb.ask(
        sorted(image_files[:3]), "What is in the picture?", base_url=sim.base_url,
        home=str(tmp_path / "h2"), max_tokens=8, details=True, progress=False,
    )
    assert isinstance(expected, pd.DataFrame)
    assert list(out.columns) == ["path", "answer", *DETAIL_COLUMNS]
    assert out["answer"].tolist() == expected["answer"].tolist()



def test_extract_rows_carry_the_schema_fields_and_parse_errors(
    sim: VLLMSimulator, image_files: list[str], tmp_path: Path
) -> None:
    schema = {"type": "object", "properties": {"title": {"type": "string"}}}
    ds = ray.data.from_items([{"path": p} for p in image_files[:2]])
    out = caprl_nb.ray.extract(
        ds, "path", schema, base_url=sim.base_url, home=str(tmp_path / "h"),
        concurrency=1, ray_args={"num_cpus": 0.5},
    ).to_pandas().sort_values("path")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", r"\d+ row\(s\) failed", CapRLWarning)
        expected = caprl_nb.extract.extract(
            sorted(image_files[:2]), schema, base_url=sim.base_url, home=str(tmp_path / "h2"),
            details=True, progress=False,
        )
    # The simulator answers with tags, not JSON: each row a ParseError, as in the pandas path.
    assert list(out.columns) == ["path", *expected.columns]
    assert _plain(out["error_type"]) == _plain(expected["error_type"]) == ["ParseError", "ParseError"]
    assert out["title"].isna().all()
    assert len(sim.requests) == 4

@pytest.mark.vllm
def test_real_vllm_same_captions_as_pandas_and_a_rerun_is_free(vllm_server: str, tmp_path: Path) -> None:
    from tests.test_vllm_e2e import _completed_requests

    files = make_images(tmp_path / "i", 6)
    options: dict[str, Any] = {"base_url": vllm_server, "max_tokens": 8, "temperature": 0.0, "seed": 1}
    expected = caprl_nb.caption(files, details=True, progress=False, home=str(tmp_path / "h1"), **options)
    assert isinstance(expected, pd.DataFrame)
    assert expected["error"].isna().all()
    ds = ray.data.from_items([{"id": i, "path": p} for i, p in enumerate(files)])
    got = caprl_nb.ray.caption(
        ds, "path", home=str(tmp_path / "h2"), concurrency=2, batch_size=3,
        ray_args={"num_cpus": 0.5}, **options,
    ).to_pandas().sort_values("id")
    _same_as_pandas(got, expected)
    before = _completed_requests(vllm_server)
    again = caprl_nb.ray.caption(
        ds, "path", home=str(tmp_path / "h2"), concurrency=1, ray_args={"num_cpus": 0.5}, **options
    ).to_pandas()
    assert _completed_requests(vllm_server) == before  # no request reached vLLM
    assert again["cached"].all()
