"""The caller's questions checked before anything is sent; the model's questions read tolerantly."""

from __future__ import annotations

import json

import pytest

from caprl_nb.errors import ConfigError, ParseError
from caprl_nb.verify.questions import check_generated, given_questions, read_generated


def test_given_questions_accept_option_text_or_letter_answers() -> None:
    qs = given_questions([
        {"question": "Colour?", "options": ["red", "blue"], "answer": "Blue"},
        {"question": "Count?", "options": ["1", "2", "3"], "answer": "(C)"},
    ], "row0")
    assert qs is not None
    assert [q.answer_text for q in qs] == ["blue", "3"]
    assert all(q.source == "given" for q in qs)
    assert given_questions(None, 0) is None  # generated for that row


@pytest.mark.parametrize(
    ("cell", "words"),
    [
        ("What?", "must be a list of dicts"),
        ([], "empty list"),
        ([{"question": "Q", "options": ["a", "b"]}], "no 'answer'"),
        ([{"question": "Q", "options": ["a"], "answer": "a"}], "2 to 10 options"),
        ([{"question": "Q", "options": ["a", "A "], "answer": "a"}], "repeat one another"),
        ([{"question": "Q", "options": ["a", "b"], "answer": "c"}], "neither one of the options"),
        ([{"question": "", "options": ["a", "b"], "answer": "a"}], "non-empty string"),
    ],
)
def test_malformed_given_questions_name_the_row_and_the_fix(cell: object, words: str) -> None:
    with pytest.raises(ConfigError, match=words) as info:
        given_questions(cell, "img-7")
    assert "'img-7'" in str(info.value)


def test_generated_questions_keep_the_good_and_say_why_the_rest_went() -> None:
    text = "Here you go:\n" + json.dumps({"questions": [
        {"question": "Sky?", "options": ["blue", "grey"], "answer": "blue"},
        {"question": "Sky?", "options": ["blue", "grey"], "answer": "grey"},
        {"question": "Dogs?", "options": ["1", "2"], "answer": "3"},
    ]})
    good, bad = read_generated(text)
    assert [q.question for q in good] == ["Sky?"]
    assert [why.split(":")[0] for _, why in bad] == ["duplicate", "malformed"]
    assert check_generated(text, "stop", 100) is None
    assert check_generated('{"questions": [{"question": "?"}]}', "stop", 100) is None  # kept: says why
    assert isinstance(check_generated('{"answers": []}', "stop", 100), ParseError)
    assert isinstance(check_generated("I cannot", "stop", 100), ParseError)
    problem = check_generated('{"questions": [{"que', "length", 64)
    assert isinstance(problem, ParseError) and "max_tokens=64" in str(problem)
