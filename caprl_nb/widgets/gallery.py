"""The gallery: thousands of images beside their captions; search, filter, sort, review.

Python owns the data, the view (search, filter, sort), the review state and the thumbnails;
the front end (``static/gallery.js``) renders a virtualised grid and asks for the rows it
shows. The wire protocol is documented in ``PROTOCOL.md`` beside this file.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Sequence
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
from caprl_nb.widgets.reviews import STATUSES, ReviewModel, item_key, release, row_id, source_name
from caprl_nb.widgets.thumbnails import Thumbnail, ThumbnailCache

__all__ = ["Gallery"]

STATIC = Path(__file__).parent / "static"
FILTERS = ("all", *STATUSES, "failed")
MAX_WINDOW = 200
DETAIL_SIDE = 1280
_STALE_WINDOWS = 4  # thumbnail work for windows older than this many requests is dropped


def _fmt(value: object) -> str:
    if is_missing(value):
        return ""
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    return str(value)


class Gallery(anywidget.AnyWidget):
    """Images beside their captions, with search, status filters, sorting and review.

    ``Gallery(df, "image", caption="caption")``; reviews land in ``gallery.reviews`` and
    ``gallery.apply(df)``, and in the result store, so a kernel restart loses none of them.
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

    def __init__(
        self,
        data: pd.DataFrame,
        image: Any,
        caption: Any = "caption",
        *,
        error: Any = None,
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
        if sort is None:
            numeric = [c for c in data.columns if pd.api.types.is_numeric_dtype(data[c])]
            sort = [c for c in numeric if not pd.api.types.is_bool_dtype(data[c])]
        n = len(data)
        self._data = data
        self._image_column, self._caption_column = image, caption
        self._index = data.index
        self._images = data[image].to_numpy(dtype=object)
        self._captions: list[str | None] = [
            None if is_missing(v) else str(v) for v in data[caption].tolist()
        ]
        errors = data[error].tolist() if error is not None else [None] * n
        self._errors: list[str | None] = [None if is_missing(e) else str(e) for e in errors]
        self._failed = np.array(
            [e is not None or c is None for e, c in zip(self._errors, self._captions)], dtype=bool
        )
        self._sort_columns = {str(c): data[c] for c in sort}
        self._sources = [source_name(v) for v in self._images]
        opened = ResultStore(resolve_settings(home=home).store_path) if store else None
        self._reviews = ReviewModel(
            [item_key(v, c) for v, c in zip(self._images, self._captions)], opened
        )
        self._search: list[str] = [self._search_text(i) for i in range(n)]
        self._view = np.arange(n)
        self._thumbs = ThumbnailCache()
        self._pool = ThreadPoolExecutor(max_workers=2, thread_name_prefix="caprl-thumbs")
        self._windows = 0
        self._lock = threading.Lock()
        super().__init__(
            total=n,
            sort_options=list(self._sort_columns),
            title=title or f"{n:,} images",
            thumb_size=int(thumb_size),
        )
        self.counts = self._counts()
        self._recompute()
        self.on_msg(self._on_msg)
        self.observe(self._on_view_change, names=["query", "status_filter", "sort_by", "sort_descending"])

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

    # -- the view ---------------------------------------------------------------------------
    def _search_text(self, row: int) -> str:
        text = self._reviews.edited(row) or self._captions[row] or self._errors[row] or ""
        return f"{text}\n{self._sources[row]}".lower()

    def _counts(self) -> dict[str, int]:
        counts = self._reviews.counts()
        return {"all": len(self._images), **counts, "failed": int(self._failed.sum())}

    def _recompute(self) -> None:
        if self.status_filter not in FILTERS:
            raise ConfigError(f"status_filter must be one of {', '.join(FILTERS)}, not {self.status_filter!r}.")
        if self.sort_by and self.sort_by not in self._sort_columns:
            raise ConfigError(f"sort_by must be one of {', '.join(self._sort_columns)} or ''.")
        keep = np.ones(len(self._images), dtype=bool)
        if self.status_filter == "failed":
            keep &= self._failed
        elif self.status_filter != "all":
            keep &= self._reviews.codes == STATUSES.index(self.status_filter)
        query = self.query.strip().lower()
        if query:
            keep &= np.fromiter((query in text for text in self._search), dtype=bool, count=len(keep))
        rows = np.flatnonzero(keep)
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

    def _row(self, row: int, pos: int = -1) -> dict[str, Any]:
        return {
            "id": row,
            "pos": pos,
            "label": str(self._index[row]),
            "source": self._sources[row],
            "caption": self._captions[row],
            "edited": self._reviews.edited(row),
            "status": self._reviews.status(row),
            "error": self._errors[row] or (None if self._captions[row] is not None else "no caption"),
            "meta": {name: _fmt(col.iloc[row]) for name, col in self._sort_columns.items()},
        }

    # -- messages from the front end --------------------------------------------------------
    def _on_msg(self, widget: Any, content: dict[str, Any], buffers: list[bytes]) -> None:
        kind = content.get("type")
        try:
            if kind == "window":
                self._send_window(int(content["version"]), int(content["start"]), int(content["end"]))
            elif kind == "review":
                self._set_status(row_id(content, len(self._images)), str(content["status"]))
            elif kind == "edit":
                self._set_edit(row_id(content, len(self._images)), str(content["caption"]))
            elif kind == "detail":
                self._pool.submit(self._send_detail, row_id(content, len(self._images)))
        except (KeyError, ValueError, IndexError, TypeError, ConfigError) as exc:
            self.send({"type": "error", "message": f"Bad {kind!r} message: {exc}"})

    def _send_window(self, version: int, start: int, end: int) -> None:
        with self._lock:
            view = self._view
        start = max(0, start)
        end = min(len(view), end, start + MAX_WINDOW)
        ids = [int(r) for r in view[start:end]]
        rows = [self._row(r, start + k) for k, r in enumerate(ids)]
        self.send({"type": "rows", "version": version, "start": start, "rows": rows})
        self._windows += 1
        self._pool.submit(self._send_thumbs, ids, self._windows)

    def _send_thumbs(self, ids: list[int], window: int) -> None:
        ready: list[tuple[int, Thumbnail]] = []
        for row in ids:
            if self._windows - window > _STALE_WINDOWS:
                return  # the user scrolled on; newer windows want the threads
            made = self._thumbs.get(row, self._images[row], self.thumb_size)
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
        made = self._thumbs.get(row, self._images[row], DETAIL_SIDE)
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
        self._search[row] = self._search_text(row)
        self.counts = self._counts()
        self.send({"type": "row", "row": self._row(row)})

    # -- static output ----------------------------------------------------------------------
    def to_html(self, path: str | Path, *, thumb_size: int = 240) -> Path:
        """Write a self-contained HTML gallery (every row, thumbnails embedded; no script)."""
        rows = [self._row(r, pos) for pos, r in enumerate(range(len(self._images)))]
        return write_html(
            Path(path), self.title, rows, lambda row: self._thumbs.get(row, self._images[row], thumb_size)
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

        rows = [self._row(r, pos) for pos, r in enumerate(self._view[:limit].tolist())]
        cards = "".join(
            card_html(row, self._thumbs.get(row["id"], self._images[row["id"]], 96)) for row in rows
        )
        more = len(self._images) - len(rows)
        note = f"<p>{more:,} more rows: run the notebook to open the live gallery.</p>" if more > 0 else ""
        return (
            f'<div class="caprl-static"><h4>{html.escape(self.title)}</h4>'
            f'<div style="display:flex;flex-wrap:wrap;gap:8px">{cards}</div>{note}</div>'
        )

    def close(self) -> None:
        release(getattr(self, "_pool", None), getattr(self, "_reviews", None))
        super().close()

    def __len__(self) -> int:
        return len(self._images)
