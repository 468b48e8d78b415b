"""The caprl-nb labextension in a real JupyterLab, in headless Chromium, as a user meets it.

One JupyterLab serves the whole module (Lab starts are the expensive part on a small box). It
starts with CAPRL_BASE_URL pointing at a vLLM-shaped simulator owned by the module, and with
its status poll at one second through Lab's own settings API. Each test opens its own page.

* The status bar follows the model server: up with its model's name, down when it dies,
  up again when it comes back.
* "Caption with CapRL" on an image in the file browser captions it through the REAL vLLM
  (the tiny random Qwen2.5-VL: its words are noise, so only behaviour is checked), the panel
  shows the image, the caption and its model, the side panel lists it among recent results,
  and "Insert as code" writes a cell that, run, gives the same caption back from the store.
* On a file that is not an image the command is not offered.
* A model server with several models and none chosen: the status bar says to choose one, and the
  panel lists the models; once one is chosen in Lab's settings, it is up with that model.
* "Insert as code" writes the ``df.caprl`` accessor call, which, run, gives the panel's caption.
* Hostile text (a caption, a file name, an error holding ``<img onerror>``, ``<script>``) is shown
  as text in every panel, never run.

The Lab serves this checkout's own build of the labextension (caprl_nb/labextension/, from
``npm run build`` in labextension/) when there is one, ahead of the installed copy; its Jupyter
server lets the browser choose the model server (``CapRLApp.allow_browser_base_url``), as the
real-vLLM tests point Lab at that server.

Screenshots land in test-output/<test name>/. Needs Debian's Chromium at /usr/bin/chromium:
without it these tests skip, unless CAPRL_REQUIRE_BROWSER=1 (CI), where it is a failure.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import caprl_nb

from tests.support import vllm_sim
from tests.support.jupyterlab import (
    CHROMIUM,
    VIEWPORT,
    JupyterLabServer,
    LabNotebook,
    browser,
    start_jupyterlab,
)
from tests.support.vllm_sim import VLLMSimulator

REQUIRE_BROWSER = os.environ.get("CAPRL_REQUIRE_BROWSER") == "1"
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not REQUIRE_BROWSER,
    reason=f"no Chromium at {CHROMIUM} (apt-get install chromium); "
    "set CAPRL_REQUIRE_BROWSER=1 to make this a failure",
)

PLUGIN = "caprl-nb:plugin"
SIM_MODEL = "sim-org/caprl-sim"  # the status bar shows the part after the last slash
EXPECT_MS = 20_000  # one UI change (Playwright's 5 s default is short on a loaded 2-core box)
PAGE_MS = 120_000  # Lab's first paint
# Down -> up: the front end backs off while the server is down (Lumino's Poll, up to 60 s).
RECOVER_MS = 90_000
CAPTION_MS = 180_000  # one caption from vLLM on a CPU
MENU_LABEL = "Caption with CapRL"
CAPTION_COMMAND = "caprl-nb:caption-file"  # CommandIDs.captionFile, labextension/src/commands.ts
WORK = "work"  # the folder holding the notebook, the image and the text file
IMAGE = f"{WORK}/photo.png"
# "Insert as code" for IMAGE in a notebook in WORK: the README's accessor call, path relative to it
ACCESSOR_CODE = ('import pandas as pd\nimport caprl_nb  # registers df.caprl\n\n'
                 'df = pd.DataFrame({"image": ["photo.png"]})\ndf["caption"] = df.caprl.caption("image")\ndf')
TEXT = f"{WORK}/notes.txt"


# -- fixtures ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():  # only reached with CAPRL_REQUIRE_BROWSER=1
        pytest.fail(f"CAPRL_REQUIRE_BROWSER=1 but there is no Chromium at {CHROMIUM}.")
    with browser() as launched:
        yield launched


@pytest.fixture(scope="module")
def module_sim() -> Iterator[VLLMSimulator]:
    with VLLMSimulator(model_id=SIM_MODEL) as server:
        yield server


@pytest.fixture(scope="module")
def lab(module_sim: VLLMSimulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLabServer]:
    """One JupyterLab for the module, CAPRL_BASE_URL at the simulator, its own CAPRL_HOME."""
    from PIL import Image, ImageDraw

    base = tmp_path_factory.mktemp("labext")
    root = base / "root"
    (root / WORK).mkdir(parents=True)
    image = Image.new("RGB", (320, 200), "seagreen")
    draw = ImageDraw.Draw(image)
    draw.rectangle((40, 40, 140, 160), fill="gold")
    draw.ellipse((180, 50, 290, 160), fill="crimson")
    image.save(root / IMAGE)
    (root / TEXT).write_text("not an image\n")
    env = {
        "CAPRL_BASE_URL": module_sim.base_url,
        "CAPRL_HOME": str(base / "caprl-home"),  # the server's store, shared with its kernels
        # whatever the outer environment says about these must not leak into the server
        "CAPRL_MODEL": "", "CAPRL_API_KEY": "", "CAPRL_CONCURRENCY": "",
        "CAPRL_READ_TIMEOUT": "", "CAPRL_CONNECT_TIMEOUT": "", "CAPRL_MAX_RETRIES": "",
    }
    # the admin's choice for this Lab: JupyterLab may point it at another model server
    config = base / "lab" / "config"
    config.mkdir(parents=True)
    server_config = {"CapRLApp": {"allow_browser_base_url": True}}
    (config / "jupyter_server_config.json").write_text(json.dumps(server_config))
    env.update(_this_checkouts_labextension(base))
    with start_jupyterlab(root, env, state_dir=base / "lab") as server:
        yield server


def _this_checkouts_labextension(base: Path) -> dict[str, str]:
    """JUPYTER_PATH that puts this checkout's build of the labextension ahead of the installed one.

    An editable install of another checkout (or a stale build in the venv) would otherwise be
    what the browser runs. Without a build here (a wheel install), the installed copy is used.
    """
    built = Path(caprl_nb.__file__).resolve().parent / "labextension"
    if not (built / "package.json").is_file():
        return {}
    path = base / "jupyter-path"
    (path / "labextensions").mkdir(parents=True)
    (path / "labextensions" / "caprl-nb").symlink_to(built, target_is_directory=True)
    return {"JUPYTER_PATH": str(path)}


@pytest.fixture
def lab_settings(lab: JupyterLabServer) -> Iterator[Any]:
    """``lab_settings(**values)`` sets the plugin's Lab settings (poll every second by default).

    Before and after each test the plugin's settings are the defaults with a 1 s poll, and the
    server extension forgets what an earlier page pushed to ``/caprl/settings``.
    """

    def put(**values: Any) -> None:
        raw = json.dumps({"pollInterval": 1, **values})
        lab.api("PUT", f"/lab/api/settings/{PLUGIN}", json={"raw": raw})

    def reset() -> None:
        put()
        lab.api("POST", "/caprl/settings", json={"base_url": None, "model": None})

    reset()
    yield put
    reset()


# -- page helpers -----------------------------------------------------------------------------
class LabPage:
    """A Chromium page showing Lab (no notebook), its console errors collected."""

    def __init__(self, lab: JupyterLabServer, page: Any) -> None:
        self.lab = lab
        self.page = page
        self.console: list[str] = []
        page.on("console", lambda m: self.console.append(f"console.{m.type}: {m.text}")
                if m.type == "error" else None)
        page.on("pageerror", lambda e: self.console.append(f"pageerror: {e}"))

    @classmethod
    def open(cls, lab: JupyterLabServer, chromium: Any) -> LabPage:
        page = chromium.new_page(viewport=VIEWPORT)
        opened = cls(lab, page)
        page.goto(f"{lab.url}/lab?reset&token={lab.token}", timeout=PAGE_MS)
        page.wait_for_function("() => !!window.jupyterapp", timeout=PAGE_MS, polling=100)
        page.evaluate("async () => { await window.jupyterapp.restored; }")
        page.locator(".jp-caprl-StatusItem").wait_for(state="visible", timeout=PAGE_MS)
        page.locator("#filebrowser .jp-DirListing-item").first.wait_for(state="visible", timeout=PAGE_MS)
        return opened

    def diagnostics(self) -> str:
        console = "\n".join(self.console[-30:]) or "(none)"
        return f"--- page console ---\n{console}\n--- jupyter lab log ---\n{self.lab.log_tail(3000)}"


def _dump(page: LabPage | LabNotebook, path: Path) -> None:
    """Keep what the page and the server said next to the screenshots, for a failing run."""
    path.write_text(page.diagnostics())


def _page_errors(console: list[str]) -> list[str]:
    return [line for line in console if line.startswith(("pageerror", "console.error"))]


def _screenshots(page: Any, output_dir: Path, name: str) -> None:
    """The whole page, and the status bar alone (its item is small in the full view)."""
    page.screenshot(path=str(output_dir / f"{name}.png"))
    page.locator("#jp-main-statusbar").screenshot(path=str(output_dir / f"{name}-statusbar.png"))


def _status_item(page: Any) -> Any:
    return page.locator("#jp-main-statusbar .jp-caprl-StatusItem")


def _expect_status(page: Any, state: str, text: str, timeout: float = EXPECT_MS) -> None:
    """The status-bar item reads ``text`` with a dot coloured for ``state``."""
    from playwright.sync_api import expect

    item = _status_item(page)
    expect(item).to_have_attribute("data-state", state, timeout=timeout)
    expect(item.locator(".jp-caprl-StatusItem-label")).to_have_text(text, timeout=timeout)
    expect(item.locator(".jp-caprl-dot")).to_have_class(f"jp-caprl-dot jp-mod-{state}", timeout=timeout)


def _show_folder(page: Any, folder: str) -> Any:
    """The file browser, open, listing ``folder``; returns its listing.

    Lab's own go-to-path command, not double clicks: a page opened on a tree URL is still
    navigating, and a double click can land on whatever row replaces the one aimed at.
    """
    from playwright.sync_api import expect

    page.evaluate("(path) => window.jupyterapp.commands.execute('filebrowser:go-to-path', {path})",
                  f"{folder}/")
    browser_panel = page.locator("#filebrowser")
    expect(browser_panel).to_be_visible(timeout=EXPECT_MS)
    expect(browser_panel.locator(".jp-BreadCrumbs")).to_contain_text(folder, timeout=EXPECT_MS)
    return browser_panel.locator(".jp-DirListing-content")


def _listing_item(listing: Any, name: str) -> Any:
    return listing.locator(".jp-DirListing-item").filter(
        has=listing.page.locator(".jp-DirListing-itemText", has_text=name)
    )


def _context_menu(page: Any, listing: Any, name: str) -> Any:
    """Right-click ``name`` in the listing; returns the context menu that opens."""
    from playwright.sync_api import expect

    item = _listing_item(listing, name)
    expect(item).to_have_count(1, timeout=EXPECT_MS)
    item.click(button="right")
    menu = page.get_by_role("menu")
    expect(menu).to_be_visible(timeout=EXPECT_MS)
    expect(menu.get_by_role("menuitem", name="Open", exact=True)).to_be_visible(timeout=EXPECT_MS)
    return menu


# -- tests ------------------------------------------------------------------------------------
def test_status_bar_follows_the_model_server_down_and_up(
    lab: JupyterLabServer, module_sim: VLLMSimulator, lab_settings: Any, chromium: Any,
    output_dir: Path,
) -> None:
    from playwright.sync_api import expect

    lab_settings()  # 1 s poll
    page = LabPage.open(lab, chromium)
    try:
        up = "CapRL up · caprl-sim · 0 running, 0 waiting"
        _expect_status(page.page, "up", up)
        item = _status_item(page.page)
        assert f"CapRL model server up at {module_sim.base_url}" in item.get_attribute("title")
        # a click on the item opens the side panel, which says the same
        item.click()
        side = page.page.locator("#jp-caprl-panel")
        expect(side).to_be_visible(timeout=EXPECT_MS)
        headline = side.locator(".jp-caprl-Panel-headline")
        expect(headline).to_have_text("Up · caprl-sim", timeout=EXPECT_MS)
        _screenshots(page.page, output_dir, "1-up")

        module_sim.set_down(True)
        try:
            _expect_status(page.page, "down", "CapRL down")
            assert f"CapRL model server down at {module_sim.base_url}" in item.get_attribute("title")
            expect(headline).to_have_text("Down", timeout=EXPECT_MS)
            message = side.locator(".jp-caprl-Panel-message")
            expect(message).to_be_visible(timeout=EXPECT_MS)
            expect(message).to_contain_text(module_sim.base_url, timeout=EXPECT_MS)
            _screenshots(page.page, output_dir, "2-down")
        finally:
            module_sim.set_down(False)

        _expect_status(page.page, "up", up, timeout=RECOVER_MS)
        expect(headline).to_have_text("Up · caprl-sim", timeout=EXPECT_MS)
        expect(side.locator(".jp-caprl-Panel-message")).to_be_hidden(timeout=EXPECT_MS)
        _screenshots(page.page, output_dir, "3-up-again")
        assert _page_errors(page.console) == []
    finally:
        module_sim.set_down(False)
        _dump(page, output_dir / "console.log")
        page.page.close()


@pytest.mark.vllm
def test_caption_an_image_from_the_file_browser_with_real_vllm(
    lab: JupyterLabServer, vllm_server: str, lab_settings: Any, chromium: Any, output_dir: Path,
) -> None:
    from playwright.sync_api import expect

    models = httpx.get(f"{vllm_server}/models", timeout=10).json()["data"]
    (model,) = [card["id"] for card in models]
    short = model.rstrip("/").rsplit("/", 1)[-1]
    # The user points Lab at the real server; the page pushes it to the server extension.
    lab_settings(baseUrl=vllm_server)
    # the kernel's own settings: it inherits the Jupyter server's CAPRL_BASE_URL (the simulator)
    setup = f"import caprl_nb\ncaprl_nb.configure(base_url={vllm_server!r});"
    nb = LabNotebook.create(lab, chromium, f"{WORK}/captions.ipynb", [setup])
    page = nb.page
    try:
        nb.run_all()
        _expect_status(page, "up", f"CapRL up · {short} · 0 running, 0 waiting", timeout=PAGE_MS)
        results_before = lab.api("GET", "/caprl/status").json()["store"]["results"]

        listing = _show_folder(page, WORK)
        menu = _context_menu(page, listing, "photo.png")
        entry = menu.get_by_role("menuitem", name=MENU_LABEL)
        expect(entry).to_be_enabled(timeout=EXPECT_MS)
        entry.click()

        view = page.locator(".jp-caprl-Caption")
        expect(view).to_have_count(1, timeout=EXPECT_MS)
        tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
        expect(tab).to_contain_text("Caption: photo.png", timeout=EXPECT_MS)
        expect(view).to_have_attribute("data-state", "done", timeout=CAPTION_MS)
        # the image itself, loaded from the Jupyter server
        image = view.locator("img.jp-caprl-Caption-image")
        page.wait_for_function("img => img.complete && img.naturalWidth === 320",
                               arg=image.element_handle(), timeout=EXPECT_MS)
        expect(view.locator(".jp-caprl-Caption-path")).to_have_text(IMAGE)
        caption = view.locator(".jp-caprl-Caption-text").evaluate("el => el.textContent")
        assert caption.strip(), "the caption panel shows no caption"
        assert not view.locator(".jp-caprl-Caption-text.jp-caprl-Error").count()
        # provenance: the model first, then latency and tokens
        meta = view.locator(".jp-caprl-Caption-meta").inner_text()
        assert meta.split(" · ")[0] == model, meta
        assert " s" in meta and "tokens" in meta, meta
        expect(view.get_by_role("button", name="Copy")).to_be_enabled()
        page.screenshot(path=str(output_dir / "1-caption-panel.png"))

        # the server extension stored it; the side panel lists it among recent results
        _status_item(page).click()
        side = page.locator("#jp-caprl-panel")
        expect(side).to_be_visible(timeout=EXPECT_MS)
        expect(side.locator("dt:text-is('Results') + dd")).to_have_text(
            str(results_before + 1), timeout=EXPECT_MS)  # once the status answer (2 s TTL) is fresh
        recent = side.locator(".jp-caprl-Recent-item").first
        expect(recent).to_be_visible(timeout=EXPECT_MS)
        expect(recent.locator(".jp-caprl-Recent-text")).to_have_js_property(
            "textContent", caption[:300], timeout=EXPECT_MS)
        expect(recent.locator(".jp-caprl-Recent-input")).to_contain_text("photo.png")
        expect(recent).to_contain_text(f"caption · {short}")
        page.screenshot(path=str(output_dir / "2-recent-results.png"))

        # "Insert as code" adds the caprl_nb call to the open notebook, relative to its folder
        view.get_by_role("button", name="Insert as code").click()
        expect(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")).to_contain_text(
            "captions.ipynb", timeout=EXPECT_MS)
        cells = page.evaluate(
            "() => window.jupyterapp.shell.currentWidget.content.widgets"
            ".map(cell => [cell.model.type, cell.model.sharedModel.getSource()])")
        assert cells == [["code", setup], ["code", ACCESSOR_CODE]]
        active = page.evaluate("() => window.jupyterapp.shell.currentWidget.content.activeCellIndex")
        assert active == 1
        page.screenshot(path=str(output_dir / "3-inserted-cell.png"))

        # run as inserted, it finds the file and gives back the very caption (from the store)
        nb.command("notebook:run-cell", wait=False)
        prompt = page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-InputPrompt")
        expect(prompt).to_have_text(re.compile(r"^\[\d+\]:$"), timeout=CAPTION_MS)
        assert [o["output_type"] for o in nb.cells()[1]["outputs"]].count("error") == 0, nb.cells()[1]
        again = nb.run_cell('import json\nprint(json.dumps(df["caption"].tolist()))', timeout=CAPTION_MS / 1000)
        assert json.loads(again) == [caption]
        page.screenshot(path=str(output_dir / "4-inserted-cell-run.png"))
        assert _page_errors(nb.console) == []
    finally:
        _dump(nb, output_dir / "console.log")
        nb.close()


def test_the_caption_command_is_not_offered_for_a_text_file(
    lab: JupyterLabServer, lab_settings: Any, chromium: Any, output_dir: Path,
) -> None:
    from playwright.sync_api import expect

    lab_settings()
    page = LabPage.open(lab, chromium)
    try:
        listing = _show_folder(page.page, WORK)
        menu = _context_menu(page.page, listing, "notes.txt")
        # Lab lists it, greyed out, and a click on it does nothing
        entry = menu.get_by_role("menuitem", name=MENU_LABEL)
        expect(entry).to_be_visible(timeout=EXPECT_MS)
        expect(entry).to_be_disabled(timeout=EXPECT_MS)
        expect(entry).to_have_class(re.compile(r"\blm-mod-disabled\b"))
        page.page.screenshot(path=str(output_dir / "text-file-menu.png"))
        entry.click(force=True)  # force: Playwright would wait for it to be enabled
        page.page.keyboard.press("Escape")
        expect(menu).to_be_hidden(timeout=EXPECT_MS)
        assert page.page.locator(".jp-caprl-Caption").count() == 0

        # the command agrees, for the text file and (as a control) the image beside it
        enabled = page.page.evaluate(
            "([id, paths]) => paths.map(path => window.jupyterapp.commands.isEnabled(id, {path}))",
            [CAPTION_COMMAND, [TEXT, IMAGE]])
        assert enabled == [False, True]
        page.page.evaluate("([id, path]) => window.jupyterapp.commands.execute(id, {path})",
                           [CAPTION_COMMAND, TEXT])
        assert page.page.locator(".jp-caprl-Caption").count() == 0
        assert _page_errors(page.console) == []
    finally:
        _dump(page, output_dir / "console.log")
        page.page.close()


@pytest.mark.vllm
def test_extract_a_table_from_a_chart_with_real_vllm(
    lab: JupyterLabServer, vllm_server: str, lab_settings: Any, chromium: Any, output_dir: Path,
) -> None:
    """Right-click a chart -> "Extract table with CapRL": the panel shows the image and the
    chart's table (or, when the tiny model's noise fails the schema, the reason as text), and
    "Insert as code" writes the chart_table call into the open notebook."""
    from PIL import Image, ImageDraw
    from playwright.sync_api import expect

    chart = Image.new("RGB", (360, 240), "white")
    draw = ImageDraw.Draw(chart)
    draw.text((120, 8), "Visitors per year", fill="black")
    draw.line((40, 210, 340, 210), fill="black")
    draw.line((40, 30, 40, 210), fill="black")
    for i, height in enumerate([70, 120, 95, 160]):
        draw.rectangle((60 + 70 * i, 210 - height, 100 + 70 * i, 210), fill="steelblue")
        draw.text((64 + 70 * i, 214), str(2020 + i), fill="black")
    chart.save(lab.root_dir / WORK / "chart.png")
    models = httpx.get(f"{vllm_server}/models", timeout=10).json()["data"]
    (model,) = [card["id"] for card in models]
    short = model.rstrip("/").rsplit("/", 1)[-1]
    lab_settings(baseUrl=vllm_server)
    nb = LabNotebook.create(lab, chromium, f"{WORK}/tables.ipynb", ["1 + 1"])
    page = nb.page
    try:
        _expect_status(page, "up", f"CapRL up · {short} · 0 running, 0 waiting", timeout=PAGE_MS)
        listing = _show_folder(page, WORK)
        menu = _context_menu(page, listing, "chart.png")
        entry = menu.get_by_role("menuitem", name="Extract table with CapRL")
        expect(entry).to_be_enabled(timeout=EXPECT_MS)
        entry.click()

        view = page.locator(".jp-caprl-Table")
        expect(view).to_have_count(1, timeout=EXPECT_MS)
        tab = page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
        expect(tab).to_contain_text("Table: chart.png", timeout=EXPECT_MS)
        expect(view).to_have_attribute("data-state", re.compile(r"^(done|error)$"), timeout=CAPTION_MS)
        image = view.locator("img.jp-caprl-Table-image")
        page.wait_for_function("img => img.complete && img.naturalWidth === 360",
                               arg=image.element_handle(), timeout=EXPECT_MS)
        expect(view.locator(".jp-caprl-Table-path")).to_have_text(f"{WORK}/chart.png")
        page.screenshot(path=str(output_dir / "1-table-panel.png"))

        message = view.locator(".jp-caprl-Table-text")
        done = view.get_attribute("data-state") == "done"
        if done:
            # the server extension's answer for the file, now from the store: the panel shows it
            answer = httpx.post(f"{lab.url}/caprl/extract-table", json={"path": f"{WORK}/chart.png"},
                                headers={"Authorization": f"token {lab.token}"}, timeout=30)
            reply = answer.json()
            assert answer.status_code == 200 and reply["cached"], reply
            grid = view.locator("table.jp-caprl-Table-grid")
            expect(grid).to_be_visible()
            assert grid.locator("thead th").all_text_contents() == reply["columns"]
            expect(grid.locator("tbody tr")).to_have_count(len(reply["rows"]))
            for shown, row in zip(_table_rows(grid), reply["rows"]):
                assert len(shown) == len(row)
                for text, cell in zip(shown, row):
                    if cell is None:
                        assert text == "—"
                    elif isinstance(cell, (int, float)) and not isinstance(cell, bool):
                        assert float(text) == cell, (text, cell)
                    else:
                        assert text == str(cell)
            facts = view.locator(".jp-caprl-Table-facts")
            assert facts.locator("dt").all_text_contents() == ["Title", "x axis", "y axis", "Units"]
            expect(facts.locator("dd").first).to_have_text(reply["title"] or "none")
            meta = view.locator(".jp-caprl-Table-meta").inner_text()
            assert meta.split(" · ")[0] == model, meta
            expect(view.get_by_role("button", name="Copy as CSV")).to_be_enabled()
            assert not view.locator(".jp-caprl-Table-text.jp-caprl-Error").count()
        else:
            # the tiny random model's noise failed parsing or validation: the reason, as text
            expect(message).to_have_class(re.compile(r"\bjp-caprl-Error\b"))
            shown = message.inner_text()
            assert shown.startswith(("ParseError: ", "ValidationError: ", "Truncated: ")), shown
            expect(view.get_by_role("button", name="Copy as CSV")).to_be_disabled()
            expect(view.get_by_role("button", name="Retry")).to_be_visible()
            assert view.locator("table").count() == 0

        # "Insert as code" adds the chart_table call, relative to the notebook's folder
        view.get_by_role("button", name="Insert as code").click()
        expect(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")).to_contain_text(
            "tables.ipynb", timeout=EXPECT_MS)
        cells = page.evaluate(
            "() => window.jupyterapp.shell.currentWidget.content.widgets"
            ".map(cell => [cell.model.type, cell.model.sharedModel.getSource()])")
        code = 'import caprl_nb.extract\n\ncaprl_nb.extract.chart_table(["chart.png"])'
        assert cells == [["code", "1 + 1"], ["code", code]]
        page.screenshot(path=str(output_dir / "2-inserted-cell.png"))
        # a failed extraction is a 502 answer, which Chromium logs as a failed resource load
        expected = [] if done else ["status of 502 (Bad Gateway)"]
        assert [e for e in _page_errors(nb.console) if not any(x in e for x in expected)] == []
    finally:
        _dump(nb, output_dir / "console.log")
        nb.close()


def _table_rows(grid: Any) -> list[list[str]]:
    """The text of every body cell of an HTML table, row by row."""
    return grid.evaluate(
        "table => Array.from(table.tBodies[0].rows, row => Array.from(row.cells, c => c.textContent))")


# pytest-jupyter, which tests/server/test_handlers.py loads as a plugin, adds two autouse fixtures to
# every test of the session; after each test here they would close the event loop that
# Playwright's sync API is running in this thread (an error at teardown). Nothing in this
# module uses pytest-jupyter's in-process server, so both are nothing here.
@pytest.fixture
def jp_asyncio_loop() -> None:
    return None


@pytest.fixture
def jp_server_cleanup() -> None:
    return None


# -- the inserted code, hostile content (simulator: no real model needed) ---------------------
def _open_result(page: Any, command: str, path: str, css: str) -> Any:
    """Run ``command`` on ``path`` and wait for its panel to finish; returns the panel."""
    from playwright.sync_api import expect

    page.evaluate("([id, path]) => window.jupyterapp.commands.execute(id, {path})", [command, path])
    view = page.locator(css)
    expect(view).to_have_count(1, timeout=EXPECT_MS)
    expect(view).to_have_attribute("data-state", re.compile(r"^(done|error)$"), timeout=EXPECT_MS)
    return view


def test_insert_as_code_writes_the_accessor_call(
    lab: JupyterLabServer, lab_settings: Any, chromium: Any, output_dir: Path,
) -> None:
    from playwright.sync_api import expect

    lab_settings()
    nb = LabNotebook.create(lab, chromium, f"{WORK}/accessor.ipynb", ["1 + 1"])
    page = nb.page
    try:
        view = _open_result(page, CAPTION_COMMAND, IMAGE, ".jp-caprl-Caption")
        expect(view).to_have_attribute("data-state", "done")
        caption = view.locator(".jp-caprl-Caption-text").evaluate("el => el.textContent")
        assert caption.startswith("sim caption"), caption
        view.get_by_role("button", name="Insert as code").click()
        expect(page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")).to_contain_text(
            "accessor.ipynb", timeout=EXPECT_MS)
        cells = page.evaluate(
            "() => window.jupyterapp.shell.currentWidget.content.widgets"
            ".map(cell => [cell.model.type, cell.model.sharedModel.getSource()])")
        assert cells == [["code", "1 + 1"], ["code", ACCESSOR_CODE]]
        page.screenshot(path=str(output_dir / "1-inserted-cell.png"))
        # run as inserted (the kernel shares the server's store), it gives the panel's caption
        nb.command("notebook:run-cell", wait=False)
        prompt = page.locator(".jp-Notebook .jp-Cell").nth(1).locator(".jp-InputPrompt")
        expect(prompt).to_have_text(re.compile(r"^\[\d+\]:$"), timeout=PAGE_MS)
        assert [o["output_type"] for o in nb.cells()[1]["outputs"]].count("error") == 0, nb.cells()[1]
        shown = nb.run_cell('print(df["caption"].iloc[0])', timeout=PAGE_MS / 1000)
        assert shown == caption + "\n"
        assert _page_errors(nb.console) == []
    finally:
        _dump(nb, output_dir / "console.log")
        nb.close()


# Each payload sets window.__caprlPwned if it ever runs; every one is also visible as text.
HOSTILE = ('<img src=x onerror="window.__caprlPwned=1"><script>window.__caprlPwned=2</script>'
           '<svg onload="window.__caprlPwned=3"></svg>**bold** [link](javascript:window.__caprlPwned=4)')
HOSTILE_NAME = "<img src=x onerror=window.__caprlPwned=5>.png"


def _injected(page: Any) -> dict[str, Any]:
    """Elements our payloads would create inside caprl's panels, and whether any script ran."""
    return page.evaluate("""() => ({
        ran: window.__caprlPwned ?? null,
        elements: Array.from(document.querySelectorAll(
            '[class*="jp-caprl"] script, [class*="jp-caprl"] svg[onload], [class*="jp-caprl"] [onerror],'
            + ' [class*="jp-caprl"] img[src="x"], [class*="jp-caprl"] a[href^="javascript:"]'
        )).map(node => node.outerHTML),
    })""")


def test_hostile_captions_file_names_and_errors_are_inert(
    lab: JupyterLabServer, lab_settings: Any, chromium: Any, output_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from PIL import Image
    from playwright.sync_api import expect

    lab_settings()
    Image.new("RGB", (64, 64), "purple").save(lab.root_dir / WORK / HOSTILE_NAME)
    # the model "answers" with markup: captions (and the extraction's parse error quoting it)
    monkeypatch.setattr(vllm_sim, "_caption", lambda digests, prompt, words: HOSTILE)
    page = LabPage.open(lab, chromium)
    try:
        path = f"{WORK}/{HOSTILE_NAME}"
        view = _open_result(page.page, CAPTION_COMMAND, path, ".jp-caprl-Caption")
        expect(view).to_have_attribute("data-state", "done")
        expect(view.locator(".jp-caprl-Caption-text")).to_have_js_property("textContent", HOSTILE)
        expect(view.locator(".jp-caprl-Caption-path")).to_have_text(path)
        tab = page.page.locator(".lm-DockPanel-tabBar .lm-TabBar-tab.lm-mod-current")
        expect(tab).to_contain_text(HOSTILE_NAME, timeout=EXPECT_MS)
        page.page.screenshot(path=str(output_dir / "1-caption.png"))

        table = _open_result(page.page, "caprl-nb:extract-table", path, ".jp-caprl-Table")
        expect(table).to_have_attribute("data-state", "error")
        expect(table.locator(".jp-caprl-Table-text")).to_contain_text(HOSTILE[:30])
        page.page.screenshot(path=str(output_dir / "2-table-error.png"))

        # the side panel's recent results: the stored caption and the file's name
        _status_item(page.page).click()
        side = page.page.locator("#jp-caprl-panel")
        expect(side).to_be_visible(timeout=EXPECT_MS)
        recent = side.locator(".jp-caprl-Recent-item").first
        expect(recent.locator(".jp-caprl-Recent-text")).to_have_js_property(
            "textContent", HOSTILE, timeout=EXPECT_MS)
        expect(recent.locator(".jp-caprl-Recent-input")).to_contain_text(HOSTILE_NAME, timeout=EXPECT_MS)
        page.page.screenshot(path=str(output_dir / "3-recent.png"))

        assert _injected(page.page) == {"ran": None, "elements": []}
        # the extraction's 502 is the browser's to log; nothing else may be
        assert [e for e in _page_errors(page.console) if "status of 502" not in e] == []
    finally:
        _dump(page, output_dir / "console.log")
        page.page.close()


def test_a_server_with_several_models_and_none_chosen_says_to_choose_one(
    lab: JupyterLabServer, lab_settings: Any, chromium: Any, output_dir: Path,
) -> None:
    from playwright.sync_api import expect

    with VLLMSimulator(served_names=("caprl-3b", "caprl-qwen3")) as several:
        lab_settings(baseUrl=several.base_url)  # this Lab's admin allows any model server URL
        page = LabPage.open(lab, chromium)
        try:
            _expect_status(page.page, "no-model", "CapRL no model chosen")
            item = _status_item(page.page)
            title = item.get_attribute("title")
            assert f"CapRL model server up at {several.base_url}, no model chosen" in title
            assert "'caprl-3b', 'caprl-qwen3'" in title and "CapRL settings" in title
            item.click()
            side = page.page.locator("#jp-caprl-panel")
            expect(side.locator(".jp-caprl-Panel-headline")).to_have_text("No model chosen", timeout=EXPECT_MS)
            expect(side.locator(".jp-caprl-Panel-message")).to_contain_text("several models", timeout=EXPECT_MS)
            expect(side).to_contain_text("caprl-3b, caprl-qwen3", timeout=EXPECT_MS)
            _screenshots(page.page, output_dir, "no-model")
            assert _page_errors(page.console) == []
        finally:
            _dump(page, output_dir / "console.log")
            page.page.close()
        lab_settings(baseUrl=several.base_url, model="caprl-qwen3")
        page = LabPage.open(lab, chromium)
        try:
            _expect_status(page.page, "up", "CapRL up · caprl-qwen3 · 0 running, 0 waiting")
        finally:
            page.page.close()


def test_the_model_setting_suggests_the_documented_served_name(lab: JupyterLabServer) -> None:
    schema = lab.api("GET", f"/lab/api/settings/{PLUGIN}").json()["schema"]["properties"]
    assert schema["model"]["default"] == "" and schema["model"]["examples"] == ["caprl"]
    assert "CapRL-3B" not in json.dumps(schema)
    assert "CapRLApp.allowed_base_urls" in schema["baseUrl"]["description"]


def test_clearing_the_lab_settings_resets_the_server(
    lab: JupyterLabServer, module_sim: VLLMSimulator, lab_settings: Any, chromium: Any,
) -> None:
    """A page whose settings are empty sends nulls: the server drops an earlier page's choice."""
    other = "http://127.0.0.1:9/v1"
    lab_settings(baseUrl=other, model="caprl")
    page = LabPage.open(lab, chromium)
    try:
        _expect_status(page.page, "down", "CapRL down")
        assert lab.api("GET", "/caprl/settings").json() == {
            "base_url": other, "model": "caprl", "has_api_key": False}
    finally:
        page.page.close()
    lab_settings()  # both cleared in Lab's settings; the next page to load says so
    page = LabPage.open(lab, chromium)
    try:
        _expect_status(page.page, "up", "CapRL up · caprl-sim · 0 running, 0 waiting")
        assert lab.api("GET", "/caprl/settings").json() == {
            "base_url": module_sim.base_url, "model": None, "has_api_key": False}
        assert _page_errors(page.console) == []
    finally:
        page.page.close()
