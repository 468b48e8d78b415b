"""The extraction review's front end in headless Chromium, driven like a reviewer would.

A loopback page (the approach of ``gallery_harness.py``) loads ``static/extraction.js`` as an ES
module, exactly as anywidget does, and calls ``render({model, el})`` with a model written in
JavaScript. Behind that fake model sits the real Python ``ExtractionReview``: every message
and every saved traitlet goes to it through ``page.expose_function``, and what it sends back
(rows, images as binary buffers, errors, traitlet changes) is delivered to the front end. So
these tests check the whole round trip: a cell edit reaches pandas typed, model-written HTML
stays text, accept / reject change the view. Screenshots land in test-output/extraction-review/.

Needs Debian's Chromium at /usr/bin/chromium: without it these tests skip, unless
CAPRL_REQUIRE_BROWSER=1 (CI), where a missing browser fails them.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from caprl_nb.widgets import ExtractionReview

from tests.conftest import OUTPUT
from tests.support.gallery_harness import CHROMIUM, STATIC, launch_chromium

REQUIRE_BROWSER = os.environ.get("CAPRL_REQUIRE_BROWSER") == "1"
pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and not REQUIRE_BROWSER,
    reason=f"no Chromium at {CHROMIUM} (apt-get install chromium); "
    "set CAPRL_REQUIRE_BROWSER=1 to make this a failure",
)
XSS = "<img src=x onerror=alert(1)>"
SHOTS = OUTPUT / "extraction-review"
EXPECT_MS = 20_000

PAGE = """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>caprl_nb extraction review harness</title>
<link rel="icon" href="data:,">
<link rel="stylesheet" href="/static/extraction.css">
<style>
  body { margin: 0; padding: 16px; background: #fff; font-family: system-ui, sans-serif; }
  #out { max-width: 1180px; }
</style>
</head>
<body>
<div id="out"></div>
<script type="module" src="/harness.js"></script>
</body>
</html>
"""

# The anywidget model API (get/set/on/off/save_changes/send) in front of the Python widget:
# window.__py(kind, payload) runs the real ExtractionReview and answers with what it sent.
HARNESS_JS = r"""
import review from "/static/extraction.js";

function buffer(b64) {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  return new DataView(bytes.buffer);
}

class BridgedModel {
  constructor(traits) {
    this._traits = { ...traits };
    this._handlers = new Map();
    this._dirty = new Set();
    this._queue = Promise.resolve();
  }
  get(name) { return this._traits[name]; }
  set(name, value) {
    this._traits[name] = value;
    this._dirty.add(name);
    this._emit(`change:${name}`, value);
  }
  on(name, fn) {
    if (!this._handlers.has(name)) this._handlers.set(name, new Set());
    this._handlers.get(name).add(fn);
  }
  off(name, fn) {
    const set = this._handlers.get(name);
    if (set) set.delete(fn);
  }
  save_changes() {
    const changed = {};
    for (const name of this._dirty) changed[name] = this._traits[name];
    this._dirty.clear();
    window.__saved.push(changed);
    this._call("traits", changed);
  }
  send(content) {
    window.__sent.push(JSON.parse(JSON.stringify(content)));
    this._call("msg", content);
  }
  _call(kind, payload) {
    this._queue = this._queue
      .then(() => window.__py(kind, JSON.parse(JSON.stringify(payload))))
      .then((answer) => this._deliver(answer));
  }
  _deliver(answer) {
    for (const [name, value] of Object.entries(answer.traits)) {
      if (JSON.stringify(this._traits[name]) === JSON.stringify(value)) continue;
      this._traits[name] = value;
      this._emit(`change:${name}`, value);
    }
    for (const { msg, buffers } of answer.messages) {
      window.__received.push(msg);
      this._emit("msg:custom", msg, buffers.map(buffer));
    }
  }
  _emit(name, ...args) {
    for (const fn of Array.from(this._handlers.get(name) || [])) fn(...args);
  }
}

window.__sent = [];
window.__saved = [];
window.__received = [];
window.__start = (traits) => {
  const model = new BridgedModel(traits);
  window.__model = model;
  window.__cleanup = review.render({ model, el: document.getElementById("out") });
};
window.__ready = true;
"""

_ROUTES = {
    "/": ("text/html; charset=utf-8", lambda: PAGE.encode()),
    "/harness.js": ("text/javascript; charset=utf-8", lambda: HARNESS_JS.encode()),
    "/static/extraction.js": ("text/javascript; charset=utf-8", lambda: (STATIC / "extraction.js").read_bytes()),
    "/static/extraction.css": ("text/css; charset=utf-8", lambda: (STATIC / "extraction.css").read_bytes()),
}
TRAITS = ("mode", "title", "total", "fields", "labels", "failed_ids", "statuses", "counts", "current")


class _Handler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        route = _ROUTES.get(self.path.split("?", 1)[0])
        if route is None:
            self.send_error(404)
            return
        body = route[1]()
        self.send_response(200)
        self.send_header("Content-Type", route[0])
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        """Quiet: the test output is for assertions."""


class _Inline:
    """Runs the widget's image work at once, so each answer carries its image."""

    def submit(self, fn: Any, *args: Any) -> None:
        fn(*args)

    def shutdown(self, **kwargs: Any) -> None:
        pass


class Bridge:
    """The Python side of the page's model: the real widget, its sends collected per call."""

    def __init__(self, widget: ExtractionReview) -> None:
        self.widget = widget
        self.out: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        widget.send = self._send  # type: ignore[method-assign]  # to the page, not a kernel
        widget._pool = _Inline()  # type: ignore[assignment]

    def _send(self, content: dict[str, Any], buffers: list[bytes] | None = None) -> None:
        with self.lock:
            self.out.append({
                "msg": json.loads(json.dumps(content)),
                "buffers": [base64.b64encode(bytes(b)).decode("ascii") for b in buffers or []],
            })

    def traits(self) -> dict[str, Any]:
        return {name: json.loads(json.dumps(getattr(self.widget, name))) for name in TRAITS}

    def __call__(self, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
        if kind == "msg":
            self.widget._on_msg(self.widget, payload, [])
        else:
            for name, value in payload.items():
                setattr(self.widget, name, value)
        with self.lock:
            out, self.out = self.out, []
        return {"messages": out, "traits": self.traits()}


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, name="xreview-harness", daemon=True)
    thread.start()
    host, port = httpd.server_address[:2]
    yield f"http://{host}:{port}/"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=5)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    if not CHROMIUM.exists():  # only reached with CAPRL_REQUIRE_BROWSER=1
        pytest.fail(f"CAPRL_REQUIRE_BROWSER=1 but there is no Chromium at {CHROMIUM}.")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = launch_chromium(p)
        yield browser
        browser.close()


class Session:
    def __init__(self, page: Any, widget: ExtractionReview) -> None:
        self.page = page
        self.widget = widget
        self.root = page.get_by_test_id("caprl-extraction-review")
        self.dialogs: list[str] = []
        self.errors: list[str] = []
        page.on("dialog", lambda d: (self.dialogs.append(d.message), d.dismiss()))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)

    def sent(self, kind: str) -> list[dict[str, Any]]:
        return [m for m in self.page.evaluate("window.__sent") if m["type"] == kind]

    def wait_row(self, label: str) -> None:
        from playwright.sync_api import expect

        expect(self.root.get_by_test_id("label")).to_have_text(label, timeout=EXPECT_MS)

    def wait_image(self) -> None:
        self.page.wait_for_function(
            "() => { const i = document.querySelector('[data-testid=image]');"
            " return i && !i.hidden && i.complete && i.naturalWidth > 0; }",
            timeout=EXPECT_MS,
        )

    def shot(self, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / name
        self.root.screenshot(path=str(path))
        return path


def _open(chromium: Any, server: str, widget: ExtractionReview) -> Iterator[Session]:
    context = chromium.new_context(viewport={"width": 1240, "height": 760}, device_scale_factor=1)
    page = context.new_page()
    bridge = Bridge(widget)
    page.expose_function("__py", bridge)
    session = Session(page, widget)
    page.goto(server)
    page.wait_for_function("window.__ready === true", timeout=EXPECT_MS)
    page.evaluate("traits => window.__start(traits)", bridge.traits())
    try:
        yield session
    finally:
        context.close()
        widget.close()


def _invoice(path: Path, number: int, vendor: str, total: str) -> str:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (720, 900), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((0, 0, 720, 110), fill=(36, 74, 140))
    draw.text((40, 40), f"INVOICE #{number}", fill="white", font_size=36)
    draw.text((40, 160), f"From: {vendor}", fill="black", font_size=26)
    draw.text((40, 210), "Date: 2024-03-0" + str(number % 9 + 1), fill="black", font_size=26)
    for k, y in enumerate(range(300, 560, 52)):
        draw.line((40, y, 680, y), fill=(200, 200, 200), width=2)
        draw.text((50, y + 12), f"Item {k + 1}", fill=(60, 60, 60), font_size=22)
        draw.text((560, y + 12), f"{(k + 2) * 7}.00", fill=(60, 60, 60), font_size=22)
    draw.text((420, 640), f"TOTAL  {total}", fill="black", font_size=32)
    image.save(path)
    return str(path)


def _chart(path: Path, values: list[float], hue: tuple[int, int, int]) -> str:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (800, 560), "white")
    draw = ImageDraw.Draw(image)
    draw.text((240, 20), "Sales by year", fill="black", font_size=30)
    draw.line((80, 480, 760, 480), fill="black", width=2)
    draw.line((80, 80, 80, 480), fill="black", width=2)
    for k, value in enumerate(values):
        x = 120 + k * 160
        draw.rectangle((x, 480 - value * 8, x + 90, 480), fill=hue)
        draw.text((x + 20, 490), str(2020 + k), fill="black", font_size=22)
        draw.text((x + 20, 450 - value * 8), f"{value:g}", fill="black", font_size=22)
    image.save(path)
    return str(path)


@pytest.fixture
def fields_review(chromium: Any, server: str, tmp_path: Path) -> Iterator[Session]:
    vendors = ["ACME Corp", XSS, "Globex", "Initech", "Umbrella", "Hooli"]
    totals = [1200, 86, None, 4310, 99, 15]
    paths = [_invoice(tmp_path / f"inv{i}.png", i, vendors[i], str(totals[i])) for i in range(6)]
    df = pd.DataFrame({"image": paths}, index=[f"inv-{i}" for i in range(6)])
    result = pd.DataFrame(
        {
            "vendor": pd.array([v if i != 2 else None for i, v in enumerate(vendors)], dtype="string"),
            "total": pd.array(totals, dtype="Int64"),
            "paid": pd.array([True, False, None, True, False, True], dtype="boolean"),
            "items": pd.array([[1, 2], [3], None, [], [4], [5, 6]], dtype=object),
            "error": pd.array([None, None, f"ValidationError: {XSS}", None, None, None], dtype="string"),
        },
        index=df.index,
    )
    yield from _open(chromium, server, df.caprl.review_extraction("image", result, title="Invoices"))


@pytest.fixture
def table_review(chromium: Any, server: str, tmp_path: Path) -> Iterator[Session]:
    hues = [(70, 130, 180), (214, 96, 77), (90, 160, 90)]
    data = [[12.0, 30.5, 22.0, 41.0], [5.0, 9.0, 14.5, 20.0], [33.0, 28.0, 19.0, 44.0]]
    paths = [_chart(tmp_path / f"chart{i}.png", data[i], hues[i]) for i in range(3)]
    df = pd.DataFrame({"image": paths}, index=["c0", "c1", "c2"])
    tables = pd.Series(
        [
            pd.DataFrame({
                "year": pd.array([2020, 2021, 2022, 2023], dtype="Int64"),
                "sales": pd.array(data[0], dtype="Float64"),
                "note": pd.array(["a", XSS, None, "d"], dtype="string"),
            }),
            pd.DataFrame({
                "year": pd.array([2020, 2021, 2022, 2023], dtype="Int64"),
                "sales": pd.array(data[1], dtype="Float64"),
                "note": pd.array([None] * 4, dtype="string"),
            }),
            None,
        ],
        index=df.index,
        name="table",
    )
    yield from _open(chromium, server, df.caprl.review_extraction("image", tables))


def test_field_edit_sends_changed_fields_and_reaches_pandas_typed(fields_review: Session) -> None:
    from playwright.sync_api import expect

    s = fields_review
    s.wait_row("inv-0")
    s.wait_image()
    total = s.root.locator("[data-testid=field-input][data-field=total]")
    expect(total).to_have_value("1200")
    total.fill("1,250")
    expect(s.root.get_by_test_id("unsaved")).to_be_visible()
    expect(s.root.get_by_test_id("accept")).to_have_text("Save & accept")
    s.shot("fields-unsaved.png")
    s.root.get_by_test_id("save").click()

    expect(s.root.get_by_test_id("status")).to_have_text("edited", timeout=EXPECT_MS)
    assert s.sent("edit") == [{"type": "edit", "id": 0, "values": {"total": "1,250"}}]
    expect(s.root.get_by_test_id("unsaved")).to_be_hidden()
    expect(total).to_have_value("1250")  # Python's typed value, shown back
    expect(s.root.locator("[data-field=total] [data-testid=field-original]")).to_have_text("model: 1200")
    applied = s.widget.apply()
    assert applied.loc["inv-0", "total"] == 1250 and str(applied["total"].dtype) == "Int64"
    assert applied.loc["inv-0", "review_status"] == "edited"

    # a value Python refuses: the notice says why and the reviewer's text stays
    total.fill("twelve")
    s.root.get_by_test_id("save").click()
    expect(s.root.get_by_test_id("notice")).to_contain_text("needs a whole number", timeout=EXPECT_MS)
    expect(total).to_have_value("twelve")
    expect(s.root.get_by_test_id("unsaved")).to_be_visible()
    s.root.get_by_test_id("discard").click()
    expect(total).to_have_value("1250")
    assert s.widget.apply().loc["inv-0", "total"] == 1250
    assert s.errors == []


def test_accept_reject_and_keys_update_the_view(fields_review: Session) -> None:
    from playwright.sync_api import expect

    s = fields_review
    s.wait_row("inv-0")
    s.root.focus()
    s.page.keyboard.press("ArrowRight")
    s.wait_row("inv-1")
    expect(s.root.get_by_test_id("position")).to_have_text("2 / 6")
    s.page.keyboard.press("r")
    expect(s.root.get_by_test_id("status")).to_have_text("rejected", timeout=EXPECT_MS)
    item = s.root.locator("[data-testid=row-item][data-id='1']")
    expect(item).to_have_attribute("data-status", "rejected")
    expect(s.root.get_by_test_id("count-rejected")).to_contain_text("1")
    s.root.get_by_test_id("accept").click()
    expect(s.root.get_by_test_id("status")).to_have_text("accepted", timeout=EXPECT_MS)
    expect(item).to_have_attribute("data-status", "accepted")
    s.wait_image()
    s.shot("fields-accepted.png")

    # `a` typed into a field is text, not a review
    s.page.keyboard.press("ArrowRight")
    s.wait_row("inv-2")
    vendor = s.root.locator("[data-testid=field-input][data-field=vendor]")
    vendor.click()
    s.page.keyboard.type("a")
    expect(vendor).to_have_value("a")
    expect(s.root.get_by_test_id("status")).to_have_text("unreviewed")
    s.page.keyboard.press("Escape")
    s.page.keyboard.press("r")  # out of the field, keys review again (and drop the draft)
    expect(s.root.get_by_test_id("status")).to_have_text("rejected", timeout=EXPECT_MS)
    expect(vendor).to_have_value("")

    # the row list jumps
    s.root.locator("[data-testid=row-item][data-id='4']").click()
    s.wait_row("inv-4")
    assert s.widget.current == 4
    reviews = s.widget.reviews
    assert reviews["status"].to_dict() == {"inv-1": "accepted", "inv-2": "rejected"}
    assert s.errors == []


def test_model_written_html_in_fields_and_errors_stays_text(fields_review: Session) -> None:
    from playwright.sync_api import expect

    s = fields_review
    s.wait_row("inv-0")
    s.root.focus()
    s.page.keyboard.press("ArrowRight")
    s.wait_row("inv-1")
    vendor = s.root.locator("[data-testid=field-input][data-field=vendor]")
    expect(vendor).to_have_value(XSS)
    s.page.keyboard.press("ArrowRight")
    s.wait_row("inv-2")
    error = s.root.get_by_test_id("error")
    expect(error).to_be_visible()
    assert error.evaluate("el => el.textContent") == f"ValidationError: {XSS}"
    s.wait_image()
    s.shot("fields-failed-row.png")
    assert s.page.locator("img[src='x']").count() == 0
    assert s.dialogs == [] and s.errors == []


def test_table_cell_edit_sends_the_table_and_reaches_pandas_typed(table_review: Session) -> None:
    from playwright.sync_api import expect

    s = table_review
    s.wait_row("c0")
    s.wait_image()
    cell = s.root.locator("[data-testid=cell][data-row='1'][data-col='1']")
    expect(cell).to_have_value("30.5")
    note = s.root.locator("[data-testid=cell][data-row='1'][data-col='2']")
    expect(note).to_have_value(XSS)  # a model-written cell, as text
    s.shot("table.png")
    cell.fill("31")
    s.root.get_by_test_id("add-row").click()
    s.root.locator("[data-testid=cell][data-row='4'][data-col='0']").fill("2024")
    s.root.locator("[data-testid=cell][data-row='4'][data-col='1']").fill("50")
    s.shot("table-unsaved.png")
    s.root.get_by_test_id("save").click()
    expect(s.root.get_by_test_id("status")).to_have_text("edited", timeout=EXPECT_MS)

    (edit,) = s.sent("edit")
    assert edit["id"] == 0
    assert edit["table"]["columns"] == ["year", "sales", "note"]
    assert edit["table"]["rows"][1] == ["2021", "31", XSS]
    assert edit["table"]["rows"][4] == ["2024", "50", ""]
    out = s.widget.apply()
    table = out.loc["c0", "table"]
    assert list(table["sales"]) == [12.0, 31.0, 22.0, 41.0, 50.0]
    assert str(table["sales"].dtype) == "Float64" and str(table["year"].dtype) == "Int64"
    assert out.loc["c0", "review_status"] == "edited"

    # remove a row, reject the next chart; the failed one says so
    s.root.locator("[data-testid=remove-row]").nth(4).click()
    expect(s.root.locator("[data-testid=cell][data-row='4']")).to_have_count(0)
    s.root.get_by_test_id("discard").click()
    s.root.get_by_test_id("next").click()
    s.wait_row("c1")
    s.root.get_by_test_id("reject").click()
    expect(s.root.get_by_test_id("status")).to_have_text("rejected", timeout=EXPECT_MS)
    s.root.get_by_test_id("next").click()
    s.wait_row("c2")
    expect(s.root.get_by_test_id("no-table")).to_be_visible()
    expect(s.root.get_by_test_id("error")).to_have_text("no table")
    assert s.page.locator("img[src='x']").count() == 0
    assert s.dialogs == [] and s.errors == []


PWN = [
    "<img src=x onerror=window.__pwned=1>",
    "<script>window.__pwned=1</script>",
    "javascript:window.__pwned=1",
    "[x](javascript:window.__pwned=1) **md**",
]


def _inert(s: Session) -> None:
    """Nothing a model or a file name wrote became markup, a link or a running script."""
    injected = s.root.evaluate(
        """root => [...root.querySelectorAll('*')].filter(el =>
             ['SCRIPT', 'IFRAME', 'A', 'B'].includes(el.tagName)
             || el.namespaceURI !== 'http://www.w3.org/1999/xhtml'
             || el.hasAttribute('href')
             || [...el.attributes].some(a => a.name.startsWith('on'))).map(el => el.outerHTML)"""
    )
    assert injected == []
    assert s.page.evaluate("typeof window.__pwned") == "undefined"
    assert s.dialogs == [] and s.errors == []


def test_hostile_labels_file_names_fields_and_tables_stay_text(chromium: Any, server: str, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    names = ['"><svg onload=window.__pwned=1>.png', "javascript:window.__pwned=1.png",
             "<img src=y onerror=window.__pwned=1>.png", "d.png"]
    paths = [_invoice(tmp_path / name, i, "ACME", "10") for i, name in enumerate(names)]
    df = pd.DataFrame({"image": paths}, index=pd.Index(PWN))
    result = pd.DataFrame(
        {
            "vendor": pd.array(PWN[::-1], dtype="string"),
            PWN[0]: pd.array(PWN, dtype="string"),  # a field named by a schema the model filled
            "error": pd.array([None, None, None, f"ValidationError: {PWN[1]}"], dtype="string"),
        },
        index=df.index,
    )
    sessions = _open(chromium, server, df.caprl.review_extraction("image", result, title=PWN[0]))
    s = next(sessions)
    try:
        expect(s.root.get_by_test_id("row-item")).to_have_count(4)
        items = s.root.get_by_test_id("row-item").all_inner_texts()
        assert all(label in text for label, text in zip(PWN, items, strict=True))  # labels as text
        for i, label in enumerate(PWN):
            if i:
                s.root.focus()
                s.page.keyboard.press("ArrowRight")
            s.wait_row(label)
            expect(s.root.get_by_test_id("source")).to_contain_text(names[i])
            vendor = s.root.locator("[data-testid=field-input][data-field=vendor]")
            odd = s.root.locator("[data-testid=field-input]").nth(1)
            if i < 3:
                expect(vendor).to_have_value(PWN[::-1][i])
                expect(odd).to_have_value(PWN[i])
            else:
                assert s.root.get_by_test_id("error").evaluate("el => el.textContent") == f"ValidationError: {PWN[1]}"
            s.wait_image()
        assert PWN[0] in s.root.inner_text()  # the title and the odd field's name, as text
        s.shot("hostile-fields.png")
        _inert(s)
    finally:
        sessions.close()

    tables = pd.Series(
        [pd.DataFrame({PWN[1]: pd.array([2020, 2021], dtype="Int64"), "note": pd.array(PWN[2:], dtype="string")}),
         None],
        index=pd.Index(PWN[:2]), name="table",
    )
    frame = pd.DataFrame({"image": paths[:2]}, index=tables.index)
    sessions = _open(chromium, server, frame.caprl.review_extraction("image", tables))
    s = next(sessions)
    try:
        s.wait_row(PWN[0])
        s.wait_image()
        expect(s.root.locator("[data-testid=header-cell][data-col='0']")).to_have_value(PWN[1])
        expect(s.root.locator("[data-testid=cell][data-row='0'][data-col='1']")).to_have_value(PWN[2])
        expect(s.root.locator("[data-testid=cell][data-row='1'][data-col='1']")).to_have_value(PWN[3])
        s.shot("hostile-table.png")
        _inert(s)
    finally:
        sessions.close()
