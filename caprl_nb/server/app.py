"""The Jupyter server extension: settings as traitlets, handlers under ``/caprl/``.

Enabled by ``jupyter-config/server-config/caprl_nb.json``. Configure it like any Jupyter
server setting, e.g. ``jupyter lab --CapRLApp.base_url=http://gpu-box:8000/v1``, or in
``jupyter_server_config.py``. The API key stays on the server: no endpoint returns it.
"""

from __future__ import annotations

from typing import Any

from jupyter_server.extension.application import ExtensionApp
from traitlets import Float, Int, Unicode

from caprl_nb.config import Settings, resolve_settings
from caprl_nb.errors import ConfigError
from caprl_nb.server.handlers import HANDLERS
from caprl_nb.server.status import StatusProbe

__all__ = ["CapRLApp"]


class CapRLApp(ExtensionApp):
    name = "caprl_nb"
    load_other_extensions = True

    base_url = Unicode(
        None, allow_none=True, config=True,
        help="OpenAI-compatible root of the CapRL vLLM server (default: CAPRL_BASE_URL, then http://localhost:8000/v1).",
    )
    model = Unicode(
        None, allow_none=True, config=True,
        help="Served model id (default: CAPRL_MODEL, then the single model the server lists).",
    )
    api_key = Unicode(
        None, allow_none=True, config=True,
        help="API key for the model server (default: CAPRL_API_KEY). Never sent to the browser.",
    )
    status_ttl = Float(
        2.0, config=True, help="Seconds a /caprl/status answer is reused before the model server is asked again."
    )
    max_file_bytes = Int(
        64 * 1024 * 1024, config=True,
        help="Largest image file /caprl/caption and /caprl/extract-table accept, in bytes.",
    )

    def initialize_settings(self) -> None:
        self.probe = StatusProbe(ttl=self.status_ttl)
        self._runtime: dict[str, Any] = {}

    def initialize_handlers(self) -> None:
        self.handlers.extend((rf"/caprl/{name}", handler) for name, handler in HANDLERS)

    def client_settings(self) -> Settings:
        """Settings for one request: runtime (Lab settings) > traitlets > environment > defaults."""
        configured = {"base_url": self.base_url, "model": self.model, "api_key": self.api_key}
        return resolve_settings(**{**configured, **self._runtime})

    def update_runtime(self, changes: dict[str, Any]) -> None:
        """Base URL and model chosen in JupyterLab's settings (validated before they apply)."""
        unknown = set(changes) - {"base_url", "model"}
        if unknown:
            raise ConfigError(f"Only base_url and model can be set here, not {', '.join(sorted(unknown))}.")
        merged = {**self._runtime, **{k: (v or None) for k, v in changes.items()}}
        configured = {"base_url": self.base_url, "model": self.model, "api_key": self.api_key}
        resolve_settings(**{**configured, **merged})  # raises ConfigError on a bad value
        self._runtime = {k: v for k, v in merged.items() if v is not None}
