"""Scoring against known truth: table_score, relaxed_accuracy, field_scores."""

from __future__ import annotations

import doctest
from pathlib import Path

import pandas as pd
import pytest

from caprl_nb.extract import groundtruth, scoring
from caprl_nb.extract.scoring import field_scores, relaxed_accuracy, table_match, table_score

TRUTH = pd.DataFrame({"year": ["2019", "2020", "2021", "2022"], "sales": [100.0, 200.0, 300.0, 400.0]})


def test_identical_tables_score_one() -> None:
    assert table_score(TRUTH, TRUTH) == 1.0


def test_one_value_ten_percent_off_is_documented_value() -> None:
    predicted = TRUTH.assign(sales=[100.0, 200.0, 300.0, 440.0])
    assert table_score(predicted, TRUTH) == 0.975
    match = table_match(predicted, TRUTH)
    assert match.precision == pytest.approx(3.9 / 4) and match.recall == pytest.approx(3.9 / 4)


def test_beyond_theta_a_value_scores_nothing() -> None:
    assert table_score(TRUTH.assign(sales=[100.0, 200.0, 300.0, 444.0]), TRUTH) == 0.75


def test_missing_and_extra_rows_cost_recall_and_precision() -> None:
    short = TRUTH.iloc[:2]
    m = table_match(short, TRUTH)
    assert (m.precision, m.recall) == (1.0, 0.5)
    longer = pd.concat([TRUTH, pd.DataFrame({"year": ["2023"], "sales": [1.0]})])
    m = table_match(longer, TRUTH)
    assert (m.precision, m.recall) == (0.8, 1.0)


def test_headers_match_fuzzily_and_formats_do_not_matter() -> None:
    predicted = pd.DataFrame({"Year": [2019, 2020, 2021, 2022], "Sales ": ["100", "200", "300", "$400"]})
    assert table_score(predicted, TRUTH) == 1.0
    renamed = TRUTH.rename(columns={"sales": "salez"})  # one letter of five off: key sim < 1
    assert 0.85 < table_score(renamed, TRUTH) < 1.0
    unrelated = TRUTH.rename(columns={"sales": "temperature"})
    assert table_score(unrelated, TRUTH) < 0.5


def test_transposed_prediction_scores_as_well() -> None:
    truth = pd.DataFrame({"x": ["a", "b"], "s1": [1.0, 2.0], "s2": [3.0, 4.0]})
    transposed = pd.DataFrame({"series": ["s1", "s2"], "a": [1.0, 3.0], "b": [2.0, 4.0]})
    assert table_score(transposed, truth) == 1.0


def test_missing_prediction_scores_zero() -> None:
    assert table_score(None, TRUTH) == 0.0
    assert table_score(pd.NA, TRUTH) == 0.0


def test_generated_truths_score_one_against_themselves(tmp_path: Path) -> None:
    charts = groundtruth.charts(tmp_path, 5)
    for truth in charts["truth"]:
        assert table_score(truth, truth) == 1.0
    a, b = charts["truth"].iloc[0], charts["truth"].iloc[1]
    assert table_score(a, b) < 0.5


def test_relaxed_accuracy() -> None:
    assert relaxed_accuracy("1,040", 1000) == 1.0
    assert relaxed_accuracy(1051, 1000) == 0.0
    assert relaxed_accuracy("12%", "12.5%") == 1.0
    assert relaxed_accuracy("Asia", " asia ") == 1.0
    assert relaxed_accuracy("Europe", "Asia") == 0.0
    assert relaxed_accuracy("Asia", 5) == 0.0
    assert relaxed_accuracy(0, 0) == 1.0
    assert relaxed_accuracy([100, "x", 3], [104, "x", 9]) == pytest.approx(2 / 3)


def test_field_scores() -> None:
    truth = {"total": 1234.5, "vendor": "Acme Corp", "id": "INV-0042", "paid": True, "n": 3}
    predicted = pd.Series({"total": "$1,234.50", "vendor": "ACME  corp", "id": "INV-0042",
                           "paid": True, "n": pd.NA})
    scores = field_scores(predicted, truth)
    assert list(scores.index) == list(truth)
    assert scores["exact"].to_dict() == {"total": False, "vendor": False, "id": True,
                                         "paid": True, "n": False}
    assert scores["match"].to_dict() == {"total": True, "vendor": True, "id": True,
                                         "paid": True, "n": False}
    assert field_scores(None, truth)["match"].sum() == 0


def test_docstring_examples() -> None:
    flags = doctest.NORMALIZE_WHITESPACE
    assert doctest.testmod(scoring, optionflags=flags, raise_on_error=False).failed == 0
