"""Tolerant parsing of answers and numbers (caprl_nb.extract.parse)."""

from __future__ import annotations

import doctest
import json

import pytest

from caprl_nb.extract import parse
from caprl_nb.extract.parse import parse_answer, parse_number


@pytest.mark.parametrize(
    ("text", "number"),
    [
        ("1,234", 1234.0),
        ("1,234,567.89", 1234567.89),
        ("1.234.567,89", 1234567.89),
        ("1 234 567", 1234567.0),
        ("1\u202f234", 1234.0),  # narrow no-break space, as French locales print
        ("1'234.5", 1234.5),
        ("1,5", 1.5),
        ("12%", 12.0),
        ("+5 %", 5.0),
        ("-3.5", -3.5),
        ("\u22123.5", -3.5),  # unicode minus sign
        ("\u20134", -4.0),  # en dash used as a minus
        ("(1,200)", -1200.0),  # accounting negative
        ("($45.10)", -45.1),
        ("$3.4M", 3_400_000.0),
        ("12k", 12_000.0),
        ("US$ 4.5 bn", 4_500_000_000.0),
        ("\u20ac 12,50", 12.5),
        ("EUR 1,000", 1000.0),
        ("45 kg", 45.0),
        ("21.5 \u00b0C", 21.5),
        ("5 m", 5.0),  # metres, not millions
        ("2.5e3", 2500.0),
        (".5", 0.5),
        (7, 7.0),
        (2.25, 2.25),
    ],
)
def test_numbers_as_charts_print_them(text: object, number: float) -> None:
    assert parse_number(text) == pytest.approx(number)


@pytest.mark.parametrize(
    "text", ["", "N/A", "-", "Q3", "INV-0042", "10-20", "3 of 4", "abc", "1,2,3", "EUR5", None,
             True, float("nan"), float("inf"), "1e999", [1]],
)
def test_things_that_are_not_one_number(text: object) -> None:
    assert parse_number(text) is None


def test_plain_json() -> None:
    assert parse_answer('{"a": 1, "b": [true, null]}').value == {"a": 1, "b": [True, None]}


def test_raw_control_characters_inside_strings() -> None:
    # What xgrammar emitted on vLLM 0.32: a raw tab, CR and \x04 inside string values.
    text = '{"title" :  "lou\x04 ye\tThe\rAns\x0fev",\n "x": [ 10]}'
    with pytest.raises(json.JSONDecodeError):
        json.loads(text)
    assert parse_answer(text).value == {"title": "lou\x04 ye\tThe\rAns\x0fev", "x": [10]}


@pytest.mark.parametrize(
    "text",
    [
        '```json\n{"a": 1}\n```',
        '```\n{"a": 1}\n```\nHope this helps!',
        'Sure! Here is the JSON you asked for:\n{"a": 1}',
        'Here: {"a": 1} -- let me know if you need {more}.',
        '```JSON\n{"a": 1}',  # an unclosed fence
    ],
)
def test_fences_and_prose_around_the_object(text: str) -> None:
    parsed = parse_answer(text)
    assert parsed.error is None
    assert parsed.value == {"a": 1}


def test_truncated_answer_says_raise_max_tokens() -> None:
    parsed = parse_answer('{"title": "Revenue by ye', finish_reason="length", max_tokens=256)
    assert parsed.value is None
    assert parsed.error.startswith("Truncated: cut off at max_tokens=256")
    assert "raise max_tokens" in parsed.error


def test_complete_object_despite_length_is_accepted() -> None:
    assert parse_answer('{"a": 1}', finish_reason="length", max_tokens=5).value == {"a": 1}


@pytest.mark.parametrize(
    ("text", "cause"),
    [
        ("sim caption abc def", "no JSON object in the answer (it begins 'sim caption abc def')"),
        ("", "the answer was empty"),
        ("   ", "the answer was empty"),
        ('{"a": 1,, }', "not valid JSON"),
        ("[1, 2, 3]", "no JSON object"),
    ],
)
def test_parse_errors_name_the_cause(text: str, cause: str) -> None:
    parsed = parse_answer(text, finish_reason="stop", max_tokens=100)
    assert parsed.value is None
    assert parsed.error.startswith("ParseError: ")
    assert cause in parsed.error


def test_docstring_examples() -> None:
    assert doctest.testmod(parse, raise_on_error=False).failed == 0
