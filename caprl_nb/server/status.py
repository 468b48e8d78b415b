"""The model server's health at a glance: reachable? which model? how busy?

Answers fast even when the model server is down (short timeouts) and caches each answer for
``ttl`` seconds, so every open JupyterLab polling it costs the model server one probe.
Load figures come from vLLM's Prometheus ``/metrics``. The result store is counted in a worker
thread, never on the Jupyter server's event loop; while another process holds the store's lock,
the answer carries the last count and says when it was taken.

States: ``up``, ``busy`` (requests are waiting), ``down`` (nothing usable answered: ``error``
says why) and ``no-model``: the server is up but serves several models, none called ``caprl``,
and none was chosen; ``models`` lists them and ``error`` says where to choose one.

A model server chosen in JupyterLab (not the one the Jupyter server's configuration names) is
not trusted: its error replies are summarised, never shown verbatim.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import openai

from caprl_nb.client import fetch_plain, fetch_server_info
from caprl_nb.config import DEFAULT_SERVED_NAME, Settings
from caprl_nb.errors import CapRLError, ModelNotChosenError, RequestRejectedError, ServerError
from caprl_nb.store import ResultStore

__all__ = ["StatusProbe", "parse_metrics", "redact", "summarise_untrusted"]

PROBE_TIMEOUT = 2.0
MAX_MODELS_SHOWN = 100
# How long a status answer waits for the store's count before it shows the last one.
STORE_WAIT = 0.025
_HTTP = re.compile(r"\bHTTP (\d{3})\b")  # our messages name the status before the server's words
_METRIC = re.compile(r"^(vllm:[a-z_]+)(?:\{[^}]*\})?\s+([-+0-9.eE]+|NaN)\s*$", re.M)


def parse_metrics(text: str) -> dict[str, float]:
    """Sum every ``vllm:*`` sample over its labels (engines, models)."""
    totals: dict[str, float] = {}
    for name, value in _METRIC.findall(text):
        if value != "NaN":
            totals[name] = totals.get(name, 0.0) + float(value)
    return totals


class StatusProbe:
    """``await probe.status(settings)``: the /caprl/status document."""

    def __init__(self, ttl: float = 2.0) -> None:
        self.ttl = ttl
        self._cached: tuple[float, tuple[str, str | None], dict[str, Any]] | None = None
        self._tokens: tuple[float, float] | None = None  # (time, generation tokens counter)
        self._lock = asyncio.Lock()
        self._count: tuple[Path, asyncio.Future[dict[str, Any]]] | None = None  # running
        self._counted: tuple[Path, dict[str, Any]] | None = None  # the last count

    async def status(self, settings: Settings, *, trusted: bool = True) -> dict[str, Any]:
        """The status document; ``trusted=False`` for a model server chosen in JupyterLab."""
        async with self._lock:
            now = time.monotonic()
            cached = self._cached
            which = (settings.base_url, settings.model)
            if not (cached and cached[1] == which and now - cached[0] < self.ttl):
                cached = (time.monotonic(), which, await self._probe(settings, trusted))
                self._cached = cached
            return {**cached[2], "store": await self._store(settings.store_path)}

    async def _store(self, path: Path) -> dict[str, Any]:
        """The store's summary, counted in a thread; the last one if the count is held up."""
        if self._count is None or self._count[0] != path:
            self._count = (path, asyncio.ensure_future(asyncio.to_thread(store_summary, path)))
        job = self._count[1]
        await asyncio.wait({job}, timeout=STORE_WAIT)
        if job.done():
            self._count = None
            self._counted = (path, job.result())
        if self._counted is not None and self._counted[0] == path:
            return self._counted[1]
        return {"path": str(path), "results": None, "bytes": None, "counted_at": None,
                "error": "The result store is busy (another process is writing to it); counting."}

    async def _probe(self, settings: Settings, trusted: bool) -> dict[str, Any]:
        urls = settings.base_urls
        if len(urls) == 1:
            return await self._probe_one(settings, trusted)
        # Several servers: each one's status under "servers"; the top level is the first that
        # answers (or the first), with the requests running and waiting summed over them all.
        found = await asyncio.gather(*(self._probe_one(settings.for_server(u), trusted, rate=False) for u in urls))
        up = [doc for doc in found if doc["state"] in ("up", "busy")]
        document = dict(up[0] if up else found[0])
        document["base_url"] = settings.base_url
        for name in ("requests_running", "requests_waiting"):
            values = [doc[name] for doc in up if doc[name] is not None]
            document[name] = sum(values) if values else None
        if up and any(doc["state"] == "busy" for doc in up):
            document["state"] = "busy"
        document["servers"] = [
            {k: doc[k] for k in ("base_url", "state", "root", "requests_running", "requests_waiting", "error")}
            for doc in found
        ]
        return document

    async def _probe_one(self, settings: Settings, trusted: bool, rate: bool = True) -> dict[str, Any]:
        quick = replace(settings, connect_timeout=PROBE_TIMEOUT, read_timeout=PROBE_TIMEOUT)
        document: dict[str, Any] = {
            "state": "down", "base_url": settings.base_url, "model": None, "root": None,
            "vllm_version": None, "max_model_len": None, "requests_running": None,
            "requests_waiting": None, "tokens_per_s": None, "error": None,
            "models": None, "checked_at": time.time(),
        }
        try:
            info, metrics_text = await asyncio.gather(
                fetch_server_info(quick, settings.model), fetch_plain(quick, "/metrics")
            )
        except ModelNotChosenError as exc:
            models = [str(m)[:200] for m in exc.models[:MAX_MODELS_SHOWN]]
            document.update(state="no-model", models=models, error=redact(_choose(models, settings), settings))
            self._tokens = None
            return document
        except (CapRLError, openai.APIError) as exc:
            # openai.APIError: a reply openai cannot read (not JSON, not a model list)
            shown = str(exc) if trusted and isinstance(exc, CapRLError) else _summary(exc, settings)
            document["error"] = redact(shown, settings)
            self._tokens = None
            return document
        document.update(
            state="up", model=info.model, root=info.root, vllm_version=info.version,
            max_model_len=info.max_model_len, models=list(info.models[:MAX_MODELS_SHOWN]),
        )
        if metrics_text:
            metrics = parse_metrics(metrics_text)
            running = metrics.get("vllm:num_requests_running")
            waiting = metrics.get("vllm:num_requests_waiting")
            document.update(requests_running=running, requests_waiting=waiting)
            if rate:  # one counter to follow: with several servers, none is
                document["tokens_per_s"] = self._rate(metrics.get("vllm:generation_tokens_total"))
            if waiting:
                document["state"] = "busy"
        return document

    def _rate(self, counter: float | None) -> float | None:
        if counter is None:
            return None
        now = time.monotonic()
        previous, self._tokens = self._tokens, (now, counter)
        if previous is None or now <= previous[0] or counter < previous[1]:
            return None
        return (counter - previous[1]) / (now - previous[0])


def store_summary(path: Path) -> dict[str, Any]:
    """How many results the store at ``path`` holds (blocking: SQLite; run it in a thread)."""
    summary: dict[str, Any] = {"path": str(path), "results": 0, "bytes": 0, "counted_at": time.time()}
    if not path.exists():
        return summary
    try:
        with ResultStore(path) as store:
            summary["results"] = store.count()
        summary["bytes"] = path.stat().st_size
    except (CapRLError, OSError) as exc:
        summary["error"] = str(exc)
    return summary


def redact(text: str, settings: Settings) -> str:
    """``text`` without the API key in it (a server may echo the request's headers)."""
    key = settings.api_key
    return text.replace(key, "***") if key not in ("", "EMPTY") else text


def _choose(models: list[str], settings: Settings) -> str:
    shown = ", ".join(map(repr, models[:10])) + (f" and {len(models) - 10} more" if len(models) > 10 else "")
    return (
        f"The model server at {settings.base_url} is up and serves several models ({shown}), none "
        f"called {DEFAULT_SERVED_NAME!r}. Choose one as the model in JupyterLab's CapRL settings, "
        "or set CapRLApp.model (or CAPRL_MODEL) for the Jupyter server."
    )


def _summary(exc: Exception, settings: Settings) -> str:
    """An error from a model server JupyterLab chose, in our words only: its reply is not shown."""
    cause: BaseException | None = exc
    while cause is not None and not isinstance(cause, openai.APIStatusError):
        cause = cause.__cause__
    if cause is None and isinstance(exc, CapRLError) and not isinstance(exc, RequestRejectedError):
        return str(exc)  # nothing answered: the message is ours (connection refused, timeout)
    status = f"HTTP {cause.status_code}" if isinstance(cause, openai.APIStatusError) else "a reply"
    return _in_our_words(status, settings)


def summarise_untrusted(kind: type[BaseException], text: str, settings: Settings) -> str:
    """A model server error from a server chosen in JupyterLab, in our words (its HTTP status).

    ``kind`` is the error's class and ``text`` its message (a failed row's error without its
    class name). Errors that hold no reply of that server (ours: refused, timed out, an image
    that cannot be read) come back as they are.
    """
    found = _HTTP.search(text) if issubclass(kind, ServerError) else None
    return text if found is None else _in_our_words(f"HTTP {found.group(1)}", settings)


def _in_our_words(status: str, settings: Settings) -> str:
    return (
        f"The server at {settings.base_url} answered {status}, not as a CapRL vLLM server would. "
        "Its reply is not shown for a model server chosen in JupyterLab; check the URL in "
        "JupyterLab's CapRL settings, or clear it to use the Jupyter server's own."
    )
