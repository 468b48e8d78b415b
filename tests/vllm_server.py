"""A real vLLM server on loopback, serving the randomly initialised tiny Qwen2.5-VL.

The suite's session fixture calls :func:`start_tiny_server` once and ``stop()``s it at the end.
It needs an engine: set ``CAPRL_VLLM_PYTHON`` to the python of a vLLM environment (on a CPU,
the venv ``caprl-nb install-engine`` makes). ``CAPRL_TEST_MODEL_CACHE`` names a directory that
keeps the built model between runs (building takes ~5 s; without it the model goes under the
session's tmp dir). Startup takes ~25 s and ~3.5 GB of memory on a CPU.
"""

from __future__ import annotations

import os
from pathlib import Path

from caprl_nb.engine import (
    EngineProcess,
    build_tiny_model,
    find_engine_python,
    free_port,
    has_gpu,
    serve_command,
    serve_env,
)

HOST = "127.0.0.1"
MAX_MODEL_LEN = 2048
READY_TIMEOUT = 240.0


def start_tiny_server(tmp_dir: Path) -> EngineProcess:
    """Build (or reuse) the tiny model, start vLLM on a free loopback port and wait until healthy.

    The server's log is ``tmp_dir / "vllm.log"``; its caches live under ``tmp_dir``, never in
    the home directory, and nothing is downloaded (``HF_HUB_OFFLINE=1``).
    """
    tmp_dir = Path(tmp_dir)
    python = find_engine_python()
    models = Path(os.environ.get("CAPRL_TEST_MODEL_CACHE") or tmp_dir / "models")
    model = build_tiny_model(models / "tiny-qwen2.5-vl", python=python)
    gpu = has_gpu()
    cache = tmp_dir / "engine-cache"
    base = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "HF_HOME": str(cache / "huggingface"),
        "VLLM_CACHE_ROOT": str(cache / "vllm"),
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB; 2048 tokens of a 2-layer model need far less
    }
    port = free_port(HOST)
    cmd = serve_command(
        str(model),
        python=python,
        host=HOST,
        port=port,
        gpu=gpu,
        max_model_len=MAX_MODEL_LEN,
        # a GPU shared with other tests: the tiny model needs a sliver of it
        extra=["--gpu-memory-utilization", "0.2"] if gpu else [],
    )
    env = serve_env(base, gpu=gpu, cache_dir=cache)
    engine = EngineProcess(cmd, env=env, host=HOST, port=port, log_path=tmp_dir / "vllm.log")
    engine.start()
    try:
        engine.wait_ready(READY_TIMEOUT)
    except BaseException:
        engine.stop()
        raise
    return engine
