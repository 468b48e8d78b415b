"""One image, one task, awaited: the server extension's one way into the core.

:func:`run_one` runs a task over one image through the batch machinery (the store, the
checkpoint's identity, retries, the outage watch) and returns the row's :class:`RowResult`
with its provenance: ``checkpoint``, ``key``, ``server_version``, ``base_url``, ``created_at``,
``cached``, and ``error`` with ``error_type`` when it failed. Everything blocking (opening the
store, reading and hashing the image, SQLite reads and writes) runs in a worker thread with its
own event loop, so the caller's loop (the Jupyter server's) never waits on it.
"""

from __future__ import annotations

import asyncio

from caprl_nb.batch import BatchRunner, RowResult
from caprl_nb.config import Settings
from caprl_nb.prompts import Task

__all__ = ["RowResult", "run_one"]


async def run_one(task: Task, image: object, settings: Settings) -> RowResult:
    """``task`` over ``image``: the row's result and provenance (a failed row is data, not raised).

    Raises only what a batch raises before any row runs: no server at ``settings.base_url``
    (:class:`caprl_nb.errors.ServerUnavailableError`), a store that cannot be opened, a setting
    that cannot work.
    """
    return await asyncio.to_thread(_run_one, task, image, settings)


def _run_one(task: Task, image: object, settings: Settings) -> RowResult:
    """Blocking: the batch on its own event loop in this (worker) thread."""
    runner = BatchRunner(task, settings)
    seen: dict[int, RowResult] = {}
    try:
        results = asyncio.run(runner.run([image], 1, on_row=seen.__setitem__))
    finally:
        runner.close()
    return seen.get(0) or results[0]
