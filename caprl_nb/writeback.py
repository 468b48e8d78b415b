"""Result-store writes behind the batch: off the event loop, many rows per transaction.

Each answer used to be its own ``BEGIN IMMEDIATE ... COMMIT`` on the event loop: a few hundred
microseconds of CPU and a wait for the file lock per row, and up to ``BUSY_GIVE_UP_S`` of a
stalled loop (every request in flight waiting) while another process held the store. Here one
thread writes whatever has queued up since its last transaction, in one transaction, so the
batch sizes adapt to the rate: one row per write at a trickle, hundreds under load.

What is queued is written before :meth:`WriteBehind.close` returns, so a batch that ends
(finished, interrupted or given up) leaves every answer it received in the store. A write that
fails costs a note and the next run's re-use of those rows, never a row's answer.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

from caprl_nb.errors import StoreError
from caprl_nb.images import FileStat, UrlMemo
from caprl_nb.store import ResultStore

__all__ = ["WriteBehind"]

# Rows per transaction at most: a transaction holds the store's lock, which other processes
# captioning into the same store wait for.
MAX_BATCH = 512

_STOP = object()


class WriteBehind:
    """Queue answers and memos for ``store``; a thread writes them, many per transaction."""

    def __init__(self, store: ResultStore, on_error: Callable[[str], None]) -> None:
        self.store = store
        self._on_error = on_error
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name="caprl-store-writer", daemon=True)
        self._thread.start()
        self._closed = False

    # -- what the batch queues ----------------------------------------------------------
    def put(self, fields: dict[str, Any]) -> None:
        """One answer (``ResultStore.put``'s fields)."""
        self._queue.put(("result", fields))

    def remember_file_hash(self, stat: FileStat, sha256: str) -> None:
        self._queue.put(("file", (stat, sha256)))

    def remember_url(self, url: str, memo: UrlMemo) -> None:
        self._queue.put(("url", (url, memo)))

    def flush(self) -> None:
        """Wait until everything queued before this call is written (or has failed)."""
        done = threading.Event()
        self._queue.put(("flush", done))
        done.wait()

    def close(self) -> None:
        """Write what is queued, then stop the thread."""
        if self._closed:
            return
        self._closed = True
        self._queue.put(_STOP)
        self._thread.join()

    # -- the writer thread ----------------------------------------------------------------
    def _run(self) -> None:
        q = self._queue
        stopped = False
        while not stopped:
            items = [q.get()]
            stopped = items[0] is _STOP
            while len(items) < MAX_BATCH or stopped:  # after the stop: whatever is left, all of it
                try:
                    item = q.get_nowait()
                except queue.Empty:
                    break
                stopped = stopped or item is _STOP
                items.append(item)
            self._drain(items)

    def _drain(self, items: list[Any]) -> None:
        """Write ``items`` in one transaction, then wake their flushes."""
        results: list[dict[str, Any]] = []
        files: list[tuple[FileStat, str]] = []
        urls: list[tuple[str, UrlMemo]] = []
        flushes: list[threading.Event] = []
        for item in items:
            if item is _STOP:
                continue
            kind, payload = item
            if kind == "result":
                results.append(payload)
            elif kind == "file":
                files.append(payload)
            elif kind == "url":
                urls.append(payload)
            else:
                flushes.append(payload)
        self._write(results, files, urls)
        for event in flushes:
            event.set()

    def _write(
        self, results: list[dict[str, Any]], files: list[tuple[FileStat, str]], urls: list[tuple[str, UrlMemo]],
    ) -> None:
        if not (results or files or urls):
            return
        try:
            self.store.write_many(results=results, file_hashes=files, urls=urls)
        except StoreError as exc:
            if results:
                self._on_error(f"Some answers could not be stored (a re-run asks again): {exc}")
            if files or urls:
                self._on_error(f"The result store could not keep a memo (a re-run redoes that work): {exc}")
        except Exception as exc:  # noqa: BLE001 - the thread must go on; the batch hears of it
            self._on_error(f"Some answers could not be stored (a re-run asks again): {exc!r}")
