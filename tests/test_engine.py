"""caprl_nb.engine: the serve command line, its environment, finding the engine, the process.

The process tests run a stand-in server (stdlib http.server in a subprocess) so they need no
vLLM; the one ``vllm``-marked test talks to the real engine serving the tiny model (conftest's
session fixture), skipped unless CAPRL_VLLM_PYTHON names an engine's python.
"""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import os
import signal
import socket
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from PIL import Image

from caprl_nb.engine import (
    EngineProcess,
    default_engine_dir,
    engine_uses_gpu,
    find_engine_python,
    free_port,
    redact_command,
    serve_command,
    serve_env,
)
from caprl_nb.errors import EngineError

from tests.support.polling import wait_until

posix_only = pytest.mark.skipif(os.name != "posix", reason="process groups are POSIX")


def _flag(cmd: list[str], name: str) -> str:
    return cmd[len(cmd) - 1 - cmd[::-1].index(name) + 1]  # the value of the last occurrence


# -- serve_command / serve_env -------------------------------------------------------------
def test_cpu_command_uses_the_authors_flags_and_cpu_settings() -> None:
    cmd = serve_command(
        "internlm/CapRL-3B", python="/py", host="0.0.0.0", port=8000, gpu=False, max_model_len=None, extra=()
    )
    assert cmd[:3] == ["/py", "-m", "vllm.entrypoints.openai.api_server"]
    assert _flag(cmd, "--model") == "internlm/CapRL-3B"
    assert _flag(cmd, "--served-model-name") == "caprl"
    assert "--trust-remote-code" in cmd
    assert (_flag(cmd, "--host"), _flag(cmd, "--port")) == ("0.0.0.0", "8000")
    assert json.loads(_flag(cmd, "--limit-mm-per-prompt")) == {"image": 1, "video": 0}
    assert _flag(cmd, "--dtype") == "bfloat16"
    assert "--enforce-eager" in cmd
    assert "--gpu-memory-utilization" not in cmd
    assert "--max-model-len" not in cmd


def test_gpu_command_reserves_memory_like_the_authors() -> None:
    cmd = serve_command("m", python="py", host="h", port=1, gpu=True, max_model_len=4096, extra=())
    assert _flag(cmd, "--gpu-memory-utilization") == "0.95"
    assert "--enforce-eager" not in cmd and "--dtype" not in cmd
    assert _flag(cmd, "--max-model-len") == "4096"


def test_internvl_servers_trust_per_request_tile_counts() -> None:
    # caprl_nb fits InternVL images by lowering max_dynamic_patch per request, which vLLM 0.32
    # refuses (400) unless started with --trust-request-mm-kwargs.
    internvl = serve_command("internlm/CapRL-InternVL3.5-8B", python="py", host="h", port=1,
                             gpu=True, max_model_len=None)
    qwen = serve_command("internlm/CapRL-3B", python="py", host="h", port=1, gpu=True, max_model_len=None)
    assert "--trust-request-mm-kwargs" in internvl and "--trust-request-mm-kwargs" not in qwen


def test_extra_flags_come_last_so_they_win() -> None:
    cmd = serve_command(
        "m", python="py", host="h", port=1, served_model_name="mine", gpu=True, max_model_len=None,
        extra=["--gpu-memory-utilization", "0.5"],
    )  # fmt: skip
    assert cmd[-2:] == ["--gpu-memory-utilization", "0.5"]
    assert _flag(cmd, "--gpu-memory-utilization") == "0.5"
    assert _flag(cmd, "--served-model-name") == "mine"


def test_cpu_env_sets_caches_and_kv_space_without_touching_base(tmp_path: Path) -> None:
    base = {"PATH": "/bin"}
    env = serve_env(base, gpu=False, cache_dir=tmp_path)
    assert base == {"PATH": "/bin"}
    assert env["PATH"] == "/bin"
    assert env["VLLM_CACHE_ROOT"] == str(tmp_path / "vllm")
    assert env["HF_HOME"] == str(tmp_path / "huggingface")
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "4"
    assert env["VLLM_TARGET_DEVICE"] == "cpu"


def test_env_keeps_what_the_user_set(tmp_path: Path) -> None:
    base = {"VLLM_CPU_KVCACHE_SPACE": "1", "HF_HOME": "/data/hf", "VLLM_CACHE_ROOT": ""}
    env = serve_env(base, gpu=False, cache_dir=tmp_path)
    assert env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert env["HF_HOME"] == "/data/hf"
    assert env["VLLM_CACHE_ROOT"] == str(tmp_path / "vllm")  # empty counts as unset


def test_gpu_env_has_no_cpu_settings(tmp_path: Path) -> None:
    env = serve_env({}, gpu=True, cache_dir=tmp_path)
    assert "VLLM_CPU_KVCACHE_SPACE" not in env and "VLLM_TARGET_DEVICE" not in env
    assert env["HF_HOME"] == str(tmp_path / "huggingface")


def _fake_engine(root: Path, distributions: dict[str, str]) -> Path:
    """An engine interpreter that answers only the question which distributions it has."""
    python = root / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/sh\necho '{json.dumps(distributions)}'\n")
    python.chmod(0o755)
    return python


@pytest.mark.skipif(os.name != "posix", reason="the stand-in engines are shell scripts")
def test_gpu_flags_follow_the_engine_not_the_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = _fake_engine(tmp_path / "cpu", {"vllm-cpu": "0.32.0", "torch": "2.13.0+cpu"})
    cuda = _fake_engine(tmp_path / "cuda", {"vllm": "0.32.0", "torch": "2.13.0"})
    marked = tmp_path / "installed" / "bin" / "python"  # install_cpu_engine's venv: its marker says so
    marked.parent.mkdir(parents=True)
    (tmp_path / "installed" / "caprl-engine.json").write_text("{}")
    monkeypatch.setattr("caprl_nb.engine.has_gpu", lambda: True)
    assert not engine_uses_gpu(str(cpu)) and not engine_uses_gpu(str(marked))
    assert engine_uses_gpu(str(cuda))
    monkeypatch.setattr("caprl_nb.engine.has_gpu", lambda: False)
    assert not engine_uses_gpu(str(cuda))


# -- redact_command ------------------------------------------------------------------------------
def test_secret_values_are_redacted_in_both_forms_and_argv_is_untouched() -> None:
    argv = [
        "/py", "-m", "vllm.entrypoints.openai.api_server", "--model", "internlm/CapRL-3B",
        "--api-key", "sk-one", "--api-key=sk-two", "--hf-token", "hf_three", "--client_secret=four",
        "--db-password", "five", "--port", "8000",
    ]  # fmt: skip
    real = list(argv)
    assert redact_command(argv) == [
        "/py", "-m", "vllm.entrypoints.openai.api_server", "--model", "internlm/CapRL-3B",
        "--api-key", "***", "--api-key=***", "--hf-token", "***", "--client_secret=***",
        "--db-password", "***", "--port", "8000",
    ]  # fmt: skip
    assert argv == real


def test_options_that_only_look_like_secrets_are_kept() -> None:
    argv = [
        "--tokenizer", "Qwen/Qwen2.5-VL-3B-Instruct", "--max-num-batched-tokens", "8192",
        "--ssl-keyfile", "server.pem", "--return-tokens-as-token-ids", "--port", "1",
    ]  # fmt: skip
    assert redact_command(argv) == argv  # a value-less secret-named flag does not swallow --port


def test_the_engine_gets_the_real_key_and_its_errors_do_not_show_it(tmp_path: Path) -> None:
    code = "import sys; print('non-default args:', sys.argv[1:], flush=True); sys.exit(3)"
    cmd = [sys.executable, "-c", code, "--api-key", "sk-real-secret", "--hf-token=hf_real_token"]
    log = tmp_path / "e.log"
    engine = EngineProcess(cmd, env=dict(os.environ), host="127.0.0.1", port=free_port(), log_path=log)
    with engine, pytest.raises(EngineError, match="exited with code 3") as info:
        engine.wait_ready(timeout=120)
    assert "'--api-key', '***', '--hf-token=***'" in str(info.value)
    assert "sk-real-secret" not in str(info.value) and "hf_real_token" not in str(info.value)
    assert "'sk-real-secret'" in log.read_text() and "hf_real_token" in log.read_text()
    assert engine.command == cmd


def test_an_engine_that_cannot_start_names_its_command_without_the_key(tmp_path: Path) -> None:
    cmd = [str(tmp_path / "no-such-python"), "-m", "vllm", "--api-key", "sk-real-secret"]
    engine = EngineProcess(cmd, env={}, host="127.0.0.1", port=free_port(), log_path=tmp_path / "e.log")
    with pytest.raises(EngineError, match=r"no-such-python -m vllm --api-key \*\*\*") as info:
        engine.start()
    assert "sk-real-secret" not in str(info.value)


# -- find_engine_python ----------------------------------------------------------------------
def test_explicit_python_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CAPRL_VLLM_PYTHON", sys.executable)
    explicit = tmp_path / "python"
    explicit.touch(mode=0o755)
    assert find_engine_python(str(explicit)) == str(explicit)
    assert find_engine_python() == sys.executable


def test_a_missing_python_is_named_in_the_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CAPRL_VLLM_PYTHON", str(tmp_path / "nope" / "python"))
    with pytest.raises(EngineError, match=r"CAPRL_VLLM_PYTHON .*is not an executable"):
        find_engine_python()


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is importable here")
def test_without_an_engine_the_error_says_how_to_install_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAPRL_VLLM_PYTHON", raising=False)
    with pytest.raises(EngineError) as info:
        find_engine_python()
    message = str(info.value)
    assert "pip install 'caprl-nb[vllm]'" in message
    assert "caprl-nb install-engine" in message
    assert str(default_engine_dir()) in message


@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None, reason="vLLM is importable here")
def test_the_installed_cpu_engine_is_found(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAPRL_VLLM_PYTHON", raising=False)
    assert default_engine_dir() == Path(os.environ["CAPRL_HOME"]) / "engines" / "vllm-cpu"
    python = default_engine_dir() / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    python.parent.mkdir(parents=True)
    python.touch(mode=0o755)
    assert find_engine_python() == str(python)


# -- EngineProcess, against a stand-in server ---------------------------------------------------
_STAND_IN = textwrap.dedent(
    """
    import http.server, signal, subprocess, sys
    port, ignore_term = int(sys.argv[1]), sys.argv[2] == "1"
    if ignore_term:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    # a grandchild, as vLLM's engine core is: stop() must reach it through the group
    subprocess.Popen([sys.executable, "-c", "import signal\\nsignal.pause()"])
    print("stand-in listening", flush=True)

    class Health(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200 if self.path == "/health" else 404)
            self.end_headers()

        def log_message(self, *args):
            pass

    http.server.HTTPServer(("127.0.0.1", port), Health).serve_forever()
    """
)


def _group_gone(pgid: int, within: float = 10.0) -> bool:
    """Polls until no process of the group is left (killed children are reaped by init, later)."""
    def gone() -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return True
        return False

    try:
        return wait_until(gone, within, f"process group {pgid} to exit", interval=0.05)
    except AssertionError:
        return False


def _stand_in(tmp_path: Path, *, ignore_term: bool = False) -> EngineProcess:
    port = free_port()
    cmd = [sys.executable, "-c", _STAND_IN, str(port), "1" if ignore_term else "0"]
    log = tmp_path / "engine.log"
    return EngineProcess(cmd, env=dict(os.environ), host="127.0.0.1", port=port, log_path=log)


@posix_only
def test_process_becomes_ready_and_stop_ends_the_whole_group(tmp_path: Path) -> None:
    with _stand_in(tmp_path) as engine:
        engine.wait_ready(timeout=30)
        assert engine.base_url == f"http://127.0.0.1:{engine.port}/v1"
        assert httpx.get(f"{engine.root_url}/health", timeout=5).status_code == 200
        pgid = engine.pid
        assert pgid is not None
    assert _group_gone(pgid)
    assert "stand-in listening" in (tmp_path / "engine.log").read_text()


@posix_only
def test_stop_kills_a_server_that_ignores_sigterm(tmp_path: Path) -> None:
    engine = _stand_in(tmp_path, ignore_term=True).start()
    engine.wait_ready(timeout=30)
    engine.stop(timeout=1)
    assert engine.wait() == -signal.SIGKILL  # SIGTERM was ignored, so the grace period ended in SIGKILL
    assert engine.pid is not None and _group_gone(engine.pid)


def test_a_server_that_exits_fails_fast_with_its_log(tmp_path: Path) -> None:
    cmd = [sys.executable, "-c", "import sys; print('CUDA out of memory, try less'); sys.exit(3)"]
    log = tmp_path / "e.log"
    engine = EngineProcess(cmd, env=dict(os.environ), host="127.0.0.1", port=free_port(), log_path=log)
    with engine, pytest.raises(EngineError, match=r"(?s)exited with code 3.*CUDA out of memory") as info:
        engine.wait_ready(timeout=600)
    assert "No answer from" not in str(info.value)  # noticed the exit, did not wait out the timeout


def test_free_port_can_be_bound_and_listened_on() -> None:
    port = free_port()
    assert 1024 <= port <= 65535  # an ephemeral port, never 0 (which would mean "any")
    with socket.socket() as server:
        server.bind(("127.0.0.1", port))
        server.listen(1)
        assert server.getsockname()[1] == port
        with socket.create_connection(("127.0.0.1", port), timeout=5) as client:
            accepted, _ = server.accept()
            with accepted:
                client.sendall(b"ping")
                assert accepted.recv(4) == b"ping"


# -- the real engine (conftest's session fixture ``vllm_server``) ------------------------------
def _png_data_url() -> str:
    image = Image.new("RGB", (64, 48))
    image.putdata([(x * 4, y * 5, (x * y) % 256) for y in range(48) for x in range(64)])
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.vllm
def test_the_real_engine_serves_the_tiny_model_as_caprl(vllm_server: str) -> None:
    root = vllm_server.removesuffix("/v1")
    with httpx.Client(timeout=httpx.Timeout(60, connect=5)) as http:
        models = http.get(f"{vllm_server}/models").json()["data"]
        assert [m["id"] for m in models] == ["caprl"]
        assert models[0]["root"]
        assert models[0]["max_model_len"] == 2048
        assert http.get(f"{root}/version").json()["version"]
        response = http.post(
            f"{vllm_server}/chat/completions",
            json={
                "model": "caprl",
                "max_tokens": 8,
                "messages": [
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": _png_data_url()}},
                            {"type": "text", "text": "Please describe this image in detail."},
                        ],
                    }
                ],
            },
        )
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] > 0
