"""Frames from files, for ``caprl-nb export``: what ``caprl-nb caption -o`` wrote, reviews applied.

A file from ``caprl-nb caption`` holds ``path`` and ``caption`` but no review columns: the
decisions a gallery made over the same images and captions are in the result store (keyed by
:func:`caprl_nb.widgets.reviews.item_key`), so :func:`with_stored_reviews` applies them, as
``gallery.apply(df)`` would.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from caprl_nb.cells import is_missing
from caprl_nb.config import resolve_settings
from caprl_nb.errors import ColumnNotFoundError, ConfigError

__all__ = ["image_column", "read_frame", "with_stored_reviews"]


def read_frame(path: str | Path) -> pd.DataFrame:
    """A ``.parquet``, ``.jsonl`` or ``.csv`` file as a DataFrame."""
    source = Path(path).expanduser()
    if not source.is_file():
        raise ConfigError(f"No such file: {source}. Pass the .parquet, .jsonl or .csv that holds the frame.")
    suffix = source.suffix.lower()
    if suffix == ".parquet":
        return pd.read_parquet(source)
    if suffix == ".jsonl":
        return pd.read_json(source, lines=True, dtype=False)
    if suffix == ".csv":
        return pd.read_csv(source)
    msg = f"Cannot read {source.name}: pass a .parquet, .jsonl or .csv file (as `caprl-nb caption -o` writes)."
    raise ConfigError(msg)


def image_column(frame: pd.DataFrame, given: Any) -> Any:
    """The image column: ``given``, else ``image``, else ``path`` (what ``caprl-nb caption`` writes)."""
    if given is not None:
        return given
    for name in ("image", "path"):
        if name in frame.columns:
            return name
    raise ColumnNotFoundError("image", list(frame.columns))


def with_stored_reviews(frame: pd.DataFrame, image: Any, caption: Any, home: str | Path | None = None) -> pd.DataFrame:
    """``frame`` with the stored review decisions of its (image, caption) rows applied; as it is
    when it already has ``review_status``, or no row has a stored decision."""
    if "review_status" in frame.columns or caption not in frame.columns or image not in frame.columns:
        return frame
    path = resolve_settings(home=home).store_path
    if not path.exists():
        return frame
    from caprl_nb.store import ResultStore
    from caprl_nb.widgets.reviews import ReviewModel, item_key

    data = frame.reset_index(drop=True) if not frame.index.is_unique else frame
    keys = [
        item_key(v, None if is_missing(c) else str(c))
        for v, c in zip(data[image].tolist(), data[caption].tolist())
    ]
    model = ReviewModel(keys, ResultStore(path))
    try:
        if model.counts()["unreviewed"] == len(keys):
            return frame  # nothing decided: the export's own error says what to do
        return model.apply(data, data.index, caption)
    finally:
        model.close()
