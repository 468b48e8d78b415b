"""Reading what a model wrote: a JSON object out of an answer, a number out of a printed label.

Parsing is tolerant and validation (:mod:`caprl_nb.extract.schema`) is strict. Tolerant means:

* ```` ```json ```` fences and prose before the first ``{`` or after the object are ignored;
* raw control characters inside JSON strings are accepted (``json.loads(strict=False)``):
  vLLM's xgrammar backend emits them; in one measurement 13 of 20 constrained answers failed a
  strict ``json.loads`` and all 20 parsed this way and then passed schema validation;
* an answer the server cut off at ``max_tokens`` (``finish_reason == "length"``) is reported
  as cut off, with the fix, rather than as a syntax error.

Numbers are read the way charts print them: ``"1,234.5"``, ``"1 234,5"``, ``"12%"``,
``"$3.4M"``, ``"−7"`` (unicode minus), ``"(1,200)"`` (accounting negative), ``"45 kg"``.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any

from caprl_nb.errors import AnswerError, ParseError, TruncatedError, row_error

__all__ = ["ParsedAnswer", "parse_answer", "parse_number"]

_FENCE = re.compile(r"```[A-Za-z0-9_-]*[ \t]*\r?\n?(.*?)(?:```|\Z)", re.S)
_DECODER = json.JSONDecoder(strict=False)


@dataclass(frozen=True)
class ParsedAnswer:
    """A decoded JSON object, or the reason there is none: ``problem`` (a :class:`ParseError`
    or :class:`TruncatedError`), whose row text is ``error`` (``"ParseError: ..."`` etc.)."""

    value: dict[str, Any] | None
    problem: AnswerError | None = None

    @property
    def error(self) -> str | None:
        return None if self.problem is None else row_error(self.problem)


def _excerpt(text: str, limit: int = 60, *, tail: bool = False) -> str:
    flat = " ".join(text.split())
    if len(flat) <= limit:
        return flat
    return "…" + flat[-limit:] if tail else flat[:limit] + "…"


def parse_answer(
    text: str | None, *, finish_reason: str | None = None, max_tokens: int | None = None
) -> ParsedAnswer:
    """The first JSON object in ``text``, decoded tolerantly (see the module docstring).

    ``finish_reason`` and ``max_tokens`` turn an undecodable answer that hit the token limit
    into ``"Truncated: cut off at max_tokens=N; raise max_tokens ..."``.
    """
    if text is None or not text.strip():
        return ParsedAnswer(None, ParseError("the answer was empty"))
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    problem = None
    for candidate in candidates:
        start = candidate.find("{")
        while start != -1:
            try:
                value, _end = _DECODER.raw_decode(candidate, start)
            except json.JSONDecodeError as exc:
                problem = problem or exc
            else:
                if isinstance(value, dict):
                    return ParsedAnswer(value, None)
            start = candidate.find("{", start + 1) if problem is None else -1
        if problem is not None:
            break
    if finish_reason == "length":
        limit = f"max_tokens={max_tokens}" if max_tokens else "max_tokens"
        return ParsedAnswer(None, TruncatedError(
            f"cut off at {limit} before the JSON object was complete; raise "
            f"max_tokens (the answer ends {_excerpt(text, tail=True)!r})"
        ))
    if problem is None:
        return ParsedAnswer(
            None, ParseError(f"no JSON object in the answer (it begins {_excerpt(text)!r})")
        )
    return ParsedAnswer(None, ParseError(
        f"the answer is not valid JSON ({problem.msg} at line {problem.lineno} "
        f"column {problem.colno}; it begins {_excerpt(text)!r})"
    ))


# -- numbers ---------------------------------------------------------------------------------

_MINUS = "\u2212\u2012\u2013\u2014\ufe63\uff0d"  # minus sign, figure/en/em dash, small/fullwidth
_SPACES = "\u00a0\u2009\u202f\u2007"  # no-break, thin, narrow no-break and figure spaces
# Magnitude suffixes; lowercase "m" and "b" are left alone (metres, bytes).
_SCALE = {"k": 1e3, "K": 1e3, "M": 1e6, "mn": 1e6, "B": 1e9, "bn": 1e9, "T": 1e12, "tn": 1e12}
_NUMBER = re.compile(
    r"""(?P<sign>[+-]?)\s*
        # a currency: "$", "€", "US$", or a code followed by a space ("EUR 5"; "Q3" is no number)
        (?P<prefix>[A-Z]{1,3}\s+|[A-Z]{0,2}[^\w\s.,+\-()]{1,2}|)\s*
        (?P<sign2>[+-]?)
        (?P<digits>\d[\d,.' ]*\d(?:[eE][+-]?\d+)?|\d(?:[eE][+-]?\d+)?|\.\d+)
        (?P<gap>\s*)(?P<suffix>.*)""",
    re.X,
)
_MISSING = {"", "-", "--", "n/a", "na", "nan", "none", "null"}


def parse_number(value: Any) -> float | None:
    """The number a chart label or table cell shows, or None when it is not one number.

    >>> [parse_number(v) for v in ["1,234.5", "1.234,5", "12%", "(1,200)", "\u22127", "$3.4M", "45 kg"]]
    [1234.5, 1234.5, 12.0, -1200.0, -7.0, 3400000.0, 45.0]

    Percentages keep the number printed (``"12%"`` is 12.0, not 0.12). A magnitude suffix
    (``k``, ``K``, ``M``, ``mn``, ``B``, ``bn``, ``T``) multiplies the number when it follows
    it directly (``"12k"``) or the number has a currency prefix (``"$3.4 M"``); any other
    trailing unit (``kg``, ``°C``, ``USD``, ``%``) is dropped. Thousands separators are commas,
    dots, spaces or apostrophes between groups of three digits; a single comma not followed by
    exactly three digits is a decimal comma (``"1,5"`` is 1.5, ``"1,500"`` is 1500).
    Infinite and NaN values are None: no chart shows them.
    """
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        as_float = float(value)
        return as_float if math.isfinite(as_float) else None
    if not isinstance(value, str):
        return None
    text = value.strip()
    for ch in _SPACES:
        text = text.replace(ch, " ")
    for ch in _MINUS:
        text = text.replace(ch, "-")
    if text.lower() in _MISSING:
        return None
    negative = False
    if text.startswith("(") and text.endswith(")"):
        negative, text = True, text[1:-1].strip()
    match = _NUMBER.fullmatch(text)
    if match is None or (match["sign"] and match["sign2"]):
        return None
    number = _digits(match["digits"])
    suffix = match["suffix"].strip()
    if number is None or re.search(r"\d", suffix) or len(suffix.split()) > 2:
        return None  # "10-20", "3 of 4", "5 people in total": not one number
    word = re.match(r"[A-Za-z]+", suffix)
    if word and word.group() in _SCALE and (not match["gap"] or match["prefix"].strip()):
        number *= _SCALE[word.group()]
    if "-" in match["sign"] + match["sign2"]:
        negative = not negative
    return -number if negative else number


def _digits(text: str) -> float | None:
    """``"1,234.5"`` / ``"1.234,5"`` / ``"1 234"`` / ``"1'234"`` / ``"2.5e3"`` -> float."""
    mantissa, _, exponent = text.partition("e") if "e" in text else text.partition("E")
    if " " in mantissa or "'" in mantissa:
        grouped = re.match(r"([\d ']*)([.,]?)(\d*)$", mantissa)
        if grouped is None:
            return None
        whole, sep, frac = grouped.groups()
        if not re.fullmatch(r"\d{1,3}(?:[ ']\d{3})+", whole) or (sep and not frac):
            return None
        mantissa = whole.replace(" ", "").replace("'", "") + ("." + frac if sep else "")
    commas, dots = mantissa.count(","), mantissa.count(".")
    if commas and dots:
        decimal = "," if mantissa.rfind(",") > mantissa.rfind(".") else "."
        thousands = "." if decimal == "," else ","
        whole, _, frac = mantissa.rpartition(decimal)
        if not re.fullmatch(rf"\d{{1,3}}(?:\{thousands}\d{{3}})*", whole):
            return None
        mantissa = whole.replace(thousands, "") + "." + frac
    elif commas:
        if re.fullmatch(r"\d{1,3}(?:,\d{3})+", mantissa):
            mantissa = mantissa.replace(",", "")
        elif commas == 1:
            mantissa = mantissa.replace(",", ".")
        else:
            return None
    elif dots > 1:
        if not re.fullmatch(r"\d{1,3}(?:\.\d{3})+", mantissa):
            return None
        mantissa = mantissa.replace(".", "")
    try:
        number = float(mantissa + ("e" + exponent if exponent else ""))
    except ValueError:
        return None
    return number if math.isfinite(number) else None
