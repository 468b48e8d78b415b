from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from caprl_nb.errors import ConfigError
from caprl_nb.store import ResultStore
from caprl_nb.widgets.reviews import ReviewModel, item_key


def test_item_key_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert item_key("a.png", "cap") == item_key(str(tmp_path / "a.png"), "cap")
    assert item_key("a.png", "cap") != item_key("a.png", "other")
    assert item_key("a.png", None) == item_key("a.png", float("nan")) == item_key("a.png", pd.NA)
    a = np.zeros((4, 4, 3), dtype=np.uint8)
    assert item_key(a, "x") == item_key(a.copy(), "x")
    assert item_key(a, "x") != item_key(a + 1, "x")
    assert item_key(b"abc", "x") != item_key(b"abd", "x")


def test_status_rules_without_store() -> None:
    model = ReviewModel(["k0", "k1", "k2"], None)
    model.set_edit(0, "better")
    model.set_status(0, "accepted")
    assert model.status(0) == "edited" and model.edited(0) == "better"  # accepting keeps an edit
    model.set_status(0, "rejected")
    assert model.edited(0) is None
    model.set_status(1, "accepted")
    model.set_status(1, "unreviewed")
    assert model.counts() == {"unreviewed": 2, "accepted": 0, "rejected": 1, "edited": 0}
    with pytest.raises(ConfigError):
        model.set_status(2, "edited")


def test_write_through_store(tmp_path: Path) -> None:
    with ResultStore(tmp_path / "s.sqlite3") as store:
        ReviewModel(["k0", "k1"], store).set_edit(1, "fixed")
        again = ReviewModel(["k1", "k0", "k9"], store)
    assert [again.status(i) for i in range(3)] == ["edited", "unreviewed", "unreviewed"]
    assert again.edited(0) == "fixed"


def test_apply_aligns_on_index() -> None:
    index = pd.Index(["a", "b", "c"])
    model = ReviewModel(["ka", "kb", "kc"], None)
    model.set_status(0, "rejected")
    model.set_edit(2, "C!")
    target = pd.DataFrame({"caption": ["A", "B", "C", "D"]}, index=["c", "b", "a", "z"])
    out = model.apply(target, index, "caption")
    assert out["review_status"].tolist() == ["edited", "unreviewed", "rejected", "unreviewed"]
    assert out["reviewed_caption"].tolist() == ["C!", "B", "C", "D"]
    with pytest.raises(ConfigError, match="duplicates"):
        model.apply(target, pd.Index(["a", "a", "b"]), "caption")


def test_dataset_cells_are_named_and_keyed_by_what_they_hold(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from caprl_nb.widgets.reviews import source_name

    png = b"\x89PNG fake bytes"
    hf = {"bytes": png, "path": "train/0001.png"}
    assert source_name(hf) == "0001.png"
    assert source_name("memory://bucket/photos/a.png?sig=SECRET") == "memory://bucket/photos/a.png"
    assert item_key(hf, "a cat") == item_key(png, "a cat")  # the same image, the same decision
    before = item_key("s3://b/a.png", "x")
    monkeypatch.chdir(tmp_path)
    assert item_key("s3://b/a.png", "x") == before  # a URL, not a path relative to the folder


def test_apply_says_when_each_decision_was_made(tmp_path: Path) -> None:
    import time

    before = time.time()
    with ResultStore(tmp_path / "s.sqlite3") as store:
        model = ReviewModel(["k0", "k1", "k2"], store)
        model.set_status(0, "accepted")
        model.set_edit(1, "fixed")
        model.set_status(2, "rejected")
        model.set_status(2, "unreviewed")  # a reset forgets the decision and its time
        after = time.time()
        out = model.apply(pd.DataFrame({"caption": ["a", "b", "c"]}), pd.RangeIndex(3), "caption")
        again = ReviewModel(["k1", "k0"], store)  # a later kernel reads the times back
    stamps = out["reviewed_at"]
    assert str(stamps.dtype) == "datetime64[ns, UTC]" and pd.isna(stamps[2])
    assert all(before <= stamps[i].timestamp() <= after for i in (0, 1))
    assert again.decided_at(0) == pytest.approx(stamps[1].timestamp(), abs=1e-6)
    assert again.decided_at(1) == pytest.approx(stamps[0].timestamp(), abs=1e-6)
