"""store_import.py: another store's answers merged into this one, provenance kept, idempotent."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest

import caprl_nb
from caprl_nb.cli import main
from caprl_nb.config import resolve_settings
from caprl_nb.errors import StoreError
from caprl_nb.store import ResultStore
from caprl_nb.store_import import import_store

from tests.conftest import make_legacy_store
from tests.support.vllm_sim import VLLMSimulator


def _caption(files: list[str], sim: VLLMSimulator, home: Path) -> None:
    caprl_nb.caption(files, base_url=sim.base_url, home=str(home), max_tokens=8, progress=False)


def _rows(path: Path) -> dict[str, tuple[object, ...]]:
    db = sqlite3.connect(path)
    try:
        return {row[0]: row for row in db.execute("SELECT * FROM results")}
    finally:
        db.close()


def test_import_adds_what_is_missing_with_its_provenance(
    sim: VLLMSimulator, image_files: list[str], tmp_path: Path
) -> None:
    here, node = tmp_path / "here", tmp_path / "node"
    _caption(image_files[:6], sim, here)
    _caption(image_files[3:9], sim, node)
    node_store = node / "results.sqlite3"
    mine = _rows(here / "results.sqlite3")
    with ResultStore(here / "results.sqlite3") as store:
        counts = import_store(store, node_store)
        assert (counts.results, counts.new_results) == (6, 3)
        assert store.count() == 9
        again = import_store(store, node_store)
        assert again.new_results == 0
        assert again.new_file_hashes == 0
    merged = _rows(here / "results.sqlite3")
    for key, row in _rows(node_store).items():
        # New rows: every column as the node stored it (times, server, params); a key both
        # stores hold keeps this store's row.
        assert merged[key] == mine.get(key, row)

    sim.reset_log()
    _caption(image_files[:9], sim, here)
    assert sim.requests == []


def test_an_older_store_is_upgraded_in_a_copy_and_left_as_it_was(image_files: list[str], tmp_path: Path) -> None:
    old = tmp_path / "old.sqlite3"
    make_legacy_store(old, image_files[0], "an old caption")
    before = hashlib.sha256(old.read_bytes()).hexdigest()
    with ResultStore(tmp_path / "here.sqlite3") as store:
        counts = import_store(store, old)
        assert (counts.results, counts.new_results) == (1, 1)
        assert store.legacy_summary()[0]["alias"] == "caprl"  # still a schema-1 row, to adopt
    assert hashlib.sha256(old.read_bytes()).hexdigest() == before


def test_what_is_not_another_store_is_refused(tmp_path: Path) -> None:
    not_a_store = tmp_path / "plain.sqlite3"
    sqlite3.connect(not_a_store).execute("CREATE TABLE t (x)").connection.close()
    with ResultStore(tmp_path / "here.sqlite3") as store:
        with pytest.raises(StoreError, match="No result store at"):
            import_store(store, tmp_path / "missing.sqlite3")
        with pytest.raises(StoreError, match="this store itself"):
            import_store(store, store.path)
        with pytest.raises(StoreError, match="not a caprl_nb result store"):
            import_store(store, not_a_store)


def test_cli_store_import_reports_the_new_rows(
    sim: VLLMSimulator, image_files: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _caption(image_files[:4], sim, tmp_path / "node")
    assert main(["store", "import", str(tmp_path / "node" / "results.sqlite3")]) == 0
    out, err = capsys.readouterr()
    assert "4 new result(s) of 4" in out
    assert "4 new result(s) in" in err
    with ResultStore(resolve_settings().store_path) as store:  # CAPRL_HOME, set per test
        assert store.count() == 4
    assert main(["store", "import", str(tmp_path / "missing.sqlite3")]) == 2
