"""``df.caprl`` and ``s.caprl``: thin, stateless, delegating.

pandas caches one accessor object per frame, so the accessor holds nothing but the object it
wraps; every option travels with the call to :mod:`caprl_nb.frames`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from caprl_nb import frames
from caprl_nb.errors import ColumnNotFoundError

if TYPE_CHECKING:
    from caprl_nb.widgets import ExtractionReview, Gallery

__all__ = ["CapRLFrameAccessor", "CapRLSeriesAccessor"]


@pd.api.extensions.register_dataframe_accessor("caprl")
class CapRLFrameAccessor:
    """``df.caprl.caption("image_col")``, ``df.caprl.ask("image_col", "question")``."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame

    def _column(self, column: Any) -> pd.Series:
        if column not in self._frame.columns:
            raise ColumnNotFoundError(column, list(self._frame.columns))
        series: pd.Series = self._frame[column]  # pandas-stubs: a label of unknown type may select a frame
        return series

    def caption(self, column: Any, **options: Any) -> pd.Series | pd.DataFrame:
        """Caption the images in ``column``; see :func:`caprl_nb.caption` for the options."""
        return frames.caption(self._column(column), **options)

    def ask(self, column: Any, question: str, **options: Any) -> pd.Series | pd.DataFrame:
        """Ask ``question`` about each image in ``column``; see :func:`caprl_nb.ask`."""
        return frames.ask(self._column(column), question, **options)

    def gallery(self, column: Any, caption: Any = "caption", **options: Any) -> Gallery:
        """A gallery of ``column``'s images beside ``caption``; see :class:`caprl_nb.Gallery`."""
        from caprl_nb.widgets import Gallery

        self._column(column)
        return Gallery(self._frame, column, caption, **options)

    def apply_reviews(self, gallery: Gallery) -> pd.DataFrame:
        """A new DataFrame with the gallery's ``review_status`` and reviewed caption columns."""
        return gallery.apply(self._frame)

    def export(self, path: Any, **options: Any) -> Path:
        """Write the reviewed rows as a training set; see :func:`caprl_nb.export.export`."""
        from caprl_nb.export import export

        return export(self._frame, path, **options)

    def to_hf_dataset(self, **options: Any) -> Any:
        """The reviewed rows as a ``datasets.Dataset``; see :func:`caprl_nb.export.to_hf_dataset`."""
        from caprl_nb.export import to_hf_dataset

        return to_hf_dataset(self._frame, **options)

    def extract(self, column: Any, schema: Any, **options: Any) -> pd.DataFrame:
        """Fill ``schema`` from each image or PDF page; see :func:`caprl_nb.extract.extract`."""
        from caprl_nb.extract import extract

        return extract(self._column(column), schema, **options)

    def chart_table(self, column: Any, **options: Any) -> pd.Series | pd.DataFrame:
        """Each chart's data as a DataFrame; see :func:`caprl_nb.extract.chart_table`."""
        from caprl_nb.extract import chart_table

        return chart_table(self._column(column), **options)

    def verify(self, column: Any, caption: Any = "caption", questions: Any = None, **options: Any) -> pd.DataFrame:
        """Score each row's ``caption`` by questions about ``column``'s image answered from the
        caption alone; ``questions`` is a column name, a Series, or None to generate them. See
        :func:`caprl_nb.verify.verify`; ``df.join(df.caprl.verify("image"))`` adds the scores."""
        from caprl_nb.verify import verify

        images = self._column(column)
        captions = self._column(caption)
        if questions is not None and not isinstance(questions, (pd.Series, list, tuple)):
            questions = self._column(questions)
        return verify(images, captions, questions, **options)

    def review_extraction(self, column: Any, result: Any, **options: Any) -> ExtractionReview:
        """Review ``result`` (from ``extract`` or ``chart_table``) beside ``column``'s images;
        see :class:`caprl_nb.widgets.ExtractionReview`."""
        from caprl_nb.widgets.extraction import review_extraction

        return review_extraction(self._frame, column, result, **options)


@pd.api.extensions.register_series_accessor("caprl")
class CapRLSeriesAccessor:
    """``s.caprl.caption()``, ``s.caprl.ask("question")`` on a Series of images."""

    def __init__(self, series: pd.Series) -> None:
        self._series = series

    def caption(self, **options: Any) -> pd.Series | pd.DataFrame:
        return frames.caption(self._series, **options)

    def ask(self, question: str, **options: Any) -> pd.Series | pd.DataFrame:
        return frames.ask(self._series, question, **options)

    def extract(self, schema: Any, **options: Any) -> pd.DataFrame:
        from caprl_nb.extract import extract

        return extract(self._series, schema, **options)

    def chart_table(self, **options: Any) -> pd.Series | pd.DataFrame:
        from caprl_nb.extract import chart_table

        return chart_table(self._series, **options)
