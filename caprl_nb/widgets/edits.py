"""Reviewers' edits of extracted values, turned back into typed values.

A reviewer types text into a form or a grid; these functions check it against the kind of the
column it came from (integer, number, boolean, string, json) and return typed values, or raise
:class:`~caprl_nb.errors.ConfigError` naming the field and what it needs. Values travel and are
stored as canonical JSON (sorted keys), so equal answers have equal review keys.
"""

from __future__ import annotations

import json
from datetime import date, datetime
from typing import Any

import numpy as np
import pandas as pd

from caprl_nb.cells import is_missing
from caprl_nb.errors import ConfigError
from caprl_nb.extract.parse import parse_number

__all__ = [
    "canonical_json", "column_kind", "jsonable", "object_array", "parse_table",
    "parse_value", "table_frame", "table_json", "table_kinds",
]

_TRUE = {"true", "yes", "y", "1"}
_FALSE = {"false", "no", "n", "0"}


def canonical_json(value: Any) -> str:
    """The one text form of extracted values: keys sorted, NA as null, numpy as Python."""
    return json.dumps(jsonable(value), sort_keys=True, ensure_ascii=False, allow_nan=False)


def jsonable(value: Any) -> Any:
    """A cell as a JSON value (nested lists and dicts included)."""
    if is_missing(value, infinite=True):
        return None
    if isinstance(value, (str, bool)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value)
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, np.ndarray)):
        return [jsonable(v) for v in value]
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)


def column_kind(series: pd.Series) -> str:
    """How a column's values are typed and edited: integer, number, boolean, string or json."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype):
        return "boolean"
    if pd.api.types.is_integer_dtype(dtype):
        return "integer"
    if pd.api.types.is_float_dtype(dtype):
        return "number"
    if pd.api.types.is_string_dtype(dtype) and not pd.api.types.is_object_dtype(dtype):
        return "string"
    present = [v for v in series.tolist() if not is_missing(v, infinite=True)]
    return "string" if all(isinstance(v, str) for v in present) else "json"


def parse_value(kind: str, value: Any, where: str) -> Any:
    """A reviewer's value (text from the form, or a Python value) as the JSON value ``kind`` wants."""
    if isinstance(value, str):
        text = value.strip()
        if text == "":
            return None
        if kind == "string":
            return value
        if kind == "integer":
            number = parse_number(text)
            if number is None or not number.is_integer():
                raise ConfigError(f"{where} needs a whole number; {value!r} is not one.")
            return int(number)
        if kind == "number":
            number = parse_number(text)
            if number is None:
                raise ConfigError(f"{where} needs a number; {value!r} is not one.")
            return number
        if kind == "boolean":
            if text.lower() in _TRUE:
                return True
            if text.lower() in _FALSE:
                return False
            raise ConfigError(f"{where} needs true or false, not {value!r}.")
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            msg = f"{where} needs JSON (e.g. [1, 2] or {{\"a\": 1}}); {value!r} is not: {exc.msg}."
            raise ConfigError(msg) from exc
    value = jsonable(value)
    if value is None or kind == "json":
        return value
    if kind == "boolean" and isinstance(value, bool):
        return value
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "integer" and numeric and float(value).is_integer():
        return int(value)
    if kind == "number" and numeric:
        return float(value)
    if kind == "string":
        return str(value)
    raise ConfigError(f"{where} needs a {kind} value, not {value!r}.")


# -- tables -----------------------------------------------------------------------------------
def table_kinds(table: pd.DataFrame) -> list[str]:
    return [column_kind(table.iloc[:, j]) for j in range(table.shape[1])]


def table_json(table: Any) -> dict[str, Any] | None:
    """A table as ``{"columns": [...], "rows": [[...]]}``; empty text is a missing cell."""
    if not isinstance(table, pd.DataFrame):
        return None
    rows = [
        [None if isinstance(v, str) and v == "" else jsonable(v) for v in row]
        for row in table.itertuples(index=False)
    ]
    return {"columns": [str(c) for c in table.columns], "rows": rows}


def parse_table(data: Any, like: pd.DataFrame | None) -> dict[str, Any]:
    """A reviewer's table (text cells, or a DataFrame) as typed table JSON.

    A column that held numbers in the model's table (same position) must hold numbers; a new
    column becomes numbers when every cell is one, a text column stays text. Rows with no
    value in any cell are dropped.
    """
    if isinstance(data, pd.DataFrame):
        data = {"columns": [str(c) for c in data.columns],
                "rows": [list(r) for r in data.itertuples(index=False)]}
    if not isinstance(data, dict) or not isinstance(data.get("columns"), list) or not isinstance(
        data.get("rows"), list
    ):
        raise ConfigError('An edited table is {"columns": [...], "rows": [[...], ...]} or a DataFrame.')
    columns = [str(c).strip() for c in data["columns"]]
    for j, name in enumerate(columns, 1):
        if not name:
            raise ConfigError(f"Column {j} of the table needs a name.")
    if len(set(columns)) != len(columns):
        raise ConfigError(f"The table's column names must differ: {columns}.")
    rows = data["rows"]
    for i, row in enumerate(rows, 1):
        if not isinstance(row, list) or len(row) != len(columns):
            raise ConfigError(f"Row {i} of the table needs {len(columns)} cells.")
    blank = [all(is_missing(c, infinite=True) or (isinstance(c, str) and not c.strip()) for c in row) for row in rows]
    rows = [row for row, empty in zip(rows, blank) if not empty]  # an added row left blank
    hints = table_kinds(like) if isinstance(like, pd.DataFrame) else []
    out_columns = []
    for j, name in enumerate(columns):
        cells = [None if is_missing(c, infinite=True) or (isinstance(c, str) and not c.strip()) else c
                 for c in (r[j] for r in rows)]
        hint = hints[j] if j < len(hints) else None
        if hint in ("integer", "number", "boolean"):
            values = [parse_value(hint, c, f"Column {name!r}, row {i}") for i, c in enumerate(cells, 1)]
        else:
            numbers = [parse_number(c) if not isinstance(c, bool) else None for c in cells]
            numeric = any(c is not None for c in cells) and all(
                n is not None for n, c in zip(numbers, cells) if c is not None
            )
            if numeric and hint is None:
                integral = all(n is None or n.is_integer() for n in numbers)
                values = [None if n is None else (int(n) if integral else n) for n in numbers]
            else:
                values = [None if c is None else (c if isinstance(c, str) else str(jsonable(c)))
                          for c in cells]
        out_columns.append(values)
    return {"columns": columns, "rows": [list(r) for r in zip(*out_columns)] if rows else []}


def table_frame(data: dict[str, Any], like: pd.DataFrame | None) -> pd.DataFrame:
    """Table JSON as a DataFrame typed like ``like`` (column by position), numbers numeric."""
    columns: dict[str, Any] = {}
    for j, name in enumerate(data["columns"]):
        values = [row[j] for row in data["rows"]]
        dtype: Any = None
        if isinstance(like, pd.DataFrame) and j < like.shape[1]:
            dtype = like.dtypes.iloc[j]
        elif all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values if v is not None):
            present = [v for v in values if v is not None]
            dtype = "Int64" if present and all(isinstance(v, int) for v in present) else "Float64"
            dtype = dtype if present else "string"
        else:
            dtype = "string"
        try:
            columns[name] = pd.array(values, dtype=dtype)
        except (TypeError, ValueError, OverflowError):
            columns[name] = pd.array(values)
    table = pd.DataFrame(columns, index=pd.RangeIndex(len(data["rows"])))
    if isinstance(like, pd.DataFrame):
        table.attrs = dict(like.attrs)
    return table


def object_array(values: list[Any]) -> np.ndarray:
    """An object array of ``values`` as they are (DataFrames and dicts are not unpacked)."""
    out = np.empty(len(values), dtype=object)
    for i, value in enumerate(values):
        out[i] = value
    return out


# -- the widget -------------------------------------------------------------------------------
