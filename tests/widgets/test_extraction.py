"""The extraction review's Python side: messages, typed edits, apply(), persistence (no browser)."""

from __future__ import annotations

import json
import socket
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import caprl_nb  # noqa: F401  (registers df.caprl)
from caprl_nb.errors import ColumnNotFoundError, ConfigError
from caprl_nb.widgets import ExtractionReview
from caprl_nb.widgets.extraction import canonical_json

from tests.conftest import make_images
from tests.support.polling import Recorder
from tests.support.vllm_sim import VLLMSimulator

XSS = "<img src=x onerror=alert(1)>"


@pytest.fixture
def df(tmp_path: Path) -> pd.DataFrame:
    return pd.DataFrame({"image": make_images(tmp_path / "img", 4)}, index=["a", "b", "c", "d"])


@pytest.fixture
def fields_result(df: pd.DataFrame) -> pd.DataFrame:
    """What ``df.caprl.extract("image", schema, details=True)`` returns, one failed row."""
    return pd.DataFrame(
        {
            "vendor": pd.array(["ACME", XSS, None, "Globex"], dtype="string"),
            "total": pd.array([1200, 86, None, 15], dtype="Int64"),
            "amount": pd.array([12.5, 0.86, None, 1.0], dtype="Float64"),
            "paid": pd.array([True, False, None, True], dtype="boolean"),
            "items": pd.array([[1, 2], [], None, [{"sku": "x"}]], dtype=object),
            "error": pd.array([None, None, "ValidationError: field 'total'", None], dtype="string"),
            "raw": ['{"vendor": "ACME"}', "{}", "oops", "{}"],
            "cached": [False, False, False, True],
            "latency_s": [0.5, 0.6, 0.7, 0.0],
        },
        index=df.index,
    )


def _table(years: list[Any], sales: list[Any], labels: list[Any] | None = None) -> pd.DataFrame:
    table = pd.DataFrame({
        "year": pd.array(years, dtype="Int64"),
        "sales": pd.array(sales, dtype="Float64"),
        "label": pd.array(labels or [None] * len(years), dtype="string"),
    })
    table.attrs = {"title": "Sales", "x_label": "year", "y_label": "sales", "units": "USD"}
    return table


@pytest.fixture
def tables(df: pd.DataFrame) -> pd.Series:
    """What ``df.caprl.chart_table("image")`` returns: a Series of DataFrames, None where failed."""
    return pd.Series(
        [_table([2020, 2021], [1.5, 2.0], ["x", XSS]), _table([2020], [3.0]), None, _table([1], [1.0])],
        index=df.index,
        name="table",
    )


def _review(widget: ExtractionReview) -> tuple[ExtractionReview, Recorder]:
    rec = Recorder()
    widget.send = rec  # type: ignore[method-assign]  # capture what would go to the front end
    return widget, rec


@pytest.fixture
def fields(df: pd.DataFrame, fields_result: pd.DataFrame) -> Iterator[tuple[ExtractionReview, Recorder]]:
    w, rec = _review(df.caprl.review_extraction("image", fields_result))
    yield w, rec
    w.close()


@pytest.fixture
def table(df: pd.DataFrame, tables: pd.Series) -> Iterator[tuple[ExtractionReview, Recorder]]:
    w, rec = _review(df.caprl.review_extraction("image", tables))
    yield w, rec
    w.close()


def _msg(w: ExtractionReview, **content: Any) -> None:
    w._on_msg(w, content, [])


# -- fields --------------------------------------------------------------------------------
def test_fields_mode_traits_leave_out_error_raw_and_provenance(fields: tuple[ExtractionReview, Recorder]) -> None:
    w, _ = fields
    assert w.mode == "fields" and w.total == 4 and len(w) == 4
    assert w.fields == [
        {"name": "vendor", "kind": "string"}, {"name": "total", "kind": "integer"},
        {"name": "amount", "kind": "number"}, {"name": "paid", "kind": "boolean"},
        {"name": "items", "kind": "json"},
    ]
    assert w.labels == ["a", "b", "c", "d"] and w.failed_ids == [2]
    assert w.statuses == "uuuu"
    assert w.counts == {"all": 4, "unreviewed": 4, "accepted": 0, "rejected": 0, "edited": 0, "failed": 1}


def test_row_request_sends_values_then_the_image_as_bytes(fields: tuple[ExtractionReview, Recorder]) -> None:
    w, rec = fields
    _msg(w, type="row", id=1)
    row = rec.last("row")["row"]
    assert row["label"] == "b" and row["source"] == "img00001.png" and row["status"] == "unreviewed"
    assert row["values"] == {"vendor": XSS, "total": 86, "amount": 0.86, "paid": False, "items": []}
    assert row["edited"] is None and row["error"] is None  # the payload is data; the DOM shows text
    (image, buffers), = rec.wait_for("image")
    assert image["id"] == 1 and image["mime"] in ("image/png", "image/jpeg")
    assert isinstance(buffers[0], bytes) and len(buffers[0]) > 100
    _msg(w, type="row", id=2)
    assert rec.last("row")["row"]["error"] == "ValidationError: field 'total'"


def test_moving_current_sends_that_row(fields: tuple[ExtractionReview, Recorder]) -> None:
    w, rec = fields
    w.current = 3
    assert rec.last("row")["row"]["id"] == 3
    assert rec.wait_for("image")[-1][0]["id"] == 3
    w.current = 99  # clamped to the last row
    assert w.current == 3


def test_edit_parses_the_changed_fields_by_kind(fields: tuple[ExtractionReview, Recorder]) -> None:
    w, rec = fields
    _msg(w, type="edit", id=0, values={"total": "1,250", "paid": "no", "items": "[3, 4]"})
    row = rec.last("row")["row"]
    assert row["status"] == "edited"
    assert row["edited"] == {"vendor": "ACME", "total": 1250, "amount": 12.5, "paid": False, "items": [3, 4]}
    assert row["values"]["total"] == 1200  # the model's answer is kept beside the edit
    assert w.statuses == "euuu" and w.counts["edited"] == 1
    # a later edit builds on the earlier one
    _msg(w, type="edit", id=0, values={"vendor": "ACME Corp."})
    assert rec.last("row")["row"]["edited"]["total"] == 1250
    assert w.reviews.loc["a", "edited"]["vendor"] == "ACME Corp."


@pytest.mark.parametrize(
    ("values", "says"),
    [
        ({"total": "twelve"}, "Field 'total' needs a whole number"),
        ({"total": "1.5"}, "needs a whole number"),
        ({"amount": "n/a"}, "Field 'amount' needs a number"),
        ({"paid": "maybe"}, "needs true or false"),
        ({"items": "[1,"}, "needs JSON"),
        ({"nope": "1"}, "No field(s) ['nope']"),
    ],
)
def test_a_refused_edit_says_why_and_changes_nothing(
    fields: tuple[ExtractionReview, Recorder], values: dict[str, str], says: str
) -> None:
    w, rec = fields
    _msg(w, type="edit", id=0, values=values)
    error = rec.last("error")
    assert says in error["message"] and error["id"] == 0
    assert rec.of("row") == [] and w.statuses == "uuuu"


def test_malformed_messages_answer_with_an_error(fields: tuple[ExtractionReview, Recorder]) -> None:
    w, rec = fields
    _msg(w, type="review", id=9, status="accepted")
    _msg(w, type="review", id=0, status="maybe")
    _msg(w, type="edit", id=0, values="total=3")
    _msg(w, type="dance")
    assert len(rec.of("error")) == 4 and w.statuses == "uuuu"


@pytest.mark.parametrize("bad", [-1, -4, 4, True, 0.5, "1", None])
def test_row_ids_from_the_front_end_are_checked(fields: tuple[ExtractionReview, Recorder], bad: Any) -> None:
    w, rec = fields
    _msg(w, type="row", id=bad)
    _msg(w, type="review", id=bad, status="accepted")
    _msg(w, type="edit", id=bad, values={"total": "3"})
    errors = rec.of("error")
    assert len(errors) == 3 and all("row id" in m[0]["message"] for m in errors)
    assert rec.of("row") == [] and rec.of("image") == [] and w.statuses == "uuuu"


def test_review_statuses_and_their_effect_on_an_edit(fields: tuple[ExtractionReview, Recorder]) -> None:
    w, rec = fields
    _msg(w, type="review", id=1, status="rejected")
    _msg(w, type="review", id=3, status="accepted")
    assert w.statuses == "urua"
    assert rec.last("row")["row"]["status"] == "accepted"
    _msg(w, type="edit", id=0, values={"total": "5"})
    _msg(w, type="review", id=0, status="accepted")  # accepting keeps the edit
    assert w.reviews.loc["a", "status"] == "edited"
    _msg(w, type="review", id=0, status="unreviewed")  # reset drops it
    assert "a" not in w.reviews.index and rec.last("row")["row"]["edited"] is None
    # an "edit" back to the model's own values is an accept, not an edit
    _msg(w, type="edit", id=1, values={"total": "86"})
    assert w.reviews.loc["b", "status"] == "accepted" and w.reviews.loc["b", "edited"] is None


def test_a_failed_row_can_be_filled_in_by_hand(fields: tuple[ExtractionReview, Recorder]) -> None:
    w, _ = fields
    _msg(w, type="edit", id=2, values={"vendor": "Initech", "total": "40"})
    out = w.apply()
    assert out.loc["c", "vendor"] == "Initech" and out.loc["c", "total"] == 40
    assert pd.isna(out.loc["c", "amount"])


def test_apply_types_edits_like_the_result(
    fields: tuple[ExtractionReview, Recorder], fields_result: pd.DataFrame
) -> None:
    w, _ = fields
    before = fields_result.copy()
    w.edit("a", {"total": "1,250", "amount": "13", "paid": False, "vendor": "ACME Corp."})
    w.edit("d", {"items": [{"sku": "y"}]})
    w.review("b", "rejected")
    out = w.apply(fields_result)
    pd.testing.assert_frame_equal(fields_result, before)  # the caller's frame is untouched
    assert list(out.columns) == [*fields_result.columns, "review_status", "reviewed_at"]
    for name in ("vendor", "total", "amount", "paid", "items", "error", "raw"):
        assert out[name].dtype == fields_result[name].dtype, name
    assert out.loc["a", "total"] == 1250 and out.loc["a", "amount"] == 13.0
    assert out.loc["a", "paid"] is False or out.loc["a", "paid"] == False  # noqa: E712 (pandas bool)
    assert out.loc["a", "vendor"] == "ACME Corp." and out.loc["d", "items"] == [{"sku": "y"}]
    assert out.loc["b", "vendor"] == XSS  # rejected rows keep their values: filter on review_status
    assert out["review_status"].tolist() == ["edited", "rejected", "unreviewed", "edited"]
    assert str(out["review_status"].dtype) == "string"
    # rows matched by label: a reordered subset gets the same answers
    part = w.apply(fields_result.loc[["d", "a"]])
    assert part["review_status"].tolist() == ["edited", "edited"] and part.loc["a", "total"] == 1250


def test_reviews_frame_lists_reviewed_rows_with_their_edits(fields: tuple[ExtractionReview, Recorder]) -> None:
    w, _ = fields
    assert w.reviews.empty
    w.edit("a", {"total": 7})
    w.review("c", "rejected")
    reviews = w.reviews
    assert list(reviews.index) == ["a", "c"]
    assert reviews["status"].tolist() == ["edited", "rejected"]
    assert reviews.loc["a", "edited"] == {"vendor": "ACME", "total": 7, "amount": 12.5, "paid": True,
                                          "items": [1, 2]}
    assert reviews.loc["c", "edited"] is None
    with pytest.raises(KeyError, match="No row 'zz'"):
        w.review("zz", "accepted")


# -- tables --------------------------------------------------------------------------------
def test_table_mode_row_carries_the_table_and_its_kinds(table: tuple[ExtractionReview, Recorder]) -> None:
    w, rec = table
    assert w.mode == "table" and w.fields == [] and w.failed_ids == [2]
    _msg(w, type="row", id=0)
    row = rec.last("row")["row"]
    assert row["values"] == {"columns": ["year", "sales", "label"], "rows": [[2020, 1.5, "x"], [2021, 2.0, XSS]]}
    assert row["kinds"] == ["integer", "number", "string"]
    _msg(w, type="row", id=2)
    failed = rec.last("row")["row"]
    assert failed["values"] is None and failed["error"] == "no table"


def test_table_edit_from_text_cells_is_typed(table: tuple[ExtractionReview, Recorder], tables: pd.Series) -> None:
    w, rec = table
    edit = {"columns": ["year", "sales", "label"],
            "rows": [["2020", "1,5", "x"], ["2021", "2.25", "y"], ["2022", "3", ""], ["", " ", ""]]}
    _msg(w, type="edit", id=0, table=edit)
    row = rec.last("row")["row"]
    assert row["status"] == "edited"
    assert row["edited"]["rows"] == [[2020, 1.5, "x"], [2021, 2.25, "y"], [2022, 3.0, None]]  # blank row dropped
    out = w.apply(tables)
    assert list(out.columns) == ["table", "review_status", "reviewed_at"]
    assert out["review_status"].tolist() == ["edited", "unreviewed", "unreviewed", "unreviewed"]
    edited = out.loc["a", "table"]
    assert isinstance(edited, pd.DataFrame)
    assert edited.dtypes.astype(str).tolist() == ["Int64", "Float64", "string"]
    assert edited["sales"].tolist() == [1.5, 2.25, 3.0]
    assert edited.attrs["units"] == "USD"
    assert out.loc["b", "table"] is tables["b"]  # unedited tables are the caller's own
    assert out.loc["c", "table"] is None


def test_table_edit_refuses_text_in_a_number_column(table: tuple[ExtractionReview, Recorder]) -> None:
    w, rec = table
    _msg(w, type="edit", id=1, table={"columns": ["year", "sales", "label"], "rows": [["2020", "lots", ""]]})
    assert "Column 'sales', row 1 needs a number" in rec.last("error")["message"]
    _msg(w, type="edit", id=1, table={"columns": ["year", "year", "label"], "rows": [["2020", "1", ""]]})
    assert "must differ" in rec.last("error")["message"]
    _msg(w, type="edit", id=1, table={"columns": ["year", "sales"], "rows": [["2020", "1", ""]]})
    assert "needs 2 cells" in rec.last("error")["message"]
    assert w.statuses == "uuuu"


def test_table_edit_from_python_and_renamed_columns(table: tuple[ExtractionReview, Recorder]) -> None:
    w, _ = table
    fixed = _table([2020], [3.5], ["fixed"]).rename(columns={"sales": "revenue"})
    w.edit("b", fixed)
    got = w.reviews.loc["b", "edited"]
    assert list(got.columns) == ["year", "revenue", "label"] and got["revenue"].tolist() == [3.5]
    assert str(got["revenue"].dtype) == "Float64"
    # the same table as the model's is an accept
    w.edit("d", _table([1], [1.0]))
    assert w.reviews.loc["d", "status"] == "accepted"


def test_chart_table_details_frame_reviews_its_table_column(df: pd.DataFrame, tables: pd.Series) -> None:
    details = pd.DataFrame({"table": tables, "title": ["Sales"] * 4, "error": [None, None, "boom", None]},
                           index=df.index)
    w, _ = _review(df.caprl.review_extraction("image", details, store=False))
    assert w.mode == "table" and w.failed_ids == [2]
    w.edit("a", {"columns": ["year", "sales", "label"], "rows": [[2020, 9, None]]})
    out = w.apply(details)
    assert list(out.columns) == ["table", "title", "error", "review_status", "reviewed_at"]
    assert out.loc["a", "table"]["sales"].tolist() == [9.0]
    w.close()


# -- persistence ---------------------------------------------------------------------------
def test_decisions_and_edits_survive_a_new_widget(
    df: pd.DataFrame, fields_result: pd.DataFrame, tables: pd.Series
) -> None:
    first = df.caprl.review_extraction("image", fields_result)
    first.edit("a", {"total": "1,250"})
    first.review("b", "rejected")
    first.close()
    second, rec = _review(df.caprl.review_extraction("image", fields_result))
    assert second.statuses == "eruu"
    assert second.apply(fields_result).loc["a", "total"] == 1250
    _msg(second, type="row", id=0)
    assert rec.last("row")["row"]["edited"]["total"] == 1250
    second.close()

    # new extracted values for the same image start unreviewed
    changed = fields_result.copy()
    changed.loc["a", "total"] = 999
    third = df.caprl.review_extraction("image", changed)
    assert third.statuses == "uruu"
    third.close()

    # tables persist as their canonical JSON too, and come back typed
    t1 = df.caprl.review_extraction("image", tables)
    t1.edit("a", {"columns": ["year", "sales", "label"], "rows": [["2020", "7", "z"]]})
    t1.close()
    t2 = df.caprl.review_extraction("image", tables)
    restored = t2.apply(tables).loc["a", "table"]
    assert restored["sales"].tolist() == [7.0] and str(restored["year"].dtype) == "Int64"
    t2.close()


def test_store_false_keeps_reviews_in_memory_only(df: pd.DataFrame, fields_result: pd.DataFrame) -> None:
    w = df.caprl.review_extraction("image", fields_result, store=False)
    w.review("a", "accepted")
    w.close()
    again = df.caprl.review_extraction("image", fields_result)
    assert again.statuses == "uuuu"
    again.close()


def test_the_stored_edit_is_canonical_json(df: pd.DataFrame, fields_result: pd.DataFrame) -> None:
    w = df.caprl.review_extraction("image", fields_result)
    w.edit("a", {"total": 3})
    stored = w._reviews.edited(0)
    assert stored == json.dumps(json.loads(stored), sort_keys=True, ensure_ascii=False)
    assert canonical_json({"b": pd.NA, "a": 1.0}) == '{"a": 1.0, "b": null}'
    w.close()


# -- building one --------------------------------------------------------------------------
def test_review_extraction_aligns_on_labels_and_says_what_is_wrong(
    df: pd.DataFrame, fields_result: pd.DataFrame
) -> None:
    w = df.caprl.review_extraction("image", fields_result.loc[["c", "a"]], store=False)
    assert w.labels == ["c", "a"] and w._sources[0] == "img00002.png"
    w.close()
    with pytest.raises(ColumnNotFoundError, match="'picture'"):
        df.caprl.review_extraction("picture", fields_result)
    stray = fields_result.rename(index={"a": "zz"})
    with pytest.raises(ConfigError, match=r"rows \['zz'\]"):
        df.caprl.review_extraction("image", stray)
    with pytest.raises(ConfigError, match="extract or chart_table"):
        df.caprl.review_extraction("image", [1, 2])
    picked = df.caprl.review_extraction("image", fields_result, fields=["total"], store=False)
    assert [f["name"] for f in picked.fields] == ["total"]
    picked.close()


def test_constructor_needs_fields_or_a_table_column(df: pd.DataFrame, fields_result: pd.DataFrame) -> None:
    frame = df.join(fields_result)
    with pytest.raises(ConfigError, match="fields=.*or table_col="):
        ExtractionReview(frame, "image")
    with pytest.raises(ConfigError, match="not both"):
        ExtractionReview(frame, "image", ["total"], table_col="items")
    with pytest.raises(ColumnNotFoundError):
        ExtractionReview(frame, "image", ["totl"])
    w = ExtractionReview(frame, "image", ["vendor", "total"], store=False)
    assert w.failed_ids == [2] and w.title == "Review 4 extractions"
    w.close()


def test_pdf_pages_are_reviewed_page_by_page(tmp_path: Path) -> None:
    from PIL import Image

    pages = [Image.new("RGB", (200, 280), colour) for colour in ("red", "green")]
    pdf = tmp_path / "invoice.pdf"
    pages[0].save(pdf, save_all=True, append_images=pages[1:])
    df = pd.DataFrame({"image": [str(pdf), make_images(tmp_path / "img", 1)[0]]}, index=["doc", "pic"])
    result = pd.DataFrame(  # what extract returns for it: one row per page, the label repeated
        {"page": pd.array([1, 2, None], dtype="Int64"), "total": pd.array([1, 2, 3], dtype="Int64"),
         "error": pd.array([None] * 3, dtype="string")},
        index=["doc", "doc", "pic"],
    )
    w, rec = _review(df.caprl.review_extraction("image", result))
    assert [f["name"] for f in w.fields] == ["total"]
    assert w._sources == ["invoice.pdf p. 1", "invoice.pdf p. 2", "img00000.png"]
    _msg(w, type="row", id=1)
    assert rec.wait_for("image")[-1][0].get("error") is None  # the rendered page, not the PDF
    _msg(w, type="edit", id=1, values={"total": "9"})
    with pytest.raises(KeyError, match="not unique"):
        w.edit("doc", {"total": 5})
    out = w.apply(result)
    assert out["total"].tolist() == [1, 9, 3] and out["review_status"].tolist() == ["unreviewed", "edited", "unreviewed"]
    w.close()
    again = df.caprl.review_extraction("image", result)
    assert again.statuses == "ueu"
    again.close()


def test_urls_are_shown_without_their_token_or_password(fields_result: pd.DataFrame) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))  # bound, never listening: the image fetch is refused at once
        port = sock.getsockname()[1]
        url = f"https://user:hunter2@127.0.0.1:{port}/scans/bill.png?X-Amz-Signature=SECRET#frag"
        df = pd.DataFrame({"image": [url, url + "&b=1", url, url]}, index=fields_result.index)
        w, rec = _review(df.caprl.review_extraction("image", fields_result, store=False))
        _msg(w, type="row", id=0)
        image = rec.wait_for("image")[0][0]
        assert rec.last("row")["row"]["source"] == f"https://127.0.0.1:{port}/scans/bill.png"
        assert "error" in image  # nobody listens; the error names the URL without the token
        for content, _ in rec.messages:
            text = json.dumps(content)
            assert "SECRET" not in text and "hunter2" not in text and "frag" not in text, text
        w.close()


@pytest.fixture(scope="module")
def long_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A PDF of 205 small blank pages: longer than the default page cap (200)."""
    import pypdfium2 as pdfium

    path = tmp_path_factory.mktemp("pdf") / "book.pdf"
    document = pdfium.PdfDocument.new()
    for _ in range(205):
        document.new_page(72, 96).close()
    document.save(str(path))
    document.close()
    return path


@pytest.mark.parametrize("cap", [205, 3])
def test_review_shows_the_pages_the_extraction_read_under_its_cap(
    sim: VLLMSimulator, long_pdf: Path, tmp_path: Path, cap: int
) -> None:
    [png] = make_images(tmp_path / "img", 1)
    df = pd.DataFrame({"doc": [str(long_pdf), png]}, index=["book", "pic"])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = df.caprl.extract("doc", {"type": "object", "properties": {"total": {"type": "number"}}},
                                  base_url=sim.base_url, progress=False, max_pdf_pages=cap)
    capped = [w for w in caught if "max_pdf_pages" in str(w.message)]
    assert len(capped) == (cap < 205)  # the extraction says once that it left pages out
    assert result["page"].max() == min(cap, 205)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        w, rec = _review(df.caprl.review_extraction("doc", result, store=False))
    assert [str(c.message) for c in caught] == []  # the review warns about nothing again
    assert w.total == min(cap, 205) + 1
    assert w._sources[-2:] == [f"book.pdf p. {min(cap, 205)}", "img00000.png"]
    _msg(w, type="row", id=w.total - 2)
    image = rec.wait_for("image")[-1][0]
    assert image.get("error") is None and image["id"] == w.total - 2  # that page, rendered
    w.close()
    more = pd.concat([df, df.loc[["pic"]].rename(index={"pic": "extra"})])
    for other in (df.iloc[::-1], more):  # not the frame the extraction ran on
        with pytest.raises(ConfigError, match="pages do not match"):
            other.caprl.review_extraction("doc", result, store=False)
