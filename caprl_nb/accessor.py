"""``df.caprl`` and ``s.caprl``: thin, stateless, delegating.

pandas caches one accessor object per frame, so the accessor holds nothing but the object it
wraps; every option travels with the call to :mod:`caprl_nb.frames`.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from caprl_nb import frames
from caprl_nb.errors import ColumnNotFoundError

__all__ = ["CapRLFrameAccessor", "CapRLSeriesAccessor"]


@pd.api.extensions.register_dataframe_accessor("caprl")
class CapRLFrameAccessor:
    """``df.caprl.caption("image_col")``, ``df.caprl.ask("image_col", "question")``."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame

    def _column(self, column: Any) -> pd.Series:
        if column not in self._frame.columns:
            raise ColumnNotFoundError(column, list(self._frame.columns))
        return self._frame[column]

    def caption(self, column: Any, **options: Any) -> pd.Series | pd.DataFrame:
        """Caption the images in ``column``; see :func:`caprl_nb.caption` for the options."""
        return frames.caption(self._column(column), **options)

    def ask(self, column: Any, question: str, **options: Any) -> pd.Series | pd.DataFrame:
        """Ask ``question`` about each image in ``column``; see :func:`caprl_nb.ask`."""
        return frames.ask(self._column(column), question, **options)


@pd.api.extensions.register_series_accessor("caprl")
class CapRLSeriesAccessor:
    """``s.caprl.caption()``, ``s.caprl.ask("question")`` on a Series of images."""

    def __init__(self, series: pd.Series) -> None:
        self._series = series

    def caption(self, **options: Any) -> pd.Series | pd.DataFrame:
        return frames.caption(self._series, **options)

    def ask(self, question: str, **options: Any) -> pd.Series | pd.DataFrame:
        return frames.ask(self._series, question, **options)
