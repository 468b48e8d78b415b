"""A chart's underlying data as a DataFrame: the schema and prompt we ask with, and the table.

The model is asked to transcribe, not to compute: values are written as printed on the chart
(``"1,200"``, ``"12%"``, ``"−3.5"``) or as plain numbers, and :func:`parse_number` reads them
here, so a separator or a unit never costs a validation failure.

A table has the x values (categories, years, or numbers for a scatter plot) in its first
column, named after the x-axis label (``"x"`` when there is none), then one column per data
series named after its legend entry. ``table.attrs`` holds ``title``, ``x_label``, ``y_label``
and ``units``. Series columns whose every value is a number are ``Float64``; the x column is
``Int64`` or ``Float64`` when every x value is a number, else ``string``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from caprl_nb.errors import ConfigError
from caprl_nb.extract.parse import parse_number

__all__ = ["CHART_PROMPT", "CHART_SCHEMA", "concat_tables", "to_table"]

# Bounds on every string and list: a model that starts repeating itself inside a string (small
# and quantised models do) is stopped by the grammar instead of eating all of max_tokens.
_VALUE = {"anyOf": [{"type": "number"}, {"type": "string", "maxLength": 40}, {"type": "null"}]}
_MAX_POINTS = 200
_LONG_COLUMNS = ("x", "series", "value")  # concat_tables' own columns, beside the key


def _text(limit: int) -> dict[str, Any]:
    return {"type": "string", "maxLength": limit}


CHART_SCHEMA: dict[str, Any] = {
    "title": "chart_table",
    "type": "object",
    "properties": {
        "title": _text(200),
        "x_label": _text(100),
        "y_label": _text(100),
        "units": _text(40),
        "x": {"type": "array", "items": _VALUE, "maxItems": _MAX_POINTS},
        "series": {
            "type": "array",
            "maxItems": 30,
            "items": {
                "type": "object",
                "properties": {
                    "name": _text(100),
                    "values": {"type": "array", "items": _VALUE, "maxItems": _MAX_POINTS},
                },
                "required": ["name", "values"],
            },
        },
    },
    "required": ["title", "x_label", "y_label", "units", "x", "series"],
}

CHART_PROMPT = (
    "Read the data behind this chart and answer with one JSON object with these keys:\n"
    '"title": the chart title ("" if none);\n'
    '"x_label": the label of the x axis, or of the categories ("" if none);\n'
    '"y_label": the label of the y axis, or of the values ("" if none);\n'
    '"units": the unit of the values, e.g. "%", "USD", "millions" ("" if none);\n'
    '"x": every x value or category label, in order (left to right, or top to bottom; '
    "the slice labels of a pie chart);\n"
    '"series": one entry per data series (legend entry, or a single one when there is no '
    'legend), each {"name": ..., "values": [...]} with one value per x value, in the same '
    "order, null where the series has no value.\n"
    "Write each value as the chart shows it or as a plain number; read unlabeled values off "
    "the axis as precisely as you can."
)


def _numeric(values: list[Any]) -> tuple[list[float | None], bool]:
    """Parsed numbers, and whether every present value was one."""
    parsed = [parse_number(v) for v in values]
    present = [v for v in values if v is not None and not (isinstance(v, str) and not v.strip())]
    ok = sum(p is not None for p in parsed) == len(present)
    return parsed, ok


def _unique(names: list[str]) -> list[str]:
    seen: dict[str, int] = {}
    out = []
    for name in names:
        if name in seen:
            seen[name] += 1
            name = f"{name} ({seen[name]})"
        seen.setdefault(name, 1)
        out.append(name)
    return out


_EXACT_INT = 2**53  # whole numbers up to here are exact in a float; larger ones stay Float64


def to_table(answer: dict[str, Any]) -> pd.DataFrame:
    """The DataFrame for one validated :data:`CHART_SCHEMA` answer (see the module docstring).

    Series shorter than ``x`` are padded with NA; when a series is longer, ``x`` is padded
    with NA instead, so no value the model wrote is dropped.
    """
    x = list(answer.get("x") or [])
    series = [s for s in answer.get("series") or [] if isinstance(s, dict)]
    length = max([len(x)] + [len(s.get("values") or []) for s in series])
    x += [None] * (length - len(x))
    x_name = str(answer.get("x_label") or "").strip() or "x"
    names = [str(s.get("name") or "").strip() or f"series {i}" for i, s in enumerate(series, 1)]
    names = _unique([x_name, *names])
    columns: dict[str, Any] = {}
    parsed_x, numeric_x = _numeric(x)
    if numeric_x and any(v is not None for v in parsed_x):
        # Int64 for whole numbers (years, counts); a huge one (a model's noise) makes it Float64
        integral = all(v is None or (float(v).is_integer() and abs(v) <= _EXACT_INT) for v in parsed_x)
        columns[names[0]] = pd.array(
            [None if v is None else (int(v) if integral else v) for v in parsed_x],
            dtype="Int64" if integral else "Float64",
        )
    else:
        columns[names[0]] = pd.array(
            [None if v is None else str(v) for v in x], dtype="string"
        )
    for name, entry in zip(names[1:], series):
        values = list(entry.get("values") or [])
        values += [None] * (length - len(values))
        parsed, numeric = _numeric(values)
        if numeric:
            columns[name] = pd.array(parsed, dtype="Float64")
        else:
            columns[name] = pd.array([None if v is None else str(v) for v in values], dtype="string")
    table = pd.DataFrame(columns, index=pd.RangeIndex(length))
    table.attrs = {key: str(answer.get(key) or "") for key in ("title", "x_label", "y_label", "units")}
    return table


def concat_tables(tables: pd.Series, *, key: str | None = None) -> pd.DataFrame:
    """Every table in ``tables`` (as :meth:`chart_table` returns) in one long-form DataFrame.

    One row per value: ``key`` (the row's label in ``tables``; the index's name, else ``"row"``),
    ``x`` (the table's first column, whatever it is called), ``series`` (the column name) and
    ``value``. Missing tables (failed rows) are skipped.
    ``value`` is ``Float64`` when every table's values are numbers, else ``object``.
    """
    if key is None:
        named = str(tables.index.name) if tables.index.name is not None else "row"
        key = "row" if named in _LONG_COLUMNS else named
    elif key in _LONG_COLUMNS:
        msg = f"key={key!r} would clash with concat_tables' own columns {list(_LONG_COLUMNS)}; pick another name."
        raise ConfigError(msg)
    keys: list[Any] = []
    xs: list[np.ndarray] = []
    series: list[np.ndarray] = []
    values: list[np.ndarray] = []
    for label, table in tables.items():
        if not isinstance(table, pd.DataFrame) or table.shape[1] < 2 or table.shape[0] == 0:
            continue
        n, m = table.shape[0], table.shape[1] - 1
        # Built by position, not with melt(): the x column may be called "value" or "series",
        # and two series may share a name.
        keys.extend([label] * (n * m))
        xs.append(np.tile(table.iloc[:, 0].to_numpy(dtype=object), m))
        series.append(np.repeat(np.array([str(c) for c in table.columns[1:]], dtype=object), n))
        values.extend(table.iloc[:, j].to_numpy(dtype=object) for j in range(1, m + 1))
    if not keys:
        return pd.DataFrame({
            key: pd.Index([], dtype=tables.index.dtype), "x": pd.Series([], dtype=object),
            "series": pd.Series([], dtype="string"), "value": pd.Series([], dtype="Float64"),
        })
    out = pd.DataFrame({
        key: pd.Index(keys, dtype=tables.index.dtype),
        "x": pd.Series(np.concatenate(xs), dtype=object),
        "series": pd.Series(np.concatenate(series), dtype="string"),
    })
    value = pd.Series(np.concatenate(values), dtype=object)
    try:
        out["value"] = value.astype("Float64")
    except (TypeError, ValueError):
        out["value"] = value
    return out
