"""gallery.to_html output in a real browser: offline, every image shown, payloads inert."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest
from PIL import Image

from caprl_nb.widgets import Gallery

from tests.support.gallery_harness import CHROMIUM, launch_chromium

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


PWN = [
    "<img src=x onerror=window.__pwned=1>",
    "<script>window.__pwned=1</script>",
    "javascript:window.__pwned=1",
    "[x](javascript:window.__pwned=1) **md**",
    '"><svg onload=window.__pwned=1>',
]


def test_hostile_captions_names_and_labels_are_inert_in_the_file_and_the_preview(
    tmp_path: Path, output_dir: Path
) -> None:
    """Both static views: the file (which has a CSP) and the notebook preview (which has none)."""
    from playwright.sync_api import sync_playwright

    paths = []
    for i, name in enumerate(['x"><img src=y onerror=window.__pwned=1>.png', "javascript:alert(1).png",
                              "<script>window.__pwned=1<\\script>.png", "b.png", "c.png"]):
        path = tmp_path / name
        Image.new("RGB", (80, 60), (40 * i, 90, 160)).save(path)
        paths.append(str(path))
    df = pd.DataFrame(
        {
            "image": paths,
            "caption": PWN,
            "error": [None, None, None, None, PWN[0]],
            # verify's columns: the failed questions quote model text too
            "caption_score": pd.array([0.2, 0.6, 1.0, 0.0, None], dtype="Float64"),
            "failed_questions": [[f"Q? expected: {p}"] for p in PWN],
        },
        index=pd.Index(PWN, name="label"),
    )
    gallery = Gallery(df, "image", store=False, title=PWN[1])
    file_page = gallery.to_html(output_dir / "hostile.html")
    # The preview a saved notebook shows; a renderer may apply no CSP at all, so escaping alone must hold.
    preview = tmp_path / "preview.html"
    preview.write_text(f"<!doctype html><html><body>{gallery._preview_html()}</body></html>", encoding="utf-8")

    seen = {}
    with sync_playwright() as p:
        browser = launch_chromium(p)
        try:
            for name, target in (("file", file_page), ("preview", preview)):
                page = browser.new_page()
                dialogs: list[str] = []
                page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
                page.goto(target.as_uri())
                page.wait_for_load_state("load")
                page.wait_for_function("[...document.images].every(i => i.complete)")
                page.screenshot(path=str(output_dir / f"hostile-{name}.png"), full_page=True)
                seen[name] = {
                    "pwned": page.evaluate("typeof window.__pwned"),
                    "text": page.evaluate("document.body.innerText"),
                    "active": page.evaluate(
                        "document.querySelectorAll('script, iframe, svg, a, [href], [onerror], [onload]').length"
                    ),
                    "dialogs": dialogs,
                }
                page.close()
        finally:
            browser.close()
    for name, found in seen.items():
        assert found["pwned"] == "undefined", name
        assert found["active"] == 0 and found["dialogs"] == [], name
        for payload in PWN:  # shown literally: as caption, as the row's label and in its failed question
            assert found["text"].count(payload) >= 3, (name, payload)
        assert "score 0.20" in found["text"] and "no score" in found["text"], name
        assert "1 failed question" in found["text"], name
        assert "javascript:alert(1).png" in found["text"], name
