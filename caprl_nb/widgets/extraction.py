"""Side-by-side review of structured extraction: the image beside its fields or chart table.

``df.caprl.review_extraction("image", result)`` (``result`` from ``extract`` or ``chart_table``)
shows one row at a time: the image, large, on the left; on the right the extracted fields as an
editable form, or the chart's table as an editable grid, with the row's error if it failed.
Reviews go through the gallery's :class:`~caprl_nb.widgets.reviews.ReviewModel` and the result
store: a row is keyed by :func:`item_key` of its image and the canonical JSON of its extracted
values, and an edit is stored as the canonical JSON of the corrected values, so decisions
survive a kernel restart. ``review.apply(result)`` gives the result back with edits applied,
typed like the input, plus ``review_status``.

Python owns the values, their types and the review state; ``static/extraction.js`` renders
what it is sent and reports what the user did. Wire protocol (the gallery's conventions,
see PROTOCOL.md):

Synced traitlets, Python -> JS: ``mode`` ("fields" | "table"), ``total``, ``title``,
``fields`` ([{"name", "kind"}], kind one of integer, number, boolean, string, json),
``labels`` (each row's index label as text), ``failed_ids``, ``statuses`` (one letter per row:
u, a, r, e), ``counts`` (all, unreviewed, accepted, rejected, edited, failed).
JS -> Python: ``current`` (the row shown; Python answers with its ``row`` and ``image``).

Custom messages, JS -> Python:
``{"type": "row", "id": k}`` (send row k and its image; the front end prefetches neighbours),
``{"type": "review", "id": k, "status": "accepted" | "rejected" | "unreviewed"}``,
``{"type": "edit", "id": k, "values": {field: text}}`` (the changed fields only) or
``{"type": "edit", "id": k, "table": {"columns": [text], "rows": [[text]]}}`` (the whole table).
Python -> JS: ``{"type": "row", "row": Row}``; ``{"type": "image", "id": k, "mime", "width",
"height"}`` with one buffer, or ``{"type": "image", "id": k, "error": "..."}``;
``{"type": "error", "message": "...", "id": k}`` for a refused message (the front end keeps the
reviewer's draft). Row = ``{"id", "label", "source", "status", "error", "values", "edited",
"kinds"}``: ``values`` the model's answer ({field: value}, or {"columns", "rows"} for a table,
None for a failed table), ``edited`` the reviewer's version in the same shape or None, ``kinds``
a table's column kinds. Every string may come from a model: the front end shows it as text only.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import pandas as pd
import traitlets

from caprl_nb import frames
from caprl_nb.cells import is_missing
from caprl_nb.config import resolve_settings
from caprl_nb.errors import ColumnNotFoundError, ConfigError
from caprl_nb.store import ResultStore
from caprl_nb.widgets.edits import (
    canonical_json,
    column_kind,
    jsonable,
    object_array,
    parse_table,
    parse_value,
    table_frame,
    table_json,
    table_kinds,
)
from caprl_nb.widgets.reviews import (
    STATUSES,
    ReviewModel,
    decision_times,
    item_key,
    release,
    row_id,
    source_name,
)
from caprl_nb.widgets.thumbnails import Thumbnail, ThumbnailCache

__all__ = ["ExtractionReview", "canonical_json", "review_extraction"]

STATIC = Path(__file__).parent / "static"
IMAGE_SIDE = 1280
_LETTER = {"unreviewed": "u", "accepted": "a", "rejected": "r", "edited": "e"}
# columns of an extract/chart_table result that are not extracted values
_NOT_FIELDS = {"page", "raw", *frames.DETAIL_COLUMNS}


def _source_name(value: object, page: object = None) -> str:
    name = source_name(value)
    return f"{name} p. {page}" if not is_missing(page) else name


class ExtractionReview(anywidget.AnyWidget):
    """One image at a time beside its extracted fields (a form) or chart table (a grid).

    ``ExtractionReview(frame, "image", fields=["total", "date"])`` or
    ``ExtractionReview(frame, "image", table_col="table")``; usually made by
    ``df.caprl.review_extraction("image", result)``. ``error`` and ``page`` name those
    columns (default: ``"error"`` and ``"page"`` when present); ``source`` a column whose values
    name each row's image for display (default: the image column). Decisions land in
    ``.reviews``, ``.apply(result)`` and the result store (``store=False`` keeps them in
    memory only).
    """

    _esm = STATIC / "extraction.js"
    _css = STATIC / "extraction.css"

    mode = traitlets.Unicode("fields").tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    total = traitlets.Int(0).tag(sync=True)
    fields = traitlets.List(traitlets.Dict()).tag(sync=True)
    labels = traitlets.List(traitlets.Unicode()).tag(sync=True)
    failed_ids = traitlets.List(traitlets.Int()).tag(sync=True)
    statuses = traitlets.Unicode("").tag(sync=True)
    counts = traitlets.Dict().tag(sync=True)
    current = traitlets.Int(0).tag(sync=True)

    def __init__(
        self,
        frame: pd.DataFrame,
        image: Any,
        fields: Sequence[Any] | None = None,
        *,
        table_col: Any = None,
        error: Any = None,
        page: Any = None,
        source: Any = None,
        title: str | None = None,
        image_side: int = IMAGE_SIDE,
        store: bool = True,
        home: str | Path | None = None,
    ) -> None:
        if not isinstance(frame, pd.DataFrame):
            raise ConfigError("ExtractionReview needs a DataFrame; for a Series use s.to_frame().")
        if (fields is None) == (table_col is None):
            msg = ("Pass fields=[...] (the extracted columns, as extract returns them) or "
                   "table_col=... (a column of DataFrames, as chart_table returns), not both.")
            raise ConfigError(msg)
        if error is None and "error" in frame.columns:
            error = "error"
        if page is None and "page" in frame.columns:
            page = "page"
        names = list(fields) if fields is not None else [table_col]
        for column in (image, error, page, source, *names):
            if column is not None and column not in frame.columns:
                raise ColumnNotFoundError(column, list(frame.columns))
        if fields is not None and len({str(f) for f in names}) != len(names):
            raise ConfigError(f"The fields' names must differ as text: {names}.")
        n = len(frame)
        self._frame = frame
        self._index = frame.index
        self._table_col = table_col
        self._fields = names if fields is not None else []
        self._kinds = {str(f): column_kind(frame[f]) for f in self._fields}
        self._images = frame[image].to_numpy(dtype=object)
        pages = frame[page].tolist() if page is not None else [None] * n
        named = frame[source].tolist() if source is not None else self._images
        self._sources = [_source_name(v, p) for v, p in zip(named, pages)]
        errors = frame[error].tolist() if error is not None else [None] * n
        self._errors: list[str | None] = [None if is_missing(e) else str(e) for e in errors]
        if table_col is not None:
            self._tables: list[pd.DataFrame | None] = [
                t if isinstance(t, pd.DataFrame) else None for t in frame[table_col].tolist()
            ]
            self._values: list[Any] = [table_json(t) for t in self._tables]
            for row, table in enumerate(self._tables):
                if table is None and self._errors[row] is None:
                    self._errors[row] = "no table"
        else:
            self._tables = []
            records = frame[self._fields].to_dict("records") if n else []
            self._values = [{str(k): jsonable(v) for k, v in rec.items()} for rec in records]
        opened = ResultStore(resolve_settings(home=home).store_path) if store else None
        self._reviews = ReviewModel(
            [item_key(v, canonical_json(x)) for v, x in zip(self._images, self._values)], opened
        )
        self._image_side = int(image_side)
        self._thumbs = ThumbnailCache(max_items=32)
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="caprl-xreview")
        super().__init__(
            mode="table" if table_col is not None else "fields",
            title=title or f"Review {n:,} extraction{'s' if n != 1 else ''}",
            total=n,
            fields=[{"name": str(f), "kind": self._kinds[str(f)]} for f in self._fields],
            labels=[str(label) for label in self._index],
            failed_ids=[r for r, e in enumerate(self._errors) if e is not None],
        )
        self._sync_statuses()
        self.on_msg(self._on_msg)
        self.observe(self._on_current, names=["current"])

    # -- reviews (the Python side) ---------------------------------------------------------
    @property
    def reviews(self) -> pd.DataFrame:
        """Reviewed rows: ``status`` and ``edited`` (a dict of fields or a DataFrame; else None)."""
        reviewed = np.flatnonzero(self._reviews.codes)
        return pd.DataFrame(
            {
                "status": pd.array([self._reviews.status(int(r)) for r in reviewed], dtype="string"),
                "edited": object_array([self._edited_value(int(r)) for r in reviewed]),
            },
            index=self._index[reviewed],
        )

    def apply(self, result: pd.DataFrame | pd.Series | None = None) -> pd.DataFrame:
        """``result`` with the edits applied and a ``review_status`` column, as a new DataFrame.

        Fields keep their column dtypes; an edited table becomes a DataFrame typed like the
        model's. A Series of tables becomes a DataFrame with ``table`` and ``review_status``.
        Rows are matched by position when ``result`` has the review's index, else by label;
        rows the review never saw are ``unreviewed``. Rejected rows keep their values:
        filter on ``review_status``; ``reviewed_at`` says when each decision was made (UTC).
        """
        if result is None:
            result = self._frame[self._fields] if self._table_col is None else self._frame[[self._table_col]]
        if isinstance(result, pd.Series):
            out = result.rename("table").to_frame()
            column: Any = "table"
        else:
            out = result.copy()
            column = self._table_col
        rows = self._positions(out.index)
        statuses = [self._reviews.status(r) if r >= 0 else "unreviewed" for r in rows]
        if self._table_col is None:
            for name in self._fields:
                if name not in out.columns:
                    continue
                values = out[name].astype(object).tolist()
                for i, r in enumerate(rows):
                    if r >= 0 and r in self._reviews.edits:
                        values[i] = self._edited_json(r)[str(name)]
                out[name] = self._typed(values, out[name].dtype)
        else:
            if column not in out.columns:
                raise ColumnNotFoundError(column, list(out.columns))
            tables = out[column].astype(object).tolist()
            for i, r in enumerate(rows):
                if r >= 0 and r in self._reviews.edits:
                    tables[i] = self._edited_value(r)
            out[column] = object_array(tables)
        out["review_status"] = pd.array(statuses, dtype="string")
        out["reviewed_at"] = decision_times([self._reviews.decided_at(r) if r >= 0 else None for r in rows], out.index)
        return out

    def review(self, label: Any, status: str) -> None:
        """Accept, reject or reset (``"unreviewed"``) the row with index ``label``."""
        self._set_status(self._row_of(label), status)

    def edit(self, label: Any, values: Any) -> None:
        """Correct the row with index ``label``: a dict of fields, or a DataFrame for a table."""
        self._set_edit(self._row_of(label), values)

    @staticmethod
    def _typed(values: list[Any], dtype: Any) -> Any:
        try:
            return pd.array(values, dtype=dtype)
        except (TypeError, ValueError, OverflowError):
            return pd.array(values, dtype=object)

    def _positions(self, index: pd.Index) -> list[int]:
        if index.equals(self._index):
            return list(range(len(index)))
        if not self._index.is_unique:
            msg = "The review's index has duplicates; apply() needs the result it was made from."
            raise ConfigError(msg)
        return [int(r) for r in self._index.get_indexer(index)]

    def _row_of(self, label: Any) -> int:
        try:
            where = self._index.get_loc(label)
        except KeyError:
            raise KeyError(f"No row {label!r} in this review.") from None
        if not isinstance(where, (int, np.integer)):
            raise KeyError(f"Row {label!r} is not unique in this review; reset_index() first.")
        return int(where)

    def _edited_json(self, row: int) -> Any:
        text = self._reviews.edited(row)
        if text is None:
            return None
        value = json.loads(text)
        if self._table_col is None:
            return {**self._values[row], **value}
        return value

    def _edited_value(self, row: int) -> Any:
        value = self._edited_json(row)
        if value is None or self._table_col is None:
            return value
        return table_frame(value, self._tables[row])

    # -- state -> front end ----------------------------------------------------------------
    def _sync_statuses(self) -> None:
        self.statuses = "".join(_LETTER[STATUSES[c]] for c in self._reviews.codes)
        counts = self._reviews.counts()
        self.counts = {"all": len(self._images), **counts, "failed": len(self.failed_ids)}

    def _row(self, row: int) -> dict[str, Any]:
        message: dict[str, Any] = {
            "id": row,
            "label": str(self._index[row]),
            "source": self._sources[row],
            "status": self._reviews.status(row),
            "error": self._errors[row],
            "values": self._values[row],
            "edited": self._edited_json(row),
        }
        if self._table_col is not None:
            table = self._tables[row]
            message["kinds"] = table_kinds(table) if table is not None else []
        return message

    def _show(self, row: int) -> None:
        if not 0 <= row < len(self._images):
            raise IndexError(f"row {row} is outside 0..{len(self._images) - 1}")
        self.send({"type": "row", "row": self._row(row)})
        self._pool.submit(self._send_image, row)

    def _send_image(self, row: int) -> None:
        made = self._thumbs.get(row, self._images[row], self._image_side)
        if isinstance(made, Thumbnail):
            message = {"type": "image", "id": row, "mime": made.mime, "width": made.width,
                       "height": made.height}
            self.send(message, buffers=[made.data])
        else:
            self.send({"type": "image", "id": row, "error": made})

    @traitlets.validate("current")
    def _valid_current(self, proposal: dict[str, Any]) -> int:
        return max(0, min(int(proposal["value"]), max(0, self.total - 1)))

    def _on_current(self, change: dict[str, Any]) -> None:
        if self.total:
            self._show(int(change["new"]))

    # -- messages from the front end -------------------------------------------------------
    def _on_msg(self, widget: Any, content: dict[str, Any], buffers: list[bytes]) -> None:
        kind = content.get("type")
        try:
            if kind == "row":
                self._show(row_id(content, len(self._images)))
            elif kind == "review":
                self._set_status(row_id(content, len(self._images)), str(content["status"]))
            elif kind == "edit":
                edit = content.get("table") if self._table_col is not None else content.get("values")
                self._set_edit(row_id(content, len(self._images)), edit)
            else:
                raise ValueError("unknown message type")
        except (KeyError, ValueError, IndexError, TypeError, ConfigError) as exc:
            message: dict[str, Any] = {"type": "error", "message": f"Bad {kind!r} message: {exc}"}
            if isinstance(exc, ConfigError):
                message["message"] = str(exc)
            if isinstance(content.get("id"), int):
                message["id"] = content["id"]
            self.send(message)

    def _set_status(self, row: int, status: str) -> None:
        self._check_row(row)
        self._reviews.set_status(row, status)
        self._changed(row)

    def _set_edit(self, row: int, values: Any) -> None:
        """Store ``values`` (typed) as the row's edit; values equal to the model's accept it."""
        self._check_row(row)
        if self._table_col is None:
            if not isinstance(values, dict):
                raise ConfigError("An edit of fields is a dict of {field: value}.")
            unknown = sorted(set(map(str, values)) - set(self._kinds))
            if unknown:
                msg = f"No field(s) {unknown} in this review; its fields are {list(self._kinds)}."
                raise ConfigError(msg)
            current = self._edited_json(row) or dict(self._values[row])
            edited = {**current, **{
                str(k): parse_value(self._kinds[str(k)], v, f"Field {str(k)!r}") for k, v in values.items()
            }}
        else:
            edited = parse_table(values, self._tables[row])
        if canonical_json(edited) == canonical_json(self._values[row]):
            self._reviews.set_status(row, "unreviewed")  # drops an earlier edit
            self._reviews.set_status(row, "accepted")
        else:
            self._reviews.set_edit(row, canonical_json(edited))
        self._changed(row)

    def _check_row(self, row: int) -> None:
        if not 0 <= row < len(self._images):
            raise IndexError(f"row {row} is outside 0..{len(self._images) - 1}")

    def _changed(self, row: int) -> None:
        self._sync_statuses()
        self.send({"type": "row", "row": self._row(row)})

    def close(self) -> None:
        release(getattr(self, "_pool", None), getattr(self, "_reviews", None))
        super().close()

    def __len__(self) -> int:
        return len(self._images)


_IMAGE = "__caprl_review_image__"
_SOURCE = "__caprl_review_source__"


def review_extraction(frame: pd.DataFrame, image: Any, result: Any, **options: Any) -> ExtractionReview:
    """The review of ``result`` (what ``extract`` or ``chart_table`` returned for ``frame[image]``).

    A DataFrame of fields reviews every column but ``page``, ``error``, ``raw`` and provenance
    (``fields=`` picks some); a Series of tables, or a frame with a ``table`` column, reviews
    the tables. PDF rows (a ``page`` column) show each page, rendered as extraction saw it.
    """
    if image not in frame.columns:
        raise ColumnNotFoundError(image, list(frame.columns))
    if isinstance(result, pd.Series):
        data = result.rename("table").to_frame()
        options.setdefault("table_col", "table")
    elif isinstance(result, pd.DataFrame):
        data = result.copy()
        is_tables = "table" in data.columns and all(
            t is None or isinstance(t, pd.DataFrame) for t in data["table"].tolist()
        )
        if "fields" not in options and "table_col" not in options:
            if is_tables:
                options["table_col"] = "table"
            else:
                options["fields"] = [c for c in data.columns if c not in _NOT_FIELDS]
    else:
        msg = f"review_extraction needs what extract or chart_table returned, not {type(result).__name__}."
        raise ConfigError(msg)
    shown, named = _images_for(frame[image], data)
    data[_IMAGE] = shown
    data[_SOURCE] = named
    options.setdefault("source", _SOURCE)
    return ExtractionReview(data, _IMAGE, **options)


def _images_for(column: pd.Series, result: pd.DataFrame) -> tuple[list[Any], list[Any]]:
    """Each result row's image (the frame's, or the rendered page for PDF rows) and its name."""
    if "page" in result.columns and result["page"].notna().any():
        return _pages_for(column, result)
    if result.index.equals(column.index):
        return column.tolist(), column.tolist()
    if not column.index.is_unique:
        raise ConfigError("The frame's index has duplicates; reset_index() before extracting.")
    where = column.index.get_indexer(result.index)
    if (where < 0).any():
        missing = list(result.index[where < 0][:5])
        msg = f"The result has rows {missing} that this frame has not; pass the frame it came from."
        raise ConfigError(msg)
    picked = column.iloc[where].tolist()
    return picked, picked


def _pages_for(column: pd.Series, result: pd.DataFrame) -> tuple[list[Any], list[Any]]:
    """The result's rows read back from its ``page`` column: pages 1..k of each PDF, in order.

    The pages the extraction read (after its ``max_pdf_pages=`` / ``max_pdf_bytes=`` caps) are
    exactly those the result lists, so nothing is opened or counted again here and no cap
    applies twice. A PDF row without pages (it failed) shows no image.
    """
    from caprl_nb.extract.pages import PAGE_PIXELS, PdfPage, is_pdf

    msg = "The result's pages do not match this frame's PDFs; pass the frame the extraction ran on."
    pages = [None if is_missing(p) else int(p) for p in result["page"].tolist()]
    shown: list[Any] = []
    positions: list[int] = []
    for position, value in enumerate(column.tolist()):
        first = len(shown)
        if is_pdf(value):
            source: str | bytes = (
                bytes(value) if isinstance(value, (bytes, bytearray, memoryview))
                else os.path.abspath(os.path.expanduser(os.fsdecode(value)))
            )
            while len(shown) < len(pages) and pages[len(shown)] == len(shown) - first + 1:
                shown.append(PdfPage(source, len(shown) - first + 1, PAGE_PIXELS))
                positions.append(position)
        if len(shown) == first and len(shown) < len(pages) and pages[len(shown)] is None:
            shown.append(None if is_pdf(value) else value)  # one row: not a PDF, or a failed one
            positions.append(position)
        elif len(shown) == first:
            raise ConfigError(msg)
    if len(shown) != len(pages) or not column.index.take(positions).equals(result.index):
        raise ConfigError(msg)
    return shown, [column.iat[p] for p in positions]
