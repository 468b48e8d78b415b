"""An export appears whole or not at all: failures leave the target as it was and no staging
copy behind; overwrite=True replaces only an earlier export; what an export killed with SIGKILL
left behind, the next export to that target removes (and nothing that is in use or not ours)."""

from __future__ import annotations

import json
import os
import tarfile
from pathlib import Path

import pytest

from caprl_nb.errors import CapRLWarning
from caprl_nb.export import MANIFEST, ExportImageError, ExportTargetError, export, read_manifest

from tests.export.conftest import Reviewed


def _staging(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".caprl-" in p.name)


def test_unreadable_images_raise_all_at_once_and_publish_nothing(reviewed: Reviewed, tmp_path: Path) -> None:
    frame = reviewed.frame
    for label in ("r00", "r11"):  # accepted PNG files, gone since they were reviewed
        os.remove(frame.loc[label, "image"])
    with pytest.raises(ExportImageError) as caught:
        export(frame, tmp_path / "set", progress=False)
    assert sorted(caught.value.failure_cases.index) == ["r00", "r11"]
    assert caught.value.failure_cases["error"].str.contains("No such file").all()
    assert "errors='skip'" in str(caught.value) and "2 of 25" in str(caught.value)
    assert not (tmp_path / "set").exists() and _staging(tmp_path) == []


def test_errors_skip_writes_the_rest_and_lists_the_skipped(reviewed: Reviewed, tmp_path: Path) -> None:
    os.remove(reviewed.frame.loc["r01", "image"])
    with pytest.warns(CapRLWarning, match=r"1 row\(s\) were left out because their image cannot be read"):
        out = export(reviewed.frame, tmp_path / "set.parquet", errors="skip", progress=False)
    manifest = read_manifest(out)
    assert manifest["rows"] == 24
    assert [s["index"] for s in manifest["skipped"]] == ["r01"]
    assert "No such file" in manifest["skipped"][0]["error"]


def test_a_failure_midway_leaves_the_earlier_export_untouched(
    reviewed: Reviewed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "shards"
    export(reviewed.frame, target, format="webdataset", shard_size=5, progress=False)
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    members = 0
    real_addfile = tarfile.TarFile.addfile

    def disk_full_later(self: tarfile.TarFile, *args: object, **kwargs: object) -> None:
        nonlocal members
        members += 1
        if members > 30:  # ten rows (three shards) in: the disk fills up
            raise OSError(28, "No space left on device")
        real_addfile(self, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(tarfile.TarFile, "addfile", disk_full_later)
    with pytest.raises(OSError, match="No space left"):
        export(reviewed.frame, target, format="webdataset", rows="all", shard_size=5, overwrite=True, progress=False)
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before  # the old export, intact
    assert _staging(tmp_path) == []


def test_a_parquet_failure_at_the_last_write_publishes_nothing(
    reviewed: Reviewed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    def fail(self: object, *args: object, **kwargs: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(pq.ParquetWriter, "write_table", fail)
    with pytest.raises(OSError, match="Input/output"):
        export(reviewed.frame, tmp_path / "set.parquet", progress=False)
    assert not (tmp_path / "set.parquet").exists()
    assert _staging(tmp_path) == []


def test_overwrite_rules(reviewed: Reviewed, tmp_path: Path) -> None:
    frame = reviewed.frame
    target = export(frame, tmp_path / "set", progress=False)
    with pytest.raises(ExportTargetError, match="overwrite=True") as caught:
        export(frame, target, progress=False)
    assert isinstance(caught.value, FileExistsError)
    assert read_manifest(target)["rows"] == 25
    export(frame, target, rows="all", overwrite=True, progress=False)  # an earlier export: replaced
    assert read_manifest(target)["rows"] == 50 and _staging(tmp_path) == []
    assert len(list(target.glob("*.png"))) + len(list(target.glob("*.jpg"))) == 50  # no stale files

    precious = tmp_path / "notes"
    precious.mkdir()
    (precious / "thesis.tex").write_text("years of work")
    with pytest.raises(ExportTargetError, match="not an export made by caprl_nb"):
        export(frame, precious, overwrite=True, progress=False)
    assert (precious / "thesis.tex").read_text() == "years of work"

    empty = tmp_path / "empty"
    empty.mkdir()
    assert (export(frame, empty, progress=False) / MANIFEST).is_file()  # an empty folder is filled

    text = tmp_path / "table.parquet"
    text.write_text("not parquet")
    with pytest.raises(ExportTargetError, match="not an export"):
        export(frame, text, overwrite=True, progress=False)
    parquet = export(frame, tmp_path / "set.parquet", progress=False)
    export(frame, parquet, rows="reviewed", overwrite=True, progress=False)
    assert json.loads(json.dumps(read_manifest(parquet)))["rows"] == 35


# A child process that exports and then stalls (a disk that stopped answering) after a few rows,
# so that the test can kill it with SIGKILL in the middle of an export.
STALLING_EXPORT = """\
import sys
from pathlib import Path

import pandas as pd

from caprl_nb.export import export, imagefolder, parquet

frame_file, stalled, target, fmt = sys.argv[1:]
written = 0

def stall_after_five(add):
    def wrapped(self, *args):
        global written
        add(self, *args)
        written += 1
        if written == 5:
            Path(stalled).write_text("5 rows written")
            sys.stdin.read()  # blocks until the test kills this process
    return wrapped

for cls in (imagefolder.ImageFolderWriter, parquet.ParquetWriter):
    cls.add = stall_after_five(cls.add)
export(pd.read_pickle(frame_file), target, format=fmt, progress=False)
"""


class Stalled:
    """An export in another process, stopped after five rows; ``kill()`` is ``kill -9``."""

    def __init__(self, frame_file: Path, target: Path, fmt: str, flag: Path) -> None:
        import subprocess
        import sys

        import caprl_nb

        env = dict(os.environ)
        checkout = str(Path(caprl_nb.__file__).resolve().parents[1])  # this tree's caprl_nb
        env["PYTHONPATH"] = os.pathsep.join([checkout, *filter(None, [env.get("PYTHONPATH")])])
        self.process = subprocess.Popen(
            [sys.executable, "-c", STALLING_EXPORT, str(frame_file), str(flag), str(target), fmt],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
        )
        self.flag = flag

    def wait_stalled(self) -> None:
        from tests.support.polling import wait_until

        def stalled_or_dead() -> bool:
            if self.process.poll() is not None:
                output = self.process.stdout.read().decode() if self.process.stdout else ""
                pytest.fail(f"the exporting process ended early ({self.process.returncode}):\n{output}")
            return self.flag.exists()

        wait_until(stalled_or_dead, timeout=120, what="the child export to write five rows", interval=0.05)

    def kill(self) -> None:
        import signal

        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        assert self.process.wait(timeout=30) == -signal.SIGKILL
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()


def _staging_folders(folder: Path, name: str) -> list[Path]:
    return sorted(folder.glob(f".{name}.caprl-tmp-*"))


@pytest.mark.parametrize("fmt", ["imagefolder", "parquet"])
def test_an_export_killed_midway_is_cleaned_up_by_the_next_one(reviewed: Reviewed, tmp_path: Path, fmt: str) -> None:
    from caprl_nb.export.atomic import STAGING_MARKER

    frame_file = tmp_path / "frame.pkl"
    reviewed.frame.to_pickle(frame_file)
    target = tmp_path / ("set.parquet" if fmt == "parquet" else "set")
    child = Stalled(frame_file, target, fmt, tmp_path / "stalled")
    try:
        child.wait_stalled()
    finally:
        child.kill()
    [left] = _staging_folders(tmp_path, target.name)  # what kill -9 leaves: hidden, never the target
    marker = json.loads((left / STAGING_MARKER).read_text())
    assert marker["pid"] == child.process.pid and marker["target"] == target.name
    if fmt == "imagefolder":
        assert len(list(left.glob("0000000*.*"))) == 5
    assert not target.exists()

    out = export(reviewed.frame, target, format=fmt, progress=False)  # the next export to it
    assert read_manifest(out)["rows"] == 25
    assert _staging_folders(tmp_path, target.name) == []
    assert _staging(tmp_path) == []


def test_staging_in_use_or_not_clearly_ours_is_left_alone(reviewed: Reviewed, tmp_path: Path) -> None:
    from caprl_nb.export.atomic import STAGING_MARKER

    frame_file = tmp_path / "frame.pkl"
    reviewed.frame.to_pickle(frame_file)
    target = tmp_path / "set"
    # not clearly ours: no marker; a marker for another target; a link to a folder with a marker
    unmarked = tmp_path / ".set.caprl-tmp-0000beef"
    unmarked.mkdir()
    (unmarked / "keep.txt").write_text("someone's file")
    elsewhere = tmp_path / ".set.caprl-tmp-0000cafe"
    elsewhere.mkdir()
    (elsewhere / STAGING_MARKER).write_text(json.dumps({"caprl_nb_staging": 1, "pid": 1, "target": "other"}))
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / STAGING_MARKER).write_text(json.dumps({"caprl_nb_staging": 1, "pid": 1, "target": "set"}))
    (tmp_path / ".set.caprl-tmp-0000f00d").symlink_to(linked, target_is_directory=True)

    live = Stalled(frame_file, target, "imagefolder", tmp_path / "stalled")
    try:
        live.wait_stalled()
        [in_use] = [p for p in _staging_folders(tmp_path, "set") if p.name not in (
            unmarked.name, elsewhere.name, ".set.caprl-tmp-0000f00d")]
        export(reviewed.frame, target, progress=False)  # publishes beside the live export
        assert (in_use / STAGING_MARKER).is_file() and len(list(in_use.glob("0000000*.*"))) == 5
    finally:
        live.kill()
    export(reviewed.frame, target, overwrite=True, progress=False)  # now the killed one goes
    assert not in_use.exists()
    assert (unmarked / "keep.txt").read_text() == "someone's file"
    assert (elsewhere / STAGING_MARKER).is_file() and (linked / STAGING_MARKER).is_file()
    assert sorted(p.name for p in _staging_folders(tmp_path, "set")) == [
        unmarked.name, elsewhere.name, ".set.caprl-tmp-0000f00d"]


def test_without_locks_a_staging_folder_is_stale_only_when_its_pid_here_is_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket
    import subprocess
    import sys

    from caprl_nb.export import atomic

    monkeypatch.setattr(atomic, "fcntl", None)  # a file system (or platform) with no flock
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    assert ended.wait(timeout=60) == 0
    target = tmp_path / "set"
    cases = {"0000dead": (ended.pid, socket.gethostname()), "00000a11": (os.getpid(), socket.gethostname()),
             "0000abcd": (ended.pid, "another-host")}
    for tag, (pid, host) in cases.items():
        folder = tmp_path / f".set.caprl-tmp-{tag}"
        folder.mkdir()
        marker = {"caprl_nb_staging": 1, "pid": pid, "host": host, "target": "set"}
        (folder / atomic.STAGING_MARKER).write_text(json.dumps(marker))
    assert atomic.remove_stale_staging(target) == [tmp_path / ".set.caprl-tmp-0000dead"]
    left = sorted(p.name for p in _staging_folders(tmp_path, "set"))
    assert left == [".set.caprl-tmp-00000a11", ".set.caprl-tmp-0000abcd"]  # alive here; another host's
