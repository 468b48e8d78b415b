"""The caprl-nb command line, run as a user runs it: a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from .conftest import make_images
from .vllm_sim import VLLMSimulator


def _cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "caprl_nb.cli", *args],
        capture_output=True, text=True, timeout=timeout,
    )


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    make_images(root, 3)
    make_images(root / "nested" / "deeper", 2)
    (root / "notes.txt").write_text("not an image")
    return root


def test_caption_folder_to_jsonl(sim: VLLMSimulator, folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    done = _cli("caption", str(folder), "-o", str(out), "--max-tokens", "8", "--base-url", sim.base_url)
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == 5  # recursive, image files only
    assert all(r["caption"] and r["error"] is None for r in rows)
    assert {"path", "caption", "cached", "model", "latency_s", "finish_reason"} <= set(rows[0])
    assert "5/5" in done.stderr  # progress goes to stderr


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_other_formats_and_rerun_is_cached(sim: VLLMSimulator, folder: Path, tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"out{suffix}"
    args = ("caption", str(folder), "-o", str(out), "--max-tokens", "8", "--base-url", sim.base_url, "-q")
    assert _cli(*args).returncode == 0
    assert _cli(*args).returncode == 0
    frame = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert len(frame) == 5 and frame["cached"].all()
    assert len(sim.requests) == 5


def test_broken_file_exits_1_with_the_error_in_the_output(sim: VLLMSimulator, folder: Path) -> None:
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    done = _cli("caption", str(folder), "-o", "-", "--max-tokens", "8", "--base-url", sim.base_url, "-q")
    assert done.returncode == 1
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    broken = [r for r in rows if r["path"].endswith("broken.jpg")]
    assert broken[0]["caption"] is None and "ImageDecodeError" in broken[0]["error"]
    assert "1 of 6 image(s) failed" in done.stderr


def test_no_images_found(tmp_path: Path) -> None:
    done = _cli("caption", str(tmp_path))
    assert done.returncode == 2 and "No image files" in done.stderr


def test_unknown_output_format(sim: VLLMSimulator, folder: Path, tmp_path: Path) -> None:
    done = _cli("caption", str(folder), "-o", str(tmp_path / "x.xlsx"), "--base-url", sim.base_url, "-q")
    assert done.returncode == 2 and ".parquet, .jsonl, .csv" in done.stderr


def test_doctor_healthy() -> None:
    with VLLMSimulator(root="internlm/CapRL-3B", max_model_len=32768) as sim:
        done = _cli("doctor", "--base-url", sim.base_url)
    assert done.returncode == 0, done.stdout
    for fragment in ("caprl", "internlm/CapRL-3B", "0.32.0", "32768", "CapRL-3B (Qwen2.5-VL)", "results.sqlite3"):
        assert fragment in done.stdout


def test_doctor_without_server_says_what_to_do() -> None:
    from caprl_nb.engine import free_port

    done = _cli("doctor", "--base-url", f"http://127.0.0.1:{free_port()}/v1")
    assert done.returncode == 1
    assert "caprl-nb serve" in done.stdout


def test_caption_without_server(folder: Path) -> None:
    from caprl_nb.engine import free_port

    done = _cli("caption", str(folder), "--base-url", f"http://127.0.0.1:{free_port()}/v1", "-q")
    assert done.returncode == 2 and "caprl-nb serve" in done.stderr


@pytest.mark.vllm
def test_demo_captions_the_samples_and_writes_a_gallery(vllm_server: str, tmp_path: Path) -> None:
    page = tmp_path / "demo.html"
    done = _cli("demo", "--base-url", vllm_server, "--html", str(page), timeout=300)
    assert done.returncode == 0, done.stderr
    for name in ("bar_chart.png", "invoice.png", "line_chart.png", "mountains.jpg"):
        assert name in done.stdout
    assert page.as_uri() in done.stdout
    assert page.read_text().count('<div class="card"') == 4
    assert "OFFLINE SMOKE MODE" not in done.stderr  # a server answered: no fallback
