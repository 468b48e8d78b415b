"""The Parquet export streams: bounded row groups, the Image feature's schema metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from caprl_nb.export import export
from caprl_nb.export import parquet as parquet_module

from tests.export.conftest import Reviewed


def test_rows_are_written_in_bounded_row_groups(
    reviewed: Reviewed, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    monkeypatch.setattr(parquet_module, "GROUP_ROWS", 10)
    out = export(reviewed.frame, tmp_path / "set.parquet", progress=False)
    file = pq.ParquetFile(out)
    assert [file.metadata.row_group(i).num_rows for i in range(file.num_row_groups)] == [10, 10, 5]
    features = json.loads(file.schema_arrow.metadata[b"huggingface"])["info"]["features"]
    assert features["image"] == {"_type": "Image"}
    assert features["caption"] == {"dtype": "string", "_type": "Value"}
    assert json.loads(file.metadata.metadata[b"caprl_nb"])["rows"] == 25
