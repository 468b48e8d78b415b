"""The result store's schema changes: named migrations, applied once each (as simonw/llm does).

Each migration is a function decorated with :func:`migration`; the list :data:`MIGRATIONS` is
append-only, in the order they run. The ``_migrations`` table records each one by name when it
runs, in the same transaction. Never rename, edit or reorder a migration that has shipped:
append a new one.

Stores written before migrations were recorded by name hold a ``schema_migrations`` table that
lists them by number (1 to 6, the first six here). The first open by this version records
their names in ``_migrations`` (with the times they ran) and runs none of them again;
``schema_migrations`` is left as it is.

The transaction itself (``BEGIN IMMEDIATE``, read again what ran, retry while locked) belongs to
:mod:`caprl_nb.store`, which calls :func:`applied` for its read-only fast path and
:func:`upgrade` inside its write.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from caprl_nb.errors import StoreError

__all__ = ["MIGRATIONS", "NUMBERED", "applied", "check_not_newer", "migration", "pending", "upgrade"]

Migration = Callable[[sqlite3.Connection], None]

MIGRATIONS: list[Migration] = []

# How many migrations stores recorded by number: schema_migrations' version n is MIGRATIONS[n-1].
NUMBERED = 6


def migration(function: Migration) -> Migration:
    """Append ``function`` to :data:`MIGRATIONS`; it is recorded under its name when it runs."""
    MIGRATIONS.append(function)
    return function


@migration
def m001_results(db: sqlite3.Connection) -> None:
    db.execute(
        """
        CREATE TABLE results (
            key TEXT PRIMARY KEY,
            task TEXT NOT NULL,
            image_sha256 TEXT NOT NULL,
            input TEXT,
            model TEXT NOT NULL,
            model_root TEXT,
            base_url TEXT,
            server_version TEXT,
            params TEXT NOT NULL,
            text TEXT NOT NULL,
            finish_reason TEXT,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            latency_s REAL,
            sent_width INTEGER,
            sent_height INTEGER,
            created_at REAL NOT NULL
        )
        """
    )
    db.execute("CREATE INDEX results_image ON results (image_sha256)")


@migration
def m002_file_hashes(db: sqlite3.Connection) -> None:
    # (path, size, mtime) -> sha256, so a re-run over unchanged files reads no image bytes.
    db.execute(
        """
        CREATE TABLE file_hashes (
            path TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            sha256 TEXT NOT NULL
        )
        """
    )


@migration
def m003_servers(db: sqlite3.Connection) -> None:
    # What each base URL served last (offline=True answers as that checkpoint, and says so).
    db.execute(
        """
        CREATE TABLE servers (
            base_url TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            model_root TEXT,
            max_model_len INTEGER,
            version TEXT,
            seen_at REAL NOT NULL
        )
        """
    )


@migration
def m004_reviews(db: sqlite3.Connection) -> None:
    # A reviewer's decision on one (image, caption) pair: keyed by widgets.reviews.item_key.
    db.execute(
        """
        CREATE TABLE reviews (
            item TEXT PRIMARY KEY,
            status TEXT NOT NULL,
            edited_caption TEXT,
            updated_at REAL NOT NULL
        )
        """
    )


@migration
def m005_checkpoints(db: sqlite3.Connection) -> None:
    # Keys name the checkpoint (key_version 2). Older rows keep key_version 1 and answer only
    # once a user adopts them for a checkpoint (adopted_as).
    db.execute("ALTER TABLE results ADD COLUMN checkpoint TEXT")
    db.execute("ALTER TABLE results ADD COLUMN key_version INTEGER NOT NULL DEFAULT 1")
    db.execute("ALTER TABLE results ADD COLUMN adopted_as TEXT")
    db.execute("CREATE INDEX results_adopted ON results (adopted_as) WHERE adopted_as IS NOT NULL")
    db.execute("ALTER TABLE servers ADD COLUMN parent TEXT")


@migration
def m006_file_hashes_racy(db: sqlite3.Connection) -> None:
    # The memo also checks inode and ctime, and knows when it was written, so a file rewritten
    # within the filesystem's timestamp resolution is hashed again (git's "racy" rule).
    db.execute("DROP TABLE file_hashes")
    db.execute(
        """
        CREATE TABLE file_hashes (
            path TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            ino INTEGER NOT NULL,
            ctime_ns INTEGER NOT NULL,
            sha256 TEXT NOT NULL
        )
        """
    )


@migration
def m007_url_inputs_without_secrets(db: sqlite3.Connection) -> None:
    # Versions before 0.2 stored a URL row's input with its query string and user info (a
    # presigned URL's signature, a password). Keep only scheme, host and path, as now stored.
    from caprl_nb.fetch import public_url  # here: opening a store never needs httpx otherwise

    (secure,) = db.execute("PRAGMA secure_delete").fetchone()
    db.execute("PRAGMA secure_delete = ON")  # the old text is zeroed, not left in a free page
    for key, text in db.execute("SELECT key, input FROM results WHERE input LIKE 'URL %'").fetchall():
        url = text[4:]
        head, cut, _ = url.partition("...")  # shortened in the middle: the tail may be a query
        shown = "URL " + public_url(head) + ("..." if cut else "")
        if shown != text:
            db.execute("UPDATE results SET input = ? WHERE key = ?", (shown, key))
    db.execute(f"PRAGMA secure_delete = {int(secure)}")


@migration
def m008_url_hashes(db: sqlite3.Connection) -> None:
    # sha256(full URL) -> what its server said (ETag, Last-Modified) and the content's sha256, so
    # a re-run asks "changed?" and downloads nothing on 304. Keyed by a hash: the URL and its
    # query string (a presigned token) are never stored.
    db.execute(
        """
        CREATE TABLE url_hashes (
            key TEXT PRIMARY KEY,
            etag TEXT,
            last_modified TEXT,
            sha256 TEXT NOT NULL,
            seen_at REAL
        )
        """
    )


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,))
    return found.fetchone() is not None


def _numbered(db: sqlite3.Connection) -> dict[str, float]:
    """A store recorded by number: the names of its migrations and when each ran.

    A number this version does not know (past :data:`NUMBERED`) is named ``"#<n>"``, so the
    store is refused as newer.
    """
    names = [m.__name__ for m in MIGRATIONS[:NUMBERED]]
    rows = db.execute("SELECT version, applied_at FROM schema_migrations").fetchall()
    return {(names[v - 1] if 1 <= v <= len(names) else f"#{v}"): float(at) for v, at in rows}


def applied(db: sqlite3.Connection) -> tuple[set[str], bool] | None:
    """The names of the migrations that ran, and whether the store records them by name;
    None for a new store (no record at all). Reads only."""
    if _has_table(db, "_migrations"):
        return {name for (name,) in db.execute("SELECT name FROM _migrations")}, True
    if _has_table(db, "schema_migrations"):
        return set(_numbered(db)), False
    return None


def pending(done: set[str]) -> list[Migration]:
    """The migrations not in ``done``, in order."""
    return [m for m in MIGRATIONS if m.__name__ not in done]


def check_not_newer(done: set[str], path: Path) -> None:
    """Refuse a store that ran migrations this version does not know (a newer caprl_nb's)."""
    unknown = sorted(done - {m.__name__ for m in MIGRATIONS})
    if unknown:
        msg = (
            f"The result store at {path} was written by a newer caprl_nb (its schema has "
            f"{', '.join(unknown)}, which this one does not know; it knows {len(MIGRATIONS)} "
            "migrations). Upgrade caprl_nb or set CAPRL_HOME to another directory."
        )
        raise StoreError(msg)


def upgrade(db: sqlite3.Connection, path: Path) -> None:
    """Record a numbered store's migrations by name, then run every missing one; call inside
    one write transaction (all of them, or none), which this reads again first."""
    state = applied(db)
    done, by_name = state if state is not None else (set(), False)
    check_not_newer(done, path)
    if not by_name:
        db.execute("CREATE TABLE _migrations (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)")
        if state is not None:
            db.executemany("INSERT INTO _migrations VALUES (?, ?)", _numbered(db).items())
    for step in pending(done):
        step(db)
        db.execute("INSERT INTO _migrations VALUES (?, ?)", (step.__name__, time.time()))
