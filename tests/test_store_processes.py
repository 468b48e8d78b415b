"""The result store shared by real processes: racing opens, overlapping writers, kill -9, Ctrl-C.

Every process here is a real one (forked, or started with ``subprocess``), each with its own
SQLite connection and its own file locks; the simulator runs in the test process and answers
them all over loopback. Processes that must race wait at a barrier or a start file until all of
them are ready.
"""

from __future__ import annotations

import _thread
import hashlib
import json
import multiprocessing
import os
import queue
import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import caprl_nb
from caprl_nb import batch
from caprl_nb import store as store_module
from caprl_nb.batch import run_batch
from caprl_nb.config import resolve_settings
from caprl_nb.errors import CapRLWarning
from caprl_nb.prompts import caption_task
from caprl_nb.store import MIGRATIONS, ResultStore

from tests.conftest import make_images
from tests.support.polling import wait_until
from tests.support.vllm_sim import VLLMSimulator

# Wait for the start file (when given), then do the part named by argv[1].
_CHILD = r"""
import json, os, sys, time
from pathlib import Path

kind, ready, go = sys.argv[1:4]
args = sys.argv[4:]
if kind == "caption":
    import caprl_nb
elif kind == "hold":
    import sqlite3
deadline = time.monotonic() + 60

def wait_for(path):
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            sys.exit(f"gave up waiting for {path}")
        time.sleep(0.002)

if ready != "-":
    Path(ready).touch()
    wait_for(go)
if kind == "caption":
    base_url, home, files, out = args
    frame = caprl_nb.caption(
        json.loads(Path(files).read_text()), base_url=base_url, home=home, max_tokens=8,
        concurrency=16, details=True, progress=False,
    )
    Path(out).write_text(frame[["caption", "error"]].to_json(orient="values"))
elif kind == "hold":
    # Hold the store's write lock from `taken` until `release` exists (a busy kernel).
    path, taken, release = args
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("BEGIN IMMEDIATE")
    Path(taken).touch()
    wait_for(release)
    db.execute("COMMIT")
"""


def _child(kind: str, *args: str, ready: Path | None = None, go: Path | None = None) -> subprocess.Popen:
    env = dict(os.environ)
    # The children import this checkout's caprl_nb, whatever is installed.
    root = str(Path(caprl_nb.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    return subprocess.Popen(
        [sys.executable, "-c", _CHILD, kind, str(ready or "-"), str(go or "-"), *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def _start_together(tmp_path: Path, kind: str, arg_lists: list[list[str]]) -> list[subprocess.Popen]:
    """Start one child per argument list; release them at once when every one is ready."""
    go = tmp_path / "go"
    procs = [_child(kind, *args, ready=tmp_path / f"ready-{i}", go=go)
             for i, args in enumerate(arg_lists)]
    wait_until(lambda: all((tmp_path / f"ready-{i}").exists() for i in range(len(procs)))
               or any(p.poll() is not None for p in procs), 120, "every child process ready")
    go.touch()
    return procs


def _finish(proc: subprocess.Popen, timeout: float = 120) -> str:
    """Wait for a child; fail with its stderr unless it exited 0. Returns its stderr."""
    _, err = proc.communicate(timeout=timeout)
    text = err.decode(errors="replace")
    assert proc.returncode == 0, text
    return text


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _rows_per_image(path: Path) -> dict[str, int]:
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT image_sha256, COUNT(*) FROM results GROUP BY image_sha256").fetchall()
    finally:
        db.close()
    return dict(rows)


def _open_when_all_are_ready(path: str, barrier: Any, failures: Any) -> None:
    barrier.wait(60)
    try:
        ResultStore(path).close()
    except BaseException as exc:
        failures.put(f"{type(exc).__name__}: {exc}")
        raise


@pytest.mark.parametrize("processes", [8])
def test_processes_opening_one_new_store_at_once_all_succeed(tmp_path: Path, processes: int) -> None:
    # Forked where the platform can (no second import of the package: the race is what counts).
    methods = multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    path = tmp_path / "new" / "results.sqlite3"
    barrier, failures = context.Barrier(processes), context.Queue()
    procs = [context.Process(target=_open_when_all_are_ready, args=(str(path), barrier, failures))
             for _ in range(processes)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
    reported = []
    while True:  # (Queue.qsize is not implemented on macOS)
        try:
            reported.append(failures.get(timeout=0.5))
        except queue.Empty:
            break
    assert [proc.exitcode for proc in procs] == [0] * processes, reported
    with ResultStore(path) as store:
        assert store.journal_mode == "wal"
        names = store.read("SELECT name FROM _migrations ORDER BY rowid")
        assert [name for (name,) in names] == [m.__name__ for m in MIGRATIONS]
        columns = {row[1] for row in store.read("PRAGMA table_info(results)")}
        assert {"key", "checkpoint", "key_version", "adopted_as"} <= columns  # every migration, once
        assert store.read("PRAGMA integrity_check") == [("ok",)]


def test_two_processes_captioning_overlapping_rows_store_each_row_once(tmp_path: Path) -> None:
    files = make_images(tmp_path / "i", 150)
    home = tmp_path / "shared-home"
    # Each starts with rows of its own and ends with the 50 rows both caption (50-99), the
    # second in reverse order: both are busy from the start and meet on the same rows.
    first, second = files[:100], files[:49:-1]
    lists = []
    for name, part in (("a", first), ("b", second)):
        (tmp_path / f"{name}.json").write_text(json.dumps(part))
        lists.append((tmp_path / f"{name}.json", tmp_path / f"{name}-out.json"))
    # Sixteen answers at once every 0.1 s in each process: bursts of writes that collide.
    with VLLMSimulator(latency=0.1) as sim:
        procs = _start_together(
            tmp_path, "caption",
            [[sim.base_url, str(home), str(part), str(out)] for part, out in lists],
        )
        stderr = [_finish(proc) for proc in procs]
        arrivals = {image: r["_time"] for r in sim.requests for image in r["_images"]}
    for text in stderr:
        assert "locked" not in text and "could not be stored" not in text, text
    for (_, out), part in zip(lists, (first, second)):
        rows = json.loads(out.read_text())
        assert [error for _, error in rows] == [None] * len(part)
        assert [caption.split()[2] for caption, _ in rows] == [_sha(f)[:12] for f in part]
    # The two runs really overlapped: each one's own rows were being asked for at the same time.
    only_a = [arrivals[_sha(f)] for f in files[:50]]
    only_b = [arrivals[_sha(f)] for f in files[100:]]
    assert max(only_a) > min(only_b) and max(only_b) > min(only_a)
    stored = _rows_per_image(home / "results.sqlite3")
    assert stored == {_sha(f): 1 for f in files}


def test_kill_9_mid_write_burst_leaves_a_sound_store_and_the_rerun_sends_only_the_rest(
    tmp_path: Path,
) -> None:
    files = make_images(tmp_path / "i", 200)
    home = tmp_path / "home"
    path = home / "results.sqlite3"
    (tmp_path / "files.json").write_text(json.dumps(files))
    args = [str(home), str(tmp_path / "files.json"), str(tmp_path / "out.json")]

    def stored() -> int:
        if not path.exists():
            return 0
        db = sqlite3.connect(path)
        try:
            return db.execute("SELECT COUNT(*) FROM results").fetchone()[0]
        except sqlite3.OperationalError:  # not created yet
            return 0
        finally:
            db.close()

    with VLLMSimulator() as sim:
        child = _child("caption", sim.base_url, *args)
        wait_until(lambda: stored() >= 30 or child.poll() is not None, 120, "30 rows stored")
        child.send_signal(signal.SIGKILL)
        child.communicate(timeout=30)
        assert child.returncode == -signal.SIGKILL, "the child finished before it was killed"
        db = sqlite3.connect(path)
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        before = {sha for (sha,) in db.execute("SELECT image_sha256 FROM results")}
        db.close()
        assert 30 <= len(before) < len(files)

        sim.reset_log()
        _finish(_child("caption", sim.base_url, *args))
        resent = [image for r in sim.requests for image in r["_images"]]
    # Only what was not stored is sent again, each once; every row ends captioned once.
    assert len(resent) == len(set(resent)) == len(files) - len(before)
    assert not set(resent) & before
    rows = json.loads((tmp_path / "out.json").read_text())
    assert [caption.split()[2] for caption, _ in rows] == [_sha(f)[:12] for f in files]
    assert _rows_per_image(path) == {_sha(f): 1 for f in files}


@contextmanager
def _lock_holder(tmp_path: Path, store: Path) -> Iterator[tuple[Path, Path]]:
    """A process that takes the store's write lock when `take` exists, until `release` does."""
    take, taken, release = tmp_path / "take", tmp_path / "taken", tmp_path / "release"
    proc = _child("hold", str(store), str(taken), str(release), ready=tmp_path / "holder-ready", go=take)
    wait_until(lambda: (tmp_path / "holder-ready").exists(), 60, "the lock holder ready")
    try:
        yield take, release
    finally:
        release.touch()
        _finish(proc)


def _batch_thread_in_store_put() -> bool:
    """Whether the batch's store writer is inside ResultStore.write_many now (a write in progress)."""
    for thread in threading.enumerate():
        if thread.name == "caprl-store-writer" and thread.ident is not None:
            frame = sys._current_frames().get(thread.ident)
            while frame is not None:
                if frame.f_code.co_name == "write_many" and frame.f_code.co_filename.endswith("store.py"):
                    return True
                frame = frame.f_back
    return False


def test_ctrl_c_while_a_write_waits_for_the_lock_never_closes_the_store_under_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(batch, "STOP_WAIT_S", 0.2)
    files = make_images(tmp_path / "i", 1)
    settings_home = tmp_path / "home"
    path = settings_home / "results.sqlite3"
    ResultStore(path).close()
    with VLLMSimulator(latency=1.0) as sim, _lock_holder(tmp_path, path) as (take, release):
        settings = resolve_settings(base_url=sim.base_url, home=settings_home, max_backoff=0.05)

        problems: list[BaseException] = []

        def interrupt_while_writing() -> None:
            try:
                # The server has the row; another process takes the lock before it answers.
                wait_until(lambda: sim.requests, 30, "the request at the server")
                take.touch()
                wait_until((tmp_path / "taken").exists, 30, "the other process holding the lock")
                assert sim.in_flight == 1, "the simulator answered before the lock was taken"
                wait_until(_batch_thread_in_store_put, 30, "the row's write waiting for the lock")
            except BaseException as exc:  # noqa: BLE001 - reported by the test below
                problems.append(exc)
            finally:
                _thread.interrupt_main()

        threading.Thread(target=interrupt_while_writing, daemon=True).start()
        with pytest.raises(KeyboardInterrupt) as interrupted:
            run_batch(files, caption_task(max_tokens=8), settings, progress=False)
        assert not problems, problems
        assert "finishes in the background" in str(interrupted.value)
        # The caller got control back while the write still waits; nobody closed the store.
        assert _batch_thread_in_store_put()
        release.touch()
        wait_until(lambda: not any(t.name in ("caprl-batch", "caprl-store-writer") for t in threading.enumerate()), 30,
                   "the batch thread to finish its write and end")
    # The answer that was being written when Ctrl-C came is stored.
    assert _rows_per_image(path) == {_sha(files[0]): 1}


def test_a_store_locked_by_another_process_for_good_costs_the_memo_never_the_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(store_module, "BUSY_TIMEOUT_S", 0.05)
    monkeypatch.setattr(store_module, "BUSY_GIVE_UP_S", 0.3)
    files = make_images(tmp_path / "i", 2)
    home = tmp_path / "home"
    path = home / "results.sqlite3"
    ResultStore(path).close()
    task = caption_task(max_tokens=8)
    with VLLMSimulator() as sim, _lock_holder(tmp_path, path) as (take, release):
        settings = resolve_settings(base_url=sim.base_url, home=home, max_backoff=0.05)
        take.touch()
        wait_until((tmp_path / "taken").exists, 30, "the other process holding the lock")
        with pytest.warns(CapRLWarning) as caught:
            results = run_batch(files, task, settings, progress=False)
        said = " ".join(str(w.message) for w in caught)
        assert "could not be stored" in said and "could not keep a memo" in said
        assert "stayed locked by another process" in said
        # The server answered and the rows have the answers, though none could be stored.
        assert [r.error for r in results] == [None, None]
        assert [r.text.split()[2] for r in results] == [_sha(f)[:12] for f in files]
        release.touch()  # the next run waits for the lock as long as it normally would
        monkeypatch.setattr(store_module, "BUSY_GIVE_UP_S", 60.0)
        sim.reset_log()
        again = run_batch(files, task, settings, progress=False)
        assert [r.cached for r in again] == [False, False] and len(sim.requests) == 2
    assert _rows_per_image(path) == {_sha(f): 1 for f in files}
