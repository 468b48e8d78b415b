"""One Parquet file with the image bytes embedded, typed for Hugging Face ``datasets``.

The ``image`` column is ``struct<bytes: binary, path: string>``, the storage of a
``datasets.Image`` feature, and the schema carries the ``huggingface`` metadata that
``datasets.Features.arrow_schema`` writes (``{"info": {"features": {...}}}``), so
``load_dataset("parquet", data_files=FILE)`` types the column as ``Image`` and decodes it.
Rows are written as row groups of at most :data:`GROUP_ROWS` rows or :data:`GROUP_BYTES` of
images, so memory holds one group. The export's manifest is the file's ``caprl_nb`` key-value
metadata (``pyarrow.parquet.read_metadata(FILE).metadata[b"caprl_nb"]``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from caprl_nb.errors import ConfigError
from caprl_nb.export.media import Encoded

__all__ = ["GROUP_BYTES", "GROUP_ROWS", "Batches", "ParquetWriter", "arrow_schema", "hf_features"]

# A row group is what a reader holds at once: under datasets' own cap for the row groups it
# writes (datasets.config.MAX_ROW_GROUP_SIZE, 100 MB uncompressed), and few enough rows that
# a streaming reader starts quickly.
# Writing a row group costs a few times its size at once (pages, statistics), hence 32 MiB.
GROUP_ROWS = 1000
GROUP_BYTES = 32 * 1024 * 1024
_VALUE = {"string": "string", "int64": "int64", "float64": "float64", "bool": "bool"}


def _pyarrow() -> Any:
    try:
        import pyarrow as pa
    except ImportError as exc:
        msg = "Exporting Parquet needs pyarrow: pip install 'caprl-nb[parquet]' (or pip install pyarrow)."
        raise ConfigError(msg) from exc
    return pa


def hf_features(columns: list[tuple[str, str]]) -> dict[str, Any]:
    """The ``datasets.Features.to_dict()`` of the export: ``image`` as Image, the rest as Value."""
    features: dict[str, Any] = {"image": {"_type": "Image"}}
    for name, kind in columns:
        features[name] = {"dtype": _VALUE[kind], "_type": "Value"}
    return features


def arrow_schema(columns: list[tuple[str, str]]) -> Any:
    """The Arrow schema of the export, with datasets' ``huggingface`` metadata."""
    pa = _pyarrow()
    types = {"string": pa.string(), "int64": pa.int64(), "float64": pa.float64(), "bool": pa.bool_()}
    image = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    schema = pa.schema([("image", image), *((name, types[kind]) for name, kind in columns)])
    metadata = {"info": {"features": hf_features(columns)}}
    return schema.with_metadata({"huggingface": json.dumps(metadata)})


class Batches:
    """Rows gathered into Arrow record batches of bounded size."""

    def __init__(self, columns: list[tuple[str, str]]) -> None:
        self.schema = arrow_schema(columns)
        self.columns = [name for name, _ in columns]
        self._rows: list[tuple[dict[str, Any], dict[str, Any]]] = []
        self._bytes = 0

    def add(self, key: str, image: Encoded, record: dict[str, Any]) -> bool:
        """Add a row; True when the batch is full and should be taken."""
        self._rows.append(({"bytes": image.data, "path": f"{key}.{image.extension}"}, record))
        self._bytes += len(image.data)
        return len(self._rows) >= GROUP_ROWS or self._bytes >= GROUP_BYTES

    def take(self) -> Any:
        """The rows gathered so far as one record batch (None when there are none)."""
        if not self._rows:
            return None
        pa = _pyarrow()
        data: dict[str, list[Any]] = {"image": [image for image, _ in self._rows]}
        for name in self.columns:
            data[name] = [record.get(name) for _, record in self._rows]
        self._rows, self._bytes = [], 0
        return pa.RecordBatch.from_pydict(data, schema=self.schema)


class ParquetWriter:
    """Streams row groups into one Parquet file; the manifest lands in its metadata at close."""

    def __init__(self, path: Path, columns: list[tuple[str, str]]) -> None:
        pa = _pyarrow()
        import pyarrow.parquet as pq

        if not hasattr(pq.ParquetWriter, "add_key_value_metadata"):  # pyarrow 17
            msg = (f"Exporting Parquet needs pyarrow 17 or later (this is {pa.__version__}): "
                   "pip install -U pyarrow.")
            raise ConfigError(msg)
        self._batches = Batches(columns)
        texts = [name for name, _ in columns]
        # Image bytes are compressed already and never repeat: no dictionary, no second compression.
        self._writer = pq.ParquetWriter(
            str(path), self._batches.schema, use_dictionary=texts,
            compression={"image.bytes": "none", "image.path": "zstd", **dict.fromkeys(texts, "zstd")},
        )

    def add(self, key: str, image: Encoded, record: dict[str, Any]) -> None:
        if self._batches.add(key, image, record):
            self._group(self._batches.take())

    def _group(self, batch: Any) -> None:
        # write_table closes a row group per call; write_batch would keep adding to one
        # buffered row group (up to a million rows) and hold every image in memory.
        self._writer.write_table(_pyarrow().Table.from_batches([batch]))

    def close(self, manifest: dict[str, Any]) -> list[str]:
        last = self._batches.take()
        if last is not None:
            self._group(last)
        self._writer.add_key_value_metadata({"caprl_nb": json.dumps(manifest)})
        self._writer.close()
        return []

    def abort(self) -> None:
        self._writer.close()
