"""Review decisions, kept in the result store's SQLite file (its ``reviews`` table).

A decision is keyed by :func:`caprl_nb.widgets.reviews.item_key` (the row's image and original
text), so a gallery reopened on the same rows, in any later kernel, shows it again. The table
is made by the store's migrations (:mod:`caprl_nb.migrations`); reads and writes go through the
store's connection, so they share its locking and its retries while another process writes.
"""

from __future__ import annotations

import time

from caprl_nb.store import ResultStore

__all__ = ["ReviewStore"]

_CHUNK = 500  # items per query: under SQLite's limit on bound parameters


class ReviewStore:
    """The review decisions in one result store; :meth:`close` closes the store."""

    def __init__(self, store: ResultStore) -> None:
        self.store = store

    def empty(self) -> bool:
        """Whether no decision is stored at all (then no row needs looking up)."""
        return not self.store.read("SELECT 1 FROM reviews LIMIT 1")

    def decisions(self, items: list[str]) -> dict[str, tuple[str, str | None, float]]:
        """Stored decisions for ``items``: item -> (status, edited text, decision time)."""
        found: dict[str, tuple[str, str | None, float]] = {}
        for start in range(0, len(items), _CHUNK):
            chunk = items[start : start + _CHUNK]
            rows = self.store.read(
                "SELECT item, status, edited_caption, updated_at FROM reviews "
                f"WHERE item IN ({', '.join('?' for _ in chunk)})",
                tuple(chunk),
            )
            found.update({item: (status, edited, at) for item, status, edited, at in rows})
        return found

    def put(self, item: str, status: str, edited: str | None, at: float | None = None) -> None:
        """Record a decision made at ``at`` (seconds since the epoch; now by default);
        ``status="unreviewed"`` forgets it."""
        if status == "unreviewed":
            self.store.write("DELETE FROM reviews WHERE item = ?", (item,))
        else:
            self.store.write(
                "INSERT OR REPLACE INTO reviews VALUES (?, ?, ?, ?)",
                (item, status, edited, time.time() if at is None else at),
            )

    def close(self) -> None:
        self.store.close()
