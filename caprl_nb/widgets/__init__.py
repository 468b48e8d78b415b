"""Widgets: the gallery and its review model (anywidget; front end in static/)."""

from caprl_nb.widgets.gallery import Gallery
from caprl_nb.widgets.reviews import ReviewModel

__all__ = ["Gallery", "ReviewModel"]
