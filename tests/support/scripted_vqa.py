"""A scripted question answerer for the simulator's ``respond`` hook (verify's tests).

NOT a model: it answers the requests ``caprl_nb.verify`` sends exactly as a test scripts them,
so the score arithmetic, the filters, the shuffling and the answer parsing can be checked
exactly. Each :class:`Fact` is one question with its options and correct answer, and how the
"model" answers it:

* with the image: ``with_image[k]`` says whether its k-th such ask (in arrival order) is
  answered correctly (a wrong answer is the first wrong option shown);
* without the image: ``without_image[k]`` likewise;
* from a caption: correctly when the caption contains the correct option's text, else
  "Cannot answer from the caption" (so a test's caption decides its score).

Generation requests (an image and the ``questions`` JSON schema) are answered with the
questions scripted for that image, found by the image's colour (test images are solid colours,
which survive any resizing). The letter is written in ``style``: ``"letter"`` (``B``),
``"paren"`` (``(B)``), ``"answer"`` (``Answer: B``), ``"boxed"`` (``\\boxed{B}``), ``"text"``
(the option's text), ``"json"`` (``{"answer": "B"}``), cycling through ``styles`` per request when several are given.
"""

from __future__ import annotations

import base64
import io
import itertools
import json
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

CANNOT = "Cannot answer from the caption"


@dataclass
class Fact:
    question: str
    options: list[str]
    answer: str
    with_image: Sequence[bool] = (True, True, True)
    without_image: Sequence[bool] = (False, False, False)

    def given(self) -> dict[str, Any]:
        return {"question": self.question, "options": list(self.options), "answer": self.answer}


@dataclass
class ScriptedVQA:
    facts: list[Fact]
    # generated questions per image colour (RGB): raw dicts as the model would write them
    generated: dict[tuple[int, int, int], list[dict[str, Any]]] = field(default_factory=dict)
    styles: Sequence[str] = ("letter",)
    asks: Counter[tuple[str, str]] = field(default_factory=Counter)  # (mode, question) -> asks
    log: list[dict[str, Any]] = field(default_factory=list)  # what each request was, in order
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self._style = itertools.cycle(self.styles)

    def __call__(self, body: dict[str, Any]) -> str | None:
        content = body["messages"][-1]["content"]
        parts = content if isinstance(content, list) else [{"type": "text", "text": content}]
        text = "\n".join(p["text"] for p in parts if p.get("type") == "text")
        image = next((p["image_url"]["url"] for p in parts if p.get("type") == "image_url"), None)
        fmt = body.get("response_format") or {}
        if fmt.get("json_schema", {}).get("name") == "questions":
            colour = nearest(_colour(image), list(self.generated)) if image and self.generated else None
            with self._lock:
                self.log.append({"mode": "generate", "colour": colour})
            return json.dumps({"questions": self.generated.get(colour, []) if colour else []})
        return self._choose(text, image is not None, body)

    def _choose(self, text: str, has_image: bool, body: dict[str, Any]) -> str:
        question = re.search(r"^Question: (.*)$", text, re.M)
        assert question is not None, text
        shown = re.findall(r"^([A-Z])\. (.*)$", text, re.M)
        letters = [letter for letter, _ in shown]
        options = [option for _, option in shown]
        caption = re.search(r"Here is a description of an image:\n\n(.*?)\n\nAnswer the question", text, re.S)
        mode = "caption" if caption else "with_image" if has_image else "without_image"
        fact = next(f for f in self.facts if f.question == question.group(1))
        with self._lock:
            k = self.asks[(mode, fact.question)]
            self.asks[(mode, fact.question)] += 1
            self.log.append({"mode": mode, "question": fact.question, "options": options,
                             "choice": (body.get("structured_outputs") or {}).get("choice"),
                             "letters": letters})
            style = next(self._style)
        if mode == "caption":
            assert caption is not None
            right = fact.answer.casefold() in caption.group(1).casefold()
            pick = options.index(fact.answer) if right else options.index(CANNOT)
        else:
            script = fact.with_image if mode == "with_image" else fact.without_image
            right = script[k] if k < len(script) else False
            pick = options.index(fact.answer) if right else next(
                i for i, o in enumerate(options) if o != fact.answer)
        return _write(letters[pick], options[pick], style)


def _write(letter: str, option: str, style: str) -> str:
    return {
        "letter": letter, "paren": f"({letter})", "answer": f"Answer: {letter}",
        "boxed": f"\\boxed{{{letter}}}", "text": option, "dot": f"{letter}. {option}",
        "json": json.dumps({"answer": letter}),
    }[style]


def _colour(data_url: str) -> tuple[int, int, int]:
    data = base64.b64decode(data_url.partition(",")[2])
    with Image.open(io.BytesIO(data)) as img:
        rgb = img.convert("RGB")
        r, g, b = rgb.getpixel((rgb.width // 2, rgb.height // 2))
    return int(r), int(g), int(b)


def nearest(colour: tuple[int, int, int], known: Sequence[tuple[int, int, int]]) -> tuple[int, int, int]:
    """The scripted colour closest to ``colour`` (a JPEG re-encode shifts it a little)."""
    return min(known, key=lambda c: sum((a - b) ** 2 for a, b in zip(c, colour)))
