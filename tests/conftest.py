"""Shared fixtures: an isolated CAPRL_HOME for every test, the simulator, the real vLLM server.

The real server is vLLM (CPU build) serving a tiny randomly initialised Qwen2.5-VL that the
tests build locally; it starts once per session. Its captions are noise: tests assert on
behaviour, shapes, provenance and protocol, never on wording. Without CAPRL_VLLM_PYTHON those
tests skip, unless CAPRL_REQUIRE_VLLM=1 (CI sets it), where a missing engine is an error.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from caprl_nb import batch, config

from .vllm_sim import VLLMSimulator

OUTPUT = Path(__file__).resolve().parent.parent / "test-output"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own CAPRL_HOME and no process-wide settings or server memo."""
    home = tmp_path / "caprl-home"
    monkeypatch.setenv("CAPRL_HOME", str(home))
    for var in ("CAPRL_BASE_URL", "CAPRL_MODEL", "CAPRL_API_KEY", "CAPRL_CONCURRENCY",
                "CAPRL_READ_TIMEOUT", "CAPRL_CONNECT_TIMEOUT", "CAPRL_MAX_RETRIES"):
        monkeypatch.delenv(var, raising=False)
    config._configured.clear()
    batch._server_memo.clear()
    yield home
    config._configured.clear()
    batch._server_memo.clear()


@pytest.fixture
def sim() -> Iterator[VLLMSimulator]:
    with VLLMSimulator() as server:
        yield server


@pytest.fixture(scope="session")
def vllm_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The base URL of the real vLLM server (tiny Qwen2.5-VL), started once per session."""
    if not os.environ.get("CAPRL_VLLM_PYTHON"):
        if os.environ.get("CAPRL_REQUIRE_VLLM") == "1":
            pytest.fail("CAPRL_REQUIRE_VLLM=1 but CAPRL_VLLM_PYTHON is not set; run .ci/run.")
        pytest.skip("set CAPRL_VLLM_PYTHON to the vLLM CPU engine's python (see .ci/run)")
    from .vllm_server import start_tiny_server

    server = start_tiny_server(tmp_path_factory.mktemp("vllm"))
    try:
        yield server.base_url
    finally:
        server.stop()


@pytest.fixture
def output_dir(request: pytest.FixtureRequest) -> Path:
    """A folder under test-output/ for artefacts a human may want to look at."""
    path = OUTPUT / request.node.name
    path.mkdir(parents=True, exist_ok=True)
    return path


def make_images(folder: Path, n: int, size: tuple[int, int] = (96, 64)) -> list[str]:
    """``n`` distinct small PNG files (random noise, seeded) under ``folder``."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(n)
    paths = []
    for i in range(n):
        pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        path = folder / f"img{i:05d}.png"
        Image.fromarray(pixels).save(path)
        paths.append(str(path))
    return paths


@pytest.fixture
def image_files(tmp_path: Path) -> list[str]:
    return make_images(tmp_path / "images", 12)
