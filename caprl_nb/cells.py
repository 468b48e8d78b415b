"""One cell of a frame, as Python: the one test for a missing value, and NA as ``None``.

Images, captions, extracted values and provenance all come out of pandas objects, where a
missing value is ``None``, ``NaN``, ``pd.NA`` or ``pd.NaT``. Every module asks here. pandas is
not imported: if it never was, a value cannot be ``pd.NA``.
"""

from __future__ import annotations

import math
import sys
from decimal import Decimal
from typing import Any

import numpy as np

__all__ = ["is_missing", "optional"]


def is_missing(value: object, *, infinite: bool = False) -> bool:
    """Whether ``value`` is None, NaN (float, numpy or Decimal), ``pd.NA`` or a NaT (pandas' or
    numpy's); never raises, for any value. A container (a list, an array, a DataFrame) is not
    missing, whatever it holds.

    ``infinite=True`` counts ±inf as missing too (a JSON cell cannot hold one).
    """
    if value is None:
        return True
    if isinstance(value, (float, np.floating)):
        return not math.isfinite(value) if infinite else math.isnan(value)
    if isinstance(value, (np.datetime64, np.timedelta64)):
        return bool(np.isnat(value))
    if isinstance(value, Decimal):
        return value.is_nan() or (infinite and value.is_infinite())
    pd = sys.modules.get("pandas")
    return pd is not None and (value is pd.NA or value is pd.NaT)


def optional(value: Any) -> Any:
    """A cell as a plain Python value: missing -> None, numpy scalars -> int/float/str/bool."""
    if is_missing(value):
        return None
    return value.item() if isinstance(value, np.generic) else value
