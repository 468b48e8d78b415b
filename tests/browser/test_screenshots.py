"""The README's screenshots, made in a real JupyterLab in headless Chromium, of what a user sees.

* The gallery in a notebook on the sample images (``caprl_nb/samples/``): cards reviewed with
  the mouse (accepted, rejected, edited), then one card's detail view. The captions are typed
  into the notebook's first cell for the picture: the gallery shows any frame's caption column,
  and the test suite's model servers write noise (the tiny random model) or hash tags (the
  simulator), which would make a poor picture of a gallery.
* The gallery with scores (``gallery-scores.png``): the same images and captions scored by a real
  ``df.caprl.verify`` run in the kernel against a scripted test server (tests/support/scripted_vqa.py
  through the simulator; not a model: it answers from a caption right exactly when the caption
  holds the answer), sorted lowest score first, the lowest card open with its failed questions.
* The labextension: "Caption with CapRL" in the file browser's context menu, the caption panel
  it opens, the side panel with the model server's status, and the CapRL page of Lab's settings
  editor. Their model server is the vLLM-shaped simulator (``tests/support/vllm_sim.py``, served
  as ``caprl-sim`` with the root ``tests/support/vllm_sim``), so the caption in the panel is the
  simulator's tag and says so; no model is presented as having written it.

Every screenshot is 1280x800 and lands in test-output/<test name>/; with
``CAPRL_SCREENSHOTS=<dir>`` (``CAPRL_SCREENSHOTS=docs/screenshots`` refreshes the committed
ones) each is also written there. Each must stay under 300 KB. Needs Debian's Chromium at
/usr/bin/chromium: without it these tests skip, unless CAPRL_REQUIRE_BROWSER=1 (CI).
"""

from __future__ import annotations

import json
import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import caprl_nb

from tests.browser.test_labextension import (
    LabPage,
    _context_menu,
    _dump,
    _expect_status,
    _page_errors,
    _show_folder,
    _status_item,
    _this_checkouts_labextension,
)
from tests.support.jupyterlab import CHROMIUM, JupyterLabServer, LabNotebook, browser, start_jupyterlab
from tests.support.vllm_sim import VLLMSimulator

REQUIRE_BROWSER = os.environ.get("CAPRL_REQUIRE_BROWSER") == "1"
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not REQUIRE_BROWSER,
    reason=f"no Chromium at {CHROMIUM} (apt-get install chromium); "
    "set CAPRL_REQUIRE_BROWSER=1 to make this a failure",
)

VIEWPORT = {"width": 1280, "height": 800}
MAX_BYTES = 300_000  # a README image; the committed ones are read on every visit
EXPECT_MS = 20_000  # one UI change (Playwright's 5 s default is short on a loaded 2-core box)
PAGE_MS = 120_000  # Lab's first paint
CARD_MS = 60_000  # the gallery's first cards, after the kernel built it
SIM_MODEL = "caprl-sim"
SIM_ROOT = "tests/support/vllm_sim"  # what the panel shows as the checkpoint: not a model
SAMPLES = Path(caprl_nb.__file__).resolve().parent / "samples"
FOLDER = "samples"  # the sample images, copied under the Lab root
CAPTIONS = {
    "bar_chart.png": "A bar chart titled “Quarterly revenue 2025 (USD m)”: Q1 12.5, Q2 18.2, "
                     "Q3 15.9 and Q4 22.4, the highest.",
    "invoice.png": "Invoice #2026-0417 from Northwind Traders Ltd., Bristol, dated 2026-04-17: "
                   "espresso beans, paper cups and oat milk, total 171.84 GBP including 20% VAT.",
    "line_chart.png": "A line chart of the daily temperature in Oslo over 21 days: a single red "
                      "wave peaking around day 6 and lowest around day 16.",
    "mountains.jpg": "Two grey mountains with snowy peaks under a blue sky.",
}
EDIT = ("A flat illustration of two snow-capped mountains under a clear blue sky, a yellow sun "
        "at the top right and dark green fir trees on a meadow in front.")
FRAME_CELL = f"""\
from pathlib import Path

import pandas as pd

import caprl_nb

# The sample images, with captions typed for this picture; df.caprl.caption("image") writes them.
df = pd.DataFrame({{"image": sorted(str(p) for p in Path("{FOLDER}").iterdir())}})
df["caption"] = df["image"].map(lambda p: CAPTIONS[Path(p).name])"""
GALLERY_CELL = 'gallery = df.caprl.gallery("image", caption="caption")\ngallery'


def _shoot(target: Any, output_dir: Path, name: str) -> Path:
    """Screenshot a page (or one element) into ``output_dir``, and into CAPRL_SCREENSHOTS when set."""
    path = output_dir / name
    target.screenshot(path=str(path))
    assert 0 < path.stat().st_size < MAX_BYTES, f"{name} is {path.stat().st_size:,} bytes"
    wanted = os.environ.get("CAPRL_SCREENSHOTS")
    if wanted:
        folder = Path(wanted)
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, folder / name)
    return path


def _images_loaded(page: Any, scope: str) -> None:
    """Until every <img> under ``scope`` (a CSS selector) has loaded: no empty frames in a picture."""
    page.wait_for_function(
        """scope => {
            const images = [...document.querySelectorAll(scope + ' img')];
            return images.length > 0 && images.every(img => img.complete && img.naturalWidth > 0);
        }""",
        arg=scope, timeout=EXPECT_MS, polling=100,
    )


def _show_cell(page: Any, index: int) -> None:
    """Scroll the notebook so that cell ``index`` (its code, then its output) starts at the top."""
    page.locator(".jp-Notebook .jp-Cell").nth(index).evaluate("cell => cell.scrollIntoView({block: 'start'})")


def _no_busy_indicators(page: Any) -> None:
    """No spinner or "Captioning…" in the picture: no caprl image view pending, no Lab spinner."""
    from playwright.sync_api import expect

    expect(page.locator('.jp-caprl-ImageView[data-state="pending"]')).to_have_count(0, timeout=EXPECT_MS)
    expect(page.locator(".jp-Spinner")).to_have_count(0, timeout=EXPECT_MS)


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():  # only reached with CAPRL_REQUIRE_BROWSER=1
        pytest.fail(f"CAPRL_REQUIRE_BROWSER=1 but there is no Chromium at {CHROMIUM}.")
    with browser() as launched:
        yield launched


@pytest.fixture(scope="module")
def module_sim() -> Iterator[VLLMSimulator]:
    with VLLMSimulator(model_id=SIM_MODEL, root=SIM_ROOT) as server:
        yield server


@pytest.fixture(scope="module")
def lab(module_sim: VLLMSimulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLabServer]:
    """One JupyterLab for the module: the sample images under samples/, the simulator as model server."""
    base = tmp_path_factory.mktemp("screenshots")
    root = base / "root"
    shutil.copytree(SAMPLES, root / FOLDER)
    env = {
        "CAPRL_BASE_URL": module_sim.base_url,
        "CAPRL_HOME": str(base / "caprl-home"),  # the server's store, shared with its kernels
        "CAPRL_MODEL": "", "CAPRL_API_KEY": "",
        **_this_checkouts_labextension(base),
    }
    with start_jupyterlab(root, env, state_dir=base / "lab") as server:
        yield server  # the plugin's settings stay the defaults: the settings page shows those


# pytest-jupyter (loaded as a plugin by tests/server/) adds autouse fixtures that would close the
# event loop Playwright's sync API runs in; nothing here uses its in-process server.
@pytest.fixture
def jp_asyncio_loop() -> None:
    return None


@pytest.fixture
def jp_server_cleanup() -> None:
    return None


# -- the gallery ------------------------------------------------------------------------------
def test_gallery_screenshots(lab: JupyterLabServer, chromium: Any, output_dir: Path) -> None:
    from playwright.sync_api import expect

    cells = [f"CAPTIONS = {CAPTIONS!r}", FRAME_CELL, GALLERY_CELL]
    nb = LabNotebook.create(lab, chromium, "gallery.ipynb", cells)
    page = nb.page
    page.set_viewport_size(VIEWPORT)
    try:
        nb.run_all()
        gallery = page.get_by_test_id("caprl-gallery")
        expect(gallery).to_have_count(1, timeout=CARD_MS)
        cards = gallery.get_by_test_id("card")
        expect(cards).to_have_count(len(CAPTIONS), timeout=CARD_MS)
        card = lambda i: gallery.locator(f'[data-testid=card][data-id="{i}"]')  # noqa: E731
        names = sorted(CAPTIONS)
        for i, name in enumerate(names):
            expect(card(i).get_by_test_id("caption")).to_have_text(CAPTIONS[name], timeout=EXPECT_MS)
            expect(card(i)).to_contain_text(name)
        expect(gallery.get_by_test_id("count")).to_have_text("4 of 4", timeout=EXPECT_MS)

        # review as a person does: accept the bar chart, reject the line chart, edit the mountains
        card(0).click()
        detail = gallery.get_by_test_id("detail")
        expect(detail).to_have_attribute("data-id", "0", timeout=EXPECT_MS)
        detail.get_by_test_id("accept").click()
        expect(card(0)).to_have_attribute("data-status", "accepted", timeout=EXPECT_MS)
        detail.get_by_test_id("next").click()
        expect(detail).to_have_attribute("data-id", "1", timeout=EXPECT_MS)
        detail.get_by_test_id("accept").click()
        expect(card(1)).to_have_attribute("data-status", "accepted", timeout=EXPECT_MS)
        detail.get_by_test_id("next").click()
        expect(detail).to_have_attribute("data-id", "2", timeout=EXPECT_MS)
        detail.get_by_test_id("reject").click()
        expect(card(2)).to_have_attribute("data-status", "rejected", timeout=EXPECT_MS)
        detail.get_by_test_id("next").click()
        expect(detail).to_have_attribute("data-id", "3", timeout=EXPECT_MS)
        detail.get_by_test_id("edit").click()
        detail.get_by_test_id("editor").fill(EDIT)
        detail.get_by_test_id("save").click()
        expect(card(3)).to_have_attribute("data-status", "edited", timeout=EXPECT_MS)
        expect(detail.get_by_test_id("detail-caption")).to_have_text(EDIT, timeout=EXPECT_MS)
        expect(detail.get_by_test_id("detail-image")).to_have_attribute("data-kind", "full", timeout=EXPECT_MS)
        original = detail.locator("details.cg-detail-original")
        original.locator("summary").click()  # the model's caption beside the reviewer's
        expect(original).to_have_attribute("open", "", timeout=EXPECT_MS)
        expect(original).to_contain_text(CAPTIONS["mountains.jpg"])
        _images_loaded(page, "[data-testid=caprl-gallery]")
        _show_cell(page, 2)
        _shoot(page, output_dir, "gallery-detail.png")

        detail.get_by_test_id("close").click()
        expect(detail).to_be_hidden(timeout=EXPECT_MS)
        expect(card(3).get_by_test_id("caption")).to_have_text(EDIT)
        _images_loaded(page, "[data-testid=caprl-gallery]")
        _show_cell(page, 2)
        expect(page.locator(".jp-Cell").nth(2).locator(".jp-InputArea")).to_contain_text("df.caprl.gallery(")
        _shoot(page, output_dir, "gallery.png")

        # what the picture shows is what pandas reads back
        reviews = json.loads(nb.run_cell("print(gallery.reviews.to_json(orient='index'))"))
        assert reviews == {
            "0": {"status": "accepted", "edited_caption": None},
            "1": {"status": "accepted", "edited_caption": None},
            "2": {"status": "rejected", "edited_caption": None},
            "3": {"status": "edited", "edited_caption": EDIT},
        }
        assert _page_errors(nb.console) == []
    finally:
        _dump(nb, output_dir / "console.log")
        nb.close()


# -- the labextension -------------------------------------------------------------------------
def test_labextension_screenshots(
    lab: JupyterLabServer, module_sim: VLLMSimulator, chromium: Any, output_dir: Path,
) -> None:
    from playwright.sync_api import expect

    page = LabPage.open(lab, chromium)
    pw = page.page
    pw.set_viewport_size(VIEWPORT)
    try:
        up = f"CapRL up · {SIM_MODEL} · 0 running, 0 waiting"
        _expect_status(pw, "up", up, timeout=PAGE_MS)

        # right-click an image in the file browser
        listing = _show_folder(pw, FOLDER)
        menu = _context_menu(pw, listing, "mountains.jpg")
        entry = menu.get_by_role("menuitem", name="Caption with CapRL")
        expect(entry).to_be_enabled(timeout=EXPECT_MS)
        entry.hover()
        _shoot(pw, output_dir, "lab-caption-menu.png")
        entry.click()

        view = pw.locator(".jp-caprl-Caption")
        expect(view).to_have_count(1, timeout=EXPECT_MS)
        expect(view).to_have_attribute("data-state", "done", timeout=EXPECT_MS)
        tab = pw.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
        expect(tab).to_contain_text("Caption: mountains.jpg", timeout=EXPECT_MS)
        expect(view.locator(".jp-caprl-Caption-path")).to_have_text(f"{FOLDER}/mountains.jpg")
        expect(view.locator(".jp-caprl-Caption-text")).to_contain_text("sim caption")
        expect(view.locator(".jp-caprl-Caption-meta")).to_contain_text(SIM_MODEL)
        expect(view.get_by_role("button", name="Insert as code")).to_be_visible()
        _images_loaded(pw, ".jp-caprl-Caption")
        _no_busy_indicators(pw)
        _shoot(pw, output_dir, "lab-caption-panel.png")

        # the status bar item opens the side panel: server, throughput, recent results, settings
        _status_item(pw).click()
        side = pw.locator("#jp-caprl-panel")
        expect(side).to_be_visible(timeout=EXPECT_MS)
        expect(side.locator(".jp-caprl-Panel-headline")).to_have_text(f"Up · {SIM_MODEL}", timeout=EXPECT_MS)
        expect(side).to_contain_text(module_sim.base_url, timeout=EXPECT_MS)
        recent = side.locator(".jp-caprl-Recent-item").first
        expect(recent.locator(".jp-caprl-Recent-input")).to_contain_text("mountains.jpg", timeout=EXPECT_MS)
        results = side.locator("dt:text-is('Results') + dd")
        if results.inner_text() != "1":  # the status answer is cached for 2 s; ask again
            side.get_by_role("button", name="Refresh").click()
        expect(results).to_have_text("1", timeout=EXPECT_MS)
        pw.mouse.move(640, 600)  # no hover highlight left on a button
        _no_busy_indicators(pw)
        _shoot(pw, output_dir, "lab-status-panel.png")

        # the CapRL page of Lab's settings editor, with the room of both side bars
        pw.evaluate("() => window.jupyterapp.commands.execute('settingeditor:open', {query: 'CapRL'})")
        pw.evaluate("() => { window.jupyterapp.shell.collapseLeft(); window.jupyterapp.shell.collapseRight(); }")
        editor = pw.locator(".jp-SettingsPanel, .jp-SettingsEditor").first
        expect(editor).to_be_visible(timeout=EXPECT_MS)
        expect(pw.get_by_text("Model server URL").first).to_be_visible(timeout=EXPECT_MS)
        expect(pw.get_by_text("Status poll interval (seconds)").first).to_be_visible(timeout=EXPECT_MS)
        _shoot(pw, output_dir, "lab-settings.png")
        assert _page_errors(page.console) == []
    finally:
        _dump(page, output_dir / "console.log")
        pw.close()



# -- the gallery with verify's scores -----------------------------------------------------------
# Five multiple-choice questions per sample image, given by the caller (df.caprl.verify's
# ``questions=``). The scripted server answers a question from a caption correctly exactly when
# the caption contains the right option's text, so these captions score 0.80, 0.60, 1.00, 0.40.
QUESTIONS = {
    "bar_chart.png": [
        ("What does the chart show?", ["quarterly revenue", "monthly costs", "market share", "head count"],
         "quarterly revenue"),
        ("Which quarter had the highest revenue?", ["Q1", "Q2", "Q3", "Q4"], "Q4"),
        ("What was the revenue in Q2, in USD m?", ["12.5", "15.9", "18.2", "22.4"], "18.2"),
        ("Which year does the chart cover?", ["2023", "2024", "2025", "2026"], "2025"),
        ("What colour are the bars?", ["blue", "red", "green", "grey"], "blue"),
    ],
    "invoice.png": [
        ("Who issued the invoice?", ["Northwind Traders Ltd.", "Contoso Ltd.", "Fabrikam Inc.", "Tailspin Toys"],
         "Northwind Traders Ltd."),
        ("What is the invoice total?", ["143.20 GBP", "171.84 GBP", "28.64 GBP", "74.00 GBP"], "171.84 GBP"),
        ("What is the VAT rate?", ["5%", "10%", "20%", "25%"], "20%"),
        ("When is the invoice due?", ["2026-04-17", "2026-05-17", "2026-06-17", "on receipt"], "2026-05-17"),
        ("What is the subtotal before VAT?", ["143.20", "171.84", "28.64", "74.00"], "143.20"),
    ],
    "line_chart.png": [
        ("Which city's temperature is plotted?", ["Oslo", "Bergen", "Stockholm", "Helsinki"], "Oslo"),
        ("On which day is it warmest?", ["day 1", "day 6", "day 11", "day 21"], "day 6"),
        ("On which day is it coldest?", ["day 6", "day 11", "day 16", "day 21"], "day 16"),
        ("What colour is the line?", ["red", "blue", "black", "green"], "red"),
        ("How many days does the chart cover?", ["7", "14", "21", "30"], "21"),
    ],
    "mountains.jpg": [
        ("How many mountains are there?", ["one", "two", "three", "four"], "two"),
        ("What covers the peaks?", ["snow", "clouds", "trees", "nothing"], "snow"),
        ("What is in the top right corner of the sky?", ["a yellow sun", "a cloud", "a bird", "the moon"],
         "a yellow sun"),
        ("What grows in the foreground?", ["fir trees", "palm trees", "sunflowers", "nothing"], "fir trees"),
        ("What colour is the meadow?", ["green", "yellow", "brown", "white"], "green"),
    ],
}
SCORES = {"bar_chart.png": 0.8, "invoice.png": 0.6, "line_chart.png": 1.0, "mountains.jpg": 0.4}
MOUNTAIN_MISSES = [
    "What is in the top right corner of the sky? expected: a yellow sun; from the caption: cannot answer",
    "What grows in the foreground? expected: fir trees; from the caption: cannot answer",
    "What colour is the meadow? expected: green; from the caption: cannot answer",
]
VERIFY_CELL = """\
# Score each caption: questions about the image, answered from the caption alone.
# SCRIPTED is this picture's scripted test server (tests/support/scripted_vqa.py), not a model.
df["qa"] = df["image"].map(lambda p: QUESTIONS[Path(p).name])
df = df.join(df.caprl.verify("image", caption="caption", questions="qa", base_url=SCRIPTED, progress=False))"""
SCORES_GALLERY_CELL = """\
gallery = df.caprl.gallery("image", caption="caption")
gallery.sort_by = "caption_score"  # the lowest score first: the captions to review first
gallery"""


@pytest.fixture
def scripted() -> Iterator[VLLMSimulator]:
    """The simulator answering as tests/support/scripted_vqa.py scripts it: NOT a model."""
    from tests.support.scripted_vqa import Fact, ScriptedVQA

    facts = [Fact(q, options, answer) for rows in QUESTIONS.values() for q, options, answer in rows]
    with VLLMSimulator(respond=ScriptedVQA(facts)) as server:
        yield server


def test_gallery_scores_screenshot(
    lab: JupyterLabServer, scripted: VLLMSimulator, chromium: Any, output_dir: Path,
) -> None:
    """The gallery with scores from a real ``df.caprl.verify`` run, sorted lowest first, the
    lowest-scoring card open with its failed questions.

    The scores come from a scripted test server (tests/support/vllm_sim.py answering through
    tests/support/scripted_vqa.py), not a model: it keeps every given question (right with the
    image, wrong without) and answers one from a caption correctly exactly when the caption holds
    the right option's text. What is real is the whole verify pipeline in the notebook's kernel
    (requests, filters, shuffled options, parsing, scores) and the gallery showing its columns.
    Runs last in this module: its verify results land in the shared store, whose count
    test_labextension_screenshots checks.
    """
    from playwright.sync_api import expect

    questions = {
        name: [{"question": q, "options": options, "answer": answer} for q, options, answer in rows]
        for name, rows in QUESTIONS.items()
    }
    setup = f"CAPTIONS = {CAPTIONS!r}\nQUESTIONS = {questions!r}\nSCRIPTED = {scripted.base_url!r}"
    cells = [setup, FRAME_CELL, VERIFY_CELL, SCORES_GALLERY_CELL]
    nb = LabNotebook.create(lab, chromium, "scores.ipynb", cells)
    page = nb.page
    page.set_viewport_size(VIEWPORT)
    try:
        nb.run_all()
        names = sorted(CAPTIONS)
        got = json.loads(nb.run_cell("print(df['caption_score'].astype(float).to_json(orient='values'))"))
        assert got == [SCORES[n] for n in names]
        misses = json.loads(nb.run_cell("import json; print(json.dumps(list(df['failed_questions'].iloc[3])))"))
        assert misses == MOUNTAIN_MISSES
        # the real pipeline ran: each of the 20 questions tried 3 times with and 3 times without the
        # image (the filter), then answered once from its caption
        log = scripted.respond.log  # type: ignore[union-attr]  # the ScriptedVQA set below
        assert Counter(entry["mode"] for entry in log) == {"with_image": 60, "without_image": 60, "caption": 20}

        gallery = page.get_by_test_id("caprl-gallery")
        expect(gallery).to_have_count(1, timeout=CARD_MS)
        cards = gallery.get_by_test_id("card")
        expect(cards).to_have_count(len(CAPTIONS), timeout=CARD_MS)
        card = lambda i: gallery.locator(f'[data-testid=card][data-id="{i}"]')  # noqa: E731
        for i, name in enumerate(names):
            expect(card(i).get_by_test_id("score")).to_have_text(f"score {SCORES[name]:.2f}", timeout=EXPECT_MS)
        expect(card(3).get_by_test_id("score")).to_have_attribute("data-band", "low")
        expect(card(3).get_by_test_id("notes-count")).to_have_text("3 failed questions")
        expect(gallery.get_by_test_id("sort")).to_have_value("caption_score", timeout=EXPECT_MS)
        first = gallery.locator("#" + str(gallery.get_by_test_id("grid").get_attribute("aria-activedescendant")))
        expect(first).to_have_attribute("data-id", "3", timeout=EXPECT_MS)  # mountains.jpg, 0.40

        card(3).click()
        detail = gallery.get_by_test_id("detail")
        expect(detail).to_have_attribute("data-id", "3", timeout=EXPECT_MS)
        expect(detail.get_by_test_id("detail-score")).to_have_text("score 0.40")
        notes = detail.get_by_test_id("detail-notes")
        expect(notes.locator("h4")).to_have_text("3 failed questions", timeout=EXPECT_MS)
        expect(notes.locator("li")).to_have_text(MOUNTAIN_MISSES)
        expect(detail.get_by_test_id("detail-image")).to_have_attribute("data-kind", "full", timeout=EXPECT_MS)
        _images_loaded(page, "[data-testid=caprl-gallery]")
        page.mouse.move(640, 790)  # no hover highlight on a card or button
        _show_cell(page, 3)
        _shoot(page, output_dir, "gallery-scores.png")
        assert _page_errors(nb.console) == []
    finally:
        _dump(nb, output_dir / "console.log")
        nb.close()
