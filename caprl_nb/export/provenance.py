"""Where each exported text came from: the result store's record of the answer.

A row's answer is found by its image's hash (what :func:`caprl_nb.images.identify` gives, the
hash the batch keyed it by) and its original text (the model's caption, or an extraction's
``raw`` answer): the store holds every answer with the checkpoint, served alias, prompt and
sampling as sent. Several stored answers with that image and text (the same caption from two
checkpoints) are told apart by the frame's ``checkpoint`` column when it has one, else the
newest wins. A row whose answer is not in the store (a store on another machine, ``cache=False``)
keeps what the frame itself says (``model``, ``checkpoint``) and NA for the rest.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from caprl_nb.config import resolve_settings
from caprl_nb.store import IN_CHUNK, ResultStore

__all__ = ["FIELDS", "Provenance", "iso_time", "open_provenance"]

FIELDS = ("task", "model", "checkpoint", "prompt", "sampling", "server_version", "answered_at")
"""The provenance columns of every exported row (text; NA where unknown)."""

_SAMPLING = ("temperature", "top_p", "repetition_penalty", "max_tokens", "seed", "max_model_len")


def iso_time(seconds: float | None) -> str | None:
    """Seconds since the epoch as ISO 8601 in UTC (``2026-12-02T07:01:02.345678+00:00``)."""
    if seconds is None:
        return None
    return datetime.fromtimestamp(float(seconds), tz=timezone.utc).isoformat()


class Provenance:
    """Looks up rows' stored answers in one result store (or in none: ``store=None``)."""

    def __init__(self, store: ResultStore | None) -> None:
        self.store = store

    def lookup(
        self, hashes: Sequence[str | None], texts: Sequence[str | None], checkpoints: Sequence[str | None]
    ) -> list[dict[str, Any]]:
        """Each row's provenance fields (:data:`FIELDS`); {} for a row whose answer is not stored."""
        found: dict[str, list[tuple[Any, ...]]] = {}
        wanted = sorted({h for h, t in zip(hashes, texts) if h and t is not None})
        if self.store is not None:
            for start in range(0, len(wanted), IN_CHUNK):
                chunk = wanted[start : start + IN_CHUNK]
                rows = self.store.read(
                    "SELECT image_sha256, text, task, model, checkpoint, model_root, params, "
                    "server_version, created_at FROM results "
                    f"WHERE image_sha256 IN ({', '.join('?' * len(chunk))})",
                    tuple(chunk),
                )
                for row in rows:
                    found.setdefault(row[0], []).append(row)
        out = []
        for sha, text, checkpoint in zip(hashes, texts, checkpoints):
            candidates = [r for r in found.get(sha or "", []) if r[1] == text]
            best = _best(candidates, checkpoint)
            out.append({} if best is None else _fields(best, checkpoint))
        return out

    def close(self) -> None:
        if self.store is not None:
            self.store.close()


def _best(candidates: list[tuple[Any, ...]], checkpoint: str | None) -> tuple[Any, ...] | None:
    if not candidates:
        return None
    same = [r for r in candidates if checkpoint is not None and (r[4] or r[5]) == checkpoint]
    return max(same or candidates, key=lambda r: r[8] or 0.0)


def _fields(row: tuple[Any, ...], checkpoint: str | None) -> dict[str, Any]:
    _, _, task, model, stored_checkpoint, root, params_text, version, created_at = row
    try:
        params = json.loads(params_text) if params_text else {}
    except ValueError:
        params = {}
    params = params if isinstance(params, dict) else {}
    sampling = {k: params[k] for k in _SAMPLING if k in params}
    return {
        "task": task,
        "model": model,
        "checkpoint": stored_checkpoint or root or checkpoint,
        "prompt": params.get("prompt"),
        "sampling": json.dumps(sampling, sort_keys=True) if sampling else None,
        "server_version": version,
        "answered_at": iso_time(created_at),
    }


def open_provenance(enabled: bool, home: str | Path | None) -> Provenance:
    """The result store of ``home`` (CAPRL_HOME by default), read only when it exists."""
    if not enabled:
        return Provenance(None)
    path = resolve_settings(home=home).store_path
    return Provenance(ResultStore(path) if path.exists() else None)
