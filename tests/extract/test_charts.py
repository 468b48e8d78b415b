"""A chart answer becomes a typed table; tables stack long-form; generated charts."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from caprl_nb.errors import ConfigError
from caprl_nb.extract import concat_tables, groundtruth
from caprl_nb.extract.charts import CHART_SCHEMA, to_table
from caprl_nb.extract.schema import as_schema

ANSWER = {
    "title": "Revenue by year",
    "x_label": "Year",
    "y_label": "Revenue",
    "units": "USD",
    "x": ["2019", "2020", 2021],
    "series": [
        {"name": "Online", "values": ["1,200", "(300)", "\u22124.5"]},
        {"name": "Retail", "values": ["12%", None, 7]},
        {"name": "Notes", "values": ["high", "low", "n/a"]},
    ],
}


def test_answer_becomes_typed_table() -> None:
    assert as_schema(CHART_SCHEMA).validate(ANSWER)[1] is None
    table = to_table(ANSWER)
    assert list(table.columns) == ["Year", "Online", "Retail", "Notes"]
    assert str(table["Year"].dtype) == "Int64"
    assert table["Online"].tolist() == [1200.0, -300.0, -4.5]
    assert str(table["Online"].dtype) == "Float64"
    assert str(table["Retail"].dtype) == "Float64" and table["Retail"].isna().tolist() == [False, True, False]
    assert str(table["Notes"].dtype) == "string"  # not every value is a number: kept as text
    assert table.attrs == {"title": "Revenue by year", "x_label": "Year", "y_label": "Revenue",
                           "units": "USD"}


def test_huge_whole_numbers_on_the_x_axis_are_floats_not_an_overflow() -> None:
    table = to_table({"x": ["8" + "0" * 160, "5", "1"], "series": [{"name": "a", "values": [1, 2, 3]}]})
    assert str(table["x"].dtype) == "Float64" and table["x"].iloc[1] == 5.0
    years = to_table({"x": ["2023", "2024"], "series": [{"name": "a", "values": [1, 2]}]})
    assert str(years["x"].dtype) == "Int64"


def test_ragged_and_unnamed_series_lose_nothing() -> None:
    table = to_table({"x": ["a", "b"], "x_label": "", "series": [
        {"name": "", "values": [1, 2, 3]}, {"name": "", "values": [4]}]})
    assert list(table.columns) == ["x", "series 1", "series 2"]
    assert len(table) == 3
    assert table["x"].isna().tolist() == [False, False, True]
    assert table["series 2"].isna().tolist() == [False, True, True]


def test_duplicate_names_are_made_unique() -> None:
    table = to_table({"x": [1], "x_label": "A", "series": [{"name": "A", "values": [1]},
                                                          {"name": "A", "values": [2]}]})
    assert list(table.columns) == ["A", "A (2)", "A (3)"]


def test_concat_tables_long_form_keyed_by_row() -> None:
    tables = pd.Series([to_table(ANSWER), None, to_table({"x": ["q"], "series": [
        {"name": "s", "values": [5]}]})], index=pd.Index([10, 20, 30], name="chart"))
    long = concat_tables(tables)
    assert list(long.columns) == ["chart", "x", "series", "value"]
    assert set(long["chart"]) == {10, 30}
    assert long["chart"].dtype == "int64"
    first = long[long["chart"] == 10]
    assert len(first) == 9
    assert first[first["series"] == "Online"]["value"].tolist() == [1200.0, -300.0, -4.5]
    assert concat_tables(pd.Series([None], dtype=object)).empty


@pytest.mark.parametrize("x_name", ["value", "series", "x"])
def test_concat_tables_whatever_the_x_column_is_called(x_name: str) -> None:
    one = pd.DataFrame({x_name: pd.array([2020, 2021], dtype="Int64"),
                        "sales": pd.array([1.5, 2.0], dtype="Float64"),
                        "value": pd.array([7.0, None], dtype="Float64")} if x_name != "value" else
                       {x_name: pd.array([2020, 2021], dtype="Int64"),
                        "sales": pd.array([1.5, 2.0], dtype="Float64"),
                        "series": pd.array([7.0, None], dtype="Float64")})
    long = concat_tables(pd.Series([one, None], index=["a", "b"]))
    assert list(long.columns) == ["row", "x", "series", "value"]
    assert long["x"].tolist() == [2020, 2021, 2020, 2021]
    assert long["series"].tolist() == ["sales", "sales", one.columns[2], one.columns[2]]
    assert long["value"].dtype == "Float64"
    assert long["value"].tolist()[:3] == [1.5, 2.0, 7.0] and pd.isna(long["value"].iloc[3])
    assert set(long["row"]) == {"a"}


def test_concat_tables_key_cannot_clash_with_its_columns() -> None:
    tables = pd.Series([to_table(ANSWER)], index=pd.Index([1], name="value"))
    assert list(concat_tables(tables).columns) == ["row", "x", "series", "value"]
    with pytest.raises(ConfigError, match="key='series'"):
        concat_tables(tables, key="series")
    assert list(concat_tables(tables, key="chart").columns) == ["chart", "x", "series", "value"]


def test_generated_charts_have_files_and_truth(tmp_path: Path) -> None:
    charts = groundtruth.charts(tmp_path, 10, seed=3)
    assert list(charts["kind"]) == list(groundtruth.CHART_KINDS) * 2
    sizes = set()
    for _, row in charts.iterrows():
        with Image.open(row["image"]) as img:
            sizes.add(img.size)
        truth = row["truth"]
        assert isinstance(truth, pd.DataFrame) and len(truth) >= 3
        assert all(str(truth[c].dtype) == "Float64" for c in truth.columns[1:])
        assert truth.attrs["title"] == row["title"]
    assert len(sizes) >= 3
    stacked = charts[charts["kind"] == "stacked_bar"]["truth"].iloc[0]
    assert stacked.shape[1] >= 3  # two or more stacked series
    pie = charts[charts["kind"] == "pie"]["truth"].iloc[0]
    assert pie.iloc[:, 1].sum() == pytest.approx(100.0)
    again = groundtruth.charts(tmp_path / "again", 10, seed=3)
    assert all(a.equals(b) for a, b in zip(charts["truth"], again["truth"]))


def test_generated_documents(tmp_path: Path) -> None:
    docs = groundtruth.documents(tmp_path, 4)
    assert list(docs["kind"]) == ["invoice", "form", "invoice", "form"]
    assert docs["scanned"].tolist() == [False, False, True, True]
    for _, row in docs.iterrows():
        schema = groundtruth.INVOICE_SCHEMA if row["kind"] == "invoice" else groundtruth.FORM_SCHEMA
        assert as_schema(schema).validate(row["truth"])[1] is None
        assert Path(row["image"]).stat().st_size > 10_000
