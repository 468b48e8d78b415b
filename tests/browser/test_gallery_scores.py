"""Scores in the gallery's front end, in a real Chromium: the score on each card, the "Score below"
threshold, sorting lowest first, and a row's failed questions beside its caption.

The harness (tests/support/gallery_harness.py, ``scores=True``) plays a Gallery built on a frame
joined with df.caprl.verify's columns: ``caption_score`` 0, 0.2 .. 1 by turns (every seventh row
unscored) and ``failed_questions``.
"""

from __future__ import annotations

import re
from typing import Any

from tests.browser import test_gallery_frontend as frontend
from tests.browser.test_gallery_frontend import Page, card, wait_first_paint
from tests.support.gallery_harness import GalleryHarness

# the front-end tests' fixtures: a Chromium per module, the harness server, a page per test
browser, harness, page = frontend.browser, frontend.harness, frontend.page

PWN = "<img src=x onerror=window.__pwned=1> expected: red; from the caption: cannot answer"


def _expected(page: Page, below: float) -> list[int]:
    return page.page.evaluate(
        """below => window.__harness.python.rows
             .filter(r => r._caption_score !== null && r._caption_score < below).map(r => r.id)""",
        below,
    )


def _shown(page: Page, root: Any) -> list[dict[str, Any]]:
    """The cards on screen in view order, once they show the (fake) Python's current view:
    id, score text and band. Read in the same step that checks them (a re-render in between
    would otherwise leave an empty or stale list)."""
    handle = page.page.wait_for_function(
        """root => {
             const view = window.__harness.python.view;
             const cards = [...root.querySelectorAll('[data-testid=card]')];
             const settled = cards.length >= Math.min(view.length, 6)
               && cards.every(c => view.indexOf(Number(c.dataset.id)) >= 0)
               && cards.some(c => Number(c.dataset.id) === view[0]);
             if (!settled || cards.length === 0) return null;
             return cards.map(c => {
               const s = c.querySelector('[data-testid=score]');
               return {pos: Number(c.id.split('-card-')[1]), id: Number(c.dataset.id),
                       score: s.hidden ? null : s.textContent, band: s.dataset.band};
             }).sort((a, b) => a.pos - b.pos);
           }""",
        arg=root.element_handle(),
    )
    shown: list[dict[str, Any]] = handle.json_value()
    return shown


def test_threshold_shows_only_low_scores_and_the_detail_lists_failed_questions(
    page: Page, harness: GalleryHarness
) -> None:
    from playwright.sync_api import expect

    root = harness.open(page.page, n=300, scores=True, overrides={2: {"notes": [PWN, "How many boats? expected: 3"]}})
    wait_first_paint(root)
    # every card shows its score with a colour band, and how many questions failed
    expect(card(root, 3).get_by_test_id("score")).to_have_text("score 0.60")
    expect(card(root, 3).get_by_test_id("score")).to_have_attribute("data-band", "mid")
    expect(card(root, 0).get_by_test_id("score")).to_have_attribute("data-band", "low")
    expect(card(root, 5).get_by_test_id("score")).to_have_attribute("data-band", "high")
    expect(card(root, 6).get_by_test_id("score")).to_have_text("no score")
    expect(card(root, 0).get_by_test_id("notes-count")).to_have_text("5 failed questions")
    expect(card(root, 4).get_by_test_id("notes-count")).to_have_text("1 failed question")
    expect(card(root, 5).get_by_test_id("notes-count")).to_be_hidden()  # score 1: none failed
    low, high = [card(root, i).get_by_test_id("score").evaluate("el => getComputedStyle(el).color") for i in (0, 5)]
    assert low != high, "the bands are told apart by colour"
    sort = root.get_by_test_id("sort")
    expect(sort.locator("option").nth(1)).to_have_text("caption_score")  # offered first
    expect(root.get_by_test_id("search")).to_have_attribute("placeholder", re.compile("failed questions"))

    # the threshold: only the cards scored below it, and the count says how many
    threshold = root.get_by_test_id("score-below")
    page.new_view(lambda: threshold.fill("0.5"))
    page.wait_trait("score_below", 0.5)
    expected = _expected(page, 0.5)
    expect(root.get_by_test_id("count")).to_have_text(f"{len(expected)} of 300")
    shown = _shown(page, root)
    assert shown and all(c["band"] == "low" and c["id"] in expected for c in shown), shown
    assert [c["id"] for c in shown] == expected[: len(shown)]

    # sorted by the score, lowest first: the review order
    page.new_view(lambda: sort.select_option("caption_score"))
    shown = _shown(page, root)
    scores = [c["score"] for c in shown]
    assert scores[:3] == ["score 0.00"] * 3 and scores == sorted(scores)
    last = page.page.evaluate("window.__harness.python.view.at(-1)")
    assert page.page.evaluate(f"window.__harness.row({last}).score.text") == "0.40"
    page.screenshot("scores-threshold.png")

    # with search (which reads the failed questions too) and a status filter
    search = root.get_by_test_id("search")
    search.fill("how many boats")
    page.wait_trait("query", "how many boats")
    expect(root.get_by_test_id("count")).to_have_text("1 of 300")
    expect(card(root, 2)).to_be_visible()
    root.get_by_test_id("filter-unreviewed").click()  # row 2 was rejected
    expect(root.get_by_test_id("count")).to_have_text("0 of 300")
    root.get_by_test_id("filter-rejected").click()
    expect(root.get_by_test_id("count")).to_have_text("1 of 300")

    # open a card: the failed questions sit beside the caption, as text
    card(root, 2).click()
    detail = root.get_by_test_id("detail")
    expect(detail).to_be_visible()
    expect(detail.get_by_test_id("detail-score")).to_have_text("score 0.40")
    notes = detail.get_by_test_id("detail-notes")
    expect(notes).to_be_visible()
    expect(notes.locator("h4")).to_have_text("2 failed questions")
    expect(notes.locator("li")).to_have_text([PWN, "How many boats? expected: 3"])
    expect(detail.get_by_test_id("detail-image")).to_have_attribute("data-kind", "full")
    detail.get_by_test_id("edit").click()  # the failed questions stay in sight while editing
    expect(detail.get_by_test_id("editor")).to_be_visible()
    expect(notes).to_be_visible()
    detail.get_by_test_id("cancel").click()
    page.screenshot("scores-detail.png")
    assert page.page.evaluate("typeof window.__pwned") == "undefined"
    assert root.locator("img[onerror]").count() == 0
    detail.get_by_test_id("close").click()
    search.fill("")
    root.get_by_test_id("filter-all").click()
    page.wait_trait("query", "")
    page.wait_trait("status_filter", "all")

    # clearing the threshold shows every row again
    page.new_view(lambda: root.get_by_test_id("score-clear").click())
    page.wait_trait("score_below", None)
    expect(root.get_by_test_id("count")).to_have_text("300 of 300")
    expect(threshold).to_have_value("")


def test_python_setting_the_threshold_shows_in_the_toolbar(page: Page, harness: GalleryHarness) -> None:
    from playwright.sync_api import expect

    root = harness.open(page.page, n=60, scores=True)
    wait_first_paint(root)
    page.page.evaluate("() => window.__harness.model._pythonSet({score_below: 0.3})")
    expect(root.get_by_test_id("score-below")).to_have_value("0.3")
    expect(root.get_by_test_id("score-clear")).to_be_visible()


def test_a_gallery_without_scores_has_no_threshold_and_no_score_chips(
    page: Page, harness: GalleryHarness
) -> None:
    from playwright.sync_api import expect

    root = harness.open(page.page, n=60)
    wait_first_paint(root)
    expect(root.get_by_test_id("score-filter")).to_be_hidden()
    expect(card(root, 0)).to_be_visible()
    expect(root.locator('[data-testid=card] [data-testid=score]:visible')).to_have_count(0)
    expect(root.locator('[data-testid=card] [data-testid=notes-count]:visible')).to_have_count(0)
    card(root, 0).click()
    expect(root.get_by_test_id("detail-notes")).to_be_hidden()
    expect(root.get_by_test_id("detail-score")).to_be_hidden()
