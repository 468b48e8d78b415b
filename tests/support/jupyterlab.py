"""A real JupyterLab on loopback and a headless Chromium driving it, for browser tests and benches.

::

    with start_jupyterlab(root, env={"CAPRL_BASE_URL": url}) as lab, browser() as chromium:
        nb = LabNotebook.create(lab, chromium, "demo.ipynb", ["import caprl_nb", "1 + 1"])
        nb.run_all()
        assert nb.run_cell("print('hi')") == "hi\\n"
        nb.restart_kernel()
        nb.screenshot(out / "demo.png")

The server is the dev venv's ``python -m jupyter lab``, with a random token, every Jupyter and
IPython directory (config, data, runtime, workspaces, user settings) and HOME under one state
folder, so nothing reads or writes the real home directory. The venv's prebuilt labextensions
(anywidget, @jupyter-widgets) are still found: Jupyter searches ``<sys.prefix>/share/jupyter``
before JUPYTER_DATA_DIR. Lab fetches no news, checks for no updates and shows no toasts; the
notebook attaches every cell to the DOM (``windowingMode: none``) so tests can see all of them.

The page is driven the way galata (JupyterLab's own UI test kit) does it: Lab's command registry
through ``window.jupyterapp`` (``LabApp.expose_app_in_browser``) for notebook chores, the DOM for
what a user sees and clicks. Every wait is a poll on a condition with a deadline.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from caprl_nb.engine import free_port

HOST = "127.0.0.1"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1400, "height": 1000}
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}

# Lab user settings written into the isolated config dir: quiet, offline, every cell in the DOM.
USER_SETTINGS = {
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false", "checkForUpdates": False, "doNotDisturbMode": True,
    },
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
}
LAB_CONFIG = {
    "LabApp": {
        "news_url": None,
        "check_for_updates_class": "jupyterlab.handlers.announcements.NeverCheckForUpdate",
        "extension_manager": "readonly",  # the default "pypi" manager queries pypi.org
        "expose_app_in_browser": True,  # window.jupyterapp, as galata uses it
    },
}


class LabError(RuntimeError):
    """The server, the page or a cell did not do what the test needed; the message says what it saw."""


def _poll(condition: Any, timeout: float, what: str, interval: float = 0.1) -> Any:
    """Call ``condition()`` until it returns something truthy; LabError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if result:
            return result
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout:.0f} s waiting for {what}"
            raise LabError(msg)
        time.sleep(interval)


class JupyterLabServer:
    """A running ``jupyter lab`` subprocess (its own process group, so its kernels die with it)."""

    def __init__(self, process: subprocess.Popen[bytes], *, port: int, token: str, root_dir: Path,
                 state_dir: Path, log_path: Path, owns_state: bool) -> None:
        self.process = process
        self.port = port
        self.token = token
        self.root_dir = root_dir
        self.state_dir = state_dir
        self.log_path = log_path
        self._owns_state = owns_state
        self.url = f"http://{HOST}:{port}"

    # -- REST -------------------------------------------------------------------------------
    def api(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """One token-authenticated request to the server's REST API (``path`` starts with /api/)."""
        headers = {"Authorization": f"token {self.token}", **kwargs.pop("headers", {})}
        response = httpx.request(method, self.url + path, headers=headers,
                                 timeout=httpx.Timeout(30.0, connect=5.0), **kwargs)
        response.raise_for_status()
        return response

    def write_notebook(self, name: str, sources: Sequence[str]) -> str:
        """Create (or replace) ``name`` under the root dir with one code cell per source; returns its path."""
        import nbformat

        notebook = nbformat.v4.new_notebook(
            cells=[nbformat.v4.new_code_cell(source) for source in sources],
            metadata={"kernelspec": KERNELSPEC, "language_info": {"name": "python"}},
        )
        self.api("PUT", f"/api/contents/{name}",
                 json={"type": "notebook", "format": "json", "content": notebook})
        return name

    # -- lifecycle --------------------------------------------------------------------------
    def log_tail(self, chars: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            msg = f"jupyter lab exited with {self.process.returncode}"
            raise LabError(msg)
        try:
            response = httpx.get(f"{self.url}/api/status", params={"token": self.token}, timeout=2.0)
        except httpx.TransportError:
            return False
        return response.status_code == 200

    def wait_ready(self, timeout: float) -> None:
        try:
            _poll(self._ready, timeout, f"jupyter lab to answer /api/status on {self.url}", 0.25)
        except LabError as exc:
            msg = f"{exc}\n--- jupyter lab log ---\n{self.log_tail()}"
            raise LabError(msg) from None

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM (Lab shuts its kernels down), then SIGKILL the whole group after ``timeout`` s."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                pass
        try:  # kernels left behind by a server that died or was killed
            os.killpg(self.process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.process.wait()
        if self._owns_state:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    def __enter__(self) -> JupyterLabServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def lab_environment(state_dir: Path, env: dict[str, str] | None = None) -> dict[str, str]:
    """The server's (and so its kernels') environment: os.environ, Jupyter/IPython/HOME under ``state_dir``, then ``env``."""
    dirs = {
        "HOME": state_dir / "home",
        "JUPYTER_CONFIG_DIR": state_dir / "config",
        "JUPYTER_DATA_DIR": state_dir / "data",
        "JUPYTER_RUNTIME_DIR": state_dir / "runtime",
        "IPYTHONDIR": state_dir / "ipython",
        "XDG_CONFIG_HOME": state_dir / "home" / ".config",
        "XDG_CACHE_HOME": state_dir / "home" / ".cache",
        "XDG_DATA_HOME": state_dir / "home" / ".local" / "share",
        "MPLCONFIGDIR": state_dir / "home" / "matplotlib",
    }
    for path in dirs.values():
        path.mkdir(parents=True, exist_ok=True)
    base = {k: v for k, v in os.environ.items()
            if not k.startswith(("JUPYTER_", "JPY_")) and k not in ("IPYTHONDIR", "PYTHONSTARTUP")}
    return {
        **base,
        **{k: str(v) for k, v in dirs.items()},
        "JUPYTER_PLATFORM_DIRS": "1",  # silences jupyter_core's migration warning
        "PYDEVD_DISABLE_FILE_VALIDATION": "1",  # silences debugpy's frozen-modules warning
        "PYTHONUNBUFFERED": "1",
        **(env or {}),
    }


def _write_config(state_dir: Path) -> None:
    config = state_dir / "config"
    (config / "jupyter_lab_config.json").write_text(json.dumps(LAB_CONFIG, indent=1))
    for plugin, settings in USER_SETTINGS.items():
        package, name = plugin.rsplit("/", 1)
        path = config / "lab" / "user-settings" / package / f"{name}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings))


def start_jupyterlab(root_dir: Path, env: dict[str, str] | None = None, *,
                     state_dir: Path | None = None, timeout: float = 120.0,
                     app: str = "lab") -> JupyterLabServer:
    """``python -m jupyter lab`` serving ``root_dir`` on 127.0.0.1, ready to take requests.

    ``env`` is added to the server's environment, which its kernels inherit (CAPRL_BASE_URL,
    CAPRL_HOME, ...). Jupyter's own directories, HOME and the server log (``lab.log``) live in
    ``state_dir``; without one, a temporary folder removed by ``stop()``. ``app="notebook"``
    starts Jupyter Notebook 7 (``jupyter notebook``) instead, with the same isolation, token and
    user settings; LabNotebook drives Lab only, not Notebook 7's pages.
    """
    root_dir = Path(root_dir).resolve()
    owns_state = state_dir is None
    state_dir = Path(tempfile.mkdtemp(prefix="caprl-lab-")) if state_dir is None else Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    full_env = lab_environment(state_dir, env)
    _write_config(state_dir)
    port, token = free_port(HOST), secrets.token_hex(24)
    cmd = [
        sys.executable, "-m", "jupyter", app, "--no-browser", f"--ip={HOST}", f"--port={port}",
        "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root_dir}", "--ServerApp.terminals_enabled=False",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # CI containers; Lab refuses root otherwise
        cmd.append("--allow-root")
    log_path = state_dir / "lab.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(cmd, cwd=root_dir, env=full_env, stdout=log,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
    server = JupyterLabServer(process, port=port, token=token, root_dir=root_dir,
                              state_dir=state_dir, log_path=log_path, owns_state=owns_state)
    try:
        server.wait_ready(timeout)
    except BaseException:
        server.stop()
        raise
    return server


@contextmanager
def browser() -> Iterator[Any]:
    """Debian's headless Chromium through Python Playwright, its HOME in a temporary folder."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory(prefix="caprl-chromium-") as home, sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                     args=CHROMIUM_ARGS, env={**os.environ, "HOME": home})
        try:
            yield chromium
        finally:
            chromium.close()


# JavaScript run in the page; `app` is window.jupyterapp, the notebook is the current widget.
_JS_PANEL = """
    const app = window.jupyterapp;
    const panel = app && app.shell.currentWidget;
"""
_JS_KERNEL_IDLE = _JS_PANEL + """
    const ctx = panel && panel.sessionContext;
    const kernel = ctx && ctx.session && ctx.session.kernel;
    return !!(panel && panel.context && panel.context.path === path && ctx.isReady
              && kernel && kernel.status === 'idle' && kernel.connectionStatus === 'connected');
"""
_JS_CELLS = _JS_PANEL + """
    const cells = panel.content.widgets;
    return cells.map((cell, index) => {
        const model = cell.model;
        const prompt = cell.node.querySelector('.jp-InputPrompt');
        return {
            index, type: model.type,
            count: model.type === 'code' ? model.executionCount : null,
            running: model.type === 'code' ? model.executionState === 'running' : false,
            prompt: prompt ? prompt.textContent.trim() : '',
            outputs: model.type === 'code' ? model.outputs.toJSON() : [],
        };
    });
"""


def _js(body: str, param: str = "") -> str:
    """A function expression for page.evaluate / wait_for_function taking at most one argument."""
    return f"({param}) => {{ {body} }}"


def output_text(outputs: list[dict[str, Any]]) -> str:
    """The text a cell's outputs show, in order: streams, text/plain of results and displays, errors."""
    parts = []
    for output in outputs:
        kind = output.get("output_type")
        if kind == "stream":
            text = output.get("text", "")
            parts.append("".join(text) if isinstance(text, list) else text)
        elif kind in ("execute_result", "display_data"):
            text = output.get("data", {}).get("text/plain", "")
            parts.append("".join(text) if isinstance(text, list) else text)
        elif kind == "error":
            parts.append(f"{output.get('ename')}: {output.get('evalue')}")
    return "".join(parts)


class CellError(LabError):
    """A cell raised; the message holds its error output."""


class LabNotebook:
    """One notebook open in its own Chromium page inside JupyterLab.

    ``console`` collects the page's console errors and uncaught exceptions, so a failing test
    can show what the front end complained about.
    """

    def __init__(self, lab: JupyterLabServer, page: Any, name: str) -> None:
        self.lab = lab
        self.page = page
        self.name = name
        self.console: list[str] = []
        self.last_cell: dict[str, Any] = {}  # cells()[i] of the last run_cell
        page.on("console", lambda m: self.console.append(f"console.{m.type}: {m.text}")
                if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    @classmethod
    def create(cls, lab: JupyterLabServer, chromium: Any, name: str, sources: Sequence[str], *,
               timeout: float = 120.0) -> LabNotebook:
        """Write ``name`` through the contents API with ``sources`` as code cells and open it."""
        lab.write_notebook(name, sources)
        return cls.open(lab, chromium, name, timeout=timeout)

    @classmethod
    def open(cls, lab: JupyterLabServer, chromium: Any, name: str, *,
             timeout: float = 120.0) -> LabNotebook:
        """A new page (1400x1000) showing ``name`` in Lab, its kernel started and idle."""
        page = chromium.new_page(viewport=VIEWPORT)
        notebook = cls(lab, page, name)
        # ?reset: a fresh workspace, so tabs from an earlier page do not come back
        page.goto(f"{lab.url}/lab/tree/{name}?reset&token={lab.token}", timeout=timeout * 1000)
        notebook.wait_kernel_idle(timeout)
        page.evaluate("() => window.jupyterapp.shell.collapseLeft()")  # the file browser; more room
        return notebook

    # -- waiting ---------------------------------------------------------------------------
    def wait_kernel_idle(self, timeout: float = 60.0) -> None:
        """Until this notebook is Lab's current widget and its kernel is connected and idle."""
        from playwright.sync_api import TimeoutError as PlaywrightTimeout

        try:
            self.page.wait_for_function(_js(_JS_KERNEL_IDLE, "path"), arg=self.name,
                                        timeout=timeout * 1000, polling=100)
        except PlaywrightTimeout as exc:
            msg = f"kernel of {self.name} not idle after {timeout:.0f} s ({exc})\n{self.diagnostics()}"
            raise LabError(msg) from None

    def cells(self) -> list[dict[str, Any]]:
        """Every cell: index, type, execution count, running, the DOM prompt text and outputs (nbformat)."""
        return self.page.evaluate(_js(_JS_CELLS))

    def command(self, command_id: str, args: dict[str, Any] | None = None, *, wait: bool = True) -> Any:
        """Run a Lab command (e.g. ``notebook:clear-all-cell-outputs``), awaiting its promise.

        With ``wait=False`` it is only started (run commands resolve when the cells finish,
        which would block past any deadline); a failure then shows up in ``console``.
        """
        if wait:
            return self.page.evaluate("([id, args]) => window.jupyterapp.commands.execute(id, args)",
                                      [command_id, args or {}])
        return self.page.evaluate(
            """([id, args]) => { window.jupyterapp.commands.execute(id, args).catch(
                   (e) => console.error(`command ${id} failed: ${e}`)); }""",
            [command_id, args or {}])

    # -- running ---------------------------------------------------------------------------
    def run_all(self, timeout: float = 300.0) -> list[dict[str, Any]]:
        """Clear every output, run all cells, wait until each code cell shows ``[n]:``; returns cells().

        A cell that raises stops the run (as in Lab); that raises CellError with its traceback.
        """
        self.wait_kernel_idle(timeout)
        self.command("notebook:clear-all-cell-outputs")
        self.command("notebook:run-all-cells", wait=False)
        deadline = time.monotonic() + timeout

        def settled() -> list[dict[str, Any]] | None:
            cells = [c for c in self.cells() if c["type"] == "code"]
            self._raise_errors(cells)
            done = all(c["count"] is not None and not c["running"] and _prompt_done(c["prompt"])
                       for c in cells)
            return cells if done else None

        try:
            _poll(settled, max(1.0, deadline - time.monotonic()), f"all cells of {self.name} to run",
                  0.2)
        except CellError:
            raise
        except LabError as exc:
            msg = f"{exc}\n{self.diagnostics()}"
            raise LabError(msg) from None
        self.wait_kernel_idle(max(5.0, deadline - time.monotonic()))
        return self.cells()

    def run_cell(self, source: str, timeout: float = 120.0, *, check: bool = True) -> str:
        """Append a code cell holding ``source``, run it, wait for its ``[n]:`` and return its output text.

        With ``check`` (the default) a cell that raises raises CellError carrying the traceback.
        """
        self.wait_kernel_idle(timeout)
        index = self.page.evaluate(_js(_JS_PANEL + """
            const notebook = panel.content;
            const index = notebook.widgets.length;
            notebook.model.sharedModel.insertCell(index, {cell_type: 'code', source});
            notebook.activeCellIndex = index;
            notebook.deselectAll();
            return index;
        """, "source"), source)
        self.command("notebook:run-cell", wait=False)

        def finished() -> dict[str, Any] | None:
            cell = self.cells()[index]
            done = cell["count"] is not None and not cell["running"] and _prompt_done(cell["prompt"])
            return cell if done else None

        try:
            cell = _poll(finished, timeout, f"cell {index} of {self.name} to show [n]:", 0.1)
        except LabError as exc:
            msg = f"{exc}\nsource: {source!r}\n{self.diagnostics()}"
            raise LabError(msg) from None
        self.last_cell = cell
        if check:
            self._raise_errors([cell])
        return output_text(cell["outputs"])

    def restart_kernel(self, timeout: float = 60.0) -> None:
        """Lab's Kernel > Restart Kernel…, accepting its dialog, then wait for a new idle kernel."""
        self.page.evaluate(_js(_JS_PANEL + """
            window.__caprlRestarting = false;
            panel.sessionContext.statusChanged.connect((_, status) => {
                if (status === 'restarting' || status === 'autorestarting' || status === 'starting') {
                    window.__caprlRestarting = true;
                }
            });
            app.commands.execute('kernelmenu:restart');  // not awaited: it waits on the dialog
        """))
        accept = self.page.locator(".jp-Dialog .jp-mod-accept")
        accept.wait_for(state="visible", timeout=timeout * 1000)
        accept.click()
        self.page.wait_for_function("() => window.__caprlRestarting === true",
                                    timeout=timeout * 1000, polling=20)
        self.wait_kernel_idle(timeout)
        out = self.run_cell("get_ipython().execution_count", timeout)
        if self.last_cell["count"] != 1:
            msg = (f"the kernel of {self.name} did not restart: a probe cell ran as "
                   f"{self.last_cell['prompt']} ({out.strip()})")
            raise LabError(msg)
        self.command("notebook:delete-cell")  # the probe cell is the active one

    def screenshot(self, path: Path, *, show: Any = None, **kwargs: Any) -> Path:
        """The page as the user sees it; ``show`` (a locator) is scrolled into view first."""
        if show is not None:
            show.scroll_into_view_if_needed()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path), **kwargs)
        return path

    def close(self) -> None:
        self.page.close()

    # -- diagnostics -----------------------------------------------------------------------
    def _raise_errors(self, cells: list[dict[str, Any]]) -> None:
        for cell in cells:
            for output in cell["outputs"]:
                if output.get("output_type") == "error":
                    traceback = _strip_ansi("\n".join(output.get("traceback", [])))
                    msg = f"cell {cell['index']} of {self.name} raised:\n{traceback}"
                    raise CellError(msg)

    def diagnostics(self) -> str:
        """The page's console errors and the server log's tail, for a failure message."""
        console = "\n".join(self.console[-30:]) or "(none)"
        return f"--- page console ---\n{console}\n--- jupyter lab log ---\n{self.lab.log_tail(3000)}"


def _prompt_done(prompt: str) -> bool:
    """``[12]:`` yes; ``[ ]:`` (never run) and ``[*]:`` (queued or running) no."""
    inner = prompt.strip().removesuffix(":").strip("[] ")
    return inner.isdigit()


def _strip_ansi(text: str) -> str:
    import re

    return re.sub(r"\x1b\[[0-9;]*m", "", text)
