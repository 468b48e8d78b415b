"""The gallery's front end (static/gallery.js) in a real Chromium, against the loopback harness.

The harness (tests/support/gallery_harness.py) plays the Python side of PROTOCOL.md in the page, so
these tests see what a reviewer sees: first paint, a bounded DOM while scrolling 10,000 rows,
the toolbar setting traits, review and edit messages, failed rows, keyboard use, and strings
from models and files staying text. Without /usr/bin/chromium they skip, unless
CAPRL_REQUIRE_BROWSER=1, where a missing browser is an error.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gallery_harness import CHROMIUM, GalleryHarness, launch_chromium

SHOTS = Path(__file__).resolve().parents[2] / "test-output" / "gallery-frontend"
VIEWPORT = {"width": 1280, "height": 800}
GRID_NODE_BUDGET = 500
# How fast the first paint is (target < 1 s) is measured by bench/gallery_first_paint.py: a time
# budget here would fail on a loaded machine. This test checks that first paint happens and is recorded.


def _browser_missing(reason: str) -> None:
    if os.environ.get("CAPRL_REQUIRE_BROWSER") == "1":
        pytest.fail(f"CAPRL_REQUIRE_BROWSER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        _browser_missing(f"{CHROMIUM} is missing; install Debian's chromium for the gallery front-end tests")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _browser_missing("the playwright package is not installed (pip install playwright)")
    with sync_playwright() as p:
        chromium = launch_chromium(p)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def harness() -> Iterator[GalleryHarness]:
    with GalleryHarness() as server:
        yield server


class Page:
    """A Playwright page plus what it reported: dialogs, uncaught errors, console output."""

    def __init__(self, page: Any) -> None:
        self.page = page
        self.dialogs: list[str] = []
        self.problems: list[str] = []
        page.on("dialog", self._dialog)
        page.on("pageerror", lambda exc: self.problems.append(f"uncaught: {exc}"))
        page.on("console", lambda msg: self.problems.append(f"console.{msg.type}: {msg.text}"))

    def _dialog(self, dialog: Any) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def sent(self, kind: str) -> list[dict[str, Any]]:
        return self.page.evaluate("kind => window.__sent.filter(m => m.type === kind)", kind)

    def trait(self, name: str) -> Any:
        return self.page.evaluate("name => window.__harness.model.get(name)", name)

    def wait_sent(self, kind: str, count: int) -> list[dict[str, Any]]:
        """Wait until ``count`` messages of ``kind`` were sent; return them."""
        self.page.wait_for_function(
            "([kind, count]) => window.__sent.filter(m => m.type === kind).length >= count",
            arg=[kind, count],
            timeout=5000,
        )
        return self.sent(kind)

    def wait_trait(self, name: str, value: Any) -> None:
        self.page.wait_for_function(
            "([name, value]) => JSON.stringify(window.__harness.model.get(name)) === JSON.stringify(value)",
            arg=[name, value],
            timeout=5000,
        )

    def new_view(self, action: Any) -> None:
        """Do ``action`` and wait for the (fake) Python side to publish the new view."""
        before = self.trait("view_version")
        action()
        self.page.wait_for_function(
            "before => window.__harness.model.get('view_version') > before", arg=before, timeout=5000
        )

    def screenshot(self, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / name
        self.page.screenshot(path=str(path))
        return path


@pytest.fixture
def page(browser: Any) -> Iterator[Page]:
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(5000)
    wrapped = Page(context.new_page())
    yield wrapped
    context.close()
    assert wrapped.dialogs == [], f"a dialog opened: {wrapped.dialogs}"
    assert wrapped.problems == [], f"the page reported: {wrapped.problems}"


def card(root: Any, row_id: int) -> Any:
    return root.locator(f'[data-testid="card"][data-id="{row_id}"]')


def grid_nodes(root: Any) -> int:
    return root.get_by_test_id("grid").evaluate("grid => grid.querySelectorAll('*').length")


def wait_first_paint(root: Any) -> float:
    from playwright.sync_api import expect

    expect(root).to_have_attribute("data-first-paint-ms", re.compile(r"^\d+(\.\d+)?$"), timeout=5000)
    return float(root.get_attribute("data-first-paint-ms"))


def test_ten_thousand_rows_paint_stay_small_and_scroll_to_the_end(
    page: Page, harness: GalleryHarness
) -> None:
    from playwright.sync_api import expect

    root = harness.open(page.page, n=10_000)
    first_paint = wait_first_paint(root)
    # wait_first_paint() asserted render() recorded it; its figure is printed below, not judged
    expect(card(root, 0).get_by_test_id("caption")).to_contain_text("The image shows a crimson harbour")
    expect(root.get_by_test_id("count")).to_have_text("10,000 of 10,000")
    # thumbnails came as binary buffers and are shown through object URLs
    expect(card(root, 1).locator("img")).to_have_attribute("src", re.compile(r"^blob:"))
    top_nodes = grid_nodes(root)
    assert top_nodes <= GRID_NODE_BUDGET
    page.screenshot("grid-10k-top.png")

    grid = root.get_by_test_id("grid")
    grid.hover()
    for _ in range(6):  # wheel through a few screens: cards are recycled, not added
        page.page.mouse.wheel(0, 1500)
    expect(root.locator('[data-testid="card"]').first).to_be_visible()
    assert grid_nodes(root) <= GRID_NODE_BUDGET

    grid.evaluate("grid => { grid.scrollTop = grid.scrollHeight; }")
    last = card(root, 9_999)
    expect(last).to_be_in_viewport()
    expect(last.get_by_test_id("caption")).to_contain_text("(item 9999)")
    expect(last.locator("img")).to_have_attribute("src", re.compile(r"^blob:"))
    end_nodes = grid_nodes(root)
    assert end_nodes <= GRID_NODE_BUDGET
    page.screenshot("grid-10k-end.png")

    windows = page.sent("window")
    assert all(0 <= w["start"] < w["end"] <= 10_000 and w["end"] - w["start"] <= 200 for w in windows)
    assert all(w["version"] == 1 for w in windows)
    # jumping to the end fetched the end, not everything in between
    assert sum(w["end"] - w["start"] for w in windows) < 3_000
    print(f"first paint {first_paint:.1f} ms; grid nodes {top_nodes} at the top, {end_nodes} at the end")


def test_a_million_rows_reach_the_end_past_the_browsers_height_limit(
    page: Page, harness: GalleryHarness
) -> None:
    """A million rows are ~55 million px of cards, past Chromium's ~33.5 million px element limit:
    the grid scrolls through a scale, so the last row is still reached, by scrolling or End."""
    from playwright.sync_api import expect

    root = harness.open(page.page, n=1_000_000)
    wait_first_paint(root)
    expect(root.get_by_test_id("count")).to_have_text("1,000,000 of 1,000,000")
    grid = root.get_by_test_id("grid")
    assert grid.evaluate("grid => grid.scrollHeight") <= 8_000_000
    grid.evaluate("grid => { grid.scrollTop = grid.scrollHeight; }")
    last = card(root, 999_999)
    expect(last).to_be_in_viewport()
    expect(last.get_by_test_id("caption")).to_contain_text("(item 999999)")
    assert grid_nodes(root) <= GRID_NODE_BUDGET
    grid.evaluate("grid => { grid.scrollTop = grid.scrollHeight / 2; }")  # the middle is the middle
    page.page.wait_for_function(  # a filled card from the middle of the million
        """() => [...document.querySelectorAll('[data-testid=grid] [data-testid=card]')].some(c =>
            Math.abs(Number(c.dataset.id) - 500000) < 10000 && c.textContent.includes('item'))"""
    )
    grid.focus()
    page.page.keyboard.press("Home")
    expect(card(root, 0)).to_be_in_viewport()
    page.page.keyboard.press("End")
    expect(card(root, 999_999)).to_be_in_viewport()
    expect(card(root, 999_999)).to_have_class(re.compile("is-focused"))
    windows = page.sent("window")
    assert sum(w["end"] - w["start"] for w in windows) < 5_000  # the rows shown, not the rows passed


def test_review_counts_show_pending_until_python_has_them(page: Page, harness: GalleryHarness) -> None:
    from playwright.sync_api import expect

    root = harness.open(page.page, n=50)
    wait_first_paint(root)
    page.page.evaluate("() => window.__harness.model._pythonSet({counts: {all: 50, failed: 2}})")
    expect(root.get_by_test_id("filter-accepted")).to_contain_text("\u2026")
    expect(root.get_by_test_id("filter-failed")).to_contain_text("2")
    page.page.evaluate(
        "() => window.__harness.model._pythonSet({counts: {all: 50, unreviewed: 49, accepted: 1, "
        "rejected: 0, edited: 0, failed: 2}})"
    )
    expect(root.get_by_test_id("filter-accepted")).to_contain_text("1")
    expect(root.get_by_test_id("filter-accepted")).not_to_contain_text("\u2026")


def test_search_filter_and_sort_set_the_traits(page: Page, harness: GalleryHarness) -> None:
    from playwright.sync_api import expect

    root = harness.open(page.page, n=500)
    wait_first_paint(root)
    search = root.get_by_test_id("search")
    search.press_sequentially("Crimson", delay=15)
    page.wait_trait("query", "Crimson")
    expect(root.get_by_test_id("count")).to_have_text("50 of 500")
    saved_queries = page.page.evaluate("window.__saved.filter(s => 'query' in s).length")
    # Debounced: far fewer saves than keystrokes (one, unless a loaded machine stalls the typing
    # for longer than the debounce between two keys).
    assert 1 <= saved_queries <= 2, f"typing 7 letters saved the query {saved_queries} times"
    expect(card(root, 10).get_by_test_id("caption")).to_contain_text("crimson")
    expect(card(root, 1)).to_have_count(0)
    page.page.wait_for_function(
        "window.__sent.some(m => m.type === 'window' && m.version === 2)", timeout=5000
    )

    # a late answer for the old view is dropped, not painted
    page.page.evaluate(
        """() => window.__harness.push({type: 'rows', version: 1, start: 0,
             rows: [{...window.__harness.row(1), caption: 'STALE ROW'}]})"""
    )
    search.fill("")
    page.wait_trait("query", "")
    expect(root.get_by_test_id("count")).to_have_text("500 of 500")
    expect(card(root, 1).get_by_test_id("caption")).to_contain_text("teal")
    expect(root.get_by_text("STALE ROW")).to_have_count(0)

    root.get_by_test_id("filter-failed").click()
    page.wait_trait("status_filter", "failed")
    expect(root.get_by_test_id("filter-failed")).to_have_attribute("aria-pressed", "true")
    expect(root.get_by_test_id("filter-failed")).to_contain_text("10")
    expect(root.get_by_test_id("count")).to_have_text("10 of 500")
    expect(card(root, 47).get_by_test_id("error")).to_be_visible()
    root.get_by_test_id("filter-accepted").click()
    page.wait_trait("status_filter", "accepted")
    expect(root.get_by_test_id("count")).to_have_text("100 of 500")
    expect(root.locator('[data-testid="card"]').first).to_have_attribute("data-status", "accepted")
    root.get_by_test_id("filter-all").click()
    page.wait_trait("status_filter", "all")

    sort = root.get_by_test_id("sort")
    expect(sort.locator("option").first).to_have_text("original order")
    page.new_view(lambda: sort.select_option("score"))
    assert page.trait("sort_by") == "score"
    lowest = page.page.evaluate("window.__harness.python.view[0]")
    expect(root.locator('[data-testid="card"]').first).to_have_attribute("data-id", str(lowest))
    page.new_view(lambda: root.get_by_test_id("sort-direction").click())
    assert page.trait("sort_descending") is True
    highest = page.page.evaluate("window.__harness.python.view[0]")
    assert highest != lowest
    expect(root.locator('[data-testid="card"]').first).to_have_attribute("data-id", str(highest))
    score = page.page.evaluate(f"window.__harness.row({highest}).meta.score")
    expect(card(root, highest).locator(".cg-foot")).to_have_attribute("data-sortval", f"score {score}")
    expect(card(root, highest).locator("img")).to_have_attribute("src", re.compile(r"^blob:"))
    page.screenshot("toolbar-sorted.png")


def test_detail_buttons_send_reviews_and_edits(page: Page, harness: GalleryHarness) -> None:
    from playwright.sync_api import expect

    root = harness.open(page.page, n=200, row_delay_ms=30)
    wait_first_paint(root)
    full_caption = page.page.evaluate("window.__harness.row(0).caption")
    card(root, 0).click()
    detail = root.get_by_test_id("detail")
    expect(detail).to_be_visible()
    expect(detail.get_by_test_id("detail-caption")).to_have_text(full_caption)
    expect(detail.get_by_test_id("detail-image")).to_have_attribute("data-kind", "full")
    expect(detail.get_by_test_id("detail-image")).to_have_attribute("src", re.compile(r"^blob:"))
    assert page.sent("detail") == [{"type": "detail", "id": 0}]
    page.screenshot("detail.png")

    accepted_before = page.trait("counts")["accepted"]
    detail.get_by_test_id("accept").click()
    assert page.wait_sent("review", 1)[-1] == {"type": "review", "id": 0, "status": "accepted"}
    expect(detail).to_have_attribute("data-status", "accepted")
    expect(card(root, 0)).to_have_attribute("data-status", "accepted")
    expect(root.get_by_test_id("filter-accepted")).to_contain_text(f"{accepted_before + 1}")

    detail.get_by_test_id("reject").click()
    assert page.wait_sent("review", 2)[-1] == {"type": "review", "id": 0, "status": "rejected"}
    expect(card(root, 0)).to_have_attribute("data-status", "rejected")

    new_text = "A harbour at dusk, two red cranes, one ship."
    detail.get_by_test_id("edit").click()
    editor = detail.get_by_test_id("editor")
    expect(editor).to_be_focused()
    expect(editor).to_have_value(full_caption)
    editor.fill(new_text)
    page.screenshot("detail-editing.png")
    detail.get_by_test_id("save").click()
    assert page.wait_sent("edit", 1)[-1] == {"type": "edit", "id": 0, "caption": new_text}
    expect(editor).to_be_hidden()
    expect(card(root, 0).get_by_test_id("caption")).to_have_text(new_text)
    expect(card(root, 0)).to_have_attribute("data-status", "edited")
    expect(card(root, 0).locator(".cg-edited-mark")).to_be_visible()
    expect(detail.get_by_test_id("detail-caption")).to_have_text(new_text)

    detail.get_by_test_id("reset").click()
    assert page.wait_sent("review", 3)[-1] == {"type": "review", "id": 0, "status": "unreviewed"}
    expect(card(root, 0)).to_have_attribute("data-status", "unreviewed")
    expect(card(root, 0).get_by_test_id("caption")).to_contain_text("crimson harbour")  # the edit is gone
    expect(card(root, 0).locator(".cg-edited-mark")).to_be_hidden()

    detail.get_by_test_id("edit").click()
    editor.fill("Saved with the keyboard.")
    editor.press("Control+Enter")
    assert page.wait_sent("edit", 2)[-1]["caption"] == "Saved with the keyboard."
    expect(card(root, 0).get_by_test_id("caption")).to_have_text("Saved with the keyboard.")

    detail.get_by_test_id("edit").click()
    editor.fill("This text is thrown away.")
    editor.press("Escape")
    expect(editor).to_be_hidden()
    expect(detail).to_be_visible()  # Escape in the editor cancels the edit, not the pane
    expect(detail.get_by_test_id("detail-caption")).to_have_text("Saved with the keyboard.")
    detail.get_by_test_id("close").click()
    expect(detail).to_be_hidden()
    assert len(page.sent("edit")) == 2


def test_keyboard_shortcuts_review_the_focused_card(page: Page, harness: GalleryHarness) -> None:
    from playwright.sync_api import expect

    root = harness.open(page.page, n=200)
    wait_first_paint(root)
    grid = root.get_by_test_id("grid")
    grid.focus()
    page.page.keyboard.press("ArrowRight")
    expect(card(root, 1)).to_have_class(re.compile(r"\bis-focused\b"))
    expect(card(root, 1)).to_have_attribute("data-status", "accepted")
    for key, status in (("r", "rejected"), ("u", "unreviewed"), ("a", "accepted")):
        count = len(page.sent("review")) + 1
        page.page.keyboard.press(key)
        assert page.wait_sent("review", count)[-1] == {"type": "review", "id": 1, "status": status}
        expect(card(root, 1)).to_have_attribute("data-status", status)

    page.page.keyboard.press("e")
    editor = root.get_by_test_id("editor")
    expect(editor).to_be_focused()
    editor.fill("Keyboard edit.")
    page.page.keyboard.press("Control+Enter")
    assert page.wait_sent("edit", 1)[-1] == {"type": "edit", "id": 1, "caption": "Keyboard edit."}
    expect(root.get_by_test_id("detail")).to_have_attribute("data-status", "edited")
    page.page.keyboard.press("r")  # the detail pane takes the same shortcuts
    assert page.wait_sent("review", 4)[-1] == {"type": "review", "id": 1, "status": "rejected"}
    expect(root.get_by_test_id("detail")).to_have_attribute("data-status", "rejected")
    page.page.keyboard.press("Escape")
    expect(root.get_by_test_id("detail")).to_be_hidden()
    expect(card(root, 1)).to_have_attribute("data-status", "rejected")

    # typing in the search box is typing, not reviewing
    root.get_by_test_id("search").press("a")
    page.wait_trait("query", "a")
    assert len(page.sent("review")) == 4


def test_keyboard_navigation_moves_by_rows_and_opens_detail(page: Page, harness: GalleryHarness) -> None:
    from playwright.sync_api import expect

    root = harness.open(page.page, n=1_000)
    wait_first_paint(root)
    cols = root.evaluate(
        """root => {
             const cards = [...root.querySelectorAll('[data-testid=card]')];
             const tops = cards.map(c => c.getBoundingClientRect().top);
             return tops.filter(t => t === Math.min(...tops)).length;
           }"""
    )
    assert cols >= 3
    grid = root.get_by_test_id("grid")
    grid.focus()
    keyboard = page.page.keyboard
    focused = root.locator(".cg-card.is-focused")
    expect(focused).to_have_attribute("data-id", "0")
    assert focused.evaluate("c => getComputedStyle(c).outlineStyle") != "none", "focus is visible"
    keyboard.press("ArrowDown")
    expect(focused).to_have_attribute("data-id", str(cols))
    keyboard.press("ArrowRight")
    expect(focused).to_have_attribute("data-id", str(cols + 1))
    keyboard.press("ArrowUp")
    expect(focused).to_have_attribute("data-id", "1")
    keyboard.press("ArrowLeft")
    expect(focused).to_have_attribute("data-id", "0")
    for _ in range(8):
        keyboard.press("ArrowDown")
    target = 8 * cols
    expect(focused).to_have_attribute("data-id", str(target))
    expect(card(root, target)).to_be_in_viewport()
    page.screenshot("keyboard-focus.png")

    keyboard.press("Enter")
    detail = root.get_by_test_id("detail")
    expect(detail).to_be_visible()
    expect(detail).to_have_attribute("data-id", str(target))
    keyboard.press("ArrowRight")
    expect(detail).to_have_attribute("data-id", str(target + 1))
    keyboard.press("ArrowRight")
    keyboard.press("ArrowLeft")
    expect(detail).to_have_attribute("data-id", str(target + 1))
    keyboard.press("Escape")
    expect(detail).to_be_hidden()
    expect(grid).to_be_focused()
    expect(focused).to_have_attribute("data-id", str(target + 1))
    expect(card(root, target + 1)).to_be_in_viewport()


def test_failed_rows_show_their_error(page: Page, harness: GalleryHarness) -> None:
    from playwright.sync_api import expect

    long_error = "ReadTimeout: the CapRL server at http://localhost:8000/v1 did not answer within 60 s " * 3
    root = harness.open(
        page.page, n=60, overrides={5: {"caption": None, "error": long_error}}, detail_error_ids=[5]
    )
    wait_first_paint(root)
    expect(card(root, 5).get_by_test_id("error")).to_contain_text("ReadTimeout: the CapRL server")
    root.get_by_test_id("filter-failed").click()  # failed rows are filtered, never hidden
    expect(root.get_by_test_id("count")).to_have_text("2 of 60")
    for row_id, text in ((5, "ReadTimeout: the CapRL server"), (47, "cannot identify image file")):
        failed = card(root, row_id)
        expect(failed.get_by_test_id("error")).to_be_visible()
        expect(failed.get_by_test_id("error")).to_contain_text(text)
        expect(failed.get_by_test_id("caption")).to_be_hidden()
        expect(failed.locator(".caprl-badge--failed")).to_be_visible()
    page.screenshot("failed-cards.png")

    card(root, 5).click()
    detail = root.get_by_test_id("detail")
    expect(detail.get_by_test_id("detail-error")).to_have_text(long_error)
    expect(detail.get_by_text("Image unavailable: cannot identify image file")).to_be_visible()
    page.screenshot("failed-detail.png")


def test_model_and_file_strings_stay_text(page: Page, harness: GalleryHarness) -> None:
    from playwright.sync_api import expect

    caption = "<img src=x onerror=window.__pwned=1>"
    label = "<script>window.__pwned=1</script>"
    source = '"><svg onload=window.__pwned=1>.png'
    edited = "<b onmouseover=alert(4)>bold</b> & <i>it</i> [x](javascript:window.__pwned=1)"
    error = "<iframe src=javascript:window.__pwned=1></iframe>"
    title = "<img src=x onerror=window.__pwned=1>"
    link = "javascript:window.__pwned=1"
    markdown = "[click me](javascript:window.__pwned=1) **bold** <a href=javascript:window.__pwned=1>a</a>"
    root = harness.open(
        page.page,
        n=40,
        title=title,
        overrides={
            0: {"caption": caption, "label": label, "source": source},
            1: {"edited": edited, "status": "edited"},
            2: {"caption": None, "error": error},
            4: {"caption": markdown, "label": link, "source": link},
        },
    )
    wait_first_paint(root)
    expect(card(root, 0).get_by_test_id("caption")).to_have_text(caption)
    expect(card(root, 0).locator(".cg-label")).to_have_text(label)
    expect(card(root, 0).locator(".cg-source")).to_have_text(source)
    expect(card(root, 1).get_by_test_id("caption")).to_have_text(edited)
    expect(card(root, 2).get_by_test_id("error")).to_have_text(error)
    expect(root.locator(".cg-title")).to_have_text(title)
    expect(card(root, 4).get_by_test_id("caption")).to_have_text(markdown)  # markdown is not rendered
    expect(card(root, 4).locator(".cg-label")).to_have_text(link)

    card(root, 0).click()
    detail = root.get_by_test_id("detail")
    expect(detail.get_by_test_id("detail-caption")).to_have_text(caption)
    expect(detail.get_by_test_id("detail-label")).to_have_text(label)
    expect(detail.get_by_test_id("detail-source")).to_have_text(source)
    detail.get_by_test_id("edit").click()
    detail.get_by_test_id("editor").fill(edited)
    detail.get_by_test_id("save").click()
    expect(card(root, 0).get_by_test_id("caption")).to_have_text(edited)
    # let the images (thumbnails, the detail image) load: an injected onerror would have run
    expect(detail.get_by_test_id("detail-image")).to_have_attribute("data-kind", "full")
    expect(card(root, 3).locator("img")).to_have_attribute("src", re.compile(r"^blob:"))
    page.screenshot("payload-as-text.png")

    injected = root.evaluate(
        """root => [...root.querySelectorAll('*')].filter(el =>
             ['SCRIPT', 'IFRAME', 'B', 'I'].includes(el.tagName)
             || el.namespaceURI !== 'http://www.w3.org/1999/xhtml'
             || [...el.attributes].some(a => a.name.startsWith('on'))).map(el => el.outerHTML)"""
    )
    assert injected == []
    assert page.page.locator("img[onerror]").count() == 0
    assert root.locator("a, [href], [src^='javascript:' i]").count() == 0  # no link made of a string
    root.get_by_test_id("detail").get_by_test_id("close").click()
    card(root, 4).click()  # open it: a javascript: "source" or markdown link must not navigate
    expect(root.get_by_test_id("detail").get_by_test_id("detail-caption")).to_have_text(markdown)
    assert page.page.evaluate("typeof window.__pwned") == "undefined"
    assert page.dialogs == []


def test_row_messages_update_the_card_and_the_open_detail(page: Page, harness: GalleryHarness) -> None:
    from playwright.sync_api import expect

    root = harness.open(page.page, n=300, hold_rows=True)
    wait_first_paint(root)
    card(root, 3).click()
    detail = root.get_by_test_id("detail")
    expect(detail).to_have_attribute("data-id", "3")
    page.page.evaluate(
        "() => window.__harness.pushRow(3, {status: 'edited', edited: 'Fixed from Python.'})"
    )
    expect(detail.get_by_test_id("detail-caption")).to_have_text("Fixed from Python.")
    expect(detail).to_have_attribute("data-status", "edited")
    expect(card(root, 3).get_by_test_id("caption")).to_have_text("Fixed from Python.")
    expect(card(root, 3)).to_have_attribute("data-status", "edited")
    # a review shows as pending until Python answers with the row
    page.page.keyboard.press("r")
    page.wait_sent("review", 1)
    expect(card(root, 3)).to_have_class(re.compile(r"\bis-pending\b"))
    expect(detail).to_have_class(re.compile(r"\bis-pending\b"))
    expect(card(root, 3)).to_have_attribute("data-status", "edited")
    page.page.evaluate("() => window.__harness.release()")
    expect(card(root, 3)).to_have_attribute("data-status", "rejected")
    expect(card(root, 3)).not_to_have_class(re.compile(r"\bis-pending\b"))
    expect(detail).not_to_have_class(re.compile(r"\bis-pending\b"))
    expect(detail.get_by_test_id("detail-caption")).to_contain_text("(item 3)")
    # a row outside the cached windows is ignored quietly
    page.page.evaluate("() => window.__harness.pushRow(250, {status: 'rejected'})")
    expect(root.get_by_test_id("filter-rejected")).to_contain_text(
        str(page.page.evaluate("window.__harness.python.counts().rejected"))
    )


def test_thumbnail_urls_stay_bounded_and_cleanup_releases_everything(
    page: Page, harness: GalleryHarness
) -> None:
    from playwright.sync_api import expect

    root = harness.open(page.page, n=10_000)
    wait_first_paint(root)
    grid = root.get_by_test_id("grid")
    for row_id in range(600, 10_000, 600):
        if page.page.evaluate("window.__urlsMade") > 700:
            break
        # jump (no scrolling in between), then wait for that card's thumbnail
        grid.evaluate(
            """(grid, id) => {
                 const card = grid.querySelector('[data-testid=card], [data-testid=placeholder]');
                 const cols = Math.floor(grid.clientWidth / card.offsetWidth);
                 grid.scrollTop = Math.floor(id / cols) * (card.offsetHeight + 12);
               }""",
            row_id,
        )
        expect(card(root, row_id).locator("img")).to_have_attribute("src", re.compile(r"^blob:"))
    assert page.page.evaluate("window.__urlsMade") > 600, "enough thumbnails arrived to need evicting"
    # a replaced thumbnail's old URL is revoked one frame after its card switched
    page.page.wait_for_function("window.__liveUrls.size <= 600", timeout=5000)
    assert grid_nodes(root) <= GRID_NODE_BUDGET

    page.page.evaluate("() => window.__harness.cleanup()")
    expect(root).to_have_count(0)
    assert page.page.evaluate("window.__liveUrls.size") == 0
    assert page.page.evaluate("window.__harness.model.listenerCount()") == 0
