"""Extraction against real vLLM (CPU) serving the tiny random Qwen2.5-VL, which honours
``response_format`` (xgrammar) but writes noise: assertions are on shapes, types, validity and
explanations, never on values.

Every test checks that its requests really reached the server with the schema: a recording
proxy on loopback sits between caprl_nb and vLLM and keeps every request body and response, and
every row must be either a validated success or a failure that names a truncation, parse or
validation cause (a grammar-constrained answer that stopped on its own always parses). How long
this takes on a CPU is measured by bench/extract_tiny_vllm.py, not judged here.
"""

from __future__ import annotations

import http.server
import json
import re
import threading
import urllib.error
import urllib.request
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pydantic
import pytest

import caprl_nb
from caprl_nb.extract import chart_table, groundtruth, parse_number
from caprl_nb.extract.schema import as_schema

from tests.conftest import make_images

pytestmark = pytest.mark.vllm

# Every failure must say why; these are the reasons an answer of the tiny model can fail.
EXPLAINED = re.compile(
    r"^(Truncated: cut off at max_tokens=\d+ before the JSON object was complete; raise max_tokens"
    r"|ValidationError: (field '[^']+': )?\S"
    r"|ParseError: \S)"
)


class PageFacts(pydantic.BaseModel):
    """Six fields of every JSON type the column typing handles."""

    title: str = pydantic.Field(max_length=40)
    kind: Literal["chart", "document", "photo", "other"]
    count: int
    amount: float
    has_text: bool
    labels: list[str] = pydantic.Field(max_length=3)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    root = tmp_path_factory.mktemp("mixed")
    charts = groundtruth.charts(root / "charts", 20)
    docs = groundtruth.documents(root / "docs", 10)
    noise = make_images(root / "noise", 20, size=(160, 120))
    images = list(charts["image"]) + list(docs["image"]) + noise
    return pd.DataFrame({"image": images}, index=[f"img{i}" for i in range(len(images))])




class Recorder(http.server.ThreadingHTTPServer):
    """A loopback proxy in front of the real server that keeps every chat completion it relays."""

    daemon_threads = True

    def __init__(self, upstream: str) -> None:
        super().__init__(("127.0.0.1", 0), _Relay)
        self.upstream = upstream.removesuffix("/v1")
        self.chats: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
        self.lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"

    def take(self) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
        with self.lock:
            taken, self.chats = self.chats, []
        return taken


class _Relay(http.server.BaseHTTPRequestHandler):
    server: Recorder
    protocol_version = "HTTP/1.1"

    def _relay(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0)) if self.command == "POST" else None
        headers = {k: v for k, v in self.headers.items() if k.lower() in ("content-type", "authorization")}
        request = urllib.request.Request(self.server.upstream + self.path, body, headers, method=self.command)
        try:
            with urllib.request.urlopen(request, timeout=600) as answer:
                status, payload, kind = answer.status, answer.read(), answer.headers.get("content-type")
        except urllib.error.HTTPError as exc:
            status, payload, kind = exc.code, exc.read(), exc.headers.get("content-type")
        if self.path.endswith("/chat/completions") and body:
            sent = json.loads(body)
            got = json.loads(payload) if status == 200 else None
            with self.server.lock:
                self.server.chats.append((sent, got))
        self.send_response(status)
        self.send_header("content-type", kind or "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _relay

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def proxy(vllm_server: str) -> Iterator[Recorder]:
    server = Recorder(vllm_server)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _sent_schema(chats: list[tuple[dict[str, Any], dict[str, Any] | None]], schema: Any) -> None:
    """Every relayed request asked for JSON with ``schema``, and the server answered it."""
    want = as_schema(schema).json_schema
    for sent, got in chats:
        format_ = sent.get("response_format") or {}
        assert format_.get("type") == "json_schema", sent.keys()
        assert format_["json_schema"]["schema"] == want
        assert got is not None and got["usage"]["prompt_tokens"] > 0
        assert got["choices"][0]["finish_reason"] in ("stop", "length")


def _every_row_explained(out: pd.DataFrame, fields: list[str]) -> None:
    """Each row: the request was answered (tokens, finish reason); a failure says why."""
    assert (out["prompt_tokens"] > 0).all() and out["finish_reason"].isin(["stop", "length"]).all()
    failed = out[out["error"].notna()]
    assert failed[fields].isna().all().all()
    unexplained = [e for e in failed["error"] if not EXPLAINED.match(e)]
    assert not unexplained
    truncated = failed["error"].str.startswith("Truncated")
    assert (failed.loc[truncated, "finish_reason"] == "length").all()
    # The grammar only lets a complete JSON object end a stopped answer: a stopped answer that
    # does not parse means the schema was not applied.
    stopped = failed[failed["finish_reason"] == "stop"]
    assert not stopped["error"].str.startswith("ParseError").any(), stopped["error"].tolist()


def test_extract_50_mixed_images(proxy: Recorder, mixed: pd.DataFrame) -> None:
    proxy.take()
    with _recorded():
        out = mixed.caprl.extract("image", PageFacts, base_url=proxy.base_url, max_tokens=256,
                                  details=True, progress=False)
    chats = proxy.take()
    print(f"extract: errors {out['error'].str.split(':').str[0].value_counts(dropna=False).to_dict()}")
    assert len(chats) == 50  # every row reached the server, once
    _sent_schema(chats, PageFacts)
    assert all(sent["max_tokens"] == 256 for sent, _ in chats)
    assert len(out) == 50 and out.index.equals(mixed.index)
    assert {c: str(t) for c, t in out.dtypes.items() if c in PageFacts.model_fields} == {
        "title": "string", "kind": "string", "count": "Int64", "amount": "Float64",
        "has_text": "boolean", "labels": "object",
    }
    _every_row_explained(out, list(PageFacts.model_fields))
    ok = out[out["error"].isna()]
    assert len(ok) >= 1, "the grammar should let at least some answers finish within 256 tokens"
    for _, row in ok.iterrows():
        values = {name: row[name] for name in PageFacts.model_fields}
        values = {k: (v.item() if hasattr(v, "item") else v) for k, v in values.items()}
        PageFacts.model_validate(values, strict=True)  # raises if a "successful" row is invalid
        assert row["finish_reason"] == "stop"


def test_chart_table_numeric_columns(proxy: Recorder, mixed: pd.DataFrame) -> None:
    from caprl_nb.extract import CHART_SCHEMA

    charts = mixed["image"].iloc[:10]
    proxy.take()
    with _recorded():
        out = chart_table(charts, base_url=proxy.base_url, max_tokens=1024, progress=False, details=True)
    chats = proxy.take()
    assert len(chats) == 10
    _sent_schema(chats, CHART_SCHEMA)
    _every_row_explained(out, ["table"])
    tables = out["table"]
    assert tables.index.equals(charts.index)
    assert (tables.notna() == out["error"].isna()).all()  # a table exactly where no error
    got = tables.dropna()
    assert len(got) >= 1, "with bounded strings most tiny-model answers finish in 1024 tokens"
    for table in got:
        assert isinstance(table, pd.DataFrame)
        assert set(table.attrs) == {"title", "x_label", "y_label", "units"}
        for name in table.columns[1:]:
            values = table[name].dropna().tolist()
            if values and all(parse_number(v) is not None for v in values):
                assert str(table[name].dtype) == "Float64", (name, table[name].dtype)
            else:
                assert str(table[name].dtype) in ("string", "Float64")
    long = caprl_nb.extract.concat_tables(tables)
    assert set(long["row"]) <= set(charts.index)


def test_pdf_pages(proxy: Recorder, tmp_path: Path) -> None:
    path = tmp_path / "three.pdf"
    truth = groundtruth.pdf(path, 3)
    frame = pd.DataFrame({"doc": [str(path)]}, index=["contract"])
    proxy.take()
    with _recorded():
        out = frame.caprl.extract("doc", groundtruth.INVOICE_SCHEMA, base_url=proxy.base_url,
                                  max_tokens=128, progress=False, details=True)
    chats = proxy.take()
    assert len(chats) == 3  # one request per page, each with its page's image
    _sent_schema(chats, groundtruth.INVOICE_SCHEMA)
    assert len({json.dumps(sent["messages"]) for sent, _ in chats}) == 3
    assert out.index.tolist() == ["contract"] * 3
    assert out["page"].tolist() == [1, 2, 3] == truth["page"].tolist()
    fields = [c for c in as_schema(groundtruth.INVOICE_SCHEMA).fields if c in out.columns]
    assert fields
    _every_row_explained(out, fields)


def _recorded() -> warnings.catch_warnings:
    """Record the failed-rows warning without requiring one: how many rows fail is up to noise."""
    return warnings.catch_warnings(record=True)
