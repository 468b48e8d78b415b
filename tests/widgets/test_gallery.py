"""The gallery's Python side: view, messages, reviews, persistence (no browser here)."""

from __future__ import annotations

import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pandas as pd
import pytest

import caprl_nb
from caprl_nb.errors import ColumnNotFoundError, ConfigError
from caprl_nb.widgets import Gallery

from tests.conftest import make_images
from tests.support.polling import Recorder, wait_until

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def frame(tmp_path: Path) -> pd.DataFrame:
    files = make_images(tmp_path / "img", 30)
    captions = [f"A photo number {i} of a {'Cat' if i % 3 == 0 else 'dog'}" for i in range(30)]
    errors: list[Any] = [None] * 30
    captions[5], errors[5] = None, "ImageDecodeError: broken [input: file 'x.png']"
    captions[7] = XSS
    return pd.DataFrame(
        {"image": files, "caption": captions, "error": errors, "latency_s": np.linspace(3, 0.1, 30)},
        index=[f"row{i}" for i in range(30)],
    )


@pytest.fixture
def gallery(frame: pd.DataFrame) -> tuple[Gallery, Recorder]:
    g = frame.caprl.gallery("image", caption="caption")
    rec = Recorder()
    g.send = rec  # type: ignore[method-assign]  # capture what would go to the front end
    yield g, rec
    g.close()


def _msg(g: Gallery, **content: Any) -> None:
    g._on_msg(g, content, [])


def test_initial_state(gallery: tuple[Gallery, Recorder]) -> None:
    g, _ = gallery
    assert g.total == 30 and g.view_count == 30
    assert g.counts == {"all": 30, "unreviewed": 30, "accepted": 0, "rejected": 0, "edited": 0, "failed": 1}
    assert g.sort_options == ["latency_s"]


def test_window_sends_rows_then_thumbnails(gallery: tuple[Gallery, Recorder]) -> None:
    g, rec = gallery
    _msg(g, type="window", version=g.view_version, start=0, end=10)
    rows = rec.of("rows")[0][0]
    assert rows["start"] == 0 and [r["id"] for r in rows["rows"]] == list(range(10))
    row5 = rows["rows"][5]
    assert row5["caption"] is None and "ImageDecodeError" in row5["error"]
    assert rows["rows"][7]["caption"] == XSS  # sent as data; the front end renders it as text
    assert rows["rows"][0]["meta"] == {"latency_s": "3"}
    thumbs = rec.wait_for("thumbs")
    wait_until(lambda: sum(len(m[0]["ids"]) for m in rec.of("thumbs")) >= 10, what="10 thumbnails")
    content, buffers = thumbs[0]
    assert len(content["ids"]) == len(buffers) and buffers[0][:2] in (b"\xff\xd8", b"\x89P")


def test_window_is_clamped(gallery: tuple[Gallery, Recorder]) -> None:
    g, rec = gallery
    _msg(g, type="window", version=1, start=25, end=500)
    assert [r["pos"] for r in rec.of("rows")[0][0]["rows"]] == [25, 26, 27, 28, 29]


def test_search_filter_sort(gallery: tuple[Gallery, Recorder]) -> None:
    g, rec = gallery
    version = g.view_version
    g.query = "CAT"  # case-insensitive substring
    assert g.view_count == 10 and g.view_version == version + 1
    g.query = "img00012"  # the source file name is searchable too
    assert g.view_count == 1
    g.query = ""
    g.status_filter = "failed"
    assert g.view_count == 1
    g.status_filter = "all"
    g.sort_by, g.sort_descending = "latency_s", False
    _msg(g, type="window", version=g.view_version, start=0, end=3)
    assert [r["id"] for r in rec.of("rows")[-1][0]["rows"]] == [29, 28, 27]
    with pytest.raises(ConfigError, match="status_filter"):
        g.status_filter = "bogus"


def test_review_edit_and_apply(gallery: tuple[Gallery, Recorder], frame: pd.DataFrame) -> None:
    g, rec = gallery
    _msg(g, type="review", id=0, status="accepted")
    _msg(g, type="review", id=1, status="rejected")
    _msg(g, type="edit", id=2, caption="A better caption")
    assert rec.of("row")[-1][0]["row"]["edited"] == "A better caption"
    assert g.counts["accepted"] == 1 and g.counts["rejected"] == 1 and g.counts["edited"] == 1
    reviews = g.reviews
    assert list(reviews.index) == ["row0", "row1", "row2"]
    assert reviews["status"].tolist() == ["accepted", "rejected", "edited"]
    assert reviews["edited_caption"].isna().tolist() == [True, True, False]
    out = frame.caprl.apply_reviews(g)
    assert "review_status" not in frame.columns  # the caller's frame is untouched
    assert out.loc["row2", "reviewed_caption"] == "A better caption"
    assert out.loc["row0", "reviewed_caption"] == frame.loc["row0", "caption"]
    assert out["review_status"].value_counts()["unreviewed"] == 27
    g.status_filter = "edited"
    assert g.view_count == 1
    g.query = "better"
    assert g.view_count == 1  # search sees the edit


def test_reviews_persist_across_galleries(frame: pd.DataFrame) -> None:
    first = Gallery(frame, "image")
    first.review("row3", "accepted")
    first.edit("row4", "fixed")
    first.close()
    again = Gallery(frame, "image")
    assert again.reviews["status"].to_dict() == {"row3": "accepted", "row4": "edited"}
    assert again.counts["accepted"] == 1
    changed = frame.copy()
    changed.loc["row3", "caption"] = "a new caption for the same image"
    fresh = Gallery(changed, "image")
    assert "row3" not in fresh.reviews.index  # a new caption starts unreviewed
    again.review("row3", "unreviewed")
    assert "row3" not in Gallery(frame, "image").reviews.index


def test_detail_sends_a_large_image(gallery: tuple[Gallery, Recorder]) -> None:
    g, rec = gallery
    _msg(g, type="detail", id=3)
    content, buffers = rec.wait_for("detail")[0]
    assert content["id"] == 3 and content["width"] == 96 and len(buffers) == 1


def test_detail_of_unreadable_image_reports_error(frame: pd.DataFrame, tmp_path: Path) -> None:
    frame = frame.copy()
    frame.loc["row0", "image"] = str(tmp_path / "gone.png")
    g = Gallery(frame, "image", store=False)
    rec = Recorder()
    g.send = rec  # type: ignore[method-assign]
    _msg(g, type="detail", id=0)
    assert "gone.png" in rec.wait_for("detail")[0][0]["error"]


def test_bad_messages_do_not_raise(gallery: tuple[Gallery, Recorder]) -> None:
    g, rec = gallery
    _msg(g, type="review", id=0, status="maybe")
    _msg(g, type="window", version=1)
    assert len(rec.of("error")) == 2


@pytest.mark.parametrize("bad", [-1, -30, 30, 10**9, True, 1.5, "3", None])
def test_row_ids_from_the_front_end_are_checked(gallery: tuple[Gallery, Recorder], bad: Any) -> None:
    g, rec = gallery
    _msg(g, type="review", id=bad, status="accepted")
    _msg(g, type="edit", id=bad, caption="hijacked")
    _msg(g, type="detail", id=bad)
    errors = rec.of("error")
    assert len(errors) == 3 and all("row id" in m[0]["message"] for m in errors)
    assert rec.of("row") == [] and rec.of("detail") == []
    assert g.counts["accepted"] == 0 and g.counts["edited"] == 0
    assert g.reviews.empty  # in particular the last row (id -1 in Python indexing) is untouched


def test_missing_columns(frame: pd.DataFrame) -> None:
    with pytest.raises(ColumnNotFoundError, match="'image', 'caption'"):
        frame.caprl.gallery("picture")
    with pytest.raises(ColumnNotFoundError):
        frame.caprl.gallery("image", caption="text")


def test_to_html_is_static_escaped_and_complete(gallery: tuple[Gallery, Recorder], tmp_path: Path) -> None:
    g, _ = gallery
    path = g.to_html(tmp_path / "out" / "gallery.html")
    text = path.read_text()
    assert "<script" not in text.lower()
    assert "default-src 'none'" in text
    assert XSS not in text and "&lt;img src=x onerror=alert(1)&gt;" in text
    assert text.count('<div class="card"') == 30
    assert text.count("<img ") == 30  # every image embedded, the failed row's too (its file is fine)
    assert "ImageDecodeError" in text


def test_mimebundle_has_static_fallback(gallery: tuple[Gallery, Recorder]) -> None:
    g, _ = gallery
    bundle = g._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in data
    assert "text/html" in data and "18 more rows" in data["text/html"]
    assert XSS not in data["text/html"]


def test_top_level_name() -> None:
    assert caprl_nb.Gallery is Gallery


@pytest.fixture
def refused_url() -> Iterator[str]:
    """A presigned-looking URL with user info to a loopback port nobody listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused at once
        port = sock.getsockname()[1]
        yield f"http://user:hunter2@127.0.0.1:{port}/cats/a.png?X-Amz-Signature=SECRET#frag"


def test_urls_are_shown_without_their_token_or_password(
    frame: pd.DataFrame, refused_url: str, tmp_path: Path
) -> None:
    frame = frame.copy()
    frame.loc["row0", "image"] = refused_url
    g = Gallery(frame, "image", store=False)
    rec = Recorder()
    g.send = rec  # type: ignore[method-assign]
    _msg(g, type="window", version=g.view_version, start=0, end=5)
    _msg(g, type="detail", id=0)
    row0 = rec.of("rows")[0][0]["rows"][0]
    assert row0["source"] == f"http://127.0.0.1:{urlsplit(refused_url).port}/cats/a.png"
    detail = rec.wait_for("detail")[0][0]
    shown = [json.dumps(m[0]) for m in rec.messages]
    shown += [g.to_html(tmp_path / "gallery.html").read_text(), g._preview_html()]
    for text in shown:
        assert "SECRET" not in text and "hunter2" not in text and "frag" not in text, text[:500]
    assert "error" in detail  # the thumbnail failed (nobody listens), and says so without the token
    g.query = "signature"  # the hidden query string is not searchable either
    assert g.view_count == 0
    g.close()


# -- construction independent of the row count ----------------------------------------------
MILLION = 1_000_000


@pytest.fixture
def per_row_calls(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """Counts the gallery's calls of its per-row functions (row -> text, key, source name)."""
    import caprl_nb.widgets.gallery as gallery_module

    calls = {"is_missing": 0, "item_key": 0, "source_name": 0}
    for name in calls:
        real = getattr(gallery_module, name)

        def counted(*args: Any, _real: Any = real, _name: str = name, **kwargs: Any) -> Any:
            calls[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(gallery_module, name, counted)
    return calls


def million_rows(tmp_path: Path) -> pd.DataFrame:
    ids = pd.Series(np.arange(MILLION))
    return pd.DataFrame({
        "image": str(tmp_path / "img") + (ids % 500).astype(str) + ".png",
        "caption": "Caption of row " + ids.astype(str),
        "score": np.arange(MILLION) / MILLION,
    })


def test_construction_over_a_million_rows_reads_no_row(
    tmp_path: Path, per_row_calls: dict[str, int]
) -> None:
    df = million_rows(tmp_path)
    g = Gallery(df, "image")
    rec = Recorder()
    g.send = rec  # type: ignore[method-assign]
    assert per_row_calls == {"is_missing": 0, "item_key": 0, "source_name": 0}
    state = {k: v for k, v in g.get_state().items() if not k.startswith("_")}  # _esm: the bundle
    assert len(json.dumps(state)) < 1024  # the state sent at display, the same for any row count
    assert g.total == MILLION and g.view_count == MILLION and g.counts["all"] == MILLION

    _msg(g, type="window", version=g.view_version, start=MILLION - 150, end=MILLION + 50)
    rows = rec.of("rows")[0][0]["rows"]
    assert [r["pos"] for r in rows] == list(range(MILLION - 150, MILLION))
    assert rows[-1]["id"] == MILLION - 1 and rows[-1]["caption"] == f"Caption of row {MILLION - 1}"
    assert rows[-1]["source"] == f"img{(MILLION - 1) % 500}.png" and rows[-1]["meta"] == {"score": "1"}
    assert max(per_row_calls.values()) <= 2 * 150  # the window's rows, not the gallery's

    g.query = "row 99999"  # vectorised over the columns: rows 99,999 and 999,990..999,999
    assert g.view_count == 11
    g.sort_by, g.sort_descending = "score", True
    _msg(g, type="window", version=g.view_version, start=0, end=3)
    assert [r["id"] for r in rec.of("rows")[-1][0]["rows"]] == [999_999, 999_998, 999_997]
    assert max(per_row_calls.values()) <= 2 * 150 + 10
    g.close()


def test_stored_reviews_of_a_large_gallery_are_read_lazily(
    frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch, per_row_calls: dict[str, int]
) -> None:
    import caprl_nb.widgets.gallery as gallery_module

    first = Gallery(frame, "image")
    first.review("row29", "accepted")
    first.edit("row3", "a reviewer's caption")
    first.close()
    monkeypatch.setattr(gallery_module, "SYNC_REVIEW_ROWS", 10)  # 30 rows count as large here
    per_row_calls["item_key"] = 0
    g = Gallery(frame, "image")
    rec = Recorder()
    g.send = rec  # type: ignore[method-assign]
    assert per_row_calls["item_key"] == 0  # no stored decision looked up yet
    assert "accepted" not in g.counts and g.counts["all"] == 30  # pending until every row is read
    _msg(g, type="window", version=g.view_version, start=25, end=30)
    assert rec.of("rows")[0][0]["rows"][-1]["status"] == "accepted"  # the shown rows are read at once
    wait_until(lambda: g.counts.get("accepted") == 1, what="the background read of every row")
    assert g.counts["edited"] == 1
    assert g.reviews["status"].to_dict() == {"row3": "edited", "row29": "accepted"}
    g.query = "reviewer's"
    assert g.view_count == 1
    g.close()


def test_stored_reviews_are_complete_when_python_asks_first(
    frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    import caprl_nb.widgets.gallery as gallery_module

    first = Gallery(frame, "image")
    first.review("row29", "rejected")
    first.close()
    monkeypatch.setattr(gallery_module, "SYNC_REVIEW_ROWS", 10)
    g = Gallery(frame, "image")
    assert g.reviews["status"].to_dict() == {"row29": "rejected"}  # reads every row before answering
    assert g.apply()["review_status"].value_counts()["rejected"] == 1
    g.status_filter = "rejected"
    assert g.view_count == 1 and g.counts["rejected"] == 1
    g.close()


def test_source_names_match_source_name_row_by_row() -> None:
    from caprl_nb.widgets.gallery import _source_names
    from caprl_nb.widgets.reviews import source_name

    values = [
        "a/b.png", "x/", ".", "a/.", "", "..", "a/..", "a//b.jpg", "/abs/c.png", "plain.png",
        "data:image/png;base64,AAAA", "  DATA:image/png;base64,AAAA", "http://u:pw@h/x.png?sig=1#f",
        " HTTPS://h/y.png", "s3://bucket/key.png", "weird://x", "dir/with space/é.png", "a\nb/c.png",
    ]
    columns = (pd.Series(values, dtype="str"), pd.Series(values, dtype=object),
               pd.Series([*values, None, b"\x89PNG"], dtype=object))
    for column in columns:
        assert _source_names(column).tolist() == [source_name(v) for v in column.tolist()]


# -- scores and failed questions (df.caprl.verify's columns) ----------------------------------
SCORES = [0.6, None, 0.2, 1.0, 0.4, 0.8, 0.0, None]
FAILED = [
    ["What colour is the car? expected: red; from the caption: cannot answer"],
    [],
    ["How many dogs? expected: two; from the caption: one", f"Is there text? expected: {XSS}"],
    [],
    None,  # a row verify could not score
    "What is on the sign? expected: OPEN; from the caption: cannot answer",  # one string
    np.array(["Where is the sun? expected: left", "What season? expected: winter"], dtype=object),  # parquet
    [],
]


@pytest.fixture
def verified(tmp_path: Path) -> pd.DataFrame:
    """A captioned frame joined with hand-made verify columns (as df.caprl.verify returns them)."""
    n = len(SCORES)
    return pd.DataFrame(
        {
            "image": make_images(tmp_path / "img", n),
            "caption": [f"A caption of image {i}" for i in range(n)],
            "caption_score": pd.array(SCORES, dtype="Float64"),
            "questions_kept": pd.array([5, 0, 5, 5, None, 5, 5, 0], dtype="Int64"),
            "failed_questions": FAILED,
            "latency_s": np.arange(n, dtype=float),
        },
        index=[f"r{i}" for i in range(n)],
    )


def _scored(data: pd.DataFrame, **options: Any) -> tuple[Gallery, Recorder]:
    g = data.caprl.gallery("image", caption="caption", store=False, **options)
    rec = Recorder()
    g.send = rec  # type: ignore[method-assign]
    return g, rec


def _view_ids(g: Gallery, rec: Recorder) -> list[int]:
    _msg(g, type="window", version=g.view_version, start=0, end=200)
    return [r["id"] for r in rec.last("rows")["rows"]]


def test_verify_columns_are_picked_up_and_sent_with_each_row(verified: pd.DataFrame) -> None:
    g, rec = _scored(verified)
    assert g.score_column == "caption_score" and g.notes_label == "failed questions"
    assert g.sort_options[0] == "caption_score"  # the first sort offered: the review order
    assert g.score_below is None and g.view_count == 8
    _view_ids(g, rec)
    rows = {r["id"]: r for r in rec.last("rows")["rows"]}
    assert rows[0]["score"] == {"value": 0.6, "text": "0.60", "band": "mid"}
    assert rows[2]["score"]["band"] == "low" and rows[3]["score"]["band"] == "high"
    assert rows[1]["score"] == {"value": None, "text": "no score", "band": "none"}
    assert rows[2]["notes"][1] == f"Is there text? expected: {XSS}"  # data; the front end shows text
    assert rows[4]["notes"] == [] and rows[5]["notes"] == [FAILED[5]] and len(rows[6]["notes"]) == 2
    assert "caption_score" not in rows[0]["meta"] and rows[0]["meta"]["latency_s"] == "0"
    g.close()


def test_why_a_row_has_no_score_is_its_note_not_a_failed_caption(verified: pd.DataFrame) -> None:
    why = ["NoQuestionKeptError: none of the row's 5 question(s) was kept" if pd.isna(s) else None for s in SCORES]
    data = verified.assign(verify_error=pd.array(why, dtype="string"))
    unscored = [i for i, s in enumerate(SCORES) if pd.isna(s)]
    assert unscored
    g, rec = _scored(data)
    assert g.counts["failed"] == 0  # verify's reason is not a captioning failure
    _view_ids(g, rec)
    rows = {r["id"]: r for r in rec.last("rows")["rows"]}
    for i in unscored:
        assert rows[i]["error"] is None and rows[i]["score"]["text"] == "no score"
        # the reason, unless the row has failed questions of its own to show
        assert rows[i]["notes"] == (list(FAILED[i]) if len(FAILED[i]) else [f"not scored: {why[i]}"])
    assert all(not n.startswith("not scored") for i, r in rows.items() if i not in unscored for n in r["notes"])
    g.close()


def test_sorting_by_score_puts_the_lowest_first_and_unscored_rows_last(verified: pd.DataFrame) -> None:
    g, rec = _scored(verified)
    g.sort_by = "caption_score"
    assert _view_ids(g, rec) == [6, 2, 4, 0, 5, 3, 1, 7]
    g.sort_descending = True
    assert _view_ids(g, rec) == [3, 5, 0, 4, 2, 6, 1, 7]  # unscored rows last either way
    g.close()


def test_score_below_combines_with_status_filters_and_search(verified: pd.DataFrame) -> None:
    g, rec = _scored(verified)
    version = g.view_version
    g.score_below = 0.5
    assert g.view_version == version + 1 and _view_ids(g, rec) == [2, 4, 6]  # unscored rows are not below
    g.sort_by = "caption_score"
    assert _view_ids(g, rec) == [6, 2, 4]
    g.review("r4", "rejected")
    g.status_filter = "unreviewed"
    assert _view_ids(g, rec) == [6, 2]
    g.query = "how many dogs"  # a failed question's text
    assert _view_ids(g, rec) == [2]
    g.status_filter, g.query = "all", ""
    g.score_below = 0.0  # strictly below
    assert g.view_count == 0
    g.score_below = None
    assert g.view_count == 8
    with pytest.raises(ConfigError, match="score_below is a number"):
        g.score_below = float("nan")
    g.close()


def test_search_matches_failed_questions_also_on_edited_rows(verified: pd.DataFrame) -> None:
    g, rec = _scored(verified)
    g.query = "WINTER"
    assert _view_ids(g, rec) == [6]
    g.edit("r6", "A snowy street")
    g.query = "winter"
    assert _view_ids(g, rec) == [6]  # the edit replaces the caption, not the failed questions
    g.query = "what is on the sign"  # a notes cell that is one string
    assert _view_ids(g, rec) == [5]
    g.close()


def test_score_and_notes_columns_can_be_named_or_turned_off(verified: pd.DataFrame) -> None:
    other = verified.rename(columns={"caption_score": "qa", "failed_questions": "issues"})
    g, rec = _scored(other, score="qa", notes="issues")
    assert g.score_column == "qa" and g.notes_label == "issues" and g.sort_options[0] == "qa"
    g.score_below = 0.3
    assert _view_ids(g, rec) == [2, 6]
    g.close()
    off, rec = _scored(verified, score=False, notes=False)
    assert off.score_column == "" and off.notes_label == ""
    _view_ids(off, rec)
    row = rec.last("rows")["rows"][0]
    assert row["score"] is None and row["notes"] == []
    assert "caption_score" in off.sort_options  # still a numeric column to sort by
    with pytest.raises(ConfigError, match="needs a score column"):
        off.score_below = 0.5
    off.close()
    plain, _ = _scored(verified.drop(columns=["caption_score", "failed_questions"]))
    assert plain.score_column == "" and plain.notes_label == ""
    plain.close()
    with pytest.raises(ColumnNotFoundError, match="'caption_score'"):
        _scored(verified, score="qa")
    with pytest.raises(ConfigError, match="not numeric"):
        _scored(verified, score="caption")


def test_a_score_outside_zero_to_one_is_banded_by_its_terciles(verified: pd.DataFrame) -> None:
    g, rec = _scored(verified, score="latency_s")  # 0 .. 7
    assert g.score_span == [0.0, 7.0] and g.sort_options[0] == "latency_s"
    _view_ids(g, rec)
    rows = rec.last("rows")["rows"]
    assert [r["score"]["band"] for r in rows] == ["low"] * 3 + ["mid"] * 2 + ["high"] * 3
    assert rows[7]["score"]["text"] == "7"
    g.close()


def test_to_html_and_preview_show_scores_and_failed_questions_escaped(
    verified: pd.DataFrame, tmp_path: Path
) -> None:
    g, _ = _scored(verified)
    text = g.to_html(tmp_path / "scores.html").read_text()
    assert "<script" not in text.lower() and XSS not in text
    assert "score 0.60" in text and "score 0.20" in text and text.count("no score") == 2
    assert "2 failed questions" in text and "1 failed question<" in text
    assert "Is there text? expected: &lt;img src=x onerror=alert(1)&gt;" in text
    assert "What season? expected: winter" in text
    g.sort_by = "caption_score"
    g.score_below = 0.5
    preview = g._preview_html()  # the notebook's static preview follows the view
    assert preview.index("score 0.00") < preview.index("score 0.20") < preview.index("score 0.40")
    assert "score 0.60" not in preview and "How many dogs? expected: two" in preview and XSS not in preview
    g.close()
