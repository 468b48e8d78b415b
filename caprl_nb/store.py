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

Schema changes are named migrations in :mod:`caprl_nb.migrations` (an append-only list; the
``_migrations`` table records which ran, by name). The review widgets keep their decisions in
the same file (:mod:`caprl_nb.widgets.review_store`).

Many processes share one store (two notebooks captioning at once, a Jupyter server answering
status probes, a CLI run):

* Opening an up-to-date store only reads (no write lock, never waits for a writer). Otherwise
  every missing migration runs in one ``BEGIN IMMEDIATE`` transaction that first reads again
  which ones ran, so any number of processes can open a new store at once.
* Every write is its own ``BEGIN IMMEDIATE`` transaction, committed before the call returns:
  ``kill -9`` loses at most the row being written, and the next run asks only for what is not
  stored. A write that finds the store locked waits (SQLite's busy timeout) and then retries
  with backoff for up to ``BUSY_GIVE_UP_S`` seconds before it fails: a caption already paid
  for is not dropped because another process held the lock for a moment.
* The journal is WAL (readers never wait for writers), except on a network filesystem (NFS,
  SMB/CIFS, sshfs, ...), where WAL is unsafe (its shared memory does not cross hosts): there the
  store uses a rollback journal and warns once, naming the fix (a store on a local disk).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple, TypeVar

from caprl_nb import migrations
from caprl_nb.client import ServerInfo
from caprl_nb.errors import StoreError, warn
from caprl_nb.images import FileStat, UrlMemo
from caprl_nb.migrations import MIGRATIONS

__all__ = [
    "MIGRATIONS",
    "NETWORK_FILESYSTEMS",
    "RACY_WINDOW_NS",
    "ResultStore",
    "StoredResult",
    "filesystem_type",
    "is_network_filesystem",
    "url_key",
]

_T = TypeVar("_T")


# A file's hash is remembered only once its timestamps are this much older than the moment it
# was hashed: coarser filesystems (FAT: 2 s; NFS and SMB caches) could otherwise hide a rewrite
# of the same size that lands in the same timestamp tick.
RACY_WINDOW_NS = 3_000_000_000

# SQLite's own wait for a lock (its busy handler), per attempt. A write that still finds the
# store locked is retried with backoff until BUSY_GIVE_UP_S have passed since its first try.
# Every transaction here lasts milliseconds, so a lock held for a minute is held by something
# stuck; the batch keeps an answer it could not store in its row, and waits no longer.
BUSY_TIMEOUT_S = 10.0
BUSY_GIVE_UP_S = 60.0
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6

# Bulk reads (a cached re-run looks up thousands of rows) ask for this many keys per query:
# under SQLite's smallest limit on bound parameters (999 before 3.32).
IN_CHUNK = 900
# How much of the file SQLite reads through a memory map (on a local disk); see _choose_journal.
MMAP_BYTES = 256 * 2**20

# Filesystems where SQLite's WAL is unsafe: WAL coordinates through shared memory that only
# processes on one host share (https://www.sqlite.org/wal.html), and these are shared between
# hosts (JupyterHub homes are often NFS). The store uses a rollback journal there.
NETWORK_FILESYSTEMS = frozenset({
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "ceph", "glusterfs", "lustre",
    "gpfs", "beegfs", "orangefs", "fuse.sshfs", "fuse.glusterfs", "fuse.ceph-fuse", "fuse.s3fs",
    "fuse.gcsfuse", "fuse.rclone", "fuse.juicefs",
})
# Where Linux lists its mounts: mountinfo first, /proc/mounts on older kernels.
MOUNT_TABLES = ("/proc/self/mountinfo", "/proc/mounts")
_MOUNTINFO_LINE = re.compile(r"\d+ \d+ \d+:\d+ ")
_warned_network: set[Path] = set()


def filesystem_type(path: str | Path, mounts: str | None = None) -> str | None:
    """The type of the filesystem holding ``path`` (``"ext4"``, ``"nfs4"``, ``"fuse.sshfs"``).

    ``mounts`` is the text of a Linux mount table (``/proc/self/mountinfo`` or ``/proc/mounts``
    format); by default the running system's. None where there is no mount table to read (not
    Linux): the store then assumes a local disk.
    """
    if mounts is None:
        mounts = _read_mount_table()
        if mounts is None:
            return None
    target = os.path.realpath(path)
    found, longest = None, -1
    for line in mounts.splitlines():
        entry = _mount_entry(line)
        if entry is None:
            continue
        point, fstype = entry
        inside = point == "/" or target == point or target.startswith(point.rstrip("/") + "/")
        # The deepest mount point wins; of two at one point, the later (mounted on top).
        if inside and len(point) >= longest:
            found, longest = fstype, len(point)
    return found


def is_network_filesystem(fstype: str | None) -> bool:
    """Whether SQLite's WAL is unsafe on a filesystem of this type (see NETWORK_FILESYSTEMS)."""
    return fstype is not None and (fstype in NETWORK_FILESYSTEMS or fstype.startswith("nfs"))


def _read_mount_table() -> str | None:
    for name in MOUNT_TABLES:
        try:
            return Path(name).read_text(encoding="utf-8", errors="surrogateescape")
        except OSError:
            continue
    return None


def _mount_entry(line: str) -> tuple[str, str] | None:
    """(mount point, filesystem type) of one mount-table line; None for one it cannot read."""
    fields = line.split()
    if _MOUNTINFO_LINE.match(line):
        # mountinfo: ID PARENT MAJ:MIN ROOT POINT OPTIONS [OPTIONAL...] - TYPE SOURCE SUPER
        try:
            dash = fields.index("-", 6)
        except ValueError:
            return None
        return (_unescape(fields[4]), fields[dash + 1]) if dash + 1 < len(fields) else None
    if len(fields) >= 3:  # /proc/mounts: SOURCE POINT TYPE OPTIONS DUMP PASS
        return _unescape(fields[1]), fields[2]
    return None


def _unescape(point: str) -> str:
    # The kernel writes a space in a mount point as \040 (tab \011, newline \012, \\ \134).
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), point)


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_SQLITE_BUSY, _SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)  # Python 3.10: no error codes


def _transact(
    db: sqlite3.Connection, work: Callable[[sqlite3.Connection], _T], *, write: bool,
    give_up_s: float | None = None,
) -> _T:
    """``work(db)``; a write inside its own BEGIN IMMEDIATE transaction (the write lock taken
    before anything is read, so it never fails to upgrade a read). A locked store is retried
    with capped, jittered backoff until ``give_up_s`` (BUSY_GIVE_UP_S) have passed."""
    deadline = time.monotonic() + (BUSY_GIVE_UP_S if give_up_s is None else give_up_s)
    delay = 0.02
    while True:
        try:
            if not write:
                return work(db)
            db.execute("BEGIN IMMEDIATE")
            try:
                result = work(db)
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
            return result
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(min(delay, max(0.0, deadline - time.monotonic())) * random.uniform(0.5, 1.0))
        delay = min(delay * 2, 1.0)


class StoredResult(NamedTuple):
    """A stored answer and its provenance (a named tuple: a cached re-run reads thousands)."""

    key: str
    text: str
    model: str
    finish_reason: str | None
    prompt_tokens: int | None
    completion_tokens: int | None
    latency_s: float | None
    created_at: float
    base_url: str | None = None
    server_version: str | None = None


_RESULT_FIELDS = (
    "key", "task", "image_sha256", "input", "model", "model_root", "base_url", "server_version",
    "params", "text", "finish_reason", "prompt_tokens", "completion_tokens", "latency_s",
    "sent_width", "sent_height", "created_at", "checkpoint", "key_version", "adopted_as",
)


def _result_row(given: dict[str, Any]) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """The columns and values of one result to insert (``created_at`` and ``key_version``
    defaulted, ``params`` as sorted JSON)."""
    fields = dict(given)
    fields.setdefault("created_at", time.time())
    fields.setdefault("key_version", 2)
    if isinstance(fields.get("params"), dict):
        fields["params"] = json.dumps(fields["params"], sort_keys=True)
    missing = {"key", "task", "image_sha256", "model", "params", "text"} - set(fields)
    if missing:
        raise StoreError(f"result is missing {sorted(missing)}")
    names = tuple(f for f in _RESULT_FIELDS if f in fields)
    return names, tuple(fields[n] for n in names)
_HIT_FIELDS = (
    "key, text, model, finish_reason, prompt_tokens, completion_tokens, latency_s, created_at, "
    "base_url, server_version"
)


def url_key(url: str) -> str:
    """The ``url_hashes`` key of a URL: the sha256 of the whole URL, query string included (two
    presigned links to one object may serve different content); never the URL itself."""
    return hashlib.sha256(url.strip().encode("utf-8", "surrogatepass")).hexdigest()


def _chunks(items: Sequence[_T], size: int) -> Iterator[Sequence[_T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class ResultStore:
    """A thread-safe handle on one SQLite file (one connection guarded by a lock).

    ``journal_mode`` says which journal the store uses: ``"wal"``, or ``"delete"`` (a rollback
    journal) on a network filesystem. :meth:`close` waits for a read or write in progress.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self.journal_mode = "wal"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, check_same_thread=False, timeout=BUSY_TIMEOUT_S, isolation_level=None
            )
            self._choose_journal(self._db)
            self._migrate(self._db)
        except BaseException as exc:
            if self._db is not None:
                self._db.close()
                self._db = None
            if not isinstance(exc, (OSError, sqlite3.Error)):
                raise
            msg = (
                f"Cannot open the result store at {self.path}: {exc}. Set CAPRL_HOME to a "
                "writable directory, or pass cache=False to run without it."
            )
            raise StoreError(msg) from exc

    # -- journal --------------------------------------------------------------------------
    def _choose_journal(self, db: sqlite3.Connection) -> None:
        """WAL on a local disk; a rollback journal on a network filesystem (warned once)."""
        fstype = filesystem_type(self.path.parent)
        network = is_network_filesystem(fstype)
        # Read the file first: a connection knows the file is in WAL mode once it has read it.
        pages = _transact(db, lambda d: d.execute("PRAGMA page_count").fetchone()[0], write=False)
        new = pages == 0
        current = str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower()
        if network and current == "wal":
            # Needs every other connection closed, so it is tried once, briefly: a store still
            # open elsewhere (a running notebook) keeps WAL until a later open finds it free.
            db.execute("PRAGMA busy_timeout = 1000")
            try:
                current = self._set_journal(db, "delete", give_up_s=0.0)
            finally:
                db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        elif not network and new:
            current = self._set_journal(db, "wal", give_up_s=BUSY_GIVE_UP_S)
        # A store already in rollback mode on a local disk (made on a network mount) stays so:
        # safe, and never switched back and forth between hosts that see it differently.
        self.journal_mode = current
        db.execute(f"PRAGMA synchronous={'NORMAL' if current == 'wal' else 'FULL'}")
        if not network:
            # Reads through a memory map rather than one read() per page: a cached re-run looks
            # up thousands of rows spread over the whole file. Not on a network filesystem,
            # where a failed read through the map would be a signal rather than an error.
            db.execute(f"PRAGMA mmap_size = {MMAP_BYTES}")
        if network and self.path not in _warned_network:
            _warned_network.add(self.path)
            still = (
                " It is still in WAL mode because another process has it open; close the other "
                "notebooks that use it." if current == "wal" else ""
            )
            warn(
                f"The result store {self.path} is on a network filesystem ({fstype}), where "
                "SQLite's WAL journal is unsafe, so it uses a rollback journal there: slower, "
                f"and only as safe as the filesystem's locks.{still} Put the store on a local "
                "disk: set CAPRL_HOME to a local directory (e.g. "
                "CAPRL_HOME=/var/tmp/$USER/caprl_nb)."
            )

    @staticmethod
    def _set_journal(db: sqlite3.Connection, mode: str, *, give_up_s: float) -> str:
        def switch(d: sqlite3.Connection) -> str:
            return str(d.execute(f"PRAGMA journal_mode={mode}").fetchone()[0]).lower()

        try:
            return _transact(db, switch, write=False, give_up_s=give_up_s)
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc):
                raise
            return str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower()

    # -- schema ---------------------------------------------------------------------------
    def _migrate(self, db: sqlite3.Connection) -> None:
        # Fast path, a read only: an up-to-date store takes no write lock, so opening it never
        # waits for a writer (a status probe while a notebook captions).
        state = _transact(db, migrations.applied, write=False)
        if state is not None:
            done, by_name = state
            migrations.check_not_newer(done, self.path)
            if by_name and not migrations.pending(done):
                return
        # Every missing migration in one transaction (all of them, or none), which reads again
        # what ran under the write lock: another process may have just migrated.
        _transact(db, lambda d: migrations.upgrade(d, self.path), write=True)

    @property
    def schema_version(self) -> int:
        """How many migrations the store has run (``len(MIGRATIONS)`` when up to date)."""
        return int(self.read("SELECT COUNT(*) FROM _migrations")[0][0])

    # -- one connection, many threads -------------------------------------------------------
    def _use(self, work: Callable[[sqlite3.Connection], _T], *, write: bool) -> _T:
        try:
            with self._lock:
                if self._db is None:
                    msg = f"The result store at {self.path} is closed; open a new ResultStore."
                    raise StoreError(msg)
                return _transact(self._db, work, write=write)
        except sqlite3.Error as exc:
            if _is_busy(exc):
                msg = (
                    f"The result store at {self.path} stayed locked by another process for "
                    f"{BUSY_GIVE_UP_S:g} s ({exc}). Find what holds it (`fuser {self.path}`), "
                    "or set CAPRL_HOME to another directory, or pass cache=False."
                )
            else:
                msg = (
                    f"The result store at {self.path} failed: {exc}. Check the disk, or pass "
                    "cache=False."
                )
            raise StoreError(msg) from exc

    def read(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """One read (for this module and those that keep tables in this file: the review store)."""
        return self._use(lambda db: db.execute(sql, args).fetchall(), write=False)

    def write(self, sql: str, args: tuple[Any, ...] = ()) -> int:
        """One write in its own committed transaction; how many rows it changed."""
        return self._use(lambda db: db.execute(sql, args).rowcount, write=True)

    def get(self, key: str) -> StoredResult | None:
        rows = self.read(f"SELECT {_HIT_FIELDS} FROM results WHERE key = ?", (key,))
        return StoredResult(*rows[0]) if rows else None

    def get_many(self, keys: Sequence[str]) -> dict[str, StoredResult]:
        """The stored results among ``keys``, by key: one query per ``IN_CHUNK`` keys."""
        found: dict[str, StoredResult] = {}
        for chunk in _chunks(keys, IN_CHUNK):
            rows = self.read(
                f"SELECT {_HIT_FIELDS} FROM results WHERE key IN ({', '.join('?' * len(chunk))})",
                tuple(chunk),
            )
            for row in rows:
                found[row[0]] = StoredResult(*row)
        return found

    def get_adopted(self, key: str, checkpoint: str) -> StoredResult | None:
        """A schema-1 row under ``key`` that the user adopted for ``checkpoint``."""
        rows = self.read(
            f"SELECT {_HIT_FIELDS} FROM results WHERE key = ? AND key_version = 1 AND adopted_as = ?",
            (key, checkpoint),
        )
        return StoredResult(*rows[0]) if rows else None

    def adopted_aliases(self, checkpoint: str) -> list[str]:
        """The aliases whose schema-1 rows were adopted for ``checkpoint``."""
        rows = self.read(
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
        return self.write(sql, args)

    def by_checkpoint(self) -> list[dict[str, Any]]:
        """Result counts by checkpoint and task (rows keyed by checkpoint only)."""
        rows = self.read(
            "SELECT checkpoint, task, COUNT(*) FROM results WHERE key_version = 2 "
            "GROUP BY checkpoint, task ORDER BY COUNT(*) DESC"
        )
        return [dict(zip(("checkpoint", "task", "rows"), row)) for row in rows]

    def legacy_summary(self) -> list[dict[str, Any]]:
        """Schema-1 rows by alias and server: what ``adopt`` could adopt."""
        rows = self.read(
            "SELECT model, base_url, model_root, adopted_as, COUNT(*) FROM results "
            "WHERE key_version = 1 GROUP BY model, base_url, model_root, adopted_as"
        )
        names = ("alias", "base_url", "root", "adopted_as", "rows")
        return [dict(zip(names, row)) for row in rows]

    def put(self, **fields: Any) -> None:
        """Insert or replace one result; ``fields`` are the ``results`` columns."""
        self.write_many(results=[fields])

    def write_many(
        self, *, results: Sequence[dict[str, Any]] = (), file_hashes: Sequence[tuple[FileStat, str]] = (),
        urls: Sequence[tuple[str, UrlMemo]] = (), now_ns: int | None = None,
    ) -> None:
        """Results (:meth:`put`'s fields), file hashes (:meth:`remember_file_hash`, the same racy
        window) and URL memos (:meth:`remember_url`) in one committed transaction."""
        rows = [_result_row(fields) for fields in results]
        now = time.time_ns() if now_ns is None else now_ns
        hashes = [
            (stat.path, stat.size, stat.mtime_ns, stat.ino, stat.ctime_ns, sha)
            for stat, sha in file_hashes if max(stat.mtime_ns, stat.ctime_ns) <= now - RACY_WINDOW_NS
        ]
        memos = [(url_key(url), m.etag, m.last_modified, m.sha256, now / 1e9) for url, m in urls]
        if not (rows or hashes or memos):
            return

        def work(db: sqlite3.Connection) -> None:
            for names, values in rows:
                db.execute(
                    f"INSERT OR REPLACE INTO results ({', '.join(names)}) VALUES ({', '.join('?' for _ in names)})",
                    values,
                )
            if hashes:
                db.executemany("INSERT OR REPLACE INTO file_hashes VALUES (?, ?, ?, ?, ?, ?)", hashes)
            if memos:
                db.executemany("INSERT OR REPLACE INTO url_hashes VALUES (?, ?, ?, ?, ?)", memos)

        self._use(work, write=True)

    def provenance(self, key: str) -> dict[str, Any] | None:
        """Every stored column of one result, ``params`` decoded."""
        rows = self.read(f"SELECT {', '.join(_RESULT_FIELDS)} FROM results WHERE key = ?", (key,))
        if not rows:
            return None
        record = dict(zip(_RESULT_FIELDS, rows[0]))
        record["params"] = json.loads(record["params"])
        return record

    def recent(self, limit: int = 20) -> list[dict[str, Any]]:
        """The newest results, text cut to 300 characters."""
        rows = self.read(
            "SELECT input, text, model, task, created_at FROM results "
            "ORDER BY created_at DESC LIMIT ?",
            (int(limit),),
        )
        names = ("input", "text", "model", "task", "created_at")
        # Cut in Python: SQLite's substr() stops at a NUL, and model output can contain one.
        return [dict(zip(names, (i, t[:300], m, k, c))) for i, t, m, k, c in rows]

    def count(self) -> int:
        return int(self.read("SELECT COUNT(*) FROM results")[0][0])

    # -- file hash memo -------------------------------------------------------------------
    def file_hash(self, stat: FileStat) -> str | None:
        """The remembered sha256 of a file whose size, mtime, inode and ctime are unchanged."""
        rows = self.read(
            "SELECT sha256 FROM file_hashes WHERE path = ? AND size = ? AND mtime_ns = ? "
            "AND ino = ? AND ctime_ns = ?",
            (stat.path, stat.size, stat.mtime_ns, stat.ino, stat.ctime_ns),
        )
        return rows[0][0] if rows else None

    def file_hashes(self, stats: Sequence[FileStat]) -> list[str | None]:
        """:meth:`file_hash` of many files at once (None where unknown or changed): one query per
        ``IN_CHUNK`` distinct paths."""
        paths = list(dict.fromkeys(stat.path for stat in stats))
        known: dict[str, tuple[Any, ...]] = {}
        for chunk in _chunks(paths, IN_CHUNK):
            rows = self.read(
                "SELECT path, size, mtime_ns, ino, ctime_ns, sha256 FROM file_hashes "
                f"WHERE path IN ({', '.join('?' * len(chunk))})",
                tuple(chunk),
            )
            known.update((row[0], row) for row in rows)
        hashes: list[str | None] = []
        append = hashes.append
        for stat in stats:
            row = known.get(stat.path)
            # Field by field: no tuples to compare (thousands of rows, each an allocation).
            if (
                row is not None and row[1] == stat.size and row[2] == stat.mtime_ns
                and row[3] == stat.ino and row[4] == stat.ctime_ns
            ):
                append(row[5])
            else:
                append(None)
        return hashes

    def remember_file_hash(self, stat: FileStat, sha256: str, *, now_ns: int | None = None) -> bool:
        """Remember a file's hash, unless it changed too recently to be sure a later rewrite
        would change its timestamps (see RACY_WINDOW_NS). Returns whether it was remembered."""
        now = time.time_ns() if now_ns is None else now_ns
        if max(stat.mtime_ns, stat.ctime_ns) > now - RACY_WINDOW_NS:
            return False
        self.write_many(file_hashes=[(stat, sha256)], now_ns=now)
        return True

    # -- URL memo -------------------------------------------------------------------------
    def url_memo(self, url: str) -> UrlMemo | None:
        """What ``url``'s server last said about its content (ETag, Last-Modified) and its sha256."""
        rows = self.read("SELECT etag, last_modified, sha256 FROM url_hashes WHERE key = ?", (url_key(url),))
        return UrlMemo(*rows[0]) if rows else None

    def remember_url(self, url: str, memo: UrlMemo, *, now: float | None = None) -> None:
        """Remember ``memo`` for ``url``, keyed by :func:`url_key` (the URL itself is not stored)."""
        self.write(
            "INSERT OR REPLACE INTO url_hashes VALUES (?, ?, ?, ?, ?)",
            (url_key(url), memo.etag, memo.last_modified, memo.sha256, time.time() if now is None else now),
        )

    # -- servers --------------------------------------------------------------------------
    def remember_server(self, info: ServerInfo) -> None:
        self.write(
            "INSERT OR REPLACE INTO servers (base_url, model, model_root, max_model_len, version, "
            "seen_at, parent) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (info.base_url, info.model, info.root, info.max_model_len, info.version, time.time(),
             info.parent),
        )

    def last_server(self, base_url: str) -> tuple[ServerInfo, float] | None:
        """What ``base_url`` served when last seen, and when (seconds since the epoch)."""
        rows = self.read(
            "SELECT model, model_root, max_model_len, version, seen_at, parent FROM servers "
            "WHERE base_url = ?",
            (base_url,),
        )
        if not rows:
            return None
        model, root, max_len, version, seen_at, parent = rows[0]
        info = ServerInfo(base_url, model, root, max_len, version, (model,), parent)
        return info, float(seen_at)

    def close(self) -> None:
        """Close the connection once a read or write in progress has finished; idempotent."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- bulk import (caprl_nb.store_import) ----------------------------------------------
    def insert_new(self, table: str, columns: Sequence[str], rows: Sequence[tuple[Any, ...]]) -> int:
        """``INSERT OR IGNORE`` ``rows`` into ``table`` in one committed transaction: rows whose
        key is already here are left as they are. Returns how many rows were new."""
        names = ", ".join(columns)
        sql = f"INSERT OR IGNORE INTO {table} ({names}) VALUES ({', '.join('?' * len(columns))})"
        return self._use(lambda db: db.executemany(sql, rows).rowcount, write=True)
