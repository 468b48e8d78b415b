"""Options as asked: reproducible shuffles, the prompt, the structured-output dialects, parsing."""

from __future__ import annotations

import pytest

from caprl_nb.verify.options import CANNOT_ANSWER, ask, choice_request, parse_choice
from caprl_nb.verify.questions import Question

Q = Question("What colour is the car?", ("red", "blue", "green", "dark red"), 0, "given")
OPTIONS = ("red", "blue", "green", "dark red")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", 1), ("b", 1), ("(B)", 1), ("B.", 1), ("B)", 1), ("[C]", 2), ("Answer: B", 1),
        ("answer: (C)", 2), ("The answer is D.", 3), ("The correct option is A", 0),
        ("\\boxed{B}", 1), ("So the result is \\boxed{C}.", 2), ('{"answer": "D"}', 3),
        ("B. blue", 1), ("(A) red", 0), ("blue", 1), ("Blue.", 1), ("It is green", 2),
        ("dark red", 3), ("the car is dark red", 3), ("red", 0),
        ("E", None), ("", None), (None, None), ("red and blue", None), ("I am not sure", None),
        ("the answer is a dog", None),
    ],
)
def test_parse_choice_reads_letters_boxes_json_and_option_text(text: str | None, expected: int | None) -> None:
    assert parse_choice(text, OPTIONS) == expected


def test_the_same_ask_is_the_same_prompt_and_samples_shuffle() -> None:
    assert ask(Q, "with_image", 0, seed=0) == ask(Q, "with_image", 0, seed=0)
    orders = {ask(Q, "with_image", s, seed=0).options for s in range(20)}
    assert len(orders) > 5  # shuffled per sample
    assert {ask(Q, "with_image", s, seed=1).options for s in range(20)} != orders  # and per seed
    for s in range(20):
        asked = ask(Q, "without_image", s)
        assert asked.options[asked.correct] == "red"
        assert sorted(asked.options) == sorted(OPTIONS)


def test_caption_ask_shows_the_caption_and_cannot_answer_last() -> None:
    asked = ask(Q, "caption", 0, caption="A red car by a lake.")
    assert asked.options[-1] == CANNOT_ANSWER
    assert asked.letters == ("A", "B", "C", "D", "E")
    assert "A red car by a lake." in asked.text
    assert f"E. {CANNOT_ANSWER}" in asked.text
    assert asked.options[asked.correct] == "red"


def test_choice_request_speaks_each_servers_dialect() -> None:
    letters = ("A", "B", "C")
    assert choice_request(letters, "0.32.0") == {"structured_outputs": {"choice": ["A", "B", "C"]}}
    assert choice_request(letters, "0.11.2") == {"guided_choice": ["A", "B", "C"]}
    openai_style = choice_request(letters, None)["response_format"]
    assert openai_style["type"] == "json_schema"
    assert openai_style["json_schema"]["schema"]["properties"]["answer"]["enum"] == ["A", "B", "C"]
