"""gallery.to_html output in a real browser: offline, every image shown, payloads inert."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from caprl_nb.widgets import Gallery

from .gallery_harness import CHROMIUM, launch_chromium

pytestmark = pytest.mark.skipif(
    not CHROMIUM.exists() and os.environ.get("CAPRL_REQUIRE_BROWSER") != "1",
    reason=f"no Chromium at {CHROMIUM} (apt-get install chromium); "
    "set CAPRL_REQUIRE_BROWSER=1 to make this a failure",
)
XSS = "<img src=x onerror=alert(1)>"


def test_static_gallery_offline_with_every_image_and_inert_payloads(tmp_path: Path, output_dir: Path) -> None:
    from playwright.sync_api import sync_playwright

    paths = []
    for i, colour in enumerate(["crimson", "gold", "teal", "navy"]):
        name = f"<script>alert({i})</script>.png" if i == 1 else f"img{i}.png"
        path = tmp_path / name.replace("/", "\\")
        Image.new("RGB", (160, 100), colour).save(path)
        paths.append(str(path))
    captions = [XSS, "A gold square.", "<b onmouseover=alert(2)>teal</b>", None]
    errors = [None, None, None, "ImageDecodeError: <svg onload=alert(3)>"]
    df = pd.DataFrame({"image": paths, "caption": captions, "error": errors})
    page_path = Gallery(df, "image", store=False).to_html(output_dir / "gallery.html")

    dialogs: list[str] = []
    requests: list[str] = []
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            page = browser.new_page()
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.on("request", lambda r: requests.append(r.url))
            page.goto(page_path.as_uri())
            page.wait_for_load_state("load")
            loaded = page.evaluate(
                "[...document.images].filter(i => i.complete && i.naturalWidth > 0).length"
            )
            texts = page.locator(".caption").all_inner_texts()
            error_text = page.locator(".error").all_inner_texts()
            meta = " ".join(page.locator(".meta").all_inner_texts())
            scripts = page.evaluate("document.querySelectorAll('script,[onerror],[onload],[onmouseover]').length")
            page.screenshot(path=str(output_dir / "static-gallery.png"), full_page=True)
        finally:
            browser.close()
    assert loaded == 4  # every image, from data: URLs
    assert texts[:3] == [XSS, "A gold square.", "<b onmouseover=alert(2)>teal</b>"]
    assert error_text == ["ImageDecodeError: <svg onload=alert(3)>"]
    assert "<script>alert(1)</script>.png" in meta.replace("\\", "/")
    assert scripts == 0 and dialogs == []
    assert [u for u in requests if not u.startswith(("file:", "data:"))] == []  # offline
