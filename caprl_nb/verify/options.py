"""Options as asked: shuffled reproducibly, written into the prompt, and the answer read back.

Every ask shuffles a question's options with a ``random.Random`` seeded from a hash of the
question, its options, what the ask is for (``"with_image"``, ``"without_image"``,
``"caption"``), the sample number and the call's ``seed``: the same call asks the same
prompts, so its answers come from the result store, while the samples of one question see the
options in different orders (position bias averages out). The caption answerer also gets
:data:`CANNOT_ANSWER` as the last option.

:func:`parse_choice` reads an answer robustly: a letter (``B``, ``(B)``, ``B.``, ``B) red``,
``Answer: B``, ``the answer is B``), ``\\boxed{B}``, JSON ``{"answer": "B"}`` (the schema sent to
a server that is not vLLM), or the option's own text.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import dataclass
from typing import Any

from caprl_nb.prompts import _version_tuple
from caprl_nb.verify.questions import LETTERS, Question

__all__ = [
    "CANNOT_ANSWER", "Asked", "ask", "choice_request", "parse_choice",
]

CANNOT_ANSWER = "Cannot answer from the caption"

_IMAGE_TAIL = "Answer with the option's letter only."
_CAPTION_HEAD = (
    "Here is a description of an image:\n\n{caption}\n\nAnswer the question about the image "
    "using only this description. If the description does not say, choose \"{cannot}\"."
)


@dataclass(frozen=True)
class Asked:
    """One way of asking a question: the options in the order shown, and where the right one is."""

    options: tuple[str, ...]
    correct: int  # index into options
    text: str  # the user turn's text

    @property
    def letters(self) -> tuple[str, ...]:
        return tuple(LETTERS[: len(self.options)])


def _order(question: Question, purpose: str, sample: int, seed: int) -> list[int]:
    document = json.dumps([question.question, list(question.options), purpose, sample, seed])
    rng = random.Random(int.from_bytes(hashlib.sha256(document.encode()).digest()[:8], "big"))
    order = list(range(len(question.options)))
    rng.shuffle(order)
    return order


def ask(question: Question, purpose: str, sample: int = 0, seed: int = 0, caption: str | None = None) -> Asked:
    """The prompt for one ask: ``purpose`` ``"caption"`` adds the caption and CANNOT_ANSWER."""
    order = _order(question, purpose, sample, seed)
    options = [question.options[i] for i in order]
    correct = order.index(question.answer)
    if purpose == "caption":
        options.append(CANNOT_ANSWER)
    lines = [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)]
    body = f"Question: {question.question}\n" + "\n".join(lines) + f"\n{_IMAGE_TAIL}"
    if purpose == "caption":
        head = _CAPTION_HEAD.format(caption=caption or "", cannot=CANNOT_ANSWER)
        body = f"{head}\n\n{body}"
    return Asked(tuple(options), correct, body)


def choice_request(letters: tuple[str, ...], server_version: str | None) -> dict[str, Any]:
    """Request fields that constrain the answer to one of ``letters``, in the server's dialect.

    vLLM >= 0.12: ``structured_outputs: {"choice": [...]}`` (vLLM 0.32's ChatCompletionRequest);
    older vLLM: ``guided_choice``. A server that reports no vLLM version (another
    OpenAI-compatible endpoint) gets OpenAI's ``response_format`` JSON schema, an object whose
    ``answer`` is one of the letters.
    """
    if server_version is None:
        schema = {
            "type": "object",
            "properties": {"answer": {"type": "string", "enum": list(letters)}},
            "required": ["answer"],
            "additionalProperties": False,
        }
        return {"response_format": {"type": "json_schema",
                                    "json_schema": {"name": "choice", "schema": schema, "strict": True}}}
    if _version_tuple(server_version) < (0, 12):
        return {"guided_choice": list(letters)}
    return {"structured_outputs": {"choice": list(letters)}}


_BOXED = re.compile(r"\\boxed\{\s*([^{}]*?)\s*\}")
_LONE = re.compile(r"^[\s\"'*`]*\(?\[?([A-Za-z])\]?\)?[.:)]?[\s\"'*`]*$")
_SAID = re.compile(r"\b(?i:answer|option|choice)\b(?:\s+(?i:is))?\s*[:\uff1a=]?\s*\(?\b([A-Z])\b\)?")
_LEADING = re.compile(r"^\s*\(?([A-Z])(?:\)|\.|:|\s*-)\s+\S")


def _norm(text: str) -> str:
    return " ".join(re.sub(r"[^\w\s]", " ", text).split()).casefold()


def parse_choice(text: str | None, options: tuple[str, ...]) -> int | None:
    """The index of the option ``text`` chose, or None when it names none (or several)."""
    if text is None:
        return None
    text = text.strip()
    if not text:
        return None
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        if isinstance(value, dict) and isinstance(value.get("answer"), str):
            return parse_choice(value["answer"], options)
    boxed = _BOXED.search(text)
    if boxed:
        return parse_choice(boxed.group(1), options)
    n = len(options)

    def letter(found: str) -> int | None:
        index = LETTERS.find(found.upper())
        return index if 0 <= index < n else None

    for pattern in (_LONE, _SAID, _LEADING):
        match = pattern.search(text)
        if match:
            got = letter(match.group(1))
            if got is not None:
                return got
    said = _norm(text)
    norms = [_norm(o) for o in options]
    if said in norms:
        return norms.index(said)
    inside = [i for i, o in enumerate(norms) if o and re.search(rf"(?<!\w){re.escape(o)}(?!\w)", said)]
    if len(inside) == 1:
        return inside[0]
    # "the red one" names red; "red and blue" names both (None). A longer option containing a
    # shorter one ("dark red" / "red") is the one meant when only they match.
    longest = [i for i in inside if not any(i != j and norms[i] in norms[j] for j in inside)]
    return longest[0] if len(longest) == 1 else None
