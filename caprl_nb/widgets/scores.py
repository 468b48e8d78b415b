"""Scores and notes beside the captions: what the gallery shows of a caption's verification.

``df.caprl.verify`` gives each row a ``caption_score`` (a fraction, NA when the row could not
be scored) and its ``failed_questions`` (a list of strings). The gallery shows the score on
every card with a colour band, sorts and filters by it (a "score below" threshold), and shows
the notes beside the caption; both also go into the static HTML. Any numeric column can be
the score and any column of strings or lists of strings the notes.

The columns are read once, vectorised, at construction (a float array of the scores, the
bands' cut points); a row's notes become Python lists only when the row is shown or searched.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from caprl_nb.cells import is_missing
from caprl_nb.errors import ColumnNotFoundError, ConfigError

__all__ = [
    "NOTES_COLUMN", "SCORE_COLUMN", "SCORE_ERROR_COLUMN", "NotesColumn", "NotesIndex", "ScoreColumn", "note_list",
    "pick_column",
]

SCORE_COLUMN = "caption_score"  # what verify writes; the gallery picks it up by itself
NOTES_COLUMN = "failed_questions"
SCORE_ERROR_COLUMN = "verify_error"  # why verify could not score a row: shown as the row's note
# A score in [0, 1] (a fraction of questions answered) is coloured by fixed bands; with five
# questions 0-0.4 is low, 0.6 mid and 0.8-1 high. Other scores are cut at their terciles.
UNIT_BANDS = (0.5, 0.8)
BANDS = ("low", "mid", "high")


def pick_column(data: pd.DataFrame, given: Any, default: str) -> Any:
    """The column ``given`` names: ``None`` picks ``default`` when the frame has it, ``False``
    turns the feature off, ``True`` requires ``default``; a name must be a column."""
    if given is None:
        return default if default in data.columns else None
    if given is False:
        return None
    column = default if given is True else given
    if column not in data.columns:
        raise ColumnNotFoundError(column, list(data.columns))
    return column


def note_list(value: object) -> list[str]:
    """One notes cell as a list of strings: a list/tuple/array of them, one string, or nothing."""
    if isinstance(value, str):
        return [value] if value.strip() else []
    if isinstance(value, (list, tuple, np.ndarray, pd.Series)):
        return [str(v) for v in value if not is_missing(v) and str(v).strip()]
    if is_missing(value):
        return []
    return [str(value)]


def _format(value: float, unit: bool) -> str:
    if unit:
        return f"{value:.2f}"
    return f"{value:.4g}"


@dataclass(frozen=True)
class ScoreColumn:
    """A numeric column as float64 (NaN: no score), with the cut points of its colour bands."""

    name: str
    values: np.ndarray
    cuts: tuple[float, float]
    unit: bool

    @classmethod
    def of(cls, data: pd.DataFrame, column: Any) -> ScoreColumn:
        raw = data[column]
        if pd.api.types.is_bool_dtype(raw):
            raise ConfigError(f"The score column {column!r} holds booleans; pass score= a numeric column.")
        if not pd.api.types.is_numeric_dtype(raw):
            try:
                raw = pd.to_numeric(raw, errors="raise")
            except (TypeError, ValueError) as exc:
                msg = (
                    f"The score column {column!r} is not numeric ({exc}). Pass score= the name of a "
                    "numeric column (verify's is 'caption_score'), or score=False for no score."
                )
                raise ConfigError(msg) from exc
        values = pd.Series(raw).to_numpy(dtype="float64", na_value=np.nan)
        finite = values[np.isfinite(values)]
        unit = bool(finite.size == 0 or (finite.min() >= 0.0 and finite.max() <= 1.0))
        if unit:
            cuts = UNIT_BANDS
        else:
            low, high = np.quantile(finite, [1 / 3, 2 / 3])
            cuts = (float(low), float(high))
        return cls(str(column), values, cuts, unit)

    @property
    def series(self) -> pd.Series:
        """The scores as a float Series (NaN for no score), for sorting."""
        return pd.Series(self.values, copy=False)

    @property
    def span(self) -> list[float]:
        """``[lowest, highest]`` score ([0, 1] for a fraction, or a column with no score)."""
        finite = self.values[np.isfinite(self.values)]
        if self.unit or finite.size == 0:
            return [0.0, 1.0]
        return [float(finite.min()), float(finite.max())]

    def below(self, threshold: float) -> np.ndarray:
        """Rows whose score is below ``threshold`` (rows without a score are not)."""
        with np.errstate(invalid="ignore"):
            return np.asarray(self.values < threshold, dtype=bool)

    def band(self, value: float) -> str:
        low, high = self.cuts
        return BANDS[0] if value < low else BANDS[1] if value < high else BANDS[2]

    def cells(self, rows: Sequence[int]) -> list[dict[str, Any]]:
        """What a card shows of each row's score: value, text and band (``none``: no score)."""
        out: list[dict[str, Any]] = []
        for value in self.values[list(rows)].tolist():
            if math.isnan(value):
                out.append({"value": None, "text": "no score", "band": "none"})
            else:
                out.append({"value": value, "text": _format(value, self.unit), "band": self.band(value)})
        return out


@dataclass(frozen=True)
class NotesColumn:
    """A column of notes per row (lists of strings, or strings); ``label`` names them."""

    name: str
    column: pd.Series

    @property
    def label(self) -> str:
        return str(self.name).replace("_", " ").strip() or "notes"

    def lists(self, rows: Sequence[int]) -> list[list[str]]:
        return [note_list(v) for v in self.column.iloc[list(rows)].tolist()]

    def search_index(self) -> NotesIndex:
        """Every note, lower-cased, beside its row's position (built at the first search)."""
        exploded = self.column.reset_index(drop=True).explode()  # vectorised; a string stays one note
        exploded = exploded[exploded.notna()]
        return NotesIndex(exploded.index.to_numpy(dtype=np.intp), exploded.astype("str").str.lower(), len(self.column))


@dataclass(frozen=True)
class NotesIndex:
    """Every note of a column, lower-cased, with the position of the row it belongs to."""

    rows: np.ndarray
    texts: pd.Series
    n: int

    def matches(self, query: str) -> np.ndarray:
        """Rows with a note that holds ``query`` (lower-case)."""
        hit = self.texts.str.contains(query, regex=False).to_numpy(dtype=bool)
        return np.bincount(self.rows[hit], minlength=self.n) > 0
