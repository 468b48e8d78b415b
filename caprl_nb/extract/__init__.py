"""Structured outputs: fill a schema from each image, read charts into tables, score against truth.

``df.caprl.extract("image", schema)`` and ``df.caprl.chart_table("image")`` delegate here.
:mod:`~caprl_nb.extract.groundtruth` (needs matplotlib: ``pip install caprl-nb[synthetic]``)
draws charts and documents from known data; :mod:`~caprl_nb.extract.scoring` compares an
extraction with that truth.
"""

from caprl_nb.extract.charts import CHART_PROMPT, CHART_SCHEMA, concat_tables
from caprl_nb.extract.columns import EXTRACT_PROMPT, chart_table, extract, extraction_task
from caprl_nb.extract.pages import expand_pdfs, render_pdf
from caprl_nb.extract.parse import parse_answer, parse_number
from caprl_nb.extract.schema import Schema, as_schema
from caprl_nb.extract.scoring import field_scores, relaxed_accuracy, table_score

__all__ = [
    "CHART_PROMPT",
    "CHART_SCHEMA",
    "EXTRACT_PROMPT",
    "Schema",
    "as_schema",
    "chart_table",
    "concat_tables",
    "expand_pdfs",
    "extract",
    "extraction_task",
    "field_scores",
    "parse_answer",
    "parse_number",
    "relaxed_accuracy",
    "render_pdf",
    "table_score",
]


def __getattr__(name: str) -> object:
    # groundtruth needs matplotlib (an extra): imported when first named, so that
    # `caprl_nb.extract.groundtruth.charts(...)` works without an import of its own.
    if name == "groundtruth":
        import importlib

        return importlib.import_module("caprl_nb.extract.groundtruth")
    raise AttributeError(f"module 'caprl_nb.extract' has no attribute {name!r}")
