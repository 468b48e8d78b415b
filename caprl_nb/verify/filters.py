"""Which questions measure a caption: the CapRL authors' QA filter.

A question is kept only when the vision model answers it correctly **with** the image in more
than half of ``samples`` tries (options shuffled anew each try), and **without** the image (the
question and its options alone, no caption) correctly no more often than chance: a fraction
correct of at most ``1 / len(options)``. The first rule drops questions the model cannot answer
(or whose "answer" is wrong); the second drops questions that give their answer away. Every
dropped question says why, with the counts.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Tally", "verdict"]


@dataclass
class Tally:
    """One question's filter tries so far."""

    samples: int
    with_image: int = 0  # correct answers with the image
    without_image: int = 0  # correct answers from the question alone


def verdict(tally: Tally, n_options: int) -> str | None:
    """Why the question is dropped, or None when it is kept."""
    n = tally.samples
    if not tally.with_image * 2 > n:
        return (
            f"answered correctly with the image in {tally.with_image} of {n} tries (needs more "
            "than half): the model cannot answer it, or its answer is wrong"
        )
    if tally.without_image * n_options > n:
        return (
            f"answered correctly without the image in {tally.without_image} of {n} tries (more "
            f"often than chance, 1 in {n_options}): the question gives its answer away"
        )
    return None
