"""End to end against real vLLM serving the tiny random Qwen2.5-VL (captions are noise).

Assertions are on behaviour, shapes, provenance and protocol, never on wording.
"""

from __future__ import annotations

import functools
import http.server
import re
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pandas as pd
import pytest
from PIL import Image

import caprl_nb
from caprl_nb.config import resolve_settings
from caprl_nb.store import ResultStore

from tests.conftest import make_images

pytestmark = pytest.mark.vllm
SAMPLES = Path(caprl_nb.__file__).parent / "samples"


def _completed_requests(base_url: str) -> float:
    """vLLM's own count of finished requests (Prometheus /metrics)."""
    text = httpx.get(base_url.removesuffix("/v1") + "/metrics", timeout=10).text
    values = re.findall(r"^vllm:request_success_total\{[^}]*\} ([0-9.e+]+)$", text, re.M)
    assert values, "vLLM's /metrics has no vllm:request_success_total"
    return sum(float(v) for v in values)


@pytest.fixture
def web_images(tmp_path: Path) -> Iterator[str]:
    """A loopback HTTP server with one image, for URL inputs."""
    root = tmp_path / "web"
    make_images(root, 1, size=(120, 90))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def test_mixed_column_one_row_per_input(vllm_server: str, web_images: str, tmp_path: Path) -> None:
    broken = tmp_path / "broken.jpg"
    broken.write_bytes((SAMPLES / "mountains.jpg").read_bytes()[:500])
    text_file = tmp_path / "notes.png"
    text_file.write_text("hello")
    good = [
        str(SAMPLES / "mountains.jpg"),                     # photo
        SAMPLES / "bar_chart.png",                          # chart (Path)
        str(SAMPLES / "invoice.png"),                       # scanned document
        Image.open(SAMPLES / "line_chart.png"),             # PIL image
        np.random.default_rng(0).integers(0, 255, (60, 80, 3), dtype=np.uint8),  # array
        f"{web_images}/img00000.png",                       # URL on loopback
        (SAMPLES / "bar_chart.png").read_bytes(),           # raw bytes
    ]
    bad = [
        str(tmp_path / "missing.png"), str(broken), str(text_file), None, float("nan"),
        f"{web_images}/nope.png", str(tmp_path), object(), np.zeros((2, 2, 2, 2)),
        np.zeros((10, 3000, 3), dtype=np.uint8),             # aspect ratio 300:1
    ]
    frame = pd.DataFrame({"image": pd.Series(good + bad, dtype=object)})
    frame.index = [f"r{i}" for i in range(len(frame))]
    with pytest.warns(caprl_nb.CapRLWarning, match=f"{len(bad)} row"):
        out = frame.caprl.caption("image", details=True, base_url=vllm_server, max_tokens=8,
                                  progress=False)
    assert out.index.equals(frame.index)
    ok = out.iloc[: len(good)]
    failed = out.iloc[len(good):]
    assert ok["error"].isna().all(), ok["error"].tolist()
    assert ok["caption"].notna().all()
    assert (ok["completion_tokens"] >= 1).all() and (ok["prompt_tokens"] > 8).all()
    assert set(ok["finish_reason"]) <= {"stop", "length"}
    assert (ok["model"] == "caprl").all()
    assert failed["caption"].isna().all() and failed["error"].notna().all()
    errors = failed["error"].tolist()
    assert "missing.png" in errors[0] and errors[0].startswith("ImageNotFoundError")
    assert "broken.jpg" in errors[1] and errors[1].startswith("ImageDecodeError")
    assert "notes.png" in errors[2]
    assert "missing" in errors[3].lower() and "missing" in errors[4].lower()
    assert "404" in errors[5]
    assert "folder" in errors[6] or "directory" in errors[6]
    assert "object" in errors[7]
    assert "300" in errors[9]


def test_second_call_is_served_from_the_store(vllm_server: str, tmp_path: Path) -> None:
    files = make_images(tmp_path / "i", 6)
    first = caprl_nb.caption(files, details=True, base_url=vllm_server, max_tokens=8, progress=False)
    assert not first["cached"].any()
    before = _completed_requests(vllm_server)
    second = caprl_nb.caption(files, details=True, base_url=vllm_server, max_tokens=8, progress=False)
    assert _completed_requests(vllm_server) == before  # no request reached vLLM
    assert second["cached"].all()
    pd.testing.assert_series_equal(first["caption"], second["caption"])


def test_provenance_is_stored(vllm_server: str, tmp_path: Path) -> None:
    files = make_images(tmp_path / "i", 1)
    out = caprl_nb.caption(files, details=True, base_url=vllm_server, max_tokens=8,
                           temperature=0.5, progress=False)
    settings = resolve_settings()
    with ResultStore(settings.store_path) as store:
        rows = store.read("SELECT key FROM results")
        assert len(rows) == 1
        record = store.provenance(rows[0][0])
    assert record["text"] == out["caption"].iloc[0]
    assert record["base_url"] == vllm_server and record["server_version"] == "0.32.0"
    assert record["model"] == "caprl" and "tiny-qwen2.5-vl" in record["model_root"]
    assert record["params"]["temperature"] == 0.5 and record["params"]["max_tokens"] == 8
    assert record["params"]["prompt"] == "Please describe this image in detail."
    assert record["completion_tokens"] == out["completion_tokens"].iloc[0]


def test_default_max_tokens_is_fitted_to_max_model_len(vllm_server: str) -> None:
    image = np.random.default_rng(1).integers(0, 255, (1200, 1600, 3), dtype=np.uint8)
    with pytest.warns(caprl_nb.CapRLWarning, match="max_tokens lowered from 2048"):
        out = caprl_nb.caption([image], details=True, base_url=vllm_server, cache=False, progress=False)
    assert out["error"].isna().all(), out["error"].tolist()
    assert out["prompt_tokens"].iloc[0] + out["completion_tokens"].iloc[0] <= 2048


def test_ask_against_real_server(vllm_server: str) -> None:
    s = pd.Series([Image.new("RGB", (64, 64), "blue")], index=["x"])
    answer = s.caprl.ask("What colour is this?", base_url=vllm_server, max_tokens=4, progress=False)
    assert answer.name == "answer" and answer.notna().all()
