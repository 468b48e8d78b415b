"""A real vLLM server on loopback, serving the randomly initialised tiny Qwen2.5-VL.

The suite's session fixture calls :func:`start_tiny_server` once and ``stop()``s it at the end.
It starts the server exactly as a user would for an offline smoke run, through
``caprl-nb serve --model tiny`` (which builds the model with ``from_pretrained``-loadable files
and runs ``python -m vllm.entrypoints.openai.api_server``), so the CLI's serve path is the one
under test. It needs an engine: ``CAPRL_VLLM_PYTHON`` names the python of a vLLM environment (on
a CPU, the venv ``caprl-nb install-engine`` makes). Startup takes ~35 s and ~3 GB on a CPU.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from caprl_nb.engine import EngineProcess, find_engine_python, free_port

HOST = "127.0.0.1"
READY_TIMEOUT = 300.0


def start_tiny_server(tmp_dir: Path) -> EngineProcess:
    """``caprl-nb serve --model tiny`` on a free loopback port, waited on until healthy.

    Its CAPRL_HOME (tiny model, engine caches, vLLM's log) is ``tmp_dir / "home"``, never the
    home directory, and nothing is downloaded (``HF_HUB_OFFLINE=1``). The CLI's own output is
    ``tmp_dir / "serve.log"``; vLLM's is under ``home/logs``.
    """
    tmp_dir = Path(tmp_dir)
    python = find_engine_python()
    port = free_port(HOST)
    env = {
        **os.environ,
        "CAPRL_HOME": str(tmp_dir / "home"),
        "HF_HUB_OFFLINE": "1",
        "VLLM_CPU_KVCACHE_SPACE": "1",  # GiB; 2048 tokens of a 2-layer model need far less
    }
    cmd = [sys.executable, "-m", "caprl_nb.cli", "serve", "--model", "tiny", "--host", HOST,
           "--port", str(port), "--python", python]
    engine = EngineProcess(cmd, env=env, host=HOST, port=port, log_path=tmp_dir / "serve.log")
    engine.start()
    try:
        engine.wait_ready(READY_TIMEOUT)
    except BaseException:
        print(engine.log_tail(), file=sys.stderr)
        engine.stop()
        raise
    return engine
