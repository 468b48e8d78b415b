"""The export's one pass over the selected rows: in chunks, images read by a few threads.

Rows come out in frame order, each with its image bytes (or its failure) and its exported
columns, a chunk of :data:`CHUNK_ROWS` at a time: memory holds one chunk's images, whatever the
frame's size. Each chunk's stored provenance is one store query. A row whose image cannot be
read is a failure record, never an exception halfway; the caller decides what it means.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from caprl_nb import images
from caprl_nb.errors import ImageError, row_error
from caprl_nb.export.media import Encoded, encoded, source_text
from caprl_nb.export.provenance import Provenance
from caprl_nb.export.selection import Selection

__all__ = ["CHUNK_ROWS", "Row", "progress_bar", "rows"]

CHUNK_ROWS = 64  # rows whose images are held at once
READ_THREADS = 8  # files and URLs are read concurrently; order is kept


@dataclass
class Row:
    """One selected row: its image (or why it has none) and its exported columns."""

    position: int
    label: Any
    image: Encoded | None
    error: str | None
    input: str  # the image value, described (for failures)
    record: dict[str, Any]


def _read(value: Any, page: Any) -> Encoded | str:
    try:
        return encoded(value, page)
    except ImageError as exc:
        return row_error(exc)


def rows(selection: Selection, provenance: Provenance) -> Iterator[Row]:
    """Every selected row, in order, with images read and provenance looked up."""
    positions = selection.positions.tolist()
    with ThreadPoolExecutor(max_workers=READ_THREADS, thread_name_prefix="caprl-export") as pool:
        try:
            for start in range(0, len(positions), CHUNK_ROWS):
                chunk = positions[start : start + CHUNK_ROWS]
                values = selection.images(chunk)
                read = list(pool.map(lambda vp: _read(*vp), values))
                records = selection.records(chunk)
                hashes = [r.sha256 if isinstance(r, Encoded) else None for r in read]
                found = provenance.lookup(hashes, selection.originals(chunk), selection.checkpoints(chunk))
                labels = selection.frame.index[chunk].tolist()
                for k, position in enumerate(chunk):
                    got = read[k]
                    image = got if isinstance(got, Encoded) else None
                    record = records[k]
                    record["source"] = source_text(values[k][0])
                    record["image_sha256"] = hashes[k]
                    record.update({name: value for name, value in found[k].items() if value is not None})
                    yield Row(
                        position, labels[k], image, None if image is not None else str(got),
                        images.describe(values[k][0]), record,
                    )
        finally:
            pool.shutdown(wait=True, cancel_futures=True)


def progress_bar(total: int, enabled: bool, description: str) -> Any:
    """A tqdm bar (notebook or terminal, as :mod:`caprl_nb.batch` makes them), or None."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=f"caprl export {description}", unit="img", dynamic_ncols=True)
