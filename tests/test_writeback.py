"""caprl_nb.writeback: answers written behind the batch, many per transaction, all before close."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from caprl_nb import store as store_module
from caprl_nb.images import FileStat, UrlMemo
from caprl_nb.store import ResultStore
from caprl_nb.writeback import WriteBehind


def _result(i: int) -> dict[str, Any]:
    return {
        "key": f"k{i}", "task": "caption", "image_sha256": f"{i:064x}", "model": "caprl",
        "params": {"max_tokens": 8}, "text": f"answer {i}", "checkpoint": "tiny",
    }


def test_answers_queued_while_a_write_runs_go_in_one_transaction_and_all_land_before_close(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "r.sqlite3")
    begins: list[str] = []
    assert store._db is not None
    store._db.set_trace_callback(lambda sql: begins.append(sql) if sql.startswith("BEGIN") else None)
    gate = threading.Event()
    real = store.write_many

    def slow_first(**kwargs: Any) -> None:
        gate.wait(5)  # the first transaction takes a while: everything queued meanwhile waits
        real(**kwargs)

    store.write_many = slow_first  # type: ignore[method-assign]
    notes: list[str] = []
    writes = WriteBehind(store, notes.append)
    for i in range(300):
        writes.put(_result(i))
    gate.set()
    writes.close()
    assert notes == []
    assert store.count() == 300
    assert 1 <= len(begins) <= 3, begins  # not one transaction per answer
    assert store.get("k299") is not None and store.get("k299").text == "answer 299"  # type: ignore[union-attr]
    store.close()


def test_flush_waits_for_what_was_queued(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "r.sqlite3")
    writes = WriteBehind(store, print)
    writes.put(_result(1))
    writes.flush()
    assert store.get("k1") is not None
    writes.close()
    writes.close()  # twice is harmless
    store.close()


def test_memos_keep_the_racy_window_and_url_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ResultStore(tmp_path / "r.sqlite3")
    writes = WriteBehind(store, print)
    old = FileStat("/data/old.jpg", 10, 1_000_000_000, 7, 1_000_000_000)
    fresh_ns = 2**62  # modified "now": could be rewritten within the same timestamp
    fresh = FileStat("/data/fresh.jpg", 10, fresh_ns, 8, fresh_ns)
    writes.remember_file_hash(old, "a" * 64)
    writes.remember_file_hash(fresh, "b" * 64)
    writes.remember_url("https://example.org/x.png?sig=secret", UrlMemo('"e1"', None, "c" * 64))
    writes.close()
    assert store.file_hashes([old, fresh]) == ["a" * 64, None]
    assert store.url_memo("https://example.org/x.png?sig=secret") == UrlMemo('"e1"', None, "c" * 64)
    assert not store.read("SELECT * FROM url_hashes WHERE key LIKE '%secret%'")
    store.close()


def test_a_store_that_fails_costs_notes_never_an_exception(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = ResultStore(tmp_path / "r.sqlite3")
    monkeypatch.setattr(store_module, "BUSY_GIVE_UP_S", 0.1)
    notes: list[str] = []
    writes = WriteBehind(store, notes.append)
    store.close()  # every write now fails
    writes.put(_result(1))
    writes.remember_file_hash(FileStat("/x.jpg", 1, 1, 1, 1), "d" * 64)
    writes.close()
    assert any(n.startswith("Some answers could not be stored (a re-run asks again)") for n in notes), notes
    assert any("could not keep a memo" in n for n in notes), notes
    assert all("is closed; open a new ResultStore" in n for n in notes)
