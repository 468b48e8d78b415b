import dataclasses
import sqlite3
import threading
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import pytest

from caprl_nb import migrations
from caprl_nb import store as store_module
from caprl_nb.client import ServerInfo
from caprl_nb.errors import CapRLWarning, StoreError
from caprl_nb.images import FileStat
from caprl_nb.store import (
    MIGRATIONS,
    RACY_WINDOW_NS,
    ResultStore,
    filesystem_type,
    is_network_filesystem,
)

from tests.support.polling import wait_until


def _put(store: ResultStore, key: str, text: str = "a caption") -> None:
    store.put(
        key=key, task="caption", image_sha256="f" * 64, input="file 'x.png'", model="caprl",
        model_root="internlm/CapRL-3B", base_url="http://h/v1", server_version="0.32.0",
        params={"task": "caption", "max_tokens": 8}, text=text, finish_reason="stop",
        prompt_tokens=10, completion_tokens=8, latency_s=0.5,
    )


def test_roundtrip_with_provenance(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "s.sqlite3") as store:
        assert store.get("k") is None
        _put(store, "k")
        hit = store.get("k")
        assert hit is not None and hit.text == "a caption" and hit.completion_tokens == 8
        record = store.provenance("k")
        assert record is not None
        assert record["server_version"] == "0.32.0"
        assert record["params"] == {"task": "caption", "max_tokens": 8}
        assert record["created_at"] > 0
        assert store.count() == 1


def test_results_survive_reopen_and_migrations_run_once(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with ResultStore(path) as store:
        _put(store, "k")
        assert store.schema_version == len(MIGRATIONS)
    with ResultStore(path) as store:
        assert store.get("k") is not None
        rows = store.read("SELECT name FROM _migrations ORDER BY rowid")
        assert [name for (name,) in rows] == [m.__name__ for m in MIGRATIONS]
        tables = {name for (name,) in store.read("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert "schema_migrations" not in tables  # a new store records migrations by name only


def test_newer_schema_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    ResultStore(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO _migrations VALUES ('m999_future', 0)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer caprl_nb.*m999_future"):
        ResultStore(path)


def test_newer_numbered_schema_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_6_BY_NUMBER)
    db.execute("INSERT INTO schema_migrations VALUES (7, 'm007_unknown', 0)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer caprl_nb"):
        ResultStore(path)


# A store as caprl_nb left it before migrations were recorded by name (schema 6, by number):
# the dump of one made by that version, with a result, a file-hash memo and a review in it.
SCHEMA_6_BY_NUMBER = """
CREATE TABLE file_hashes (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
    ino INTEGER NOT NULL, ctime_ns INTEGER NOT NULL, sha256 TEXT NOT NULL);
INSERT INTO "file_hashes" VALUES('/a.png',10,111,5,222,'h1');
CREATE TABLE results (key TEXT PRIMARY KEY, task TEXT NOT NULL, image_sha256 TEXT NOT NULL,
    input TEXT, model TEXT NOT NULL, model_root TEXT, base_url TEXT, server_version TEXT,
    params TEXT NOT NULL, text TEXT NOT NULL, finish_reason TEXT, prompt_tokens INTEGER,
    completion_tokens INTEGER, latency_s REAL, sent_width INTEGER, sent_height INTEGER,
    created_at REAL NOT NULL, checkpoint TEXT, key_version INTEGER NOT NULL DEFAULT 1,
    adopted_as TEXT);
INSERT INTO "results" VALUES('k','caption','abc',NULL,'caprl',NULL,'http://h/v1','0.32.0',
    '{"task": "caption"}','a caption',NULL,NULL,NULL,NULL,NULL,NULL,1.5,'/m',2,NULL);
CREATE TABLE reviews (item TEXT PRIMARY KEY, status TEXT NOT NULL, edited_caption TEXT,
    updated_at REAL NOT NULL);
INSERT INTO "reviews" VALUES('item','accepted',NULL,1796170008.0);
CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL);
INSERT INTO "schema_migrations" VALUES(1,'m001_results',1796170001.0);
INSERT INTO "schema_migrations" VALUES(2,'m002_file_hashes',1796170002.0);
INSERT INTO "schema_migrations" VALUES(3,'m003_servers',1796170003.0);
INSERT INTO "schema_migrations" VALUES(4,'m004_reviews',1796170004.0);
INSERT INTO "schema_migrations" VALUES(5,'m005_checkpoints',1796170005.0);
INSERT INTO "schema_migrations" VALUES(6,'m006_file_hashes_racy',1796170006.0);
CREATE TABLE servers (base_url TEXT PRIMARY KEY, model TEXT NOT NULL, model_root TEXT,
    max_model_len INTEGER, version TEXT, seen_at REAL NOT NULL, parent TEXT);
CREATE INDEX results_image ON results (image_sha256);
CREATE INDEX results_adopted ON results (adopted_as) WHERE adopted_as IS NOT NULL;
"""


def test_url_inputs_stored_by_older_versions_lose_their_query_and_user_info(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_6_BY_NUMBER)
    signed = "URL https://u:pw@b.s3.amazonaws.com/x.png?X-Amz-Signature=SECRET1#frag"
    shortened = "URL https://b.example/" + "p" * 60 + "...zz?X-Amz-Signature=SECRET2"  # cut mid-URL
    for key, text in [("a", signed), ("b", shortened), ("c", "file '/data/x.png'")]:
        db.execute("INSERT INTO results (key, task, image_sha256, input, model, params, text, created_at)"
                   " VALUES (?, 'caption', 'h', ?, 'caprl', '{}', 't', 1.0)", (key, text))
    db.commit()
    db.close()
    with ResultStore(path) as store:
        inputs = dict(store.read("SELECT key, input FROM results WHERE key IN ('a', 'b', 'c')"))
    assert inputs["a"] == "URL https://b.s3.amazonaws.com/x.png"
    assert inputs["b"] == "URL https://b.example/" + "p" * 60 + "..."
    assert inputs["c"] == "file '/data/x.png'"
    # not left behind in the file either (SQLite keeps overwritten bytes unless told otherwise)
    for file in tmp_path.iterdir():
        assert b"SECRET" not in file.read_bytes(), file.name


def test_a_store_recorded_by_number_opens_with_nothing_run_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "s.sqlite3"
    db = sqlite3.connect(path)
    db.executescript(SCHEMA_6_BY_NUMBER)
    db.close()
    ran: list[str] = []

    def spy(step: migrations.Migration) -> migrations.Migration:
        def run(db: sqlite3.Connection) -> None:
            ran.append(step.__name__)
            step(db)

        run.__name__ = step.__name__
        return run

    # any migration that ran again would show here (and m001 would fail: its table exists)
    monkeypatch.setattr(migrations, "MIGRATIONS", [spy(m) for m in MIGRATIONS])
    with ResultStore(path) as store:
        assert ran == [m.__name__ for m in MIGRATIONS[migrations.NUMBERED:]]  # only the new ones
        assert store.schema_version == len(MIGRATIONS)
        # every numbered migration recorded by name, with the time it first ran
        recorded = store.read("SELECT name, applied_at FROM _migrations ORDER BY applied_at")
        numbered = MIGRATIONS[: migrations.NUMBERED]
        assert recorded[: len(numbered)] == [(m.__name__, 1796170001.0 + i) for i, m in enumerate(numbered)]
        assert [name for name, _ in recorded[len(numbered):]] == ran
        # everything in it kept: the result, the file-hash memo (m006 would have dropped it)
        assert store.get("k").text == "a caption"
        assert store.file_hash(FileStat("/a.png", 10, 111, 5, 222)) == "h1"
        assert store.read("SELECT status FROM reviews") == [("accepted",)]
        # the old record stays as it was, for a caprl_nb that still reads it
        assert store.read("SELECT COUNT(*) FROM schema_migrations") == [(6,)]
    # the next open is the read-only fast path: with another process holding the write lock,
    # any write (a migration, a name recorded again) would fail at once
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.05)
    monkeypatch.setattr(store_module, "BUSY_GIVE_UP_S", 0.0)
    ran.clear()
    other = _hold_write_lock(path)
    try:
        with ResultStore(path) as store:
            assert store.get("k") is not None and ran == []
    finally:
        other.execute("ROLLBACK")
        other.close()


def test_unwritable_home_says_what_to_do(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreError, match="CAPRL_HOME"):
        ResultStore(blocker / "sub" / "s.sqlite3")


def test_file_hash_memo_checks_size_mtime_inode_and_ctime(tmp_path: Path) -> None:
    old = FileStat("/a.png", 10, 111, 5, 222)
    later = 222 + RACY_WINDOW_NS + 1
    with ResultStore(tmp_path / "s.sqlite3") as store:
        assert store.remember_file_hash(old, "h1", now_ns=later)
        assert store.file_hash(old) == "h1"
        for changed in ({"size": 11}, {"mtime_ns": 112}, {"ino": 6}, {"ctime_ns": 223}):
            assert store.file_hash(dataclasses.replace(old, **changed)) is None


def test_a_file_changed_within_the_racy_window_is_not_remembered(tmp_path: Path) -> None:
    recent = FileStat("/a.png", 10, 1_000, 5, 1_000)
    with ResultStore(tmp_path / "s.sqlite3") as store:
        assert not store.remember_file_hash(recent, "h1", now_ns=1_000 + RACY_WINDOW_NS // 2)
        assert store.file_hash(recent) is None


def test_server_memo(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "s.sqlite3") as store:
        assert store.last_server("http://h/v1") is None
        store.remember_server(ServerInfo("http://h/v1", "caprl", "/m", 2048, "0.32.0", parent="/base"))
        info, seen_at = store.last_server("http://h/v1")
        assert (info.max_model_len, info.checkpoint) == (2048, "/m+/base") and seen_at > 0



def test_concurrent_writers(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "s.sqlite3") as store:
        threads = [
            threading.Thread(target=lambda i=i: [_put(store, f"k{i}-{j}") for j in range(50)])
            for i in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert store.count() == 200


def test_recent_keeps_text_with_nul_characters(tmp_path: Path) -> None:
    text = "before\x00after " * 40
    with ResultStore(tmp_path / "s.sqlite3") as store:
        _put(store, "k", text=text)
        recent = store.recent(5)
    assert recent[0]["text"] == text[:300]
    with ResultStore(tmp_path / "s.sqlite3") as store:
        assert store.get("k").text == text


# -- migrations and opening ------------------------------------------------------------------
def test_missing_migrations_run_in_one_transaction(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.sqlite3"

    def _m007_broken(db: sqlite3.Connection) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(migrations, "MIGRATIONS", [*MIGRATIONS, _m007_broken])
    with pytest.raises(StoreError, match="disk I/O error"):
        ResultStore(path)
    db = sqlite3.connect(path)
    tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    db.close()
    assert "results" not in tables  # the six good ones were rolled back with the broken one
    monkeypatch.setattr(migrations, "MIGRATIONS", MIGRATIONS)
    with ResultStore(path) as store:
        assert store.schema_version == len(MIGRATIONS)


def _hold_write_lock(path: Path) -> sqlite3.Connection:
    """Another connection holding the store's write lock (a notebook in the middle of a write)."""
    other = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_opening_an_up_to_date_store_never_waits_for_a_writer(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    with ResultStore(path) as store:
        _put(store, "k")
    other = _hold_write_lock(path)
    opened: list[int] = []
    try:
        # A status probe opening the store while a kernel writes: a read, so it does not queue.
        thread = threading.Thread(target=lambda: opened.append(ResultStore(path).count()), daemon=True)
        thread.start()
        wait_until(lambda: opened, 10, "the store opened and read while another holds its write lock")
    finally:
        other.execute("COMMIT")
        other.close()
    assert opened == [1]


def test_a_write_outlasts_a_lock_held_longer_than_sqlites_own_wait(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.05)
    path = tmp_path / "s.sqlite3"
    store = ResultStore(path)
    other = _hold_write_lock(path)
    outcome: list[object] = []

    def write() -> None:
        try:
            _put(store, "k")
            outcome.append("stored")
        except StoreError as exc:
            outcome.append(exc)

    started = time.monotonic()
    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    # Hold the lock for ten of SQLite's own waits: each ends in "database is locked".
    wait_until(lambda: time.monotonic() - started > 10 * 0.05, 10, "ten busy timeouts")
    assert outcome == []
    other.execute("COMMIT")
    other.close()
    wait_until(lambda: outcome, 10, "the write to land")
    assert outcome == ["stored"]
    assert store.get("k") is not None
    store.close()


def test_a_store_locked_for_good_fails_with_advice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.05)
    monkeypatch.setattr(store_module, "BUSY_GIVE_UP_S", 0.3)
    path = tmp_path / "s.sqlite3"
    other = None
    with ResultStore(path) as store:
        other = _hold_write_lock(path)
        try:
            with pytest.raises(StoreError, match="stayed locked by another process.*CAPRL_HOME"):
                _put(store, "k")
        finally:
            other.execute("ROLLBACK")
            other.close()
        _put(store, "k")  # the store is usable once the lock is gone
        assert store.count() == 1


def test_close_waits_for_a_write_in_progress_and_a_closed_store_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.05)
    path = tmp_path / "s.sqlite3"
    store = ResultStore(path)
    other = _hold_write_lock(path)
    writer = threading.Thread(target=lambda: _put(store, "k"), daemon=True)
    writer.start()
    wait_until(lambda: store._lock.locked(), 10, "the write waiting for the lock")
    closer = threading.Thread(target=store.close, daemon=True)
    closer.start()
    closer.join(0.3)
    assert closer.is_alive()  # close() does not pull the connection from under the write
    other.execute("COMMIT")
    other.close()
    writer.join(10)
    closer.join(10)
    assert not writer.is_alive() and not closer.is_alive()
    with pytest.raises(StoreError, match="closed"):
        store.get("k")
    store.close()  # a second close is harmless
    with ResultStore(path) as again:
        assert again.get("k") is not None


# -- network filesystems -----------------------------------------------------------------------
_MOUNTINFO = """\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
30 22 0:40 / /home rw,relatime shared:5 - nfs4 server:/export/home rw,vers=4.2
31 30 8:2 / /home/ann/local\\040disk rw,relatime - ext4 /dev/sdb1 rw
32 22 0:41 / /mnt/box rw,nosuid shared:9 - fuse.sshfs ann@box:/data rw
33 22 0:42 / /scratch rw - xfs /dev/sdc1 rw
34 22 0:43 / /scratch rw - cifs //nas/scratch rw
"""
_PROC_MOUNTS = """\
/dev/sda1 / ext4 rw,relatime 0 0
nas:/vol /data nfs rw,vers=3 0 0
"""


@pytest.mark.parametrize(
    ("path", "mounts", "fstype"),
    [
        ("/etc", _MOUNTINFO, "ext4"),
        ("/home/ann/results.sqlite3", _MOUNTINFO, "nfs4"),
        ("/homework", _MOUNTINFO, "ext4"),  # a sibling whose name starts like a mount point
        ("/home/ann/local disk/caprl", _MOUNTINFO, "ext4"),  # the deepest mount point wins
        ("/mnt/box/x", _MOUNTINFO, "fuse.sshfs"),
        ("/scratch/x", _MOUNTINFO, "cifs"),  # mounted over /scratch later: the later one is seen
        ("/data/caprl", _PROC_MOUNTS, "nfs"),  # the /proc/mounts format of older kernels
        ("/var", _PROC_MOUNTS, "ext4"),
    ],
)
def test_filesystem_type_from_a_mount_table(path: str, mounts: str, fstype: str) -> None:
    assert filesystem_type(path, mounts) == fstype


def test_network_filesystems_are_told_from_local_ones() -> None:
    for fstype in ("nfs", "nfs4", "cifs", "smb3", "fuse.sshfs", "9p", "lustre"):
        assert is_network_filesystem(fstype), fstype
    for fstype in ("ext4", "xfs", "btrfs", "tmpfs", "overlay", "zfs", "apfs", None):
        assert not is_network_filesystem(fstype), fstype


def _mount_table_saying(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, folder: Path, fstype: str) -> None:
    """Make the system's mount table say that ``folder`` is a mount of type ``fstype``."""
    folder.mkdir(exist_ok=True)
    table = tmp_path / "mountinfo"
    table.write_text(
        "22 1 8:1 / / rw - ext4 /dev/sda1 rw\n"
        f"40 22 0:50 / {folder.resolve()} rw - {fstype} server:/export rw\n"
    )
    monkeypatch.setattr(store_module, "MOUNT_TABLES", (str(table),))


def _journal_on_disk(path: Path) -> str:
    db = sqlite3.connect(path)
    try:
        return db.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        db.close()


def test_a_store_on_a_network_filesystem_uses_a_rollback_journal_and_says_once_how_to_fix_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _mount_table_saying(tmp_path, monkeypatch, tmp_path / "store", "nfs4")
    path = tmp_path / "store" / "results.sqlite3"
    with pytest.warns(CapRLWarning, match=r"network filesystem \(nfs4\).*local disk.*CAPRL_HOME"):
        store = ResultStore(path)
    with store:
        assert store.journal_mode == "delete"
        _put(store, "k")
        assert store.get("k") is not None
    assert _journal_on_disk(path) == "delete"
    assert not path.with_name(path.name + "-wal").exists()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ResultStore(path).close()  # warned once per store and process


def test_a_wal_store_found_on_a_network_filesystem_is_switched_to_a_rollback_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    folder = tmp_path / "store"
    folder.mkdir()
    path = folder / "results.sqlite3"
    with ResultStore(path) as store:  # made on a local disk (the real mount table)
        _put(store, "k")
    assert _journal_on_disk(path) == "wal"
    _mount_table_saying(tmp_path, monkeypatch, folder, "cifs")  # now seen through SMB
    with pytest.warns(CapRLWarning, match="cifs"):
        store = ResultStore(path)
    with store:
        assert store.journal_mode == "delete" and store.get("k") is not None
    assert _journal_on_disk(path) == "delete"


def test_a_store_on_a_local_disk_uses_wal_without_a_word(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    _mount_table_saying(tmp_path, monkeypatch, tmp_path / "store", "ext4")
    path = tmp_path / "store" / "results.sqlite3"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with ResultStore(path) as store:
            assert store.journal_mode == "wal"
    assert _journal_on_disk(path) == "wal"


def test_bulk_reads_ask_one_query_per_chunk_of_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "IN_CHUNK", 3)
    with ResultStore(tmp_path / "s.sqlite3") as store:
        for key in "abcdefg":
            _put(store, key, text=f"caption {key}")
        queries: list[str] = []
        assert store._db is not None
        store._db.set_trace_callback(queries.append)
        found = store.get_many(["a", "c", "zz", "e", "g", "c", "b", "y"])
        assert {key: hit.text for key, hit in found.items()} == {k: f"caption {k}" for k in "abceg"}
        assert len(queries) == 3  # 8 keys, 3 a query
        assert found["a"] == store.get("a")


def test_bulk_file_hashes_answer_only_for_unchanged_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(store_module, "IN_CHUNK", 2)
    stats = [FileStat(f"/{name}.png", 10, 111, 5, 222) for name in "abcde"]
    later = 222 + RACY_WINDOW_NS + 1
    with ResultStore(tmp_path / "s.sqlite3") as store:
        for stat in stats[:4]:
            assert store.remember_file_hash(stat, f"h{stat.path}", now_ns=later)
        changed = [dataclasses.replace(stats[1], size=11), dataclasses.replace(stats[2], ino=6)]
        asked = [stats[0], *changed, stats[3], stats[4], stats[0]]
        assert store.file_hashes(asked) == ["h/a.png", None, None, "h/d.png", None, "h/a.png"]
        assert store.file_hashes(asked) == [store.file_hash(stat) for stat in asked]
        assert store.file_hashes([]) == []


def _count_store_reads(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every SELECT on results or file_hashes that a ResultStore opened from now on sends."""
    statements: list[str] = []
    connect = sqlite3.connect

    def traced(*args: object, **kwargs: object) -> sqlite3.Connection:
        db = connect(*args, **kwargs)  # type: ignore[arg-type]  # sqlite3.connect's own arguments
        db.set_trace_callback(statements.append)
        return db

    monkeypatch.setattr(store_module.sqlite3, "connect", traced)
    return statements


def _reads(statements: list[str]) -> list[str]:
    return [s for s in statements if s.lstrip().upper().startswith("SELECT")
            and ("FROM results" in s or "FROM file_hashes" in s)]


def test_a_cached_rerun_reads_the_store_a_few_queries_per_chunk_and_sends_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from caprl_nb import batch
    from caprl_nb.batch import run_batch
    from caprl_nb.config import resolve_settings
    from caprl_nb.prompts import caption_task

    from tests.conftest import make_images
    from tests.support.vllm_sim import VLLMSimulator

    monkeypatch.setattr(store_module, "RACY_WINDOW_NS", 0)  # remember hashes of files just written
    monkeypatch.setattr(batch, "_LOOKUP_CHUNK", 16)
    files = make_images(tmp_path / "images", 70)
    task = caption_task(max_tokens=8)
    with VLLMSimulator() as sim:
        settings = resolve_settings(base_url=sim.base_url)
        first = run_batch(files, task, settings, progress=False)
        assert len(sim.requests) == 70
        statements = _count_store_reads(monkeypatch)
        again = run_batch(files, task, settings, progress=False)
        assert len(sim.requests) == 70  # not one chat request more
    assert all(again.cached) and list(again.text) == list(first.text)
    assert list(again.model) == ["caprl"] * 70 and list(again.checkpoint) == [sim.root] * 70
    assert list(again.completion_tokens) == list(first.completion_tokens)
    # 5 chunks of 16 rows: the file hashes and the answers of each in one query apiece (and
    # the legacy aliases once), where one query per row for each was 140.
    assert len(_reads(statements)) <= 2 * 5 + 1


def test_a_rerun_answers_stored_rows_in_bulk_and_sends_the_rest_in_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from caprl_nb import batch
    from caprl_nb.batch import run_batch
    from caprl_nb.config import resolve_settings
    from caprl_nb.prompts import caption_task

    from tests.conftest import make_images
    from tests.support.vllm_sim import VLLMSimulator

    monkeypatch.setattr(store_module, "RACY_WINDOW_NS", 0)
    monkeypatch.setattr(batch, "_LOOKUP_CHUNK", 4)
    files = make_images(tmp_path / "images", 8)
    new, other = make_images(tmp_path / "new", 2, size=(40, 30))
    task = caption_task(max_tokens=8)
    with VLLMSimulator() as sim:
        settings = resolve_settings(base_url=sim.base_url)
        first = run_batch(files, task, settings, progress=False)
        Path(files[5]).write_bytes(Path(other).read_bytes())  # same path, other content
        rows = [*files, new, str(tmp_path / "missing.png"), b"not an image", files[0]]
        sim.reset_log()
        again = run_batch(rows, task, settings, progress=False)
        sent = len(sim.requests)
    assert [r.cached for r in again] == [True] * 5 + [False] + [True] * 2 + [False] * 3 + [True]
    assert sent == 2  # the changed file and the new one
    assert [r.text for r in again][:5] == list(first.text)[:5]
    assert [r.text for r in again][6:8] == list(first.text)[6:8]
    assert again[5].text is not None and again[5].text != first[5].text
    assert again[8].text is not None and again[8].error is None
    assert again[9].error_type == "ImageNotFoundError" and "missing.png" in (again[9].error or "")
    assert again[10].error_type == "ImageDecodeError"
    assert again[11].text == first[0].text


def test_run_one_from_the_store_in_bulk_keeps_the_provenance(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import asyncio

    from caprl_nb.config import resolve_settings
    from caprl_nb.prompts import caption_task
    from caprl_nb.rows import run_one

    from tests.conftest import make_images
    from tests.support.vllm_sim import VLLMSimulator

    monkeypatch.setattr(store_module, "RACY_WINDOW_NS", 0)
    image = make_images(tmp_path / "images", 1)[0]
    with VLLMSimulator() as sim:
        settings = resolve_settings(base_url=sim.base_url)
        first = asyncio.run(run_one(caption_task(max_tokens=8), image, settings))
        statements = _count_store_reads(monkeypatch)
        again = asyncio.run(run_one(caption_task(max_tokens=8), image, settings))
        assert len(sim.requests) == 1
    assert again.cached and first.key is not None
    assert (again.text, again.key, again.created_at, again.base_url, again.server_version, again.checkpoint) == (
        first.text, first.key, first.created_at, sim.base_url, "0.32.0", sim.root)
    assert not any("FROM results WHERE key = " in s for s in statements)  # answered by the bulk lookup


def test_the_lookup_phase_holds_off_the_garbage_collector_and_leaves_it_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A full collection walks the whole heap (about 90 ms with pandas and openai imported),
    # and a cached re-run's lookups used to start one every few thousand rows. The lookup of a
    # chunk runs with the collector off; a collector the user turned off stays off.
    import gc

    from caprl_nb import batch, images
    from caprl_nb.batch import run_batch
    from caprl_nb.config import resolve_settings
    from caprl_nb.prompts import caption_task

    from tests.conftest import make_images
    from tests.support.vllm_sim import VLLMSimulator

    monkeypatch.setattr(store_module, "RACY_WINDOW_NS", 0)
    monkeypatch.setattr(batch, "_LOOKUP_CHUNK", 8)
    files = make_images(tmp_path / "images", 20)
    task = caption_task(max_tokens=8)
    seen: list[bool] = []
    stat_files = images.stat_files

    def watched(values: Iterable[object], max_bytes: int = images.DEFAULT_MAX_BYTES) -> list[FileStat | None]:
        seen.append(gc.isenabled())
        return stat_files(values, max_bytes=max_bytes)

    with VLLMSimulator() as sim:
        settings = resolve_settings(base_url=sim.base_url)
        first = run_batch(files, task, settings, progress=False)
        monkeypatch.setattr(images, "stat_files", watched)
        assert gc.isenabled()
        again = run_batch(files, task, settings, progress=False)
        assert gc.isenabled()  # on again after the batch
        assert seen == [False, False, False]  # 3 chunks of 8 rows, each looked up with it off
        gc.disable()
        try:
            once_more = run_batch(files, task, settings, progress=False)
            assert not gc.isenabled()  # the user's choice, kept
        finally:
            gc.enable()
    assert all(again.cached) and all(once_more.cached)
    assert list(again.text) == list(once_more.text) == list(first.text)
