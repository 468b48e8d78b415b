"""One export: check the options, choose the rows, stream them into a writer, publish atomically.

:func:`export` writes a dataset to disk (imagefolder, Parquet or WebDataset); :func:`collect`
is the same pass into any writer (``to_hf_dataset`` gathers Arrow batches with it). A row whose
image cannot be read is data: ``errors="raise"`` (the default) reads every row, then raises one
:class:`ExportImageError` listing all of them and publishes nothing; ``errors="skip"`` leaves
them out, says so in a warning and lists them in the manifest.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

import pandas as pd

from caprl_nb.__about__ import __version__
from caprl_nb.errors import ConfigError, warn
from caprl_nb.export.atomic import MANIFEST, check_target, staged
from caprl_nb.export.failures import ExportImageError
from caprl_nb.export.imagefolder import ImageFolderWriter
from caprl_nb.export.media import Encoded
from caprl_nb.export.parquet import ParquetWriter
from caprl_nb.export.provenance import iso_time, open_provenance
from caprl_nb.export.selection import Selection, select
from caprl_nb.export.stream import progress_bar, rows
from caprl_nb.export.webdataset import ShardWriter

__all__ = ["FORMATS", "Outcome", "collect", "export", "read_manifest", "selection_for"]

FORMATS = ("imagefolder", "parquet", "webdataset")
Errors = Literal["raise", "skip"]
_LISTED = 1000  # rows listed by label in the manifest per kind of omission (all are counted)


class Writer(Protocol):
    def add(self, key: str, image: Encoded, record: dict[str, Any]) -> None: ...
    def close(self, manifest: dict[str, Any]) -> list[str]: ...
    def abort(self) -> None: ...


@dataclass
class Outcome:
    """What one pass wrote and left out."""

    selection: Selection
    written: int = 0
    failed: list[dict[str, Any]] = field(default_factory=list)  # {"index", "input", "error"}

    def manifest(self, fmt: str, rows_option: Any, files: list[str]) -> dict[str, Any]:
        s = self.selection
        without = [str(label) for label in s.frame.index[s.without_text[:_LISTED]].tolist()]
        return {
            "format": fmt,
            "created_at": iso_time(time.time()),
            "caprl_nb_version": __version__,
            "kind": s.kind,
            "text_column": s.name,
            "rows_option": rows_option if isinstance(rows_option, str) else "mask",
            "rows": self.written,
            "selected": len(s.positions) + len(s.without_text),
            "columns": ["image", *(name for name, _ in s.columns)],
            "files": files,
            "skipped": self.failed,
            "without_text": {"count": len(s.without_text), "index": without},
        }

    def report(self, where: str) -> None:
        """One warning for rows left out (unreadable images, rows without text)."""
        s = self.selection
        notes = []
        if self.failed:
            labels = ", ".join(str(f["index"]) for f in self.failed[:10])
            more = f" and {len(self.failed) - 10} more" if len(self.failed) > 10 else ""
            notes.append(
                f"{len(self.failed)} row(s) were left out because their image cannot be read "
                f"(errors='skip'): {labels}{more}; the first: {self.failed[0]['error']}"
            )
        if len(s.without_text):
            what = "caption" if s.kind == "caption" else "extracted values"
            labels = ", ".join(str(x) for x in s.frame.index[s.without_text[:10]].tolist())
            more = f" and {len(s.without_text) - 10} more" if len(s.without_text) > 10 else ""
            notes.append(
                f"{len(s.without_text)} selected row(s) have no {what} (it failed) and were left out: {labels}{more}"
            )
        if notes:
            warn(f"Exported {self.written} row(s). " + "; ".join(notes) + f". They are listed in {where}.")


def selection_for(
    frame: pd.DataFrame, *, image: Any, caption: Any, rows: Any, fields: Sequence[Any] | None,
    table: Any, columns: Sequence[Any], errors: str,
) -> Selection:
    if errors not in ("raise", "skip"):
        raise ConfigError(f"errors must be 'raise' or 'skip', not {errors!r}.")
    return select(frame, image=image, caption=caption, rows=rows, fields=fields, table=table, columns=list(columns))


def collect(
    selection: Selection, writer: Writer, *, errors: Errors, progress: bool, description: str,
    store: bool, home: str | Path | None,
) -> Outcome:
    """Stream the selected rows into ``writer``; raises :class:`ExportImageError` (after the
    whole pass) when ``errors="raise"`` and some image could not be read."""
    outcome = Outcome(selection)
    provenance = open_provenance(store, home)
    bar = progress_bar(len(selection.positions), progress, description)
    try:
        for row in rows(selection, provenance):
            if row.image is None:
                outcome.failed.append({"index": str(row.label), "input": row.input, "error": row.error})
                if bar is not None:
                    bar.set_postfix({"unreadable": len(outcome.failed)}, refresh=False)
            elif not (outcome.failed and errors == "raise"):  # a failed export writes no more
                writer.add(f"{outcome.written:08d}", row.image, row.record)
                outcome.written += 1
            if bar is not None:
                bar.update(1)
    finally:
        provenance.close()
        if bar is not None:
            bar.close()
    if outcome.failed and errors == "raise":
        cases = pd.DataFrame(outcome.failed).set_index("index")[["input", "error"]]
        raise ExportImageError(cases, total=len(selection.positions))
    return outcome


def _format(fmt: str | None, path: Path) -> str:
    if fmt is None:
        return "parquet" if path.suffix.lower() == ".parquet" else "imagefolder"
    if fmt not in FORMATS:
        raise ConfigError(f"format must be one of {', '.join(map(repr, FORMATS))}, not {fmt!r}.")
    return fmt


def export(
    frame: pd.DataFrame,
    path: str | Path,
    *,
    format: str | None = None,
    image: Any = "image",
    caption: Any = "caption",
    rows: Any = "accepted",
    fields: Sequence[Any] | None = None,
    table: Any = None,
    columns: Sequence[Any] = (),
    errors: Errors = "raise",
    overwrite: bool = False,
    progress: bool = True,
    shard_size: int = 1000,
    store: bool = True,
    home: str | Path | None = None,
) -> Path:
    """Write the reviewed rows of ``frame`` as a training set; returns the path written.

    ``frame`` is what ``gallery.apply(df)`` returns (``review_status``, ``reviewed_<caption>``,
    ``reviewed_at``). Each exported row is its image (original bytes and extension; PIL
    images and arrays as PNG) and the reviewed caption (the edit, else the model's), with
    ``original_<caption>``, ``edited_<caption>``, ``review_status``, ``reviewed_at``, the row's
    ``index`` and ``source``, ``image_sha256`` and the answer's provenance from the result store
    (``task``, ``model``, ``checkpoint``, ``prompt``, ``sampling`` as JSON, ``server_version``,
    ``answered_at``); ``columns=[...]`` carries more of the frame's columns.

    ``format``: ``"imagefolder"`` (a folder of images + ``metadata.jsonl`` for
    ``datasets.load_dataset("imagefolder", data_dir=path)``), ``"parquet"`` (one file, images
    embedded, an ``Image`` feature for ``load_dataset("parquet", data_files=path)``) or
    ``"webdataset"`` (a folder of ``.tar`` shards of ``shard_size`` rows); by default Parquet for a
    path ending in ``.parquet``, else imagefolder.
    ``rows``: ``"accepted"`` (accepted and edited rows, the default), ``"reviewed"`` (every
    decided row, rejected included: filter on ``review_status``), ``"all"``, or a boolean mask.
    Rows without text (a failed caption) are never written. ``fields=[...]`` or ``table=...``
    export an extraction instead (``df[["image"]].join(review.apply(result))``): its fields, or
    its table, as JSON text in a ``fields`` (or the table's) column.
    ``errors``: ``"raise"`` lists every unreadable image in one :class:`ExportImageError` and
    writes nothing; ``"skip"`` leaves those rows out (a warning, and the manifest lists them).
    The export is atomic: it is written beside ``path`` and renamed into place once complete.
    An existing ``path`` raises :class:`ExportTargetError` unless ``overwrite=True``, which
    replaces only an earlier export. ``store``/``home``: the result store provenance is read from.
    """
    target = Path(path).expanduser().absolute()
    fmt = _format(format, target)
    selection = selection_for(frame, image=image, caption=caption, rows=rows, fields=fields, table=table,
                              columns=columns, errors=errors)
    check_target(target, overwrite)  # before any image is read
    with staged(target, directory=fmt != "parquet", overwrite=overwrite) as tmp:
        writer: Writer
        if fmt == "imagefolder":
            writer = ImageFolderWriter(tmp, selection.columns)
        elif fmt == "webdataset":
            writer = ShardWriter(tmp, selection.columns, selection.name, shard_size)
        else:
            writer = ParquetWriter(tmp, selection.columns)
        try:
            outcome = collect(selection, writer, errors=errors, progress=progress, description=fmt,
                              store=store, home=home)
        except BaseException:
            writer.abort()
            raise
        manifest = outcome.manifest(fmt, rows, [])
        manifest["files"] = writer.close(manifest)
        if fmt != "parquet":
            (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    where = f"the file's 'caprl_nb' metadata ({target})" if fmt == "parquet" else str(target / MANIFEST)
    outcome.report(where)
    return target


def read_manifest(path: str | Path) -> dict[str, Any]:
    """The manifest of an export: its folder's ``caprl_export.json``, or a Parquet file's metadata."""
    target = Path(path).expanduser()
    if target.is_dir():
        loaded: dict[str, Any] = json.loads((target / MANIFEST).read_text(encoding="utf-8"))
        return loaded
    import pyarrow.parquet as pq

    metadata = pq.read_metadata(str(target)).metadata or {}
    if b"caprl_nb" not in metadata:
        raise ConfigError(f"{target} is not an export made by caprl_nb (no 'caprl_nb' metadata).")
    parsed: dict[str, Any] = json.loads(metadata[b"caprl_nb"])
    return parsed
