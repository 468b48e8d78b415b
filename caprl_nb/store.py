"""The SQLite result store: every answer remembered, so re-runs are free and runs resumable.

A result is keyed by ``Task.cache_key(image sha256, model)``, a hash of the image bytes, the
model and every parameter that changes the answer. It is written the moment its row finishes,
with its provenance (server URL, vLLM version, parameters, tokens, latency, finish reason,
timestamp). Failed rows are never stored, so the next run retries them.

Schema changes are an append-only list of migrations (``MIGRATIONS``); the ``schema_migrations``
table records which ran. Never edit or reorder a migration that has shipped: append a new one.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from caprl_nb.errors import StoreError

__all__ = ["MIGRATIONS", "ResultStore", "StoredResult"]


def _m001_results(db: sqlite3.Connection) -> None:
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


def _m002_file_hashes(db: sqlite3.Connection) -> None:
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


def _m003_servers(db: sqlite3.Connection) -> None:
    # What each base URL served last, so cached rows can be answered with the server down.
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


def _m004_reviews(db: sqlite3.Connection) -> None:
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


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _m001_results,
    _m002_file_hashes,
    _m003_servers,
    _m004_reviews,
]


@dataclass(frozen=True)
class StoredResult:
    key: str
    text: str
    model: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float | None
    created_at: float


_RESULT_FIELDS = (
    "key", "task", "image_sha256", "input", "model", "model_root", "base_url", "server_version",
    "params", "text", "finish_reason", "prompt_tokens", "completion_tokens", "latency_s",
    "sent_width", "sent_height", "created_at",
)


class ResultStore:
    """A thread-safe handle on one SQLite file (WAL; one connection guarded by a lock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, timeout=30.0, isolation_level=None
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            msg = (
                f"Cannot open the result store at {self.path}: {exc}. Set CAPRL_HOME to a "
                "writable directory, or pass cache=False to run without it."
            )
            raise StoreError(msg) from exc

    # -- schema ---------------------------------------------------------------------------
    def _migrate(self) -> None:
        db = self._db
        db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)"
        )
        done = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
        if done and max(done) > len(MIGRATIONS):
            msg = (
                f"The result store at {self.path} was written by a newer caprl_nb (schema "
                f"{max(done)}, this one knows {len(MIGRATIONS)}). Upgrade caprl_nb or set "
                "CAPRL_HOME to another directory."
            )
            raise StoreError(msg)
        for version, migration in enumerate(MIGRATIONS, start=1):
            if version in done:
                continue
            db.execute("BEGIN IMMEDIATE")
            try:
                migration(db)
                db.execute(
                    "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                    (version, migration.__name__.lstrip("_"), time.time()),
                )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    @property
    def schema_version(self) -> int:
        with self._lock:
            row = self._db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    # -- results --------------------------------------------------------------------------
    def _run(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            with self._lock:
                return self._db.execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            msg = f"The result store at {self.path} failed: {exc}. Check the disk, or pass cache=False."
            raise StoreError(msg) from exc

    def get(self, key: str) -> StoredResult | None:
        rows = self._run(
            "SELECT key, text, model, finish_reason, prompt_tokens, completion_tokens, latency_s, "
            "created_at FROM results WHERE key = ?",
            (key,),
        )
        return StoredResult(*rows[0]) if rows else None

    def put(self, **fields: Any) -> None:
        """Insert or replace one result; ``fields`` are the ``results`` columns."""
        fields.setdefault("created_at", time.time())
        if isinstance(fields.get("params"), dict):
            fields["params"] = json.dumps(fields["params"], sort_keys=True)
        missing = {"key", "task", "image_sha256", "model", "params", "text"} - set(fields)
        if missing:
            raise StoreError(f"result is missing {sorted(missing)}")
        names = [f for f in _RESULT_FIELDS if f in fields]
        self._run(
            f"INSERT OR REPLACE INTO results ({', '.join(names)}) "
            f"VALUES ({', '.join('?' for _ in names)})",
            tuple(fields[n] for n in names),
        )

    def provenance(self, key: str) -> dict[str, Any] | None:
        """Every stored column of one result, ``params`` decoded."""
        rows = self._run(f"SELECT {', '.join(_RESULT_FIELDS)} FROM results WHERE key = ?", (key,))
        if not rows:
            return None
        record = dict(zip(_RESULT_FIELDS, rows[0]))
        record["params"] = json.loads(record["params"])
        return record

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest results, text cut to 300 characters."""
        rows = self._run(
            "SELECT input, text, model, task, created_at FROM results "
            "ORDER BY created_at DESC LIMIT ?",
            (int(limit),),
        )
        names = ("input", "text", "model", "task", "created_at")
        # Cut in Python: SQLite's substr() stops at a NUL, and model output can contain one.
        return [dict(zip(names, (i, t[:300], m, k, c))) for i, t, m, k, c in rows]

    def count(self) -> int:
        return int(self._run("SELECT COUNT(*) FROM results")[0][0])

    # -- file hash memo -------------------------------------------------------------------
    def file_hash(self, path: str, size: int, mtime_ns: int) -> str | None:
        rows = self._run(
            "SELECT sha256 FROM file_hashes WHERE path = ? AND size = ? AND mtime_ns = ?",
            (path, size, mtime_ns),
        )
        return rows[0][0] if rows else None

    def remember_file_hash(self, path: str, size: int, mtime_ns: int, sha256: str) -> None:
        self._run(
            "INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?)", (path, size, mtime_ns, sha256)
        )

    # -- servers --------------------------------------------------------------------------
    def remember_server(
        self, base_url: str, model: str, model_root: str | None, max_model_len: int | None,
        version: str | None,
    ) -> None:
        self._run(
            "INSERT OR REPLACE INTO servers VALUES (?, ?, ?, ?, ?, ?)",
            (base_url, model, model_root, max_model_len, version, time.time()),
        )

    def last_server(self, base_url: str) -> dict[str, Any] | None:
        rows = self._run(
            "SELECT model, model_root, max_model_len, version, seen_at FROM servers "
            "WHERE base_url = ?",
            (base_url,),
        )
        if not rows:
            return None
        return dict(zip(("model", "model_root", "max_model_len", "version", "seen_at"), rows[0]))

    # -- reviews --------------------------------------------------------------------------
    def reviews(self, items: list[str]) -> dict[str, tuple[str, str | None]]:
        """Stored decisions for ``items``: item -> (status, edited caption)."""
        found: dict[str, tuple[str, str | None]] = {}
        for start in range(0, len(items), 500):
            chunk = items[start : start + 500]
            rows = self._run(
                "SELECT item, status, edited_caption FROM reviews "
                f"WHERE item IN ({', '.join('?' for _ in chunk)})",
                tuple(chunk),
            )
            found.update({item: (status, edited) for item, status, edited in rows})
        return found

    def put_review(self, item: str, status: str, edited_caption: str | None) -> None:
        """Record a decision; ``status="unreviewed"`` forgets it."""
        if status == "unreviewed":
            self._run("DELETE FROM reviews WHERE item = ?", (item,))
        else:
            self._run(
                "INSERT OR REPLACE INTO reviews VALUES (?, ?, ?, ?)",
                (item, status, edited_caption, time.time()),
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
