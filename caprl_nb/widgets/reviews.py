"""Review state: accept, reject or edit each row's text; persisted in the result store.

One :class:`ReviewModel` per gallery (and per extraction review). A decision is keyed by
:func:`item_key`, a hash of the row's image identity and its original text, so reopening a
gallery on the same rows, in any later kernel, shows the earlier decisions, and a new caption
for the same image starts unreviewed.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from caprl_nb import images
from caprl_nb.cells import is_missing
from caprl_nb.errors import ConfigError
from caprl_nb.fetch import public_url
from caprl_nb.store import ResultStore
from caprl_nb.widgets.review_store import ReviewStore

__all__ = [
    "STATUSES", "ItemKeys", "ReviewModel", "decision_times", "item_key", "release", "row_id", "source_name",
]

STATUSES = ("unreviewed", "accepted", "rejected", "edited")
_LOAD_CHUNK = 2000  # rows whose stored decisions are read per step of a deferred load
_CODE = {status: code for code, status in enumerate(STATUSES)}
_URL = re.compile(r"^\s*[a-z][a-z0-9+.-]*://", re.IGNORECASE)


def source_name(value: object) -> str:
    """What a review shows as a row's source: a file name, a URL or a short description.

    A URL is shown without its user info, query string or fragment (a presigned URL's
    signature never reaches the page, the static HTML or the search text). A Hugging Face
    ``Image`` value is shown by its path's name (even when its bytes are what is read).
    """
    value = images.feature_path(value) or images.plain_value(value)
    if isinstance(value, (str, os.PathLike)) and not isinstance(value, bytes):
        text = os.fspath(value)
        if isinstance(text, str) and _URL.match(text):
            return public_url(text)[:200]
        if isinstance(text, str) and not text.lstrip().lower().startswith("data:"):
            return Path(text).name or text[:200]
    return images.describe(value)


def _image_identity(value: object) -> bytes:
    """Cheap, stable identity of an image value: a path or URL as text, in-memory data hashed.

    A Hugging Face ``Image`` value is its bytes (else its path), an Arrow scalar its value.
    """
    value = images.plain_value(value)
    if isinstance(value, (os.PathLike, str)):
        text = os.fspath(value)
        if isinstance(text, bytes):
            text = text.decode("utf-8", "surrogateescape")
        if not text.startswith("data:") and not _URL.match(text):  # s3://, memory://: not relative paths
            text = os.path.abspath(os.path.expanduser(text))
        return b"text\0" + text.encode("utf-8", "surrogateescape")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return b"bytes\0" + hashlib.sha256(bytes(value)).digest()
    if isinstance(value, np.ndarray):
        head = f"{value.dtype}{value.shape}".encode()
        return b"array\0" + head + hashlib.sha256(np.ascontiguousarray(value).tobytes()).digest()
    try:
        from PIL import Image

        if isinstance(value, Image.Image):
            head = f"{value.mode}{value.size}".encode()
            return b"pil\0" + head + hashlib.sha256(value.tobytes()).digest()
    except ImportError:  # Pillow is a dependency; kept narrow for clarity
        pass
    return b"repr\0" + repr(value).encode()


def item_key(image: object, text: object) -> str:
    """The key a decision is stored under: (image identity, original text)."""
    h = hashlib.sha256(_image_identity(image))
    h.update(b"\0text\0")
    h.update(b"" if is_missing(text) else str(text).encode())
    return h.hexdigest()


def row_id(content: dict[str, Any], n: int) -> int:
    """The row a front-end message names: an int in ``0 <= id < n``, or :class:`ValueError`.

    Ids come from the browser, so they are checked here rather than trusted: a negative id
    would otherwise index from the end (Python indexing) and review the wrong row.
    """
    value = content.get("id")
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"row id must be an integer, not {value!r}")
    if not 0 <= value < n:
        raise ValueError(f"row id {value} is outside 0..{n - 1}")
    return value


def release(pool: Executor | None, reviews: ReviewModel | None) -> None:
    """Free what a review widget holds besides its comm: its image threads and its store.

    Widgets call it from ``close()``, which also runs from ``Widget.__del__``, possibly on a
    half-built instance: either argument may be missing.
    """
    if pool is not None:
        pool.shutdown(wait=False, cancel_futures=True)
    if reviews is not None:
        reviews.close()


def decision_times(seconds: Sequence[float | None] | np.ndarray, index: pd.Index) -> pd.Series:
    """Decision times (seconds since the epoch; None or NaN for none) as a UTC datetime column."""
    values = np.array([np.nan if s is None else s for s in seconds], dtype=float)
    return pd.Series(pd.to_datetime(values, unit="s", utc=True), index=index, name="reviewed_at")


class ItemKeys(Sequence[str]):
    """The :func:`item_key` of each row, made when a row is read: a million-row gallery pays
    for the rows it shows, reviews or looks up, never for all of them at construction."""

    def __init__(self, n: int, key: Callable[[Sequence[int]], list[str]]) -> None:
        self._n = n
        self._key = key  # rows -> their keys, in order

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, row: Any) -> Any:
        if not isinstance(row, (int, np.integer)):
            raise TypeError("ItemKeys is indexed by one row; use take() for many")
        return self._key([int(row)])[0]

    def take(self, rows: Sequence[int]) -> list[str]:
        return self._key(rows)


class ReviewModel:
    """Statuses and edits for ``n`` rows, written through to the result store's review table
    (:class:`~caprl_nb.widgets.review_store.ReviewStore`); ``store=None`` keeps them in memory.

    With ``defer=True`` the stored decisions are not read at construction: :meth:`resolve`
    reads those of the rows asked for, :meth:`load` those of every row (in steps, so another
    thread may run it), and whatever needs every row (:meth:`frame`, :meth:`apply`) loads first.
    Until then :attr:`loaded` is False and :meth:`counts` covers only the rows read so far.
    """

    def __init__(self, items: Sequence[str], store: ResultStore | None, *, defer: bool = False) -> None:
        self.items = items if isinstance(items, ItemKeys) else list(items)
        self.store = None if store is None else ReviewStore(store)
        n = len(self.items)
        self.codes = np.zeros(n, dtype=np.int8)
        self.edits: dict[int, str] = {}
        self.times: dict[int, float] = {}  # row -> when its decision was made (decided rows only)
        self._known = np.zeros(n, dtype=bool)  # rows whose stored decision has been read
        self._lock = threading.Lock()  # codes, edits, _known
        self._load_lock = threading.Lock()  # one load at a time; close() waits for it
        self._stopped = False
        # No stored decision at all (a first gallery): nothing to read, whatever the row count.
        self.loaded = self.store is None or self.store.empty()
        if not defer:
            self.load()

    def __len__(self) -> int:
        return len(self.items)

    def load(self) -> None:
        """Read the stored decisions of every row not read yet; blocks (a second caller waits)."""
        with self._load_lock:
            for start in range(0, len(self.items), _LOAD_CHUNK):
                if self.loaded or self._stopped:
                    return
                end = min(len(self.items), start + _LOAD_CHUNK)
                self._read([start + int(r) for r in np.flatnonzero(~self._known[start:end])])
            self.loaded = True

    def resolve(self, rows: Sequence[int]) -> None:
        """Read the stored decisions of ``rows`` (those not read yet): one query."""
        if not self.loaded:
            self._read([int(r) for r in rows if not self._known[r]])

    def _read(self, rows: list[int]) -> None:
        store = self.store
        if not rows or store is None:
            return
        keys = self.items.take(rows) if isinstance(self.items, ItemKeys) else [self.items[r] for r in rows]
        stored = store.decisions(keys)
        with self._lock:
            for row, item in zip(rows, keys):
                if self._known[row]:
                    continue  # read meanwhile, or decided here since: that decision stands
                self._known[row] = True
                if item in stored:
                    status, edited, at = stored[item]
                    self.codes[row] = _CODE.get(status, 0)
                    self.times[row] = float(at)
                    if status == "edited" and edited is not None:
                        self.edits[row] = edited

    def status(self, row: int) -> str:
        return STATUSES[self.codes[row]]

    def edited(self, row: int) -> str | None:
        return self.edits.get(row)

    def decided_at(self, row: int) -> float | None:
        """When the row's decision was made (seconds since the epoch); None while unreviewed."""
        return self.times.get(row) if self.codes[row] else None

    def set_status(self, row: int, status: str) -> None:
        """Accept, reject or reset (``"unreviewed"``) one row; resetting drops its edit."""
        if status not in ("accepted", "rejected", "unreviewed"):
            msg = f"A review status is 'accepted', 'rejected' or 'unreviewed', not {status!r}."
            raise ConfigError(msg)
        self.resolve([row])
        with self._lock:
            self._known[row] = True
            self.codes[row] = _CODE[status]
            self._stamp(row)
            if status != "accepted":
                self.edits.pop(row, None)
            elif row in self.edits:
                # Accepting an edited row keeps the edit: an edit is an accepted, corrected text.
                self.codes[row] = _CODE["edited"]
        self._persist(row)

    def set_edit(self, row: int, text: str) -> None:
        if not isinstance(text, str):
            raise ConfigError(f"An edited caption must be text, not {type(text).__name__}.")
        with self._lock:
            self._known[row] = True
            self.edits[row] = text
            self.codes[row] = _CODE["edited"]
            self._stamp(row)
        self._persist(row)

    def times_array(self) -> np.ndarray:
        """Every row's decision time (seconds since the epoch), NaN where unreviewed."""
        seconds = np.full(len(self.codes), np.nan)
        with self._lock:
            times = dict(self.times)
        if times:
            seconds[np.fromiter(times, dtype=np.intp, count=len(times))] = list(times.values())
        seconds[self.codes == 0] = np.nan
        return seconds

    def _stamp(self, row: int) -> None:
        """Remember now as the row's decision time (a reset forgets it); under ``_lock``."""
        if self.codes[row]:
            self.times[row] = time.time()
        else:
            self.times.pop(row, None)

    def _persist(self, row: int) -> None:
        if self.store is not None:
            self.store.put(self.items[row], self.status(row), self.edits.get(row), self.times.get(row))

    def close(self) -> None:
        """Close the store (after a running load's current step); later decisions stay in memory."""
        self._stopped = True
        with self._load_lock:
            if self.store is not None:
                self.store.close()
                self.store = None

    def counts(self) -> dict[str, int]:
        tally = np.bincount(self.codes, minlength=len(STATUSES))
        return {status: int(tally[code]) for status, code in _CODE.items()}

    def frame(self, index: pd.Index) -> pd.DataFrame:
        """Reviewed rows only: ``status`` and ``edited_caption`` (NA unless edited), on ``index``."""
        self.load()
        reviewed = np.flatnonzero(self.codes)
        return pd.DataFrame(
            {
                "status": pd.array([STATUSES[c] for c in self.codes[reviewed]], dtype="string"),
                "edited_caption": pd.array([self.edits.get(int(r)) for r in reviewed], dtype="string"),
            },
            index=index[reviewed],
        )

    def apply(self, frame: pd.DataFrame, index: pd.Index, text_column: Any) -> pd.DataFrame:
        """A copy of ``frame`` with ``review_status``, ``reviewed_<text_column>`` and ``reviewed_at``.

        Rows are matched on ``index`` (the reviewed frame's index); rows the review never saw
        are ``unreviewed``. The reviewed text is the edit where there is one, else the original;
        ``reviewed_at`` is when the decision was made (UTC; NaT while unreviewed).
        """
        if not index.is_unique:
            msg = "The reviewed frame's index has duplicates; reset_index() before reviewing."
            raise ConfigError(msg)
        self.load()
        statuses = pd.Series([STATUSES[c] for c in self.codes], index=index, dtype="string")
        out = frame.copy()
        aligned = statuses.reindex(out.index)
        out["review_status"] = aligned.fillna("unreviewed").astype("string")
        original = out[text_column].astype("string") if text_column in out.columns else pd.Series(
            pd.NA, index=out.index, dtype="string"
        )
        edits = pd.Series(
            {index[row]: text for row, text in self.edits.items()}, dtype="string"
        ).reindex(out.index)
        out[f"reviewed_{text_column}"] = edits.fillna(original).astype("string")
        out["reviewed_at"] = decision_times(self.times_array(), index).reindex(out.index)
        return out
