"""Widgets: the gallery, the extraction review and their review model (anywidget; front end in static/)."""

from caprl_nb.widgets.extraction import ExtractionReview
from caprl_nb.widgets.gallery import Gallery
from caprl_nb.widgets.reviews import ReviewModel

__all__ = ["ExtractionReview", "Gallery", "ReviewModel"]
