"""Each exported caption's provenance comes from the result store's record of that answer."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from caprl_nb.config import resolve_settings
from caprl_nb.export import export
from caprl_nb.store import ResultStore

from tests.conftest import make_images


def _frame(tmp_path: Path) -> tuple[pd.DataFrame, str]:
    image = make_images(tmp_path / "img", 1)[0]
    sha = hashlib.sha256(Path(image).read_bytes()).hexdigest()
    with ResultStore(resolve_settings().store_path) as store:
        for n, (checkpoint, created) in enumerate((("org/ckpt-a", 100.0), ("org/ckpt-b", 200.0))):
            store.put(
                key=f"k{n}", task="caption", image_sha256=sha, model="caprl", checkpoint=checkpoint,
                params={"prompt": f"prompt {n}", "temperature": 0.7 + n, "max_tokens": 64, "seed": None},
                text="a red square", created_at=created, server_version="0.32.0",
            )
        store.put(key="k9", task="caption", image_sha256=sha, model="caprl", checkpoint="org/ckpt-c",
                  params={"prompt": "other"}, text="another caption", created_at=300.0)
    frame = pd.DataFrame({"image": [image], "caption": ["a red square"], "review_status": ["accepted"]})
    return frame, sha


def _written(out: Path) -> dict[str, object]:
    return json.loads((out / "metadata.jsonl").read_text().splitlines()[0])


def test_the_answer_is_found_by_image_and_text_newest_first(tmp_path: Path) -> None:
    frame, sha = _frame(tmp_path)
    row = _written(export(frame, tmp_path / "out", progress=False))
    assert row["image_sha256"] == sha
    assert (row["checkpoint"], row["prompt"], row["server_version"]) == ("org/ckpt-b", "prompt 1", "0.32.0")
    assert json.loads(str(row["sampling"])) == {"max_tokens": 64, "seed": None, "temperature": 1.7}
    assert row["answered_at"] == "1970-01-01T00:03:20+00:00"


def test_the_frames_checkpoint_picks_among_answers(tmp_path: Path) -> None:
    frame, _ = _frame(tmp_path)
    row = _written(export(frame.assign(checkpoint="org/ckpt-a"), tmp_path / "out", progress=False))
    assert (row["checkpoint"], row["prompt"]) == ("org/ckpt-a", "prompt 0")


def test_without_the_store_the_frames_own_provenance_remains(tmp_path: Path) -> None:
    frame, _ = _frame(tmp_path)
    frame = frame.assign(model="caprl", checkpoint="org/ckpt-z")
    row = _written(export(frame, tmp_path / "out", store=False, progress=False))
    assert (row["model"], row["checkpoint"], row["prompt"], row["task"]) == ("caprl", "org/ckpt-z", None, None)
    edited = frame.assign(caption="a caption the store never saw")
    row = _written(export(edited, tmp_path / "out2", progress=False))
    assert row["prompt"] is None and row["checkpoint"] == "org/ckpt-z"
