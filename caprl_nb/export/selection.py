"""Which rows an export writes, and what each of them says: its text, its review, its columns.

A frame from ``gallery.apply(df)`` holds ``review_status`` ("unreviewed", "accepted",
"rejected", "edited"), ``reviewed_<caption>`` (the edit, else the model's caption) and
``reviewed_at``. The exported text is the reviewed one. An extraction frame (``extract`` /
``chart_table`` results beside their images, reviewed with ``review.apply(result)``) exports its
fields, or its table, as JSON text instead (``fields=`` / ``table=``).

Rows with no text (a caption or extraction that failed) are never exported; they are counted
in the export's manifest as ``without_text``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from caprl_nb.cells import is_missing, optional
from caprl_nb.errors import ColumnNotFoundError, ConfigError
from caprl_nb.export.provenance import FIELDS, iso_time
from caprl_nb.widgets.edits import jsonable, table_json

__all__ = ["ROWS", "Selection", "select"]

ROWS = ("accepted", "reviewed", "all")
ACCEPTED = ("accepted", "edited")
_TABLE_ATTRS = ("title", "x_label", "y_label", "units")


def _kind(series: pd.Series) -> str:
    """The type an extra column is written as: bool, int64, float64, or string (JSON for objects)."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "bool"
    if pd.api.types.is_integer_dtype(dtype):
        return "int64"
    if pd.api.types.is_float_dtype(dtype):
        return "float64"
    return "string"


def _text(value: Any) -> str | None:
    """A cell as exported text: strings as they are, other values as JSON, missing as None."""
    if not isinstance(value, (list, dict, np.ndarray)) and is_missing(value):
        return None
    if isinstance(value, str):
        return value
    return json.dumps(jsonable(value), ensure_ascii=False, allow_nan=False)


def _time(value: Any) -> str | None:
    if is_missing(value):
        return None
    if isinstance(value, (int, float, np.number)):
        return iso_time(float(value))
    if isinstance(value, pd.Timestamp):
        utc = value.tz_localize("UTC") if value.tzinfo is None else value.tz_convert("UTC")
        return str(utc.floor("us").isoformat())
    return str(value)


def _table_text(value: Any) -> str | None:
    if isinstance(value, pd.DataFrame):
        data: dict[str, Any] = dict(table_json(value) or {})
        data.update({k: jsonable(value.attrs[k]) for k in _TABLE_ATTRS if value.attrs.get(k) is not None})
        return json.dumps(data, ensure_ascii=False, allow_nan=False)
    if isinstance(value, (str, dict)):
        return _text(value)
    return None


@dataclass
class Selection:
    """The rows to write (``positions``, in frame order) and how to describe each one."""

    frame: pd.DataFrame
    image: Any
    kind: str  # "caption" | "fields" | "table"
    name: str  # the column the exported text is written under
    source_column: Any  # the frame column holding the text (caption: the original caption)
    fields: list[Any]
    positions: np.ndarray
    without_text: np.ndarray
    extras: list[tuple[Any, str, str]] = field(default_factory=list)  # (frame column, name, type)

    @property
    def columns(self) -> list[tuple[str, str]]:
        """Every exported column but the image, in order, with its type."""
        names = [self.name]
        if self.kind == "caption":
            names += [f"original_{self.name}", f"edited_{self.name}"]
        elif "raw" in self.frame.columns:
            names.append("raw")
        names += ["review_status", "reviewed_at", "index"]
        typed = [(n, "string") for n in names]
        if self.kind != "caption" and "page" in self.frame.columns:
            typed.append(("page", "int64"))
        typed += [(n, "string") for n in ("source", "image_sha256", *FIELDS)]
        typed += [(name, kind) for _, name, kind in self.extras]
        return typed

    def _column(self, name: Any, rows: Sequence[int]) -> list[Any]:
        if name not in self.frame.columns:
            return [None] * len(rows)
        return [optional(v) for v in self.frame[name].iloc[list(rows)].tolist()]

    def images(self, rows: Sequence[int]) -> list[tuple[Any, Any]]:
        """Each row's image value and its PDF page (None unless an extraction read a page)."""
        pages = self._column("page", rows) if self.kind != "caption" else [None] * len(rows)
        return list(zip(self.frame[self.image].iloc[list(rows)].tolist(), pages))

    def originals(self, rows: Sequence[int]) -> list[str | None]:
        """The model's own text of each row, as the store holds it (None when the frame lacks it)."""
        column = self.source_column if self.kind == "caption" else "raw"
        return [None if v is None else str(v) for v in self._column(column, rows)]

    def records(self, rows: Sequence[int]) -> list[dict[str, Any]]:
        """Each row's exported columns except the image, its hash and the stored provenance."""
        rows = list(rows)
        statuses = self._column("review_status", rows)
        times = self._column("reviewed_at", rows)
        if self.kind == "caption":
            reviewed = f"reviewed_{self.source_column}"
            texts = self._column(reviewed if reviewed in self.frame.columns else self.source_column, rows)
        elif self.kind == "fields":
            values = self.frame[self.fields].iloc[rows].to_dict("records")
            texts = [_text({str(k): v for k, v in rec.items()}) for rec in values]
        else:
            texts = [_table_text(v) for v in self.frame[self.source_column].iloc[rows].tolist()]
        labels = self.frame.index[rows].tolist()
        originals = self.originals(rows) if self.kind == "caption" or "raw" in self.frame.columns else None
        pages = self._column("page", rows) if self.kind != "caption" and "page" in self.frame.columns else None
        out = []
        for k in range(len(rows)):
            record: dict[str, Any] = {self.name: texts[k]}
            if self.kind == "caption":
                assert originals is not None
                record[f"original_{self.name}"] = originals[k]
                record[f"edited_{self.name}"] = texts[k] if statuses[k] == "edited" else None
            elif originals is not None:
                record["raw"] = originals[k]
            record["review_status"] = statuses[k]
            record["reviewed_at"] = _time(times[k])
            record["index"] = str(labels[k])
            if pages is not None:
                record["page"] = None if pages[k] is None else int(pages[k])
            out.append(record)
        for column, name, kind in self.extras:
            values = self._column(column, rows)
            for record, value in zip(out, values):
                record[name] = _text(value) if kind == "string" else value
        models, checkpoints = self._column("model", rows), self._column("checkpoint", rows)
        for record, model, checkpoint in zip(out, models, checkpoints):
            record["model"], record["checkpoint"] = model, checkpoint
        return out

    def checkpoints(self, rows: Sequence[int]) -> list[str | None]:
        return [None if v is None else str(v) for v in self._column("checkpoint", rows)]


def _mask(rows: Any, frame: pd.DataFrame, statuses: pd.Series | None, hint: str) -> np.ndarray:
    n = len(frame)
    if isinstance(rows, str):
        if rows not in ROWS:
            msg = f"rows must be one of {', '.join(map(repr, ROWS))} or a boolean mask, not {rows!r}."
            raise ConfigError(msg)
        if rows == "all":
            return np.ones(n, dtype=bool)
        if statuses is None:
            msg = (
                f"rows={rows!r} exports reviewed rows, but this frame has no 'review_status' column. "
                f"Run {hint} to add the reviews, or pass rows='all' to export every row."
            )
            raise ConfigError(msg)
        keep = statuses.isin(ACCEPTED) if rows == "accepted" else statuses.isin((*ACCEPTED, "rejected"))
        return keep.to_numpy(dtype=bool)
    if isinstance(rows, pd.Series):
        if not rows.index.equals(frame.index):
            if not frame.index.is_unique or not rows.index.isin(frame.index).all():
                raise ConfigError("rows= as a Series must have the frame's index (a mask like df['col'] > 0).")
            rows = rows.reindex(frame.index, fill_value=False)
        values = rows.to_numpy()
    else:
        values = np.asarray(rows)
    if values.shape != (n,) or not (values.dtype == bool or pd.api.types.is_bool_dtype(values.dtype)):
        msg = f"rows= as a mask must be {n} booleans (one per row), not {values.dtype} of shape {values.shape}."
        raise ConfigError(msg)
    return np.asarray(pd.array(values, dtype="boolean").fillna(False), dtype=bool)


def select(
    frame: pd.DataFrame,
    *,
    image: Any,
    caption: Any,
    rows: Any,
    fields: Sequence[Any] | None,
    table: Any,
    columns: Sequence[Any],
) -> Selection:
    """Check the options against ``frame`` and choose the rows; raises before anything is written."""
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(f"export needs a DataFrame, not {type(frame).__name__}; for a Series use s.to_frame().")
    if fields is not None and table is not None:
        raise ConfigError("Pass fields=[...] (an extraction's columns) or table=... (a column of tables), not both.")
    needed = [image, *(fields or []), *([table] if table is not None else []), *columns]
    for column in needed:
        if column not in frame.columns:
            raise ColumnNotFoundError(column, list(frame.columns))
    statuses = frame["review_status"].astype("string") if "review_status" in frame.columns else None
    error = frame["error"] if "error" in frame.columns else None
    ok = np.ones(len(frame), dtype=bool) if error is None else error.isna().to_numpy(dtype=bool)
    if fields is not None or table is not None:
        hint = "review.apply(result) (an ExtractionReview) and join it to the images"
        if fields is not None:
            if not fields:
                raise ConfigError("fields= names no column; pass the extracted columns to export.")
            kind, name, source = "fields", "fields", None
            has_text = ok & frame[list(fields)].notna().any(axis=1).to_numpy(dtype=bool)
        else:
            kind, name, source = "table", str(table), table
            is_table = frame[table].map(lambda v: isinstance(v, (pd.DataFrame, str, dict)))
            has_text = ok & is_table.to_numpy(dtype=bool)
    else:
        hint = "gallery.apply(df)"
        reviewed = f"reviewed_{caption}"
        if caption not in frame.columns and reviewed not in frame.columns:
            raise ColumnNotFoundError(caption, list(frame.columns))
        kind, name, source = "caption", str(caption), caption
        text = frame[reviewed if reviewed in frame.columns else caption]
        has_text = text.notna().to_numpy(dtype=bool)
    chosen = _mask(rows, frame, statuses, hint)
    selection = Selection(
        frame, image, kind, name, source, list(fields or []),
        positions=np.flatnonzero(chosen & has_text), without_text=np.flatnonzero(chosen & ~has_text),
    )
    taken = {n for n, _ in selection.columns} | {"image", "file_name"}
    for column in columns:
        if str(column) in taken:
            raise ConfigError(f"The extra column {column!r} clashes with an exported column; rename it first.")
        taken.add(str(column))
        selection.extras.append((column, str(column), _kind(frame[column])))
    return selection
