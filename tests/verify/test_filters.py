"""The CapRL QA filter's rule at its boundaries."""

from __future__ import annotations

from caprl_nb.verify.filters import Tally, verdict


def test_kept_only_when_right_with_the_image_most_times_and_not_above_chance_without() -> None:
    assert verdict(Tally(3, with_image=2, without_image=0), 4) is None
    assert verdict(Tally(4, with_image=2, without_image=0), 4) is not None  # half is not most
    assert "with the image in 1 of 3" in str(verdict(Tally(3, with_image=1), 4))
    assert verdict(Tally(4, with_image=4, without_image=1), 4) is None  # 1/4 == chance: kept
    leak = verdict(Tally(3, with_image=3, without_image=1), 4)  # 1/3 > 1/4
    assert leak is not None and "gives its answer away" in leak
    assert verdict(Tally(4, with_image=3, without_image=2), 2) is None  # 2/4 == 1/2
