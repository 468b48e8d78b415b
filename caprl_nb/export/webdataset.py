"""WebDataset shards: ``.tar`` files where each row is ``<key>.<ext>``, ``<key>.txt``, ``<key>.json``.

The image keeps its bytes and extension (``.jpg``, ``.png``, ...), ``.txt`` holds the exported
text (the reviewed caption, or an extraction's JSON) and ``.json`` the row's every column
(text, review, provenance). Shards are ``data-000000.tar``, ``data-000001.tar``, ... of at most
``shard_size`` rows each, written as a stream (:mod:`tarfile`), so the ``webdataset`` package
reads them with ``wds.WebDataset("FOLDER/data-{000000..000009}.tar")``. The folder's
``caprl_export.json`` lists the shards.
"""

from __future__ import annotations

import io
import json
import tarfile
import time
from pathlib import Path
from typing import Any

from caprl_nb.errors import ConfigError
from caprl_nb.export.media import Encoded

__all__ = ["ShardWriter"]


class ShardWriter:
    """Appends each row's members to the current shard; a new shard every ``shard_size`` rows."""

    def __init__(self, folder: Path, columns: list[tuple[str, str]], text: str, shard_size: int) -> None:
        if isinstance(shard_size, bool) or not isinstance(shard_size, int) or shard_size < 1:
            raise ConfigError(f"shard_size must be a positive number of rows, not {shard_size!r}.")
        self.folder = folder
        self.columns = [name for name, _ in columns]
        self.text = text
        self.shard_size = shard_size
        self.shards: list[str] = []
        self._tar: tarfile.TarFile | None = None
        self._count = 0
        self._mtime = time.time()

    def _member(self, name: str, data: bytes) -> None:
        assert self._tar is not None
        info = tarfile.TarInfo(name)
        info.size, info.mtime, info.mode = len(data), self._mtime, 0o644
        self._tar.addfile(info, io.BytesIO(data))

    def add(self, key: str, image: Encoded, record: dict[str, Any]) -> None:
        if self._tar is None or self._count % self.shard_size == 0:
            self._close_shard()
            name = f"data-{len(self.shards):06d}.tar"
            self.shards.append(name)
            # Open across many add() calls (a shard is many rows); closed by _close_shard/abort.
            self._tar = tarfile.open(self.folder / name, "w", format=tarfile.PAX_FORMAT)  # noqa: SIM115
        self._count += 1
        meta = {c: record.get(c) for c in self.columns}
        self._member(f"{key}.{image.extension}", image.data)
        self._member(f"{key}.txt", str(record.get(self.text) or "").encode("utf-8"))
        self._member(f"{key}.json", json.dumps(meta, ensure_ascii=False, allow_nan=False).encode("utf-8"))

    def _close_shard(self) -> None:
        if self._tar is not None:
            self._tar.close()
            self._tar = None

    def close(self, manifest: dict[str, Any]) -> list[str]:
        self._close_shard()
        return list(self.shards)

    def abort(self) -> None:
        self._close_shard()
