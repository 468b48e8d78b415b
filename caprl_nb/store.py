"""The SQLite result store: every answer remembered, so re-runs are free and runs resumable.

A result is keyed by :meth:`caprl_nb.plan.RequestPlan.key`: a hash of the image bytes, the
checkpoint that answered (never the served alias alone) and everything sent that changes the
answer. It is written the moment its row finishes, with its provenance (checkpoint, alias,
server URL, vLLM version, parameters as sent, size of the image sent, tokens, latency, finish
reason, timestamp). Failed rows, empty answers and answers that fail their task's check are
never stored, so the next run retries them.

Rows written before keys named the checkpoint (``key_version`` 1) stay readable but answer
nothing until adopted: :meth:`ResultStore.adopt` says which checkpoint an alias's old rows came
from (``caprl-nb store adopt caprl internlm/CapRL-3B``).

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

from caprl_nb.client import ServerInfo
from caprl_nb.errors import StoreError
from caprl_nb.images import FileStat

__all__ = ["MIGRATIONS", "RACY_WINDOW_NS", "ResultStore", "StoredResult"]


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


def _m005_checkpoints(db: sqlite3.Connection) -> None:
    # Keys name the checkpoint (key_version 2). Older rows keep key_version 1 and answer only
    # once a user adopts them for a checkpoint (adopted_as).
    db.execute("ALTER TABLE results ADD COLUMN checkpoint TEXT")
    db.execute("ALTER TABLE results ADD COLUMN key_version INTEGER NOT NULL DEFAULT 1")
    db.execute("ALTER TABLE results ADD COLUMN adopted_as TEXT")
    db.execute("CREATE INDEX results_adopted ON results (adopted_as) WHERE adopted_as IS NOT NULL")
    db.execute("ALTER TABLE servers ADD COLUMN parent TEXT")


def _m006_file_hashes_racy(db: sqlite3.Connection) -> None:
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


MIGRATIONS: list[Callable[[sqlite3.Connection], None]] = [
    _m001_results,
    _m002_file_hashes,
    _m003_servers,
    _m004_reviews,
    _m005_checkpoints,
    _m006_file_hashes_racy,
]

# A file's hash is remembered only once its timestamps are this much older than the moment it
# was hashed: coarser filesystems (FAT: 2 s; NFS and SMB caches) could otherwise hide a rewrite
# of the same size that lands in the same timestamp tick.
RACY_WINDOW_NS = 3_000_000_000


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
    "sent_width", "sent_height", "created_at", "checkpoint", "key_version", "adopted_as",
)
_HIT_FIELDS = (
    "key, text, model, finish_reason, prompt_tokens, completion_tokens, latency_s, created_at"
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
        self._check_not_newer(done)
        for version, migration in enumerate(MIGRATIONS, start=1):
            if version in done:
                continue
            db.execute("BEGIN IMMEDIATE")
            try:
                # Read again under the write lock: another process may have just applied it.
                applied = db.execute(
                    "SELECT 1 FROM schema_migrations WHERE version = ?", (version,)
                ).fetchone()
                if applied is None:
                    migration(db)
                    db.execute(
                        "INSERT INTO schema_migrations VALUES (?, ?, ?)",
                        (version, migration.__name__.lstrip("_"), time.time()),
                    )
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _check_not_newer(self, done: set[int]) -> None:
        if done and max(done) > len(MIGRATIONS):
            msg = (
                f"The result store at {self.path} was written by a newer caprl_nb (schema "
                f"{max(done)}, this one knows {len(MIGRATIONS)}). Upgrade caprl_nb or set "
                "CAPRL_HOME to another directory."
            )
            raise StoreError(msg)

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
        rows = self._run(f"SELECT {_HIT_FIELDS} FROM results WHERE key = ?", (key,))
        return StoredResult(*rows[0]) if rows else None

    def get_adopted(self, key: str, checkpoint: str) -> StoredResult | None:
        """A schema-1 row under ``key`` that the user adopted for ``checkpoint``."""
        rows = self._run(
            f"SELECT {_HIT_FIELDS} FROM results WHERE key = ? AND key_version = 1 AND adopted_as = ?",
            (key, checkpoint),
        )
        return StoredResult(*rows[0]) if rows else None

    def adopted_aliases(self, checkpoint: str) -> list[str]:
        """The aliases whose schema-1 rows were adopted for ``checkpoint``."""
        rows = self._run(
            "SELECT DISTINCT model FROM results WHERE adopted_as = ? AND key_version = 1",
            (checkpoint,),
        )
        return [r[0] for r in rows]

    def adopt(self, alias: str, checkpoint: str, base_url: str | None = None) -> int:
        """Say that the schema-1 rows stored under ``alias`` (at ``base_url``, if given) came from
        ``checkpoint``, so runs against that checkpoint re-use them. Returns how many rows."""
        sql = "UPDATE results SET adopted_as = ? WHERE key_version = 1 AND model = ?"
        args: tuple[Any, ...] = (checkpoint, alias)
        if base_url is not None:
            sql += " AND base_url = ?"
            args += (base_url.rstrip("/"),)
        with self._lock:
            try:
                return self._db.execute(sql, args).rowcount
            except sqlite3.Error as exc:
                msg = f"The result store at {self.path} failed: {exc}. Check the disk."
                raise StoreError(msg) from exc

    def by_checkpoint(self) -> list[dict[str, Any]]:
        """Result counts by checkpoint and task (rows keyed by checkpoint only)."""
        rows = self._run(
            "SELECT checkpoint, task, COUNT(*) FROM results WHERE key_version = 2 "
            "GROUP BY checkpoint, task ORDER BY COUNT(*) DESC"
        )
        return [dict(zip(("checkpoint", "task", "rows"), row)) for row in rows]

    def legacy_summary(self) -> list[dict[str, Any]]:
        """Schema-1 rows by alias and server: what ``adopt`` could adopt."""
        rows = self._run(
            "SELECT model, base_url, model_root, adopted_as, COUNT(*) FROM results "
            "WHERE key_version = 1 GROUP BY model, base_url, model_root, adopted_as"
        )
        names = ("alias", "base_url", "root", "adopted_as", "rows")
        return [dict(zip(names, row)) for row in rows]

    def put(self, **fields: Any) -> None:
        """Insert or replace one result; ``fields`` are the ``results`` columns."""
        fields.setdefault("created_at", time.time())
        fields.setdefault("key_version", 2)
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
    def file_hash(self, stat: FileStat) -> str | None:
        """The remembered sha256 of a file whose size, mtime, inode and ctime are unchanged."""
        rows = self._run(
            "SELECT sha256 FROM file_hashes WHERE path = ? AND size = ? AND mtime_ns = ? "
            "AND ino = ? AND ctime_ns = ?",
            (stat.path, stat.size, stat.mtime_ns, stat.ino, stat.ctime_ns),
        )
        return rows[0][0] if rows else None

    def remember_file_hash(self, stat: FileStat, sha256: str, *, now_ns: int | None = None) -> bool:
        """Remember a file's hash, unless it changed too recently to be sure a later rewrite
        would change its timestamps (see RACY_WINDOW_NS). Returns whether it was remembered."""
        now = time.time_ns() if now_ns is None else now_ns
        if max(stat.mtime_ns, stat.ctime_ns) > now - RACY_WINDOW_NS:
            return False
        self._run(
            "INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?, ?, ?)",
            (stat.path, stat.size, stat.mtime_ns, stat.ino, stat.ctime_ns, sha256),
        )
        return True

    # -- servers --------------------------------------------------------------------------
    def remember_server(self, info: ServerInfo) -> None:
        self._run(
            "INSERT OR REPLACE INTO servers (base_url, model, model_root, max_model_len, version, "
            "seen_at, parent) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (info.base_url, info.model, info.root, info.max_model_len, info.version, time.time(),
             info.parent),
        )

    def last_server(self, base_url: str) -> tuple[ServerInfo, float] | None:
        """What ``base_url`` served when last seen, and when (seconds since the epoch)."""
        rows = self._run(
            "SELECT model, model_root, max_model_len, version, seen_at, parent FROM servers "
            "WHERE base_url = ?",
            (base_url,),
        )
        if not rows:
            return None
        model, root, max_len, version, seen_at, parent = rows[0]
        info = ServerInfo(base_url, model, root, max_len, version, (model,), parent)
        return info, float(seen_at)

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
