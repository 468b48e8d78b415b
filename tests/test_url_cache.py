"""URL rows on a re-run: a conditional request (If-None-Match / If-Modified-Since), and no body
downloaded when the server answers 304 and the answer is stored. A loopback server counts what
it sends; captions come from the simulator."""

from __future__ import annotations

import io
import os
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import pandas as pd
import pytest
from PIL import Image

from caprl_nb.errors import ImageError
from caprl_nb.images import UrlMemo, identify
from caprl_nb.store import ResultStore, url_key

from tests.support.loopback import serving
from tests.support.vllm_sim import VLLMSimulator

SECRET = "X-Amz-Signature=SECRETSECRET"
LAST_MODIFIED = "Tue, 01 Dec 2026 10:00:00 GMT"


def _png(shade: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (shade, 255 - shade, 90)).save(buf, "PNG")
    return buf.getvalue()


class Origin(BaseHTTPRequestHandler):
    """/etag/NAME (ETag), /lm/NAME (Last-Modified) and /plain/NAME (no validators) serve
    ``bodies[NAME]``; ``etags[NAME]`` is its current ETag."""

    bodies: ClassVar[dict[str, bytes]] = {}
    etags: ClassVar[dict[str, str]] = {}
    sent: ClassVar[Counter[str]] = Counter()  # route -> full-body 200 answers
    not_modified: ClassVar[Counter[str]] = Counter()  # route -> 304 answers
    conditional: ClassVar[Counter[str]] = Counter()  # route -> requests that carried a validator
    lock = threading.Lock()
    in_flight = 0
    most_in_flight = 0

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        route = self.path.split("?", 1)[0]
        kind, _, name = route.strip("/").partition("/")
        if kind == "slow":  # /slow/NAME: bodies["a.png"] after 0.4 s, counting requests in flight
            cls = type(self)
            with self.lock:
                cls.in_flight += 1
                cls.most_in_flight = max(cls.most_in_flight, cls.in_flight)
            time.sleep(0.4)
            with self.lock:
                cls.in_flight -= 1
            self._answer(200, self.bodies["a.png"], {"Content-Type": "image/png"})
            return
        body = self.bodies.get(name)
        if body is None or kind not in ("etag", "lm", "plain"):
            self._answer(404, b"no", {})
            return
        asked_etag, asked_since = self.headers.get("If-None-Match"), self.headers.get("If-Modified-Since")
        with self.lock:
            if asked_etag or asked_since:
                self.conditional[route] += 1
        headers = {}
        unchanged = False
        if kind == "etag":
            headers["ETag"] = self.etags[name]
            unchanged = asked_etag == self.etags[name]
        elif kind == "lm":
            headers["Last-Modified"] = LAST_MODIFIED
            unchanged = asked_since == LAST_MODIFIED
        with self.lock:
            (self.not_modified if unchanged else self.sent)[route] += 1
        if unchanged:
            self._answer(304, b"", headers)
        else:
            self._answer(200, body, {**headers, "Content-Type": "image/png"})

    def _answer(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for name, value in headers.items():
            self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def origin() -> Iterator[str]:
    Origin.bodies = {"a.png": _png(10), "b.png": _png(200)}
    Origin.etags = {"a.png": '"a1"', "b.png": '"b1"'}
    for counter in (Origin.sent, Origin.not_modified, Origin.conditional):
        counter.clear()
    Origin.in_flight = Origin.most_in_flight = 0
    with serving(Origin) as base:
        yield base


def _caption(urls: list[str], sim: VLLMSimulator) -> pd.DataFrame:
    frame = pd.DataFrame({"img": urls})
    out: pd.DataFrame = frame.caprl.caption("img", details=True, base_url=sim.base_url, progress=False)
    assert out["error"].isna().all(), out["error"].tolist()
    return out


def _store_bytes() -> bytes:
    home = Path(os.environ["CAPRL_HOME"])
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())


def test_a_rerun_gets_304s_downloads_no_body_and_sends_nothing(origin: str, sim: VLLMSimulator) -> None:
    urls = [f"{origin}/etag/a.png?{SECRET}", f"{origin}/lm/b.png?{SECRET}"]
    first = _caption(urls, sim)
    assert not first["cached"].any()
    assert sum(Origin.sent.values()) == 2 and not Origin.conditional
    chats = len(sim.requests)
    assert chats == 2

    second = _caption(urls, sim)
    assert second["cached"].all()
    assert second["caption"].tolist() == first["caption"].tolist()
    assert sum(Origin.sent.values()) == 2  # no body downloaded again
    assert Origin.not_modified == Counter({"/etag/a.png": 1, "/lm/b.png": 1})
    assert len(sim.requests) == chats  # answered from the store

    stored = _store_bytes()  # the memo is keyed by a hash: no URL, no query string
    assert b"SECRET" not in stored and SECRET.encode() not in stored
    with ResultStore(Path(os.environ["CAPRL_HOME"]) / "results.sqlite3") as store:
        memo = store.url_memo(urls[0])
        assert memo is not None and memo.etag == '"a1"' and memo.last_modified is None
        assert store.read("SELECT key FROM url_hashes ORDER BY key") == sorted((url_key(u),) for u in urls)


def test_content_changed_at_the_server_is_downloaded_and_captioned_again(
    origin: str, sim: VLLMSimulator
) -> None:
    url = f"{origin}/etag/a.png?{SECRET}"
    _caption([url], sim)
    Origin.bodies["a.png"] = _png(120)
    Origin.etags["a.png"] = '"a2"'
    again = _caption([url], sim)
    assert not again["cached"].any()
    assert Origin.sent["/etag/a.png"] == 2 and Origin.conditional["/etag/a.png"] == 1
    assert not Origin.not_modified
    assert len(sim.requests) == 2
    third = _caption([url], sim)  # the new ETag was remembered
    assert third["cached"].all() and Origin.not_modified["/etag/a.png"] == 1 and len(sim.requests) == 2


def test_a_server_without_validators_is_downloaded_as_before(origin: str, sim: VLLMSimulator) -> None:
    url = f"{origin}/plain/a.png"
    _caption([url], sim)
    again = _caption([url], sim)
    assert again["cached"].all()  # the content hash still finds the stored answer
    assert Origin.sent["/plain/a.png"] == 2 and not Origin.conditional and not Origin.not_modified
    assert len(sim.requests) == 1


def test_no_conditional_request_when_the_answer_is_not_stored(origin: str, sim: VLLMSimulator) -> None:
    url = f"{origin}/etag/b.png"
    _caption([url], sim)
    frame = pd.DataFrame({"img": [url]})  # another question: another key, its answer not stored
    out = frame.caprl.ask("img", "What colour is it?", details=True, base_url=sim.base_url, progress=False)
    assert out["error"].isna().all(), out["error"].tolist()
    assert not out["cached"].any()
    assert Origin.sent["/etag/b.png"] == 2 and not Origin.conditional  # the body was needed: plain GET
    assert len(sim.requests) == 2


def test_a_304_source_downloads_its_body_only_when_read_and_checks_it(origin: str) -> None:
    url = f"{origin}/etag/a.png?{SECRET}"
    fresh = identify(url)
    memo = fresh.url_memo
    assert memo == UrlMemo('"a1"', None, fresh.sha256)
    assert SECRET not in repr(fresh)
    source = identify(url, known_url=lambda u: memo if u == url else None)
    assert source.sha256 == fresh.sha256 and source.url_memo is None
    assert Origin.sent["/etag/a.png"] == 1 and Origin.not_modified["/etag/a.png"] == 1
    assert source.read() == Origin.bodies["a.png"]
    assert Origin.sent["/etag/a.png"] == 2
    late = identify(url, known_url=lambda u: memo)
    Origin.bodies["a.png"] = _png(99)  # changed between the 304 and the read
    with pytest.raises(ImageError, match="changed after the server said it had not"):
        late.read()


def test_downloads_are_not_limited_by_the_image_threads(origin: str, sim: VLLMSimulator) -> None:
    urls = [f"{origin}/slow/{i}.png" for i in range(12)]
    frame = pd.DataFrame({"img": urls})
    out = frame.caprl.caption("img", details=True, base_url=sim.base_url, progress=False, concurrency=12)
    assert out["error"].isna().all(), out["error"].tolist()
    assert Origin.most_in_flight > 8  # the image pool has at most 8 threads; each row downloads at once
