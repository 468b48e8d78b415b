"""Static HTML: a gallery file that opens offline, and the preview a saved notebook shows.

Every model- or file-produced string is escaped with :func:`html.escape`; the file carries a
Content-Security-Policy that allows no script and no network at all, only inline styles and
the embedded ``data:`` images. A row's score (``caption_score``) and notes (``failed_questions``)
are styled inline, so the notebook preview, which has no stylesheet, shows them the same way.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from caprl_nb.widgets.thumbnails import Thumbnail

__all__ = ["card_html", "notes_title", "write_html"]

_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #1d1d1f; background: #fafafa; }
h1 { font-size: 20px; font-weight: 600; }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 16px; }
.card { background: #fff; border: 1px solid #ddd; border-radius: 8px; padding: 10px; }
.card img { width: 100%; height: 220px; object-fit: contain; background: #f0f0f0; border-radius: 4px; }
.meta { font-size: 12px; color: #666; margin: 6px 0; overflow-wrap: anywhere; }
.status { display: inline-block; padding: 1px 6px; border-radius: 8px; background: #eee; font-size: 11px; }
.status.accepted { background: #d8f3dc; } .status.rejected { background: #ffd6d6; }
.status.edited { background: #dde7ff; }
.caption { white-space: pre-wrap; font-size: 13px; line-height: 1.45; max-height: 260px; overflow: auto; }
.error { color: #b00020; font-size: 13px; white-space: pre-wrap; }
.missing { height: 220px; display: flex; align-items: center; justify-content: center; color: #999; }
.notes summary { cursor: pointer; }
"""
# Score bands (scores.py) -> background, text colour: red-ish low, amber mid, green high.
_BANDS = {
    "low": ("#ffd6d6", "#8a1020"),
    "mid": ("#fff0c2", "#6b4a00"),
    "high": ("#d8f3dc", "#0f5a26"),
    "none": ("#eeeeee", "#555555"),
}


def notes_title(count: int, label: str) -> str:
    """``"2 failed questions"``, ``"1 failed question"``."""
    noun = label[:-1] if count == 1 and label.endswith("s") else label
    return f"{count} {noun}"


def _score_html(score: dict[str, Any] | None) -> str:
    if not score:
        return ""
    band = score["band"] if score.get("band") in _BANDS else "none"
    background, colour = _BANDS[band]
    text = "no score" if score.get("value") is None else f"score {score['text']}"
    return (
        f'<span class="score {band}" style="display:inline-block;padding:1px 6px;border-radius:8px;'
        f'font-size:11px;font-weight:600;background:{background};color:{colour}">{html.escape(text)}</span> '
    )


def _notes_html(notes: list[str], label: str) -> str:
    if not notes:
        return ""
    items = "".join(f'<li style="margin:2px 0">{html.escape(note)}</li>' for note in notes)
    return (
        '<details class="notes" open style="font-size:12px;color:#8a1020;margin-top:6px">'
        f"<summary>{html.escape(notes_title(len(notes), label))}</summary>"
        f'<ul style="margin:4px 0;padding-left:18px;overflow-wrap:anywhere">{items}</ul></details>'
    )


def card_html(row: dict[str, Any], thumb: Thumbnail | str | None, *, notes_label: str = "notes") -> str:
    """One row as an HTML card (its score and notes too, when it has them); every string escaped."""
    esc = html.escape
    if isinstance(thumb, Thumbnail):
        image = f'<img alt="{esc(row["source"])}" src="{thumb.data_url}">'
    else:
        image = f'<div class="missing">{esc(thumb or "no image")}</div>'
    text = row["edited"] if row["edited"] is not None else row["caption"]
    body = f'<div class="caption">{esc(text)}</div>' if text is not None else ""
    error = f'<div class="error">{esc(row["error"])}</div>' if row["error"] else ""
    status = esc(row["status"])
    meta = " · ".join(f"{esc(k)} {esc(v)}" for k, v in row["meta"].items() if v)
    return (
        f'<div class="card" style="max-width:340px">{image}'
        f'<div class="meta">{_score_html(row.get("score"))}<span class="status {status}">{status}</span> '
        f'{esc(row["label"])} · {esc(row["source"])}{" · " + meta if meta else ""}</div>'
        f'{body}{_notes_html(row.get("notes") or [], notes_label or "notes")}{error}</div>'
    )


def write_html(
    path: Path,
    title: str,
    rows: Iterable[dict[str, Any]],
    thumbnail: Callable[[int], Thumbnail | str],
    *,
    notes_label: str = "notes",
) -> Path:
    """Write every row as a card into one self-contained file; returns the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as out:
        out.write(
            '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><div class=\"grid\">"
        )
        for row in rows:
            out.write(card_html(row, thumbnail(row["id"]), notes_label=notes_label))
        out.write("</div></body></html>\n")
    return path
