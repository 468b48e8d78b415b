"""Multiple-choice questions: the dataclass, the caller's questions checked, the model's parsed.

A question is a text, two or more distinct options and the correct option. The caller gives
them as dicts ``{"question": str, "options": [str, ...], "answer": <option text or letter>}``
(a letter ``"B"`` names the second option unless some option reads ``"B"``); the vision model
writes them as JSON that :func:`generate_schema` constrains (vLLM structured outputs: four
options, the answer as a letter) and
:func:`read_generated` reads tolerantly. A caller's malformed question is a :class:`ConfigError`
naming the row and the question before anything is sent; a malformed generated question is
recorded as dropped, with the reason, and the row's other questions go on.
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from caprl_nb.cells import is_missing
from caprl_nb.errors import ConfigError, ParseError
from caprl_nb.extract.parse import parse_answer

__all__ = [
    "GENERATE_PROMPT",
    "GENERATE_SCHEMA",
    "LETTERS",
    "MAX_OPTIONS",
    "Question",
    "generate_prompt",
    "given_questions",
    "read_generated",
]

LETTERS = string.ascii_uppercase
MAX_OPTIONS = 10  # one letter each, and a "cannot answer" option after them

GENERATE_OPTIONS = 4
GENERATE_PROMPT = (
    "Write {n} multiple-choice questions about this image that someone can answer only by "
    "looking at it: what objects are there, how many, their colours, any visible text, where "
    "things are and what is happening. Each question has 4 short options, exactly one of them "
    "correct, and the others plausible but wrong for this image; \"answer\" is the letter of "
    "the correct option (A for the first, B for the second, ...). Answer with JSON only: "
    '{{"questions": [{{"question": "...", "options": ["...", "...", "...", "..."], "answer": "B"}}]}}'
)


def generate_prompt(n: int) -> str:
    return GENERATE_PROMPT.format(n=n)


def generate_schema(n: int) -> dict[str, Any]:
    """The JSON schema the question model's answer is constrained to (``n`` questions at most).

    Every string is bounded (``maxLength``, which vLLM's xgrammar backend enforces) and the
    answer is a letter, so even a model that writes nonsense ends its JSON well inside
    ``max_tokens`` with a question that can be asked.
    """
    text = {"type": "string", "minLength": 1, "maxLength": 200}
    option = {"type": "string", "minLength": 1, "maxLength": 80}
    item = {
        "type": "object",
        "properties": {
            "question": text,
            "options": {"type": "array", "items": option, "minItems": GENERATE_OPTIONS,
                        "maxItems": GENERATE_OPTIONS},
            "answer": {"type": "string", "enum": list(LETTERS[:GENERATE_OPTIONS])},
        },
        "required": ["question", "options", "answer"],
        "additionalProperties": False,
    }
    return {
        "type": "object",
        "properties": {"questions": {"type": "array", "items": item, "minItems": 1, "maxItems": n}},
        "required": ["questions"],
        "additionalProperties": False,
    }


GENERATE_SCHEMA = generate_schema(5)


@dataclass(frozen=True)
class Question:
    """One multiple-choice question; ``answer`` is the index of the correct option."""

    question: str
    options: tuple[str, ...]
    answer: int
    source: str  # "given" | "generated"

    @property
    def answer_text(self) -> str:
        return self.options[self.answer]

    def record(self) -> dict[str, Any]:
        """The question as a result cell holds it (before filters and answers fill the rest)."""
        return {
            "question": self.question, "options": list(self.options), "answer": self.answer_text,
            "source": self.source, "kept": None, "dropped": None, "caption_answer": None,
            "correct": None,
        }


def _norm(text: str) -> str:
    return " ".join(text.split()).casefold()


def _build(raw: Any, source: str) -> Question:
    """A Question from one dict; ValueError saying what is wrong with it."""
    if not isinstance(raw, Mapping):
        raise ValueError(f"a question is a dict with 'question', 'options' and 'answer', not {type(raw).__name__}")
    missing = [k for k in ("question", "options", "answer") if k not in raw]
    if missing:
        raise ValueError(f"it has no {', '.join(map(repr, missing))}")
    text, options, answer = raw["question"], raw["options"], raw["answer"]
    if not isinstance(text, str) or not text.strip():
        raise ValueError("'question' must be a non-empty string")
    if isinstance(options, (str, bytes)) or (not isinstance(options, Sequence) and not hasattr(options, "tolist")):
        raise ValueError("'options' must be a list of strings")
    options = list(options.tolist() if hasattr(options, "tolist") else options)
    if not 2 <= len(options) <= MAX_OPTIONS:
        raise ValueError(f"'options' must hold 2 to {MAX_OPTIONS} options, not {len(options)}")
    if not all(isinstance(o, str) and o.strip() for o in options):
        raise ValueError("every option must be a non-empty string")
    cleaned = tuple(" ".join(o.split()) for o in options)
    if len({_norm(o) for o in cleaned}) != len(cleaned):
        raise ValueError(f"its options repeat one another: {list(cleaned)}")
    if not isinstance(answer, str) or not answer.strip():
        raise ValueError("'answer' must be the correct option's text or its letter")
    norms = [_norm(o) for o in cleaned]
    if _norm(answer) in norms:
        index = norms.index(_norm(answer))
    else:
        letter = answer.strip().strip("().").upper()
        if len(letter) == 1 and letter in LETTERS[: len(cleaned)]:
            index = LETTERS.index(letter)
        else:
            raise ValueError(f"its answer {answer!r} is neither one of the options {list(cleaned)} nor their letter")
    return Question(" ".join(text.split()), cleaned, index, source)


def given_questions(cell: Any, label: object) -> list[Question] | None:
    """The caller's questions for one row; None when the cell is missing (then they are
    generated). ConfigError naming the row and question for anything malformed."""
    if is_missing(cell):
        return None
    if isinstance(cell, Mapping):
        cell = [cell]
    if isinstance(cell, (str, bytes)) or not (isinstance(cell, Sequence) or hasattr(cell, "tolist")):
        msg = (
            f"questions for row {label!r} must be a list of dicts like {{'question': 'What colour "
            "is the car?', 'options': ['red', 'blue'], 'answer': 'red'}, or None to generate them; "
            f"got {type(cell).__name__}."
        )
        raise ConfigError(msg)
    items = list(cell.tolist() if hasattr(cell, "tolist") else cell)
    if not items:
        msg = f"questions for row {label!r} is an empty list. Give at least one question, or None to generate them."
        raise ConfigError(msg)
    out = []
    for i, raw in enumerate(items):
        try:
            out.append(_build(raw, "given"))
        except ValueError as exc:
            msg = (f"Question {i} of row {label!r} cannot be asked: {exc}. Fix it, or pass None for "
                   "that row to generate questions.")
            raise ConfigError(msg) from exc
    return out


def read_generated(text: str) -> tuple[list[Question], list[tuple[dict[str, Any], str]]]:
    """The questions in the question model's answer, and the malformed ones with why.

    Raises ParseError when no JSON object with a ``questions`` list can be read at all.
    """
    parsed = parse_answer(text)
    if parsed.value is None:
        assert parsed.problem is not None
        raise parsed.problem
    items = parsed.value.get("questions")
    if not isinstance(items, list):
        raise ParseError("the question model's JSON has no 'questions' list")
    good: list[Question] = []
    bad: list[tuple[dict[str, Any], str]] = []
    seen: set[str] = set()
    for raw in items:
        try:
            question = _build(raw, "generated")
        except ValueError as exc:
            shown = dict(raw) if isinstance(raw, Mapping) else {"question": str(raw)}
            bad.append((shown, f"malformed: {exc}"))
            continue
        if _norm(question.question) in seen:
            bad.append((question.record(), "duplicate: the same question was generated twice"))
            continue
        seen.add(_norm(question.question))
        good.append(question)
    return good, bad


def check_generated(text: str, finish_reason: str | None, max_tokens: int) -> ParseError | None:
    """The generation task's check: an answer with no readable ``questions`` list is not kept
    (never stored; asked again next run). A list whose questions are all malformed *is* kept:
    asked again at the same (greedy) sampling the model would write it again, so the row says
    why each was dropped instead of sending the request on every run."""
    try:
        read_generated(text)
    except ParseError as exc:
        if finish_reason == "length":
            return ParseError(f"{exc}; the answer was cut off at max_tokens={max_tokens}: raise max_tokens")
        return exc
    return None
