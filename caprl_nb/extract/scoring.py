"""How close an extraction is to the truth: chart tables, chart answers, document fields.

Chart tables: :func:`table_score`, in the spirit of DePlot's RMS F1 (Liu et al., 2023,
"DePlot: One-shot visual language reasoning by plot-to-table translation", Relative Mapping
Similarity). Both tables are in :func:`~caprl_nb.extract.chart_table`'s layout: the first
column holds the row headers (x values), every other column is one series. Each table becomes
a set of cells ``(row header, column header, value)``. For a predicted cell ``p`` and a true
cell ``t``::

    NL(a, b)    = levenshtein(a, b) / max(len(a), len(b))      on normalised text
    NL_tau(a,b) = NL(a, b) if NL(a, b) <= tau else 1             (tau = 0.5)
    key(c)      = "<row header> <column header>"
    D(p, t)     = min(1, |p - t| / |t|)    (|p - t| when t == 0)
    D_theta     = D if D <= theta else 1                         (theta = 0.1)
    sim(p, t)   = (1 - NL_tau(key(p), key(t))) * (1 - D_theta(p.value, t.value))

(text values compare with ``1 - NL_tau`` instead of ``1 - D_theta``; a number against text
is 0). Cells are paired one to one to maximise the total similarity (Hungarian algorithm);
``precision = total / #predicted cells``, ``recall = total / #true cells``, and the score is
their harmonic mean, F1. As in DePlot, the prediction is also scored transposed (row and
column headers swapped) and the better F1 counts. ``table_score(t, t) == 1.0``.

Worked example (also a test): a 4 x 1 table with values 100, 200, 300, 400, and a prediction
identical but for 440 in place of 400 (10% off): three cells score 1, that one
``1 - 0.1 = 0.9``, so precision = recall = 3.9 / 4 and ``table_score == 0.975``. At 11% off
the cell scores 0 and the table 0.75.

Chart answers: :func:`relaxed_accuracy`, ChartQA's metric: a number is right within 5% of
the true one, anything else must match exactly (after case and whitespace normalisation).

Documents: :func:`field_scores`, per field, an ``exact`` match and a normalised ``match``
(case, whitespace, and number format: ``"$1,234.50"`` matches ``1234.5``).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from caprl_nb.cells import is_missing
from caprl_nb.extract.parse import parse_number

__all__ = ["TableMatch", "field_scores", "relaxed_accuracy", "table_match", "table_score"]

TAU = 0.5
THETA = 0.1
_EPS = 1e-9  # so that "exactly 10% off" is within theta despite binary floating point


class TableMatch(NamedTuple):
    precision: float
    recall: float
    f1: float


# -- text ------------------------------------------------------------------------------------

def _text(value: Any) -> str:
    """Normalised text: NFKC, case-folded, whitespace collapsed; numbers in one canonical form."""
    if is_missing(value):
        return ""
    number = _as_number(value)
    if number is not None:
        return _canonical(number)
    text = unicodedata.normalize("NFKC", str(value)).casefold()
    return " ".join(text.split())


def _canonical(number: float) -> str:
    return str(int(number)) if float(number).is_integer() and abs(number) < 1e15 else repr(number)



_NUMERIC_TEXT = re.compile(r"[\s\d.,'()+\-\u2212%$\u20ac\u00a3\u00a5\u20b9]*\d[\s\d.,'()+\-\u2212%]*")


def _as_number(value: Any) -> float | None:
    """A number for ints/floats and for text that is only a formatted number ("$1,234.50", "12%")."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float, np.integer, np.floating)):
        return None if is_missing(value) else float(value)
    if isinstance(value, str):
        stripped = re.sub(r"^[A-Z]{3}\s+|\s+[A-Z]{3}$", "", value.strip())
        if _NUMERIC_TEXT.fullmatch(stripped):
            return parse_number(stripped)
    return None


@lru_cache(maxsize=65536)
def _levenshtein(a: str, b: str) -> int:
    if a == b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def _nl_tau(a: str, b: str, tau: float) -> float:
    """Normalised Levenshtein distance, 1 beyond ``tau``."""
    if a == b:
        return 0.0
    longest = max(len(a), len(b))
    if abs(len(a) - len(b)) / longest > tau:  # cannot be within tau: skip the DP
        return 1.0
    distance = _levenshtein(a, b) / longest
    return distance if distance <= tau + _EPS else 1.0


def _value_similarity(p: Any, t: Any, tau: float, theta: float) -> float:
    pn, tn = _as_number(p), _as_number(t)
    if pn is not None and tn is not None:
        d = min(1.0, abs(pn - tn) / abs(tn)) if tn != 0 else min(1.0, abs(pn - tn))
        return 1.0 - d if d <= theta + _EPS else 0.0
    if pn is not None or tn is not None:
        return 0.0
    return 1.0 - _nl_tau(_text(p), _text(t), tau)


# -- tables ----------------------------------------------------------------------------------

def _cells(table: Any) -> list[tuple[str, str, Any]]:
    if table is None or not isinstance(table, pd.DataFrame):
        if is_missing(table):
            return []
        msg = f"A table is a DataFrame (first column: row headers), not {type(table).__name__}."
        raise TypeError(msg)
    if table.shape[1] < 2:
        return []
    rows = [_text(v) for v in table.iloc[:, 0]]
    cells = []
    for name in table.columns[1:]:
        column = _text(name)
        for row, value in zip(rows, table[name]):
            if not is_missing(value):
                cells.append((row, column, value))
    return cells


def _hungarian_max(weights: np.ndarray) -> float:
    """The largest total weight of a one-to-one pairing of rows and columns (weights >= 0)."""
    n_rows, n_cols = weights.shape
    if n_rows == 0 or n_cols == 0:
        return 0.0
    transposed = n_rows > n_cols
    w = weights.T if transposed else weights
    n, m = w.shape  # n <= m
    cost = w.max() - w
    # Shortest augmenting paths with potentials (Jonker-Volgenant / e-maxx), 1-based with a
    # sentinel column 0; the inner scan over columns is vectorised.
    u = np.zeros(n + 1)
    v = np.zeros(m + 1)
    owner = np.zeros(m + 1, dtype=int)  # owner[j]: row matched to column j (0: none)
    way = np.zeros(m + 1, dtype=int)
    for i in range(1, n + 1):
        owner[0] = i
        j0 = 0
        minv = np.full(m + 1, np.inf)
        used = np.zeros(m + 1, dtype=bool)
        while True:
            used[j0] = True
            i0 = owner[j0]
            free = ~used[1:]
            cur = cost[i0 - 1] - u[i0] - v[1:]
            better = free & (cur < minv[1:])
            minv[1:][better] = cur[better]
            way[1:][better] = j0
            candidates = np.where(free, minv[1:], np.inf)
            j1 = int(np.argmin(candidates)) + 1
            delta = candidates[j1 - 1]
            u[owner[used]] += delta
            v[used] -= delta
            minv[1:][free] -= delta
            j0 = j1
            if owner[j0] == 0:
                break
        while j0:
            j1 = way[j0]
            owner[j0] = owner[j1]
            j0 = j1
    rows = owner[1:] - 1
    matched = rows >= 0
    return float(w[rows[matched], np.flatnonzero(matched)].sum())


def _match(predicted: list[tuple[str, str, Any]], truth: list[tuple[str, str, Any]],
           tau: float, theta: float) -> TableMatch:
    if not predicted and not truth:
        return TableMatch(1.0, 1.0, 1.0)
    if not predicted or not truth:
        return TableMatch(0.0, 0.0, 0.0)
    sims = np.zeros((len(predicted), len(truth)))
    for i, (pr, pc, pv) in enumerate(predicted):
        for j, (tr, tc, tv) in enumerate(truth):
            key = 1.0 - _nl_tau(f"{pr} {pc}", f"{tr} {tc}", tau)
            if key > 0:
                sims[i, j] = key * _value_similarity(pv, tv, tau, theta)
    total = _hungarian_max(sims)
    precision, recall = total / len(predicted), total / len(truth)
    f1 = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return TableMatch(precision, recall, f1)


def table_match(predicted: Any, truth: Any, *, tau: float = TAU, theta: float = THETA) -> TableMatch:
    """Precision, recall and F1 of ``predicted`` against ``truth`` (formula in the module doc).

    A missing prediction (None / NA, e.g. a failed row) scores 0 against a non-empty truth.
    """
    truth_cells = _cells(truth)
    predicted_cells = _cells(predicted)
    straight = _match(predicted_cells, truth_cells, tau, theta)
    swapped = _match([(c, r, v) for r, c, v in predicted_cells], truth_cells, tau, theta)
    return max(straight, swapped, key=lambda m: m.f1)


def table_score(predicted: Any, truth: Any, *, tau: float = TAU, theta: float = THETA) -> float:
    """RMS-style F1 of a predicted table against the true one, in [0, 1]; 1.0 when identical.

    >>> import pandas as pd
    >>> truth = pd.DataFrame({"year": [2019, 2020, 2021, 2022], "sales": [100, 200, 300, 400]})
    >>> table_score(truth, truth)
    1.0
    >>> table_score(truth.assign(sales=[100, 200, 300, 440]), truth)  # one value 10% off
    0.975
    """
    return round(table_match(predicted, truth, tau=tau, theta=theta).f1, 12)


# -- answers and fields ----------------------------------------------------------------------

def relaxed_accuracy(predicted: Any, truth: Any, *, tolerance: float = 0.05) -> float:
    """ChartQA's relaxed accuracy: 1.0 if right (numbers within ``tolerance``), else 0.0.

    Sequences of equal length give the mean over their pairs.

    >>> relaxed_accuracy("1,040", 1000), relaxed_accuracy("Asia", " asia"), relaxed_accuracy(94, 100)
    (1.0, 1.0, 0.0)
    """
    if isinstance(predicted, (list, tuple, pd.Series, np.ndarray)):
        pairs = list(zip(list(predicted), list(truth), strict=True))
        if not pairs:
            return 1.0
        return float(np.mean([relaxed_accuracy(p, t, tolerance=tolerance) for p, t in pairs]))
    tn = _as_number(truth) if not isinstance(truth, str) else parse_number(truth)
    pn = _as_number(predicted) if not isinstance(predicted, str) else parse_number(predicted)
    if tn is not None and pn is not None:
        if tn == 0:
            return float(pn == 0)
        return float(abs(pn - tn) <= tolerance * abs(tn) + _EPS * abs(tn))
    if pn is not None or tn is not None:  # a number against text
        return 0.0
    return float(_text(predicted) == _text(truth))


def field_scores(
    predicted: Mapping[str, Any] | pd.Series | None, truth: Mapping[str, Any]
) -> pd.DataFrame:
    """One row per true field: ``truth``, ``predicted``, ``exact`` and normalised ``match``.

    ``exact``: the same value, or the same text when both are text. ``match``: equal after
    normalising case (casefold), whitespace, Unicode (NFKC), and number format, so
    ``"$1,234.50"``, ``"1234.5"`` and ``1234.5`` match each other; a missing prediction
    matches nothing. ``predicted`` may be a row of :func:`~caprl_nb.extract.extract`'s result.

    >>> field_scores({"total": "1,234.50", "vendor": "ACME  corp"},
    ...              {"total": 1234.5, "vendor": "Acme Corp"})[["exact", "match"]]
            exact  match
    field
    total   False   True
    vendor  False   True
    """
    got = {} if predicted is None else dict(predicted.items())
    rows = []
    for name, true in truth.items():
        value = got.get(name)
        missing = is_missing(value)
        same = value == true if type(value) is type(true) else str(value) == str(true)
        exact = not missing and same
        rows.append({
            "truth": true,
            "predicted": None if missing else value,
            "exact": bool(exact),
            "match": bool(not missing and _text(value) == _text(true)),
        })
    frame = pd.DataFrame(rows, index=pd.Index(list(truth), name="field"),
                         columns=["truth", "predicted", "exact", "match"])
    return frame.astype({"exact": bool, "match": bool})

