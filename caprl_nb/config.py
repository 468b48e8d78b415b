"""Client settings: one object, one lookup order.

For every setting the first of these that is set wins:

1. the keyword argument of the call (``df.caprl.caption(..., base_url=...)``);
2. :func:`configure` (process-wide, e.g. at the top of a notebook);
3. the environment (``CAPRL_BASE_URL``, ``CAPRL_MODEL``, ``CAPRL_API_KEY``, ``CAPRL_HOME``,
   ``CAPRL_CONCURRENCY``, ``CAPRL_CONNECT_TIMEOUT``, ``CAPRL_READ_TIMEOUT``, ``CAPRL_MAX_RETRIES``,
   ``CAPRL_PRESET``, ``CAPRL_WAIT_FOR_SERVER``, ``CAPRL_OUTAGE_TIMEOUT``, ``CAPRL_URL_TIMEOUT``,
   ``CAPRL_OFFLINE``);
4. the defaults below.

``configure(name=None)`` unsets that process-wide default again (the environment, then the
default, applies); a ``None`` call argument means "not given".

``model=None`` means "ask the server": the single model ``/v1/models`` lists, else ``caprl``
(the served name the CapRL authors use); a server with several models and none called
``caprl`` is a :class:`~caprl_nb.errors.ConfigError` listing them, before any row is sent. The
served name is only an alias: results are keyed by the checkpoint the server reports it loaded
(see :mod:`caprl_nb.plan`).

The API key never appears in a repr or a message.
"""

from __future__ import annotations

import dataclasses
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from caprl_nb.errors import ConfigError

__all__ = ["Settings", "configure", "default_home", "resolve_settings"]

DEFAULT_BASE_URL = "http://localhost:8000/v1"
DEFAULT_SERVED_NAME = "caprl"


def default_home() -> Path:
    """The per-user cache directory where the result store lives when CAPRL_HOME is unset."""
    if sys.platform == "win32":
        root = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    elif sys.platform == "darwin":
        root = Path.home() / "Library" / "Caches"
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return root / "caprl_nb"


@dataclass(frozen=True)
class Settings:
    """Everything the client needs to reach a server and pace a batch."""

    # One server, or several: a list or comma-separated URLs (CAPRL_BASE_URL=a,b); see base_urls.
    base_url: str = DEFAULT_BASE_URL
    model: str | None = None
    api_key: str = "EMPTY"
    home: Path = field(default_factory=default_home)
    # vLLM batches 256-1024 sequences; 256 in flight keeps one server busy without
    # piling up a long queue of timed-out requests on a small one.
    concurrency: int = 256
    connect_timeout: float = 10.0
    # A 2048-token caption behind a full batch can take minutes on a busy server.
    read_timeout: float = 600.0
    max_retries: int = 5
    # Cap for any single backoff sleep (seconds), Retry-After included.
    max_backoff: float = 60.0
    # The model family whose image arithmetic to use ("qwen2.5-vl", "qwen3-vl", "internvl3.5");
    # None: inferred from the checkpoint the server reports (a warning when it has to guess).
    preset: str | None = None
    # Seconds a batch waits at its start for a server that is not up yet (still loading).
    wait_for_server: float = 0.0
    # Seconds a batch waits for a server that stopped answering mid-batch before it ends,
    # every unfinished row failing with one error: long enough for a proxy blip or a restart.
    outage_timeout: float = 30.0
    # Seconds one image URL may take to download in all (connect, redirects, headers, body), so
    # a slow or stalled host fails its row instead of holding a worker for a read timeout per byte.
    url_timeout: float = 60.0
    # Answer from the result store only, without a server (as the checkpoint last seen there).
    offline: bool = False

    def __post_init__(self) -> None:
        given = self.base_url
        if isinstance(given, (list, tuple)):
            urls = [str(u).strip() for u in given]
        else:
            urls = [u.strip() for u in str(given).split(",")]
        if not urls or any(not u for u in urls):
            raise ConfigError(
                f"base_url has an empty entry ({given!r}). Give one URL, a list of URLs, or "
                "comma-separated URLs, e.g. http://gpu1:8000/v1,http://gpu2:8000/v1."
            )
        for url in urls:
            if not url.startswith(("http://", "https://")):
                raise ConfigError(
                    f"base_url must start with http:// or https://, got {url!r}. "
                    "Use the OpenAI-compatible root of the server, e.g. http://localhost:8000/v1."
                )
        urls = list(dict.fromkeys(u.rstrip("/") for u in urls))  # the same server once
        # Several servers are kept as one comma-separated string (see base_urls).
        object.__setattr__(self, "base_url", ",".join(urls))
        object.__setattr__(self, "home", Path(self.home).expanduser())
        for name in ("concurrency",):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}.")
        if self.preset is not None:
            from caprl_nb.models import preset_named

            preset_named(self.preset)  # a ConfigError naming the known presets
        if not isinstance(self.wait_for_server, (int, float)) or not self.wait_for_server >= 0:
            raise ConfigError(
                f"wait_for_server must be a number of seconds >= 0, got {self.wait_for_server!r}."
            )
        if not isinstance(self.max_retries, int) or self.max_retries < 0:
            raise ConfigError(f"max_retries must be an integer >= 0, got {self.max_retries!r}.")
        for name in ("connect_timeout", "read_timeout", "max_backoff", "outage_timeout", "url_timeout"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < math.inf:
                raise ConfigError(
                    f"{name} must be a positive number of seconds, got {value!r}; "
                    "timeouts are always finite."
                )

    def __repr__(self) -> str:
        shown = []
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "api_key" and value not in ("", "EMPTY"):
                value = "***"
            shown.append(f"{f.name}={value!r}")
        return f"Settings({', '.join(shown)})"

    @property
    def store_path(self) -> Path:
        return self.home / "results.sqlite3"

    @property
    def base_urls(self) -> tuple[str, ...]:
        """Every server of the call (``base_url=`` may name several: a list, or commas)."""
        return tuple(self.base_url.split(","))

    def for_server(self, base_url: str) -> Settings:
        """These settings for one of :attr:`base_urls`."""
        return dataclasses.replace(self, base_url=base_url)

    @property
    def server_root(self) -> str:
        """The server's origin, where vLLM answers /health, /version and /metrics (the first
        server's, when there are several)."""
        url = self.base_urls[0]
        return url[: -len("/v1")] if url.endswith("/v1") else url


def _flag(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(text)


_ENV: dict[str, tuple[str, Callable[[str], Any]]] = {
    "base_url": ("CAPRL_BASE_URL", str),
    "model": ("CAPRL_MODEL", str),
    "api_key": ("CAPRL_API_KEY", str),
    "home": ("CAPRL_HOME", Path),
    "concurrency": ("CAPRL_CONCURRENCY", int),
    "connect_timeout": ("CAPRL_CONNECT_TIMEOUT", float),
    "read_timeout": ("CAPRL_READ_TIMEOUT", float),
    "max_retries": ("CAPRL_MAX_RETRIES", int),
    "preset": ("CAPRL_PRESET", str),
    "wait_for_server": ("CAPRL_WAIT_FOR_SERVER", float),
    "outage_timeout": ("CAPRL_OUTAGE_TIMEOUT", float),
    "url_timeout": ("CAPRL_URL_TIMEOUT", float),
    "offline": ("CAPRL_OFFLINE", _flag),
}

_configured: dict[str, Any] = {}
_NAMES = {f.name for f in fields(Settings)}


def _check_names(options: dict[str, Any]) -> None:
    unknown = sorted(set(options) - _NAMES)
    if unknown:
        raise ConfigError(
            f"Unknown setting(s) {', '.join(unknown)}. Known settings: {', '.join(sorted(_NAMES))}."
        )


def configure(**options: Any) -> Settings:
    """Set process-wide defaults (above the environment, below call arguments).

    ``configure(name=None)`` unsets that one default again (the environment, then the built-in
    default, applies); ``configure()`` with no arguments clears them all. Returns the settings
    now in force; settings that are not valid raise and change nothing.
    """
    _check_names(options)
    if not options:
        _configured.clear()
        return resolve_settings()
    updated = {**_configured, **options}
    updated = {k: v for k, v in updated.items() if v is not None}
    Settings(**{**_from_env(), **updated})  # a ConfigError here leaves the defaults as they were
    _configured.clear()
    _configured.update(updated)
    return resolve_settings()


def _from_env() -> dict[str, Any]:
    values: dict[str, Any] = {}
    for name, (var, kind) in _ENV.items():
        raw = os.environ.get(var)
        if raw is None or raw == "":
            continue
        try:
            values[name] = kind(raw)
        except ValueError as exc:
            what = "flag (1/0, true/false)" if kind is _flag else kind.__name__
            msg = f"Environment variable {var}={raw!r} is not a valid {what}; fix or unset it."
            raise ConfigError(msg) from exc
    return values


def resolve_settings(**overrides: Any) -> Settings:
    """Settings for one call: ``overrides`` (None means unset) > configure() > env > defaults."""
    given = {k: v for k, v in overrides.items() if v is not None}
    _check_names(given)
    merged: dict[str, Any] = {**_from_env(), **_configured, **given}
    return Settings(**merged)


def replace(settings: Settings, **changes: Any) -> Settings:
    return dataclasses.replace(settings, **changes)
