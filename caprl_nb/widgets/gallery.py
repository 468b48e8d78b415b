"""The gallery: thousands of images beside their captions; search, filter, sort, review.

Python owns the data, the view (search, filter, sort), the review state and the thumbnails;
the front end (``static/gallery.js``) renders a virtualised grid and asks for the rows it
shows. The wire protocol is documented in ``PROTOCOL.md`` beside this file.

Construction costs the same for a thousand rows as for a million: the columns stay pandas
columns (no Python object per row), a row becomes text when a window, a review or an export
asks for it, the search text is built (vectorised) at the first search, and the stored review
decisions of rows not shown are read in a background thread once the first window is sent.
"""

from __future__ import annotations

import html
import math
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import anywidget
import numpy as np
import pandas as pd
import traitlets

from caprl_nb.cells import is_missing
from caprl_nb.config import resolve_settings
from caprl_nb.errors import ColumnNotFoundError, ConfigError
from caprl_nb.store import ResultStore
from caprl_nb.widgets.export import write_html
from caprl_nb.widgets.reviews import (
    STATUSES,
    ItemKeys,
    ReviewModel,
    item_key,
    release,
    row_id,
    source_name,
)
from caprl_nb.widgets.scores import (
    NOTES_COLUMN,
    SCORE_COLUMN,
    SCORE_ERROR_COLUMN,
    NotesColumn,
    NotesIndex,
    ScoreColumn,
    pick_column,
)
from caprl_nb.widgets.thumbnails import Thumbnail, ThumbnailCache

__all__ = ["Gallery"]

STATIC = Path(__file__).parent / "static"
FILTERS = ("all", *STATUSES, "failed")
MAX_WINDOW = 200
DETAIL_SIDE = 1280
_STALE_WINDOWS = 4  # thumbnail work for windows older than this many requests is dropped
# Up to this many rows the stored review decisions are read at construction (a few ms), so
# `counts` is complete at once; larger galleries read them in a background thread.
SYNC_REVIEW_ROWS = 20_000


def _fmt(value: object) -> str:
    if is_missing(value):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


def _text(value: object) -> str | None:
    return None if is_missing(value) else str(value)


def _as_text(column: pd.Series) -> pd.Series:
    """A column as strings (``str(value)``), missing values as "", vectorised."""
    return column.astype("str").fillna("")


def _source_names(images: pd.Series) -> pd.Series:
    """:func:`source_name` of every row, vectorised for the usual column of file paths.

    A path's name is the text after its last "/" (what ``Path(text).name`` gives when that
    text is neither empty nor "."); URLs, data URLs, other paths and non-text values go
    through :func:`source_name` one by one.
    """
    if os.sep != "/" or os.altsep or pd.api.types.infer_dtype(images, skipna=False) != "string":
        return images.map(source_name).astype("str")
    text = images.astype("str")
    name = text.str.replace(r"(?s)^.*/", "", regex=True)  # one regex pass: the fastest here
    special = (  # exactly as source_name, row by row: anything that may be a URL or a data URL
        text.str.contains("://", regex=False)
        | text.str.lstrip().str.lower().str.startswith("data:")
        | (name == "")
        | (name == ".")
    ).to_numpy(dtype=bool)
    if special.any():
        name = name.copy()
        name[special] = [source_name(v) for v in images[special].tolist()]
    return name


class Gallery(anywidget.AnyWidget):
    """Images beside their captions, with search, status filters, sorting and review.

    ``Gallery(df, "image", caption="caption")``; reviews land in ``gallery.reviews`` and
    ``gallery.apply(df)``, and in the result store, so a kernel restart loses none of them.

    With a ``caption_score`` column (``df.caprl.verify``) each card shows its score, the
    score is the first sort option, and ``score_below`` keeps the rows scored below a
    threshold; ``failed_questions`` are shown beside the caption and searched with it.
    ``score=`` / ``notes=`` name other columns, ``False`` turns either off.
    """

    _esm = STATIC / "gallery.js"
    _css = STATIC / "gallery.css"

    total = traitlets.Int(0).tag(sync=True)
    view_count = traitlets.Int(0).tag(sync=True)
    view_version = traitlets.Int(0).tag(sync=True)
    counts = traitlets.Dict().tag(sync=True)
    sort_options = traitlets.List(traitlets.Unicode()).tag(sync=True)
    title = traitlets.Unicode("").tag(sync=True)
    thumb_size = traitlets.Int(180).tag(sync=True)
    query = traitlets.Unicode("").tag(sync=True)
    status_filter = traitlets.Unicode("all").tag(sync=True)
    sort_by = traitlets.Unicode("").tag(sync=True)
    sort_descending = traitlets.Bool(False).tag(sync=True)
    score_column = traitlets.Unicode("").tag(sync=True)
    score_span = traitlets.List(traitlets.Float(), default_value=[0.0, 1.0]).tag(sync=True)
    notes_label = traitlets.Unicode("").tag(sync=True)
    score_below = traitlets.Float(None, allow_none=True).tag(sync=True)

    def __init__(
        self,
        data: pd.DataFrame,
        image: Any,
        caption: Any = "caption",
        *,
        error: Any = None,
        score: Any = None,
        notes: Any = None,
        sort: Sequence[Any] | None = None,
        title: str | None = None,
        thumb_size: int = 180,
        store: bool = True,
        home: str | Path | None = None,
    ) -> None:
        if not isinstance(data, pd.DataFrame):
            raise ConfigError("Gallery needs a DataFrame; for a Series use s.to_frame().")
        if error is None and "error" in data.columns:
            error = "error"
        for column in (image, caption, error, *(sort or ())):
            if column is not None and column not in data.columns:
                raise ColumnNotFoundError(column, list(data.columns))
        score = pick_column(data, score, SCORE_COLUMN)
        notes = pick_column(data, notes, NOTES_COLUMN)
        if sort is None:
            numeric = [c for c in data.columns if pd.api.types.is_numeric_dtype(data[c])]
            sort = [c for c in numeric if not pd.api.types.is_bool_dtype(data[c])]
        self._scores = ScoreColumn.of(data, score) if score is not None else None
        self._notes = NotesColumn(str(notes), data[notes]) if notes is not None else None
        # Why a row has no score (verify's reason), shown as its note: never as a failed caption.
        self._unscored: pd.Series | None = (
            data[SCORE_ERROR_COLUMN] if self._scores is not None and SCORE_ERROR_COLUMN in data.columns else None
        )
        n = len(data)
        self._data = data
        self._n = n
        self._image_column, self._caption_column = image, caption
        self._index = data.index
        # Columns, not per-row Python objects: a row is read when it is shown, reviewed or exported.
        self._images: pd.Series = data[image]
        self._captions: pd.Series = data[caption]
        self._errors: pd.Series | None = data[error] if error is not None else None
        failed = self._captions.isna()
        if self._errors is not None:
            failed |= self._errors.notna()
        self._failed = failed.to_numpy(dtype=bool)
        self._sort_columns = {str(c): data[c] for c in sort if c != score}
        if self._scores is not None:  # the review order: the score first, lowest first
            self._sort_columns = {self._scores.name: self._scores.series, **self._sort_columns}
        # Lower-cased search text (edit aside), source names and notes, built at the first search.
        self._search_base: tuple[pd.Series, pd.Series, NotesIndex | None] | None = None
        opened = ResultStore(resolve_settings(home=home).store_path) if store else None
        self._reviews = ReviewModel(ItemKeys(n, self._keys), opened, defer=n > SYNC_REVIEW_ROWS)
        self._view = np.arange(n)
        self._thumbs = ThumbnailCache()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="caprl-thumbs")
        self._windows = 0
        self._lock = threading.Lock()
        self._loader: threading.Thread | None = None
        super().__init__(
            total=n,
            sort_options=list(self._sort_columns),
            title=title or f"{n:,} images",
            thumb_size=int(thumb_size),
            score_column=self._scores.name if self._scores is not None else "",
            score_span=self._scores.span if self._scores is not None else [0.0, 1.0],
            notes_label=self._notes.label if self._notes is not None else "",
        )
        self.counts = self._counts()
        self._recompute()
        self.on_msg(self._on_msg)
        self.observe(
            self._on_view_change, names=["query", "status_filter", "sort_by", "sort_descending", "score_below"]
        )

    # -- reviews (the Python side of the gallery) -------------------------------------------
    @property
    def reviews(self) -> pd.DataFrame:
        """Reviewed rows: ``status`` and ``edited_caption``, on the gallery frame's index."""
        return self._reviews.frame(self._index)

    def apply(self, data: pd.DataFrame | None = None) -> pd.DataFrame:
        """A new DataFrame with ``review_status`` and ``reviewed_<caption>`` columns."""
        target = self._data if data is None else data
        return self._reviews.apply(target, self._index, self._caption_column)

    def review(self, label: Any, status: str) -> None:
        """Accept, reject or reset the row with index ``label`` from Python."""
        self._set_status(self._row_of(label), status)

    def edit(self, label: Any, caption: str) -> None:
        """Replace the caption of the row with index ``label`` (status becomes ``edited``)."""
        self._set_edit(self._row_of(label), caption)

    def _row_of(self, label: Any) -> int:
        where = self._index.get_indexer(pd.Index([label]))
        if where[0] < 0:
            raise KeyError(f"No row {label!r} in this gallery.")
        return int(where[0])

    # -- rows, read from the columns when asked for ----------------------------------------
    def _keys(self, rows: Sequence[int]) -> list[str]:
        """The review keys of ``rows`` (image identity and original caption)."""
        images = self._images.iloc[list(rows)].tolist()
        captions = self._captions.iloc[list(rows)].tolist()
        return [item_key(v, _text(c)) for v, c in zip(images, captions)]

    def _image(self, row: int) -> Any:
        return self._images.iat[row]

    def _rows(self, ids: Sequence[int], start: int = -1) -> list[dict[str, Any]]:
        """Rows ``ids`` as the front end gets them (``pos`` counts on from ``start``, or -1)."""
        ids = [int(r) for r in ids]
        self._reviews.resolve(ids)
        take = self._images.iloc[ids].tolist()
        captions = [_text(c) for c in self._captions.iloc[ids].tolist()]
        errors = [None] * len(ids) if self._errors is None else [_text(e) for e in self._errors.iloc[ids].tolist()]
        shown = self._scores.name if self._scores is not None else None  # in its own field
        meta = {name: col.iloc[ids].tolist() for name, col in self._sort_columns.items() if name != shown}
        scores = self._scores.cells(ids) if self._scores is not None else [None] * len(ids)
        notes = self._notes.lists(ids) if self._notes is not None else [[] for _ in ids]
        if self._unscored is not None:
            for k, why in enumerate(self._unscored.iloc[ids].tolist()):
                cell = scores[k]
                if not notes[k] and not is_missing(why) and cell is not None and cell["value"] is None:
                    notes[k] = [f"not scored: {why}"]
        return [
            {
                "id": row,
                "pos": start + k if start >= 0 else -1,
                "label": str(self._index[row]),
                "source": source_name(take[k]),
                "caption": captions[k],
                "edited": self._reviews.edited(row),
                "status": self._reviews.status(row),
                "error": errors[k] or (None if captions[k] is not None else "no caption"),
                "meta": {name: _fmt(values[k]) for name, values in meta.items()},
                "score": scores[k],
                "notes": notes[k],
            }
            for k, row in enumerate(ids)
        ]

    def _row(self, row: int) -> dict[str, Any]:
        return self._rows([row])[0]

    def _all_rows(self, chunk: int = 1000) -> Iterator[dict[str, Any]]:
        for start in range(0, self._n, chunk):
            yield from self._rows(range(start, min(self._n, start + chunk)), start)

    # -- the view ---------------------------------------------------------------------------
    def _counts(self) -> dict[str, int]:
        """Rows per filter; the review statuses only once every row's stored decision is read
        (the front end shows them as pending until then)."""
        counts = self._reviews.counts() if self._reviews.loaded else {}
        return {"all": self._n, **counts, "failed": int(self._failed.sum())}

    def _matches(self, query: str) -> np.ndarray:
        """Rows whose search text (edit, else caption, else error; the source; the notes) holds ``query``."""
        if self._search_base is None:
            captions = _as_text(self._captions)
            if self._errors is not None:
                captions = captions.where(captions != "", _as_text(self._errors))
            notes = self._notes.search_index() if self._notes is not None else None
            self._search_base = (captions.str.lower(), _source_names(self._images).str.lower(), notes)
        texts, sources, notes = self._search_base
        if "\n" in query:  # may span the text and the source, as in "text\nsource"
            joined = texts + "\n" + sources
            keep = joined.str.contains(query, regex=False).to_numpy(dtype=bool, copy=True)
        else:
            keep = texts.str.contains(query, regex=False).to_numpy(dtype=bool, copy=True)
            keep |= sources.str.contains(query, regex=False).to_numpy(dtype=bool)
        edits = {row: text for row, text in list(self._reviews.edits.items()) if text}
        if edits:
            rows = list(edits)
            names = [source_name(v) for v in self._images.iloc[rows].tolist()]
            for row, name in zip(rows, names):
                keep[row] = query in f"{edits[row]}\n{name}".lower()
        if notes is not None:
            keep |= notes.matches(query)
        return keep

    def _recompute(self) -> None:
        if self.status_filter not in FILTERS:
            raise ConfigError(f"status_filter must be one of {', '.join(FILTERS)}, not {self.status_filter!r}.")
        if self.sort_by and self.sort_by not in self._sort_columns:
            raise ConfigError(f"sort_by must be one of {', '.join(self._sort_columns)} or ''.")
        threshold = self.score_below
        if threshold is not None and self._scores is None:
            msg = "score_below needs a score column: pass Gallery(..., score='column') (verify's is 'caption_score')."
            raise ConfigError(msg)
        if threshold is not None and math.isnan(threshold):
            raise ConfigError("score_below is a number, or None for every score.")
        query = self.query.strip().lower()
        if query or self.status_filter not in ("all", "failed"):
            self._reviews.load()  # statuses and edits of every row are needed now
            self.counts = self._counts()
        keep: np.ndarray | None = None
        if self.status_filter == "failed":
            keep = self._failed
        elif self.status_filter != "all":
            keep = self._reviews.codes == STATUSES.index(self.status_filter)
        if query:
            keep = self._matches(query) if keep is None else keep & self._matches(query)
        if threshold is not None and self._scores is not None:
            below = self._scores.below(threshold)
            keep = below if keep is None else keep & below
        rows = np.arange(self._n) if keep is None else np.flatnonzero(keep)
        if self.sort_by:
            values = self._sort_columns[self.sort_by].iloc[rows].reset_index(drop=True)
            order = values.sort_values(
                ascending=not self.sort_descending, kind="mergesort", na_position="last"
            ).index.to_numpy()
            rows = rows[order]
        elif self.sort_descending:
            rows = rows[::-1]
        with self._lock:
            self._view = rows
        self.view_count = len(rows)
        self.view_version += 1

    def _on_view_change(self, change: dict[str, Any]) -> None:
        self._recompute()

    def _load_reviews(self) -> None:
        """Background: read every row's stored decision, then publish the complete counts."""
        self._reviews.load()
        if self._reviews.loaded and self.comm is not None:
            self.counts = self._counts()

    # -- messages from the front end --------------------------------------------------------
    def _on_msg(self, widget: Any, content: dict[str, Any], buffers: list[bytes]) -> None:
        kind = content.get("type")
        try:
            if kind == "window":
                self._send_window(int(content["version"]), int(content["start"]), int(content["end"]))
            elif kind == "review":
                self._set_status(row_id(content, self._n), str(content["status"]))
            elif kind == "edit":
                self._set_edit(row_id(content, self._n), str(content["caption"]))
            elif kind == "detail":
                self._pool.submit(self._send_detail, row_id(content, self._n))
        except (KeyError, ValueError, IndexError, TypeError, ConfigError) as exc:
            self.send({"type": "error", "message": f"Bad {kind!r} message: {exc}"})

    def _send_window(self, version: int, start: int, end: int) -> None:
        with self._lock:
            view = self._view
        start = max(0, start)
        end = min(len(view), end, start + MAX_WINDOW)
        ids = [int(r) for r in view[start:end]]
        self.send({"type": "rows", "version": version, "start": start, "rows": self._rows(ids, start)})
        self._windows += 1
        self._pool.submit(self._send_thumbs, ids, self._windows)
        if not self._reviews.loaded and self._loader is None:
            # The first window is out: read the other rows' stored decisions off the kernel's thread.
            self._loader = threading.Thread(target=self._load_reviews, name="caprl-reviews", daemon=True)
            self._loader.start()

    def _send_thumbs(self, ids: list[int], window: int) -> None:
        ready: list[tuple[int, Thumbnail]] = []
        for row in ids:
            if self._windows - window > _STALE_WINDOWS:
                return  # the user scrolled on; newer windows want the threads
            made = self._thumbs.get(row, self._image(row), self.thumb_size)
            if isinstance(made, Thumbnail):
                ready.append((row, made))
            if len(ready) == 8:
                self._flush_thumbs(ready)
                ready = []
        self._flush_thumbs(ready)

    def _flush_thumbs(self, ready: list[tuple[int, Thumbnail]]) -> None:
        for mime in {t.mime for _, t in ready}:
            batch = [(row, t) for row, t in ready if t.mime == mime]
            self.send(
                {"type": "thumbs", "ids": [row for row, _ in batch], "mime": mime},
                buffers=[t.data for _, t in batch],
            )

    def _send_detail(self, row: int) -> None:
        made = self._thumbs.get(row, self._image(row), DETAIL_SIDE)
        if isinstance(made, Thumbnail):
            message = {"type": "detail", "id": row, "mime": made.mime, "width": made.width, "height": made.height}
            self.send(message, buffers=[made.data])
        else:
            self.send({"type": "detail", "id": row, "error": made})

    def _set_status(self, row: int, status: str) -> None:
        self._reviews.set_status(row, status)
        self._changed(row)

    def _set_edit(self, row: int, caption: str) -> None:
        self._reviews.set_edit(row, caption)
        self._changed(row)

    def _changed(self, row: int) -> None:
        self.counts = self._counts()
        self.send({"type": "row", "row": self._row(row)})

    # -- static output ----------------------------------------------------------------------
    def to_html(self, path: str | Path, *, thumb_size: int = 240) -> Path:
        """Write a self-contained HTML gallery (every row, thumbnails embedded; no script)."""
        self._reviews.load()
        return write_html(
            Path(path),
            self.title,
            self._all_rows(),
            lambda row: self._thumbs.get(row, self._image(row), thumb_size),
            notes_label=self.notes_label,
        )

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The live widget, plus a static HTML preview for renderers without a kernel."""
        bundle = super()._repr_mimebundle_(**kwargs)
        data = bundle[0] if isinstance(bundle, tuple) else bundle
        if isinstance(data, dict):
            data["text/html"] = self._preview_html()
        return bundle

    def _preview_html(self, limit: int = 12) -> str:
        from caprl_nb.widgets.export import card_html

        rows = self._rows(self._view[:limit].tolist(), 0)
        cards = "".join(
            card_html(row, self._thumbs.get(row["id"], self._image(row["id"]), 96), notes_label=self.notes_label)
            for row in rows
        )
        more = self._n - len(rows)
        note = f"<p>{more:,} more rows: run the notebook to open the live gallery.</p>" if more > 0 else ""
        return (
            f'<div class="caprl-static"><h4>{html.escape(self.title)}</h4>'
            f'<div style="display:flex;flex-wrap:wrap;gap:8px">{cards}</div>{note}</div>'
        )

    def close(self) -> None:
        release(getattr(self, "_pool", None), getattr(self, "_reviews", None))
        super().close()

    def __len__(self) -> int:
        return self._n
