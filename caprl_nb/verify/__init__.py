"""Which captions to look at first: score each caption by questions answered from it alone.

CapRL trains its captioner on this signal, and CaptionQA (arXiv 2511.21025) makes it a
benchmark: multiple-choice questions about the image, answered by a model that sees only the
caption. :func:`verify` asks them for every row and returns ``caption_score`` per caption
(see :mod:`caprl_nb.verify.columns` for the passes and their costs).

Modules: :mod:`~caprl_nb.verify.questions` (the question dataclass, the caller's questions
checked, the model's parsed), :mod:`~caprl_nb.verify.options` (shuffling, prompts, reading an
answer), :mod:`~caprl_nb.verify.filters` (which questions are kept),
:mod:`~caprl_nb.verify.requests` (chat turns with a prompt per request, stored),
:mod:`~caprl_nb.verify.columns` (``verify`` itself).
"""

from __future__ import annotations

from caprl_nb.verify.columns import RESULT_COLUMNS, verify
from caprl_nb.verify.options import CANNOT_ANSWER, parse_choice
from caprl_nb.verify.questions import Question

__all__ = ["CANNOT_ANSWER", "RESULT_COLUMNS", "Question", "parse_choice", "verify"]
