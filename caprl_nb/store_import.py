"""Merge another result store into this one (``caprl-nb store import OTHER.sqlite3``).

A Ray job on a multi-node cluster leaves each node's answers in that node's store (unless
CAPRL_HOME is on storage every node shares). Importing a node's ``results.sqlite3`` here makes
its answers this store's: the notebook's gallery shows them and re-runs ask for none of them.

Results are copied with their provenance (checkpoint, server, parameters, tokens, timestamps)
exactly as stored; a key already here keeps this store's row (``INSERT OR IGNORE``). The file
hash and URL memos are copied the same way (a memo is only trusted while the file's size,
times and inode, or the URL's validators, still match, so a foreign one costs nothing). Review
decisions and the servers seen are not imported. Importing the same store twice adds nothing.

The other store is opened read-only. One written by an older caprl_nb is first copied to a
temporary file and brought up to date there; one written by a newer caprl_nb is refused.
"""

from __future__ import annotations

import contextlib
import sqlite3
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from caprl_nb import migrations
from caprl_nb.errors import StoreError
from caprl_nb.store import ResultStore

__all__ = ["IMPORTED_TABLES", "ImportCounts", "import_store"]

# The tables merged, in order. Each has one primary key, so INSERT OR IGNORE keeps what is here.
IMPORTED_TABLES = ("results", "file_hashes", "url_hashes")
# Rows read from the other store and written here per transaction: a long import never holds
# the write lock for long (a notebook may be captioning into this store meanwhile).
CHUNK_ROWS = 2000


@dataclass(frozen=True)
class ImportCounts:
    """What an import found in the other store and how much of it was new here."""

    results: int
    new_results: int
    file_hashes: int
    new_file_hashes: int
    url_hashes: int
    new_url_hashes: int

    def __str__(self) -> str:
        return (
            f"{self.new_results:,} new result(s) of {self.results:,} "
            f"({self.results - self.new_results:,} already here); "
            f"{self.new_file_hashes:,} new file hash(es), {self.new_url_hashes:,} new URL memo(s)"
        )


def import_store(store: ResultStore, other: str | Path) -> ImportCounts:
    """Copy into ``store`` every result (and file hash and URL memo) of the store at ``other``
    that it does not hold yet; see the module docstring. Safe to repeat and to interrupt."""
    source = Path(other).expanduser()
    if not source.is_file():
        msg = (
            f"No result store at {source}. Pass the path of another store's results.sqlite3 "
            "(a node's $CAPRL_HOME/results.sqlite3, copied here)."
        )
        raise StoreError(msg)
    if source.resolve() == store.path.resolve():
        msg = f"{source} is this store itself; pass another node's store to import."
        raise StoreError(msg)
    counts: dict[str, tuple[int, int]] = {}
    try:
        with _up_to_date(source) as db:
            for table in IMPORTED_TABLES:
                counts[table] = _copy(db, store, table)
    except sqlite3.Error as exc:
        msg = (
            f"Cannot read the result store at {source}: {exc}. Copy it after its job ended "
            f"(or with `sqlite3 {source} '.backup copy.sqlite3'`) and import the copy."
        )
        raise StoreError(msg) from exc
    return ImportCounts(*counts["results"], *counts["file_hashes"], *counts["url_hashes"])


def _open_read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True, isolation_level=None)


@contextlib.contextmanager
def _up_to_date(source: Path) -> Iterator[sqlite3.Connection]:
    """A read-only connection to ``source``, or to an up-to-date copy of an older store."""
    db = _open_read_only(source)
    try:
        state = migrations.applied(db)
        if state is None:
            msg = f"{source} is not a caprl_nb result store (it has no schema record)."
            raise StoreError(msg)
        done, by_name = state
        migrations.check_not_newer(done, source)
        if by_name and not migrations.pending(done):
            yield db
            return
        with tempfile.TemporaryDirectory(prefix="caprl-import-") as folder:
            copy_path = Path(folder) / "results.sqlite3"
            copy = sqlite3.connect(copy_path)
            try:
                db.backup(copy)
            finally:
                copy.close()
            ResultStore(copy_path).close()  # runs the missing migrations on the copy
            upgraded = _open_read_only(copy_path)
            try:
                yield upgraded
            finally:
                upgraded.close()
    finally:
        db.close()


def _columns(db: sqlite3.Connection, table: str) -> list[str]:
    return [row[1] for row in db.execute(f"PRAGMA table_info({table})")]


def _copy(db: sqlite3.Connection, store: ResultStore, table: str) -> tuple[int, int]:
    """(rows in the other store's ``table``, rows of them new here)."""
    here = [row[1] for row in store.read(f"PRAGMA table_info({table})")]
    there = set(_columns(db, table))
    columns = [c for c in here if c in there]
    seen = new = 0
    cursor = db.execute(f"SELECT {', '.join(columns)} FROM {table}")
    while True:
        rows = cursor.fetchmany(CHUNK_ROWS)
        if not rows:
            return seen, new
        seen += len(rows)
        new += store.insert_new(table, columns, rows)
