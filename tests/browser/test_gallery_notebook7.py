"""The gallery in Jupyter Notebook 7, in headless Chromium: run the notebook, review, read it back.

Notebook 7 is its own front end (``/notebooks/<path>``) on JupyterLab's components, and it
exposes no ``window.jupyterapp`` unless told to, so these tests drive it only the way a user
does: the Run menu's "Run All Cells", clicks on the gallery, Shift+Enter on a cell. What the
page shows (input prompts ``[n]:``, rendered stdout) is the only thing they read. The captions
are synthetic (no model server): one of them is HTML that would raise an alert if the gallery
rendered it. Notebook 7 runs its shortcuts on the document in the capture phase, so a test checks
that the gallery's own keys (R rejects) reach the gallery, not the notebook. Screenshots land in
test-output/<test name>/.

Needs Debian's Chromium at /usr/bin/chromium: without it these tests skip, unless
CAPRL_REQUIRE_BROWSER=1 (CI), where a missing browser fails them.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.jupyterlab import CHROMIUM, VIEWPORT, JupyterLabServer, browser, start_jupyterlab
from tests.support.polling import wait_until

EXPECT_MS = 20_000  # one UI change (Playwright's default 5 s is short on a loaded 2-core box)
KERNEL_TIMEOUT = 60.0  # the page loaded, its kernel started and connected
RUN_TIMEOUT = 60.0  # every cell of the notebook run (pandas + PIL + caprl_nb imports)
REQUIRE_BROWSER = os.environ.get("CAPRL_REQUIRE_BROWSER") == "1"
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not REQUIRE_BROWSER,
    reason=f"no Chromium at {CHROMIUM} (apt-get install chromium); "
    "set CAPRL_REQUIRE_BROWSER=1 to make this a failure",
)
XSS = "<img src=x onerror=alert(1)>"
NAME = "gallery.ipynb"
# Notebook 7.6.5 (on JupyterLab 4.6.6) throws this once while it loads its settings, in any
# notebook, with caprl-nb's labextension disabled too: the shortcuts extension's pluginChanged
# handler reads plugins[id].schema of a plugin the registry does not hold. JupyterLab 4.6 does not.
NOTEBOOK7_STARTUP_ERROR = ("Cannot read properties of undefined (reading 'schema')",
                           "/static/notebook/notebook_core.")

COLORS = ["crimson", "darkorange", "gold", "seagreen", "royalblue"]
# what a captioning run would have written; the last one is HTML that must stay text
CAPTIONS = [f"A flat {color} rectangle labelled image {i}." for i, color in enumerate(COLORS[:4])]
CAPTIONS.append(XSS)

IMAGES_CELL = f"""\
import pandas as pd
from PIL import Image, ImageDraw

import caprl_nb

paths = []
for i, color in enumerate({COLORS!r}):
    image = Image.new("RGB", (160, 120), color)
    ImageDraw.Draw(image).text((10, 10), f"image {{i}}: {{color}}", fill="white")
    image.save(f"img{{i}}.png")
    paths.append(f"img{{i}}.png")
df = pd.DataFrame({{"image": paths, "caption": {CAPTIONS!r}}}, index=[f"r{{i}}" for i in range(5)])
"""
GALLERY_CELL = 'g = df.caprl.gallery("image", caption="caption")\ng'
REVIEWS_CELL = "print(g.reviews.to_json(orient='index'))"


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():  # only reached with CAPRL_REQUIRE_BROWSER=1
        pytest.fail(f"CAPRL_REQUIRE_BROWSER=1 but there is no Chromium at {CHROMIUM}.")
    with browser() as launched:
        yield launched


def _poll(condition: Any, timeout: float, what: str, diagnostics: Any) -> Any:
    """``condition()`` until truthy; fails naming ``what`` and showing ``diagnostics()`` after ``timeout`` s."""
    try:
        return wait_until(condition, timeout, what, interval=0.1)
    except AssertionError:
        pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}\n{diagnostics()}")


class Notebook7Page:
    """One notebook open in Notebook 7's own page, read through its DOM only."""

    def __init__(self, server: JupyterLabServer, page: Any, name: str) -> None:
        self.server = server
        self.page = page
        self.name = name
        self.console: list[str] = []
        self.dialogs: list[str] = []
        page.on("console", lambda m: self.console.append(f"console.{m.type}: {m.text}")
                if m.type in ("error", "warning") else None)
        page.on("pageerror", self._on_page_error)
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))

    def _on_page_error(self, error: Any) -> None:
        message, bundle = NOTEBOOK7_STARTUP_ERROR
        top_frame = (error.stack or "").splitlines()[1:2]
        known = error.message == message and any(bundle in frame for frame in top_frame)
        self.console.append(f"{'known ' if known else ''}pageerror: {error}")

    def open(self) -> None:
        """``/notebooks/<name>``, until its kernel is started, connected and idle."""
        self.page.goto(f"{self.server.url}/notebooks/{self.name}?token={self.server.token}",
                       timeout=KERNEL_TIMEOUT * 1000)
        # the server's view (a session whose kernel reports idle) and the page's (the toolbar's
        # kernel name, the execution indicator's status): the indicator alone says "idle" before
        # any kernel exists
        _poll(self._kernel_ready, KERNEL_TIMEOUT, f"the kernel of {self.name}", self.diagnostics)

    def _kernel_ready(self) -> bool:
        sessions = self.server.api("GET", "/api/sessions").json()
        kernels = [s["kernel"] for s in sessions if s["path"] == self.name]
        if not kernels or kernels[0]["execution_state"] != "idle":
            return False
        return self.page.evaluate("""() => {
            const name = document.querySelector('.jp-KernelName');
            const status = document.querySelector('.jp-Notebook-ExecutionIndicator');
            return !!(name && name.textContent.includes('Python 3')
                      && status && status.dataset.status === 'idle');
        }""")

    def cells(self) -> list[dict[str, Any]]:
        """Every cell's type, prompt (``[3]:``), stdout and stderr text, as the page shows them."""
        return self.page.evaluate("""() => [...document.querySelectorAll('.jp-Notebook .jp-Cell')]
            .map(cell => {
                const text = (mime) => [...cell.querySelectorAll(`.jp-OutputArea [data-mime-type="${mime}"]`)]
                    .map(el => el.textContent).join('');
                const prompt = cell.querySelector('.jp-InputPrompt');
                return {
                    type: cell.classList.contains('jp-CodeCell') ? 'code'
                        : cell.classList.contains('jp-MarkdownCell') ? 'markdown' : 'raw',
                    prompt: prompt ? prompt.textContent.trim() : '',
                    stdout: text('application/vnd.jupyter.stdout'),
                    stderr: text('application/vnd.jupyter.stderr'),
                };
            })""")

    def run_all(self) -> list[dict[str, Any]]:
        """Run > Run All Cells from the menu bar; waits until every cell shows ``[n]:``."""
        self.page.locator(".lm-MenuBar-item", has_text=re.compile(r"^Run$")).click()
        self.page.locator(".lm-Menu-item:not(.lm-mod-hidden)",
                          has_text=re.compile(r"^Run All Cells")).click()
        return _poll(lambda: self._settled(None), RUN_TIMEOUT, f"all cells of {self.name} to run",
                     self.diagnostics)

    def rerun(self, index: int) -> dict[str, Any]:
        """Click into cell ``index``'s editor, Shift+Enter, wait for its new ``[n]:``; returns that cell."""
        before = self.cells()[index]["prompt"]
        self.page.locator(".jp-Notebook .jp-Cell").nth(index).locator(".cm-content").click()
        self.page.keyboard.press("Shift+Enter")
        return _poll(lambda: self._settled(index, before), RUN_TIMEOUT,
                     f"cell {index} to run again (was {before})", self.diagnostics)

    def _settled(self, index: int | None, before: str = "") -> Any:
        cells = self.cells()
        for i, cell in enumerate(cells):
            if "Traceback (most recent call last)" in cell["stderr"]:
                pytest.fail(f"cell {i} of {self.name} raised:\n{cell['stderr']}")
        chosen = cells if index is None else [cells[index]]
        done = all(_prompt_done(c["prompt"]) and c["prompt"] != before for c in chosen)
        return (cells if index is None else cells[index]) if done else None

    def screenshot(self, path: Path, *, show: Any = None) -> Path:
        if show is not None:
            show.scroll_into_view_if_needed()
        path.parent.mkdir(parents=True, exist_ok=True)
        self.page.screenshot(path=str(path))
        return path

    def diagnostics(self) -> str:
        console = "\n".join(self.console[-30:]) or "(none)"
        return f"--- page console ---\n{console}\n--- jupyter notebook log ---\n{self.server.log_tail(3000)}"


def _prompt_done(prompt: str) -> bool:
    """``[12]:`` yes; ``[ ]:`` (never run) and ``[*]:`` (queued or running) no."""
    return prompt.strip().removesuffix(":").strip("[] ").isdigit()


def _text(locator: Any) -> str:
    """textContent exactly (Playwright's to_have_text would normalise whitespace)."""
    return locator.evaluate("el => el.textContent")


@contextmanager
def _notebook_with_gallery(chromium: Any, tmp_path: Path, output_dir: Path) -> Iterator[tuple[Notebook7Page, Any]]:
    """Notebook 7 serving a fresh folder, NAME run through Run > Run All Cells, its gallery shown."""
    from playwright.sync_api import expect

    root = tmp_path / "notebooks"
    root.mkdir()
    env = {"CAPRL_HOME": str(tmp_path / "kernel-home")}
    with start_jupyterlab(root, env, state_dir=tmp_path / "notebook", app="notebook") as server:
        tree = httpx.get(f"{server.url}/tree", params={"token": server.token}, timeout=10.0)
        assert tree.status_code == 200 and "Jupyter Notebook" in tree.text, "not Notebook 7"
        server.write_notebook(NAME, [IMAGES_CELL, GALLERY_CELL, REVIEWS_CELL])
        nb = Notebook7Page(server, chromium.new_page(viewport=VIEWPORT), NAME)
        try:
            nb.open()
            cells = nb.run_all()
            assert json.loads(cells[2]["stdout"]) == {}  # nothing reviewed yet
            gallery = nb.page.get_by_test_id("caprl-gallery")
            expect(gallery).to_have_count(1, timeout=EXPECT_MS)
            expect(gallery.get_by_test_id("card")).to_have_count(5, timeout=EXPECT_MS)
            yield nb, gallery
        finally:
            (output_dir / "console.log").write_text(nb.diagnostics())
            nb.page.close()


def _card(gallery: Any, i: int) -> Any:
    return gallery.locator(f'[data-testid=card][data-id="{i}"]')


def _page_errors(nb: Notebook7Page) -> list[str]:
    """What the front end threw or logged as an error (the known Notebook 7 startup error aside)."""
    return [line for line in nb.console if line.startswith(("pageerror", "console.error"))]


def test_gallery_reviews_in_notebook7_reach_pandas_and_html_captions_stay_text(
    chromium: Any, tmp_path: Path, output_dir: Path
) -> None:
    from playwright.sync_api import expect

    with _notebook_with_gallery(chromium, tmp_path, output_dir) as (nb, gallery):
        for i, caption in enumerate(CAPTIONS):
            expect(_card(gallery, i)).to_have_attribute("data-status", "unreviewed", timeout=EXPECT_MS)
            assert _text(_card(gallery, i).get_by_test_id("caption")) == caption
        nb.screenshot(output_dir / "1-gallery.png", show=gallery)

        # accept the first card from its detail pane, with the mouse
        _card(gallery, 0).click()
        detail = gallery.get_by_test_id("detail")
        expect(detail).to_be_visible(timeout=EXPECT_MS)
        expect(detail).to_have_attribute("data-id", "0", timeout=EXPECT_MS)
        detail.get_by_test_id("accept").click()
        expect(_card(gallery, 0)).to_have_attribute("data-status", "accepted", timeout=EXPECT_MS)
        detail.get_by_test_id("close").click()
        expect(detail).to_be_hidden(timeout=EXPECT_MS)

        # the model-written HTML caption, opened in the detail pane too, stays text
        _card(gallery, 4).click()
        expect(detail).to_have_attribute("data-id", "4", timeout=EXPECT_MS)
        assert _text(detail.get_by_test_id("detail-caption")) == XSS
        nb.screenshot(output_dir / "2-detail-xss-caption.png", show=gallery)
        detail.get_by_test_id("close").click()
        expect(detail).to_be_hidden(timeout=EXPECT_MS)
        injected = nb.page.evaluate(
            "() => [...document.querySelectorAll('[data-testid=caprl-gallery]')]"
            ".flatMap(g => [...g.querySelectorAll('script, [onerror], [onload]')])"
            ".map(el => el.outerHTML)"
        )
        assert injected == []

        # the decision reached the kernel: re-run the cell that prints g.reviews
        reviews = json.loads(nb.rerun(2)["stdout"])
        assert reviews == {"r0": {"status": "accepted", "edited_caption": None}}
        nb.screenshot(output_dir / "3-reviews-in-pandas.png")
        # the kernel round trip above took longer than any img error event needs to fire
        assert nb.dialogs == []
        assert _page_errors(nb) == []


def test_gallery_keys_do_not_reach_notebook7_command_mode(
    chromium: Any, tmp_path: Path, output_dir: Path
) -> None:
    from playwright.sync_api import expect

    with _notebook_with_gallery(chromium, tmp_path, output_dir) as (nb, gallery):
        _card(gallery, 0).click()
        detail = gallery.get_by_test_id("detail")
        expect(detail).to_have_attribute("data-id", "0", timeout=EXPECT_MS)
        detail.get_by_test_id("next").click()  # focus on a gallery button, as a reviewer's would be
        expect(detail).to_have_attribute("data-id", "1", timeout=EXPECT_MS)
        nb.page.keyboard.press("r")
        # either the gallery took the key (card rejected) or Notebook 7 did (a cell is no longer code)
        _poll(lambda: nb.page.evaluate(
                  """() => !!(document.querySelector('[data-testid=card][data-id="1"][data-status=rejected]')
                              || document.querySelector('.jp-Notebook .jp-Cell:not(.jp-CodeCell)'))"""),
              EXPECT_MS / 1000, "the R key to land somewhere", nb.diagnostics)
        nb.screenshot(output_dir / "after-r.png")
        assert [c["type"] for c in nb.cells()] == ["code", "code", "code"]
        expect(_card(gallery, 1)).to_have_attribute("data-status", "rejected", timeout=EXPECT_MS)
