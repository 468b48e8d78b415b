"""First card of the gallery at 1,000 / 100,000 / 1,000,000 rows in JupyterLab, against a naive
ipywidgets.HTML of all rows, measured in the same run.

Both run in headless Chromium (/usr/bin/chromium) inside a real JupyterLab started by the
bench, each in a fresh notebook and kernel, over the same rows: FILES small PNGs cycled to
ROWS rows with a synthetic caption column, so no model server is needed.

- ours: ``df.caprl.gallery("image", caption="caption")`` (virtualised grid, rows sent in the
  windows the view asks for, thumbnails streamed as binary messages).
- baseline: the table an analyst writes first, ``ipywidgets.HTML`` holding one card per row
  (``<img src="data:image/png;base64,...">`` and the escaped caption) for every row. It is run
  up to --baseline-max-rows (default 10,000): at 100,000 rows it is ~170 MB of HTML, at a
  million ~1.7 GB, which the page cannot hold; those sizes print "not run".

Times are taken in the page (performance.now()) from the moment the cell is sent to run:
until the first card with its caption is in the DOM (kernel build + display + first window),
and until the first thumbnail has decoded. "kernel build" is the gallery's construction alone,
timed in the kernel. Also printed: the gallery's own ``data-first-paint-ms`` (from its render()
call), the DOM nodes each needs, and (up to --scroll-max-rows) the time to scroll to the last
card. Ratios: baseline / ours (> 1: ours is faster) at each size where the baseline ran, and
ours at each size / ours at the smallest (about 1: the first card does not depend on the rows).
The bar: first card <= 1 s at 1,000,000 rows.

    .venv/bin/python bench/gallery_first_paint.py [--rows 1000,100000,1000000] [--files 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
# The gallery's own first paint (render() to the first filled card) on an idle machine. A target
# for this bench, not a test: a loaded CI machine misses it without anything being wrong.
FIRST_PAINT_TARGET_MS = 1000
FIRST_CARD_BAR_MS = 1000  # the bar: first card within 1 s at 1,000,000 rows
BAR_ROWS = 1_000_000
sys.path.insert(0, str(ROOT))

SETUP = """\
import json
import pandas as pd
import caprl_nb

files = json.loads(open("files.json").read())
import numpy as np
rows = {rows}
ids = pd.Series(np.arange(rows))
df = pd.DataFrame({{  # built vectorised: a million rows in about a second (not measured)
    "image": pd.Series(files)[ids % len(files)].reset_index(drop=True),
    "caption": "Row " + ids.astype(str) + ": a synthetic caption of image " + (ids % len(files)).astype(str)
               + ", long enough to wrap over two lines of a card like a model's caption would.",
    "score": (ids * 7919) % 1000 / 1000,
}})
"""
GALLERY = """\
import time
started = time.perf_counter()
g = df.caprl.gallery("image", caption="caption")
build_ms = (time.perf_counter() - started) * 1000
g
"""
BASELINE = """\
import base64, html, time
import ipywidgets
started = time.perf_counter()
data = {p: base64.b64encode(open(p, "rb").read()).decode() for p in files}
cards = "".join(
    f'<div class="naive-card" style="display:inline-block;width:190px;margin:4px;vertical-align:top">'
    f'<img src="data:image/png;base64,{data[p]}" width="180"><p>{html.escape(c)}</p></div>'
    for p, c in zip(df["image"], df["caption"])
)
naive = ipywidgets.HTML(f'<div class="naive" style="height:600px;overflow:auto">{cards}</div>')
build_ms = (time.perf_counter() - started) * 1000
naive
"""

# Installed in the page just before the measured cell runs: a requestAnimationFrame loop that
# notes when the first card (with text) and the first decoded thumbnail appear.
PROBE = """([card, thumb]) => {
    const probe = {t0: performance.now(), card: null, thumb: null};
    window.__probe = probe;
    const visible = (el) => { const r = el.getBoundingClientRect(); return r.width > 0 && r.height > 0; };
    const tick = () => {
        const now = performance.now() - probe.t0;
        if (probe.card === null) {
            const el = document.querySelector(card);
            if (el && visible(el) && el.textContent.trim()) probe.card = now;
        }
        if (probe.thumb === null) {
            const img = [...document.querySelectorAll(thumb)].find(
                (i) => i.complete && i.naturalWidth > 0 && visible(i));
            if (img) probe.thumb = now;
        }
        if (probe.card === null || probe.thumb === null) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
}"""
PROBE_DONE = "() => window.__probe && window.__probe.card !== null && window.__probe.thumb !== null"

GALLERY_CARD = "[data-testid=caprl-gallery] [data-testid=card]"
GALLERY_THUMB = "[data-testid=caprl-gallery] [data-testid=card] img[src]"
NAIVE_CARD = ".naive .naive-card"
NAIVE_THUMB = ".naive .naive-card img"


def make_files(folder: Path, n: int) -> list[str]:
    """``n`` distinct small PNGs (smooth gradients, ~1 KB each, so data URLs stay small)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    y, x = np.mgrid[0:64, 0:96]
    names = []
    for i in range(n):
        r = (x * 2 + i * 37) % 256
        g = (y * 3 + i * 61) % 256
        b = np.full_like(x, (i * 97) % 256)
        pixels = np.stack([r, g, b], axis=-1).astype(np.uint8)
        name = f"images/img{i:05d}.png"
        Image.fromarray(pixels).save(folder.parent / name, optimize=True)
        names.append(name)
    return names


def page_metrics(cdp: Any) -> dict[str, float]:
    """Chromium's own counters (CDP Performance.getMetrics) after a forced garbage collection."""
    cdp.send("HeapProfiler.collectGarbage")
    return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}


def measure(nb: Any, source: str, card: str, thumb: str, timeout: float) -> dict[str, float]:
    """Run ``source``; ms until its first card and first thumbnail show, its build time in the
    kernel, and what it added to the page: DOM nodes and JS heap (MB), per Chromium."""
    cdp = nb.page.context.new_cdp_session(nb.page)
    cdp.send("Performance.enable")
    before = page_metrics(cdp)
    nb.page.evaluate(PROBE, [card, thumb])
    nb.run_cell(source, timeout)
    nb.page.wait_for_function(PROBE_DONE, timeout=timeout * 1000, polling=50)
    probe = nb.page.evaluate("() => window.__probe")
    after = page_metrics(cdp)
    cdp.detach()
    build = float(nb.run_cell("print(f'{build_ms:.1f}')", timeout))
    return {
        "card": probe["card"], "thumb": probe["thumb"], "build": build,
        "nodes": after["Nodes"] - before["Nodes"],
        "heap": (after["JSHeapUsedSize"] - before["JSHeapUsedSize"]) / 2**20,
    }


def scroll_to_end(nb: Any, scroller: str, last: str, timeout: float) -> float:
    """Ms from setting ``scroller``'s scrollTop to its end until ``last`` (a card) is visible."""
    started = time.perf_counter()
    nb.page.locator(scroller).evaluate("el => { el.scrollTop = el.scrollHeight; }")
    nb.page.locator(last).wait_for(state="visible", timeout=timeout * 1000)
    return (time.perf_counter() - started) * 1000


def run_gallery(lab: Any, chromium: Any, name: str, setup: str, rows: int, args: Any) -> dict[str, Any]:
    """One fresh notebook and kernel: display the gallery, measure, scroll to the end."""
    from tests.support.jupyterlab import LabNotebook

    nb = LabNotebook.create(lab, chromium, name, [setup], timeout=args.timeout)
    try:
        nb.run_all(args.timeout)
        m: dict[str, Any] = measure(nb, GALLERY, GALLERY_CARD, GALLERY_THUMB, args.timeout)
        root_el = nb.page.locator("[data-testid=caprl-gallery]")
        grid = nb.page.locator("[data-testid=grid]")
        m["first_paint"] = float(root_el.get_attribute("data-first-paint-ms") or "nan")
        m["widget_nodes"] = grid.evaluate("el => el.querySelectorAll('*').length")
        m["cards"] = grid.evaluate("el => el.querySelectorAll('[data-testid=card]').length")
        if args.screenshots:
            nb.screenshot(args.screenshots / f"gallery-first-paint-{rows}.png", show=root_el)
        if rows > args.scroll_max_rows:
            return m
        m["last_id"] = str(rows - 1)
        last_card = f'[data-testid=grid] [data-testid=card][data-id="{m["last_id"]}"]'
        m["scroll"] = scroll_to_end(nb, "[data-testid=grid]", last_card, args.timeout)
        last = nb.page.locator(last_card)
        started = time.perf_counter()
        last.locator("img[src]").wait_for(state="visible", timeout=args.timeout * 1000)
        m["scroll_thumb"] = m["scroll"] + (time.perf_counter() - started) * 1000
        m["last_caption"] = last.get_by_test_id("caption").evaluate("el => el.textContent")
        m["last_source"] = last.locator(".cg-source").evaluate("el => el.textContent")
        m["widget_nodes_end"] = grid.evaluate("el => el.querySelectorAll('*').length")
        if args.screenshots:
            nb.screenshot(args.screenshots / f"gallery-scrolled-to-end-{rows}.png", show=root_el)
        return m
    finally:
        nb.close()


def run_baseline(lab: Any, chromium: Any, name: str, setup: str, args: Any) -> dict[str, Any]:
    """One fresh notebook and kernel: display the naive ipywidgets.HTML, measure, scroll to the end."""
    from tests.support.jupyterlab import LabNotebook

    nb = LabNotebook.create(lab, chromium, name, [setup], timeout=args.timeout)
    try:
        nb.run_all(args.timeout)
        m = measure(nb, BASELINE, NAIVE_CARD, NAIVE_THUMB, args.timeout)
        naive = nb.page.locator(".naive")
        m["widget_nodes"] = naive.evaluate("el => el.querySelectorAll('*').length")
        if args.screenshots:
            nb.screenshot(args.screenshots / "baseline.png", show=naive)
        m["scroll"] = scroll_to_end(nb, ".naive", ".naive .naive-card:last-child", args.timeout)
        return m
    finally:
        nb.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", default="1000,100000,1000000", help="comma-separated row counts")
    parser.add_argument("--files", type=int, default=200, help="distinct PNG files, cycled over the rows")
    parser.add_argument("--repeat", type=int, default=3, help="fresh kernel + page per side per repeat; medians")
    parser.add_argument("--baseline-max-rows", type=int, default=10_000,
                        help="largest size the naive baseline runs at (its HTML grows ~1.7 KB a row)")
    parser.add_argument("--scroll-max-rows", type=int, default=1_000_000,
                        help="largest size the scroll-to-the-end check runs at")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds for each wait")
    parser.add_argument("--screenshots", type=Path, default=None, help="folder for screenshots")
    args = parser.parse_args()
    sizes = [int(r.replace("_", "")) for r in args.rows.split(",")]

    from tests.support.jupyterlab import CHROMIUM, browser, start_jupyterlab

    if not CHROMIUM.exists():
        sys.exit(f"no Chromium at {CHROMIUM}; apt-get install chromium")
    ours: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    naive: dict[int, list[dict[str, Any]]] = {n: [] for n in sizes}
    started = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    with tempfile.TemporaryDirectory(prefix="caprl-bench-") as tmp:
        root = Path(tmp) / "root"
        files = make_files(root / "images", args.files)
        (root / "files.json").write_text(json.dumps(files))
        env = {"CAPRL_HOME": str(Path(tmp) / "home")}
        with start_jupyterlab(root, env, state_dir=Path(tmp) / "lab") as lab, browser() as chromium:
            for i in range(args.repeat):  # sizes interleaved, and alternate which side goes first
                for n in sizes:
                    setup = SETUP.format(rows=n)
                    sides = [  # defaults bind this iteration's values
                        lambda n=n, i=i, setup=setup: ours[n].append(
                            run_gallery(lab, chromium, f"gallery{n}-{i}.ipynb", setup, n, args)),
                    ]
                    if n <= args.baseline_max_rows:
                        sides.append(lambda n=n, i=i, setup=setup: naive[n].append(
                            run_baseline(lab, chromium, f"baseline{n}-{i}.ipynb", setup, args)))
                    for side in sides if i % 2 == 0 else sides[::-1]:
                        side()

    def med(runs: list[dict[str, Any]], key: str) -> float:
        values = [r[key] for r in runs if key in r]
        return statistics.median(values) if values else float("nan")

    print(f"{args.files} distinct 96x64 PNGs cycled over the rows; {CHROMIUM}, {os.cpu_count()} CPUs; "
          f"{started}; medians of {args.repeat} runs, each in a fresh kernel and page")
    print(f"{'':14}{'':44}{'kernel build':>13}{'first card':>12}{'first thumb':>13}"
          f"{'nodes in widget':>17}{'JS heap +':>11}{'scroll to end':>15}")
    for n in sizes:
        for name, runs in (("df.caprl.gallery", ours[n]), ("baseline: naive ipywidgets.HTML of all rows", naive[n])):
            if not runs:
                print(f"{n:>12,}  {name:44}{'not run (its HTML would not fit the page)':>60}")
                continue
            scroll = med(runs, "scroll")
            print(f"{n:>12,}  {name:44}{med(runs, 'build'):11.0f}ms{med(runs, 'card'):10.0f}ms"
                  f"{med(runs, 'thumb'):11.0f}ms{med(runs, 'widget_nodes'):17,.0f}{med(runs, 'heap'):9.1f}MB"
                  + (f"{scroll:13.0f}ms" if scroll == scroll else f"{'-':>15}"))
    for n in sizes:
        print(f"first card at {n:,} rows, every run (ms): gallery {[round(r['card']) for r in ours[n]]}"
              + (f", baseline {[round(r['card']) for r in naive[n]]}" if naive[n] else ""))
    smallest = sizes[0]
    for n in sizes:
        parts = [f"gallery at {n:,} / gallery at {smallest:,} rows: first card "
                 f"{med(ours[n], 'card') / med(ours[smallest], 'card'):.2f}x, kernel build "
                 f"{med(ours[n], 'build') / max(med(ours[smallest], 'build'), 0.1):.2f}x"]
        if naive[n]:
            parts.append(f"baseline / gallery (>1: the gallery is faster): first card "
                         f"{med(naive[n], 'card') / med(ours[n], 'card'):.2f}x, first thumbnail "
                         f"{med(naive[n], 'thumb') / med(ours[n], 'thumb'):.2f}x")
        print("; ".join(parts))
    for n in sizes:
        last = ours[n][-1]
        if "last_id" in last:
            print(f"{n:,} rows scrolled to the end: last card id {last['last_id']} ({last['last_source']}) "
                  f"after {med(ours[n], 'scroll'):.0f} ms, its thumbnail after {med(ours[n], 'scroll_thumb'):.0f} ms")
    print("gallery data-first-paint-ms (its render() to first filled card): "
          + ", ".join(f"{med(ours[n], 'first_paint'):.0f} ms at {n:,}" for n in sizes)
          + f" (target < {FIRST_PAINT_TARGET_MS} ms)")
    if BAR_ROWS in ours:
        card = med(ours[BAR_ROWS], "card")
        verdict = "MET" if card <= FIRST_CARD_BAR_MS else "NOT MET"
        print(f"bar: first card <= {FIRST_CARD_BAR_MS} ms at {BAR_ROWS:,} rows: {card:.0f} ms, {verdict}")


if __name__ == "__main__":
    main()
