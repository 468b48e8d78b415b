"""``to_hf_dataset``: the export as an in-memory ``datasets.Dataset``, images typed ``Image``.

The same rows, columns and provenance as :func:`caprl_nb.export.export` writes, gathered as
Arrow record batches with the Parquet export's schema (its ``huggingface`` metadata types
``image`` as ``datasets.Image``). Nothing is written to disk.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from caprl_nb.errors import ConfigError
from caprl_nb.export.media import Encoded
from caprl_nb.export.parquet import Batches
from caprl_nb.export.run import Errors, collect, selection_for

__all__ = ["to_hf_dataset"]


class _Gather:
    """A writer that keeps record batches in memory."""

    def __init__(self, columns: list[tuple[str, str]]) -> None:
        self.batches = Batches(columns)
        self.taken: list[Any] = []

    def add(self, key: str, image: Encoded, record: dict[str, Any]) -> None:
        if self.batches.add(key, image, record):
            self.taken.append(self.batches.take())

    def close(self, manifest: dict[str, Any]) -> list[str]:
        last = self.batches.take()
        if last is not None:
            self.taken.append(last)
        return []

    def abort(self) -> None:
        self.taken.clear()


def to_hf_dataset(
    frame: pd.DataFrame,
    *,
    image: Any = "image",
    caption: Any = "caption",
    rows: Any = "accepted",
    fields: Sequence[Any] | None = None,
    table: Any = None,
    columns: Sequence[Any] = (),
    errors: Errors = "raise",
    progress: bool = True,
    store: bool = True,
    home: str | Path | None = None,
) -> Any:
    """The reviewed rows of ``frame`` as a ``datasets.Dataset`` in memory (options as
    :func:`caprl_nb.export.export`); ``image`` is an ``Image`` feature."""
    try:
        import datasets
        import pyarrow as pa
    except ImportError as exc:
        msg = "to_hf_dataset needs the datasets package: pip install datasets (it brings pyarrow)."
        raise ConfigError(msg) from exc
    selection = selection_for(frame, image=image, caption=caption, rows=rows, fields=fields, table=table,
                              columns=columns, errors=errors)
    gather = _Gather(selection.columns)
    outcome = collect(selection, gather, errors=errors, progress=progress, description="dataset",
                      store=store, home=home)
    gather.close({})
    table_ = pa.Table.from_batches(gather.taken, schema=gather.batches.schema)
    dataset = datasets.Dataset(table_)
    outcome.report("this warning (export() also writes them to a manifest)")
    return dataset
