import dataclasses
import sqlite3
import threading
from pathlib import Path

import pytest

from caprl_nb.client import ServerInfo
from caprl_nb.errors import StoreError
from caprl_nb.images import FileStat
from caprl_nb.store import MIGRATIONS, RACY_WINDOW_NS, ResultStore


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
        rows = store._run("SELECT COUNT(*) FROM schema_migrations")
        assert rows[0][0] == len(MIGRATIONS)


def test_newer_schema_is_refused_with_advice(tmp_path: Path) -> None:
    path = tmp_path / "s.sqlite3"
    ResultStore(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="newer caprl_nb"):
        ResultStore(path)


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


def test_two_processes_opening_a_new_store_at_once_both_succeed(tmp_path: Path) -> None:
    import subprocess
    import sys

    path = tmp_path / "race.sqlite3"
    code = "import sys; from caprl_nb.store import ResultStore; ResultStore(sys.argv[1]).close()"
    procs = [subprocess.Popen([sys.executable, "-c", code, str(path)], stderr=subprocess.PIPE)
             for _ in range(4)]
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err.decode()
    with ResultStore(path) as store:
        assert store.schema_version == len(MIGRATIONS)
