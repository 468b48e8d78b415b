"""The model server's health at a glance: reachable? which model? how busy?

Answers fast even when the model server is down (short timeouts) and caches each answer for
``ttl`` seconds, so every open JupyterLab polling it costs the model server one probe.
Load figures come from vLLM's Prometheus ``/metrics``.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import replace
from typing import Any

from caprl_nb.client import fetch_plain, fetch_server_info
from caprl_nb.config import Settings
from caprl_nb.errors import CapRLError
from caprl_nb.store import ResultStore

__all__ = ["StatusProbe", "parse_metrics"]

PROBE_TIMEOUT = 2.0
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
        self._cached: tuple[float, str, dict[str, Any]] | None = None
        self._tokens: tuple[float, float] | None = None  # (time, generation tokens counter)
        self._lock = asyncio.Lock()

    async def status(self, settings: Settings) -> dict[str, Any]:
        async with self._lock:
            now = time.monotonic()
            cached = self._cached
            if cached and cached[1] == settings.base_url and now - cached[0] < self.ttl:
                return cached[2]
            document = await self._probe(settings)
            self._cached = (time.monotonic(), settings.base_url, document)
            return document

    async def _probe(self, settings: Settings) -> dict[str, Any]:
        quick = replace(settings, connect_timeout=PROBE_TIMEOUT, read_timeout=PROBE_TIMEOUT)
        document: dict[str, Any] = {
            "state": "down", "base_url": settings.base_url, "model": None, "root": None,
            "vllm_version": None, "max_model_len": None, "requests_running": None,
            "requests_waiting": None, "tokens_per_s": None, "error": None,
            "store": _store_summary(settings), "checked_at": time.time(),
        }
        try:
            info, metrics_text = await asyncio.gather(
                fetch_server_info(quick, settings.model), fetch_plain(quick, "/metrics")
            )
        except CapRLError as exc:
            document["error"] = str(exc)
            self._tokens = None
            return document
        document.update(
            state="up", model=info.model, root=info.root, vllm_version=info.version,
            max_model_len=info.max_model_len,
        )
        if metrics_text:
            metrics = parse_metrics(metrics_text)
            running = metrics.get("vllm:num_requests_running")
            waiting = metrics.get("vllm:num_requests_waiting")
            document.update(requests_running=running, requests_waiting=waiting)
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


def _store_summary(settings: Settings) -> dict[str, Any]:
    path = settings.store_path
    summary: dict[str, Any] = {"path": str(path), "results": 0, "bytes": 0}
    if not path.exists():
        return summary
    try:
        with ResultStore(path) as store:
            summary["results"] = store.count()
        summary["bytes"] = path.stat().st_size
    except (CapRLError, OSError) as exc:
        summary["error"] = str(exc)
    return summary
