"""The Jupyter server extension: settings as traitlets, handlers under ``/caprl/``.

Enabled by ``jupyter-config/server-config/caprl_nb.json``. Configure it like any Jupyter
server setting, e.g. ``jupyter lab --CapRLApp.base_url=http://gpu-box:8000/v1``, or in
``jupyter_server_config.py``. The API key stays on the server: no endpoint returns it, and it
is only ever sent to the model server the Jupyter server's own configuration names. JupyterLab
may choose another model server only where an admin allows it (``allowed_base_urls``,
``allow_browser_base_url``), and that server never receives the key.
"""

from __future__ import annotations

import dataclasses
from typing import Any, cast

from jupyter_server.extension.application import ExtensionApp
from traitlets import Bool, Float, Int, List, Unicode

from caprl_nb.config import Settings, resolve_settings
from caprl_nb.errors import ConfigError, SettingNotAllowedError
from caprl_nb.server.handlers import HANDLERS
from caprl_nb.server.status import StatusProbe

__all__ = ["CapRLApp"]

_BROWSER_SETTINGS = ("base_url", "model")


class CapRLApp(ExtensionApp):
    name = "caprl_nb"
    load_other_extensions = True

    base_url = Unicode(
        None, allow_none=True, config=True,
        help="OpenAI-compatible root of the CapRL vLLM server (default: CAPRL_BASE_URL, then "
        "http://localhost:8000/v1); several servers serving the same checkpoint, comma-separated, "
        "share the work. The only servers that receive api_key.",
    )
    model = Unicode(
        None, allow_none=True, config=True,
        help="Served model id (default: CAPRL_MODEL, then the single model the server lists).",
    )
    api_key = Unicode(
        None, allow_none=True, config=True,
        help="API key for the model server at base_url (default: CAPRL_API_KEY). Never sent to "
        "the browser, nor to a model server chosen in JupyterLab.",
    )
    allow_browser_base_url = Bool(
        False, config=True,
        help="Let JupyterLab users point this server at any model server URL (POST "
        "/caprl/settings). Off: only base_url and the URLs in allowed_base_urls. A URL chosen "
        "in JupyterLab is sent no API key.",
    )
    allowed_base_urls = List(
        Unicode(), config=True,
        help="Model server URLs JupyterLab users may choose instead of base_url, e.g. "
        "['http://gpu-2:8000/v1']. They are sent no API key.",
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
        self._runtime: dict[str, str] = {}

    def initialize_handlers(self) -> None:
        self.handlers.extend((rf"/caprl/{name}", handler) for name, handler in HANDLERS)

    def configured_settings(self) -> Settings:
        """The Jupyter server's own settings: traitlets > environment > defaults."""
        return resolve_settings(base_url=self.base_url, model=self.model, api_key=self.api_key)

    def client_settings(self) -> Settings:
        """Settings for one request: JupyterLab's choices over the server's own configuration.

        A base URL chosen in JupyterLab gets no API key: the key belongs to the configured server.
        """
        configured = self.configured_settings()
        runtime: dict[str, Any] = dict(self._runtime)
        if runtime.get("base_url", configured.base_url) != configured.base_url:
            runtime["api_key"] = "EMPTY"
        return dataclasses.replace(configured, **runtime)

    def is_configured(self, settings: Settings) -> bool:
        """Whether ``settings`` talk to the model server the server's configuration names."""
        return settings.base_url == self.configured_settings().base_url

    def update_runtime(self, changes: dict[str, Any]) -> None:
        """Base URL and model chosen in JupyterLab's settings (validated before they apply).

        An empty string or null puts a setting back to the Jupyter server's own value. A base
        URL other than the configured one needs ``allowed_base_urls`` or ``allow_browser_base_url``.
        """
        unknown = set(changes) - set(_BROWSER_SETTINGS)
        if unknown:
            raise ConfigError(f"Only base_url and model can be set here, not {', '.join(sorted(unknown))}.")
        configured = self.configured_settings()
        merged = dict(self._runtime)
        for name, value in changes.items():
            if value is not None and not isinstance(value, str):
                raise ConfigError(f"{name} must be a string (or null to use the server's own), got {value!r}.")
            text = (value or "").strip()
            if text:
                merged[name] = text
            else:
                merged.pop(name, None)
        chosen = dataclasses.replace(configured, **cast("dict[str, Any]", merged))  # raises ConfigError on a bad value
        if chosen.base_url == configured.base_url:
            merged.pop("base_url", None)
        elif "base_url" in changes and not self._may_choose(chosen.base_url):
            msg = (
                f"This Jupyter server only talks to the model server its configuration names "
                f"({configured.base_url}); JupyterLab cannot point it at {chosen.base_url}. An admin "
                "can allow that URL with CapRLApp.allowed_base_urls (or any URL with "
                "CapRLApp.allow_browser_base_url = True); such a server is sent no API key. Or clear "
                "the model server URL in JupyterLab's CapRL settings."
            )
            raise SettingNotAllowedError(msg)
        else:
            merged["base_url"] = chosen.base_url
        self._runtime = merged

    def _may_choose(self, base_url: str) -> bool:
        if self.allow_browser_base_url:
            return True
        return base_url in {url.strip().rstrip("/") for url in self.allowed_base_urls}
