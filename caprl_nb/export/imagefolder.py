"""The Hugging Face ``imagefolder`` layout: image files beside one ``metadata.jsonl``.

``datasets.load_dataset("imagefolder", data_dir=FOLDER)`` gives an ``image`` column (each file,
opened as it was written) beside every metadata column: the exported text, its review and
provenance. Files are named by the row's export key (``00000000.jpg``), flat in the folder (a
sub-folder would read as a class label). No metadata key ends in ``_file_name``: datasets would
take such a key for another file column.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from caprl_nb.export.media import Encoded

__all__ = ["METADATA", "ImageFolderWriter"]

METADATA = "metadata.jsonl"


class ImageFolderWriter:
    """Writes each row's image file and its metadata line as the row arrives."""

    def __init__(self, folder: Path, columns: list[tuple[str, str]]) -> None:
        self.folder = folder
        self.columns = [name for name, _ in columns]
        self._metadata = (folder / METADATA).open("w", encoding="utf-8")

    def add(self, key: str, image: Encoded, record: dict[str, Any]) -> None:
        name = f"{key}.{image.extension}"
        (self.folder / name).write_bytes(image.data)
        line = {"file_name": name, **{c: record.get(c) for c in self.columns}}
        self._metadata.write(json.dumps(line, ensure_ascii=False, allow_nan=False) + "\n")

    def close(self, manifest: dict[str, Any]) -> list[str]:
        self._metadata.close()
        return [METADATA]

    def abort(self) -> None:
        self._metadata.close()
