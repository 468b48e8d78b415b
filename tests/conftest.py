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

from caprl_nb import config

from tests.support.vllm_sim import VLLMSimulator

OUTPUT = Path(__file__).resolve().parent.parent / "test-output"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own CAPRL_HOME and no process-wide settings."""
    home = tmp_path / "caprl-home"
    monkeypatch.setenv("CAPRL_HOME", str(home))
    for var in ("CAPRL_BASE_URL", "CAPRL_MODEL", "CAPRL_API_KEY", "CAPRL_CONCURRENCY",
                "CAPRL_READ_TIMEOUT", "CAPRL_CONNECT_TIMEOUT", "CAPRL_MAX_RETRIES", "CAPRL_PRESET",
                "CAPRL_WAIT_FOR_SERVER", "CAPRL_OUTAGE_TIMEOUT", "CAPRL_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    config._configured.clear()
    yield home
    config._configured.clear()


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
    from tests.support.vllm_server import start_tiny_server

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


def make_legacy_store(path: Path, image: str, text: str) -> None:
    """A store as caprl_nb 0.1 left it: schema 4, rows keyed by the served alias."""
    import hashlib
    import sqlite3

    from caprl_nb import store as store_module
    from caprl_nb.plan import legacy_key
    from caprl_nb.prompts import caption_task

    db = sqlite3.connect(path, isolation_level=None)
    db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)")
    for version, migration in enumerate(store_module.MIGRATIONS[:4], start=1):
        migration(db)
        db.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (version, migration.__name__))
    sha = hashlib.sha256(Path(image).read_bytes()).hexdigest()
    key = legacy_key(caption_task(max_tokens=8), sha, "caprl")
    db.execute(
        "INSERT INTO results (key, task, image_sha256, input, model, base_url, params, text, created_at) "
        "VALUES (?, 'caption', ?, 'old', 'caprl', 'http://old/v1', '{}', ?, 0)",
        (key, sha, text),
    )
    db.close()
