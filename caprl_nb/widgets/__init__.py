"""Widgets: the gallery, the extraction review and their review model (anywidget).

Their front ends are TypeScript modules bundled into static/ at build time (see bundles.py).
"""

from caprl_nb.widgets import bundles as _bundles  # noqa: F401  (first: checks the bundles are built)
from caprl_nb.widgets.extraction import ExtractionReview
from caprl_nb.widgets.gallery import Gallery
from caprl_nb.widgets.reviews import ReviewModel

__all__ = ["ExtractionReview", "Gallery", "ReviewModel"]
