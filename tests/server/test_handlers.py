"""The Jupyter server extension, through a real Jupyter server (pytest-jupyter's jp_fetch)."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sqlite3
import time
from pathlib import Path

import pytest
from PIL import Image
from tornado.httpclient import HTTPClientError

from caprl_nb import errors
from caprl_nb.engine import free_port
from caprl_nb.errors import error_class
from caprl_nb.server import handlers
from caprl_nb.server.handlers import http_status
from caprl_nb.server.status import parse_metrics
from caprl_nb.store import ResultStore

from tests.support.vllm_sim import Fault, VLLMSimulator

POLL_INTERVAL = 0.01


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"caprl_nb": True}}}


@pytest.fixture
def sim_env(sim: VLLMSimulator, monkeypatch: pytest.MonkeyPatch) -> VLLMSimulator:
    monkeypatch.setenv("CAPRL_BASE_URL", sim.base_url)
    monkeypatch.setenv("CAPRL_API_KEY", "sk-secret-value")
    return sim


@pytest.fixture
def picture(jp_root_dir: Path) -> str:
    Image.new("RGB", (120, 90), "orange").save(jp_root_dir / "pic.png")
    return "pic.png"


async def _json(jp_fetch, *path: str, method: str = "GET", body: dict | None = None, **kw):
    response = await jp_fetch(*path, method=method, body=None if body is None else json.dumps(body), **kw)
    return response.code, json.loads(response.body)


async def _error(jp_fetch, *path: str, method: str = "GET", body: dict | None = None) -> tuple[int, dict]:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch(*path, method=method, body=None if body is None else json.dumps(body))
    return info.value.code, json.loads(info.value.response.body)


async def test_status_up(jp_fetch, sim_env: VLLMSimulator) -> None:
    code, doc = await _json(jp_fetch, "caprl", "status")
    assert code == 200 and doc["state"] == "up"
    assert (doc["model"], doc["root"], doc["vllm_version"], doc["max_model_len"]) == (
        "caprl", "internlm/CapRL-3B", "0.32.0", 32768)
    assert doc["requests_running"] == 0 and doc["requests_waiting"] == 0
    assert doc["store"]["path"].endswith("results.sqlite3")
    assert "sk-secret" not in json.dumps(doc)


async def test_status_down_says_how_to_start_a_server(jp_fetch, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPRL_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    code, doc = await _json(jp_fetch, "caprl", "status")
    assert code == 200 and doc["state"] == "down" and "caprl-nb serve" in doc["error"]


async def test_status_of_a_server_that_never_answers_comes_within_the_probe_timeout(
    jp_fetch, monkeypatch: pytest.MonkeyPatch
) -> None:
    from caprl_nb.server import status

    monkeypatch.setattr(status, "PROBE_TIMEOUT", 0.5)
    with socket.socket() as silent:  # accepts connections (the backlog), never reads or answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        monkeypatch.setenv("CAPRL_BASE_URL", f"http://127.0.0.1:{silent.getsockname()[1]}/v1")
        started = time.monotonic()
        code, doc = await _json(jp_fetch, "caprl", "status")
        took = time.monotonic() - started
    assert code == 200 and doc["state"] == "down"
    # the bound under test: the probe's 0.5 s, with a 10x margin; the client's own timeouts
    # (10 s for /v1/models, 600 s to read) would take 20 times as long
    assert took < 5


async def test_caption_a_file(jp_fetch, sim_env: VLLMSimulator, picture: str) -> None:
    code, doc = await _json(jp_fetch, "caprl", "caption", method="POST", body={"path": picture})
    assert code == 200 and doc["caption"].startswith("sim caption") and not doc["cached"]
    assert doc["model"] == "caprl" and doc["server_version"] == "0.32.0"
    assert doc["checkpoint"] == sim_env.root  # the weights that answered, not the alias
    assert doc["base_url"] == sim_env.base_url and doc["completion_tokens"] > 0
    code, again = await _json(jp_fetch, "caprl", "caption", method="POST", body={"path": picture})
    assert again["cached"] and again["caption"] == doc["caption"]
    code, recent = await _json(jp_fetch, "caprl", "recent")
    assert recent["results"][0]["text"] == doc["caption"][:300]


async def test_caption_over_the_servers_of_a_comma_separated_base_url(
    jp_fetch, jp_root_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with VLLMSimulator() as a, VLLMSimulator() as b:
        monkeypatch.setenv("CAPRL_BASE_URL", f"{a.base_url},{b.base_url}")
        answered = set()
        for i in range(6):
            Image.new("RGB", (40 + i, 30), "teal").save(jp_root_dir / f"p{i}.png")
            code, doc = await _json(jp_fetch, "caprl", "caption", method="POST", body={"path": f"p{i}.png"})
            assert code == 200 and doc["checkpoint"] == a.root
            answered.add(doc["base_url"])
        assert answered <= {a.base_url, b.base_url}
        assert len(a.requests) + len(b.requests) == 6
        code, status = await _json(jp_fetch, "caprl", "status")
        assert code == 200 and status["state"] == "up" and status["root"] == a.root
        assert [(x["base_url"], x["state"]) for x in status["servers"]] == [(a.base_url, "up"), (b.base_url, "up")]
        gone = VLLMSimulator().start()
        gone_url = gone.base_url
        gone.stop()
        monkeypatch.setenv("CAPRL_BASE_URL", f"{gone_url},{b.base_url}")
        code, status = await _json(jp_fetch, "caprl", "status")
        assert status["state"] == "up" and status["base_url"] == f"{gone_url},{b.base_url}"
        assert [x["state"] for x in status["servers"]] == ["down", "up"]
        assert status["servers"][0]["error"]  # says why the first one is down


@pytest.mark.parametrize(
    ("path", "status", "fragment"),
    [
        ("../outside.png", 403, "climbs with '..'"),
        ("folder/../pic.png", 403, "climbs with '..'"),
        ("missing.png", 404, "No file"),
        ("notes.txt", 400, "not an image"),
        ("folder", 400, "folder"),
        ("", 400, "path"),
        (None, 400, "path"),
        (["pic.png"], 400, "path"),
        ("link.png", 403, "outside the Jupyter root"),
        ("loop.png", 404, "Cannot open"),
        ("pic.png\x00.txt", 400, "NUL byte"),
        ("/etc/passwd", 403, "absolute path"),
        ("//pic.png", 403, "absolute path"),
        (".secret.png", 403, "ContentsManager.allow_hidden"),
        (".hidden/pic.png", 403, "ContentsManager.allow_hidden"),
        ("folder/.pic.png", 403, "ContentsManager.allow_hidden"),
        ("to-hidden.png", 403, "ContentsManager.allow_hidden"),
        ("x" * 5000 + ".png", 404, "Cannot open"),
    ],
)
async def test_caption_refuses_bad_paths(
    jp_fetch, sim_env: VLLMSimulator, jp_root_dir: Path, picture: str, path: object, status: int, fragment: str
) -> None:
    _bad_paths(jp_root_dir)
    code, doc = await _error(jp_fetch, "caprl", "caption", method="POST", body={"path": path})
    assert (code, doc["status"]) == (status, status) and fragment in doc["error"]
    # the error's class, by name: the one the status was chosen from
    assert http_status(error_class(doc["error_type"])) == status, doc["error_type"]
    assert sim_env.requests == []


def _bad_paths(root: Path) -> None:
    """Files a request may not read, beside pic.png: outside the root, hidden, loops, folders."""
    outside = root.parent / "outside.png"
    Image.new("RGB", (50, 50)).save(outside)
    (root / "notes.txt").write_text("hello")
    (root / "folder").mkdir()
    os.symlink(outside, root / "link.png")
    os.symlink(root / "loop.png", root / "loop.png")
    for hidden in (root / ".secret.png", root / ".hidden" / "pic.png", root / "folder" / ".pic.png"):
        hidden.parent.mkdir(exist_ok=True)
        Image.new("RGB", (50, 50)).save(hidden)
    os.symlink(root / ".hidden" / "pic.png", root / "to-hidden.png")


async def test_hidden_files_are_read_when_jupyter_allows_them(
    jp_fetch, sim_env: VLLMSimulator, jp_serverapp, jp_root_dir: Path, picture: str
) -> None:
    _bad_paths(jp_root_dir)
    jp_serverapp.contents_manager.allow_hidden = True
    for path in (".secret.png", ".hidden/pic.png", "to-hidden.png"):
        code, doc = await _json(jp_fetch, "caprl", "caption", method="POST", body={"path": path})
        assert code == 200 and doc["caption"].startswith("sim caption"), path
    # the rest is still refused
    code, doc = await _error(jp_fetch, "caprl", "caption", method="POST", body={"path": "link.png"})
    assert code == 403


async def test_caption_too_large(jp_fetch, sim_env: VLLMSimulator, jp_serverapp, picture: str) -> None:
    app = next(iter(jp_serverapp.extension_manager.extension_apps["caprl_nb"]))
    app.max_file_bytes = 100
    code, doc = await _error(jp_fetch, "caprl", "caption", method="POST", body={"path": picture})
    assert code == 413 and "max_file_bytes" in doc["error"]


async def test_caption_with_model_server_down_is_502(jp_fetch, monkeypatch: pytest.MonkeyPatch, picture: str) -> None:
    monkeypatch.setenv("CAPRL_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    code, doc = await _error(jp_fetch, "caprl", "caption", method="POST", body={"path": picture})
    assert code == 502 and "caprl-nb serve" in doc["error"]
    assert doc["error_type"] == "ServerUnavailableError"


async def test_caption_timeout_is_504(jp_fetch, sim_env: VLLMSimulator, monkeypatch: pytest.MonkeyPatch, picture: str) -> None:
    monkeypatch.setenv("CAPRL_READ_TIMEOUT", "0.5")
    monkeypatch.setenv("CAPRL_MAX_RETRIES", "0")
    sim_env.add_faults(Fault("timeout", hold=5))
    code, doc = await _error(jp_fetch, "caprl", "caption", method="POST", body={"path": picture})
    assert code == 504 and "read_timeout" in doc["error"]
    assert doc["error_type"] == "ServerTimeoutError"


async def test_settings_never_reveal_the_key(jp_fetch, sim_env: VLLMSimulator) -> None:
    code, doc = await _json(jp_fetch, "caprl", "settings")
    assert doc == {"base_url": sim_env.base_url, "model": None, "has_api_key": True}
    code, doc = await _json(jp_fetch, "caprl", "settings", method="POST", body={"model": "other"})
    assert doc["model"] == "other" and "sk-secret" not in json.dumps(doc)
    code, doc = await _error(jp_fetch, "caprl", "settings", method="POST", body={"base_url": "nope"})
    assert code == 400 and "http://" in doc["error"]
    code, doc = await _error(jp_fetch, "caprl", "settings", method="POST", body={"api_key": "x"})
    assert code == 400


def test_error_mapping_is_specific() -> None:
    assert http_status(errors.PathNotAllowedError("x")) == 403
    assert http_status(errors.ImageNotFoundError("x")) == 404
    assert http_status(errors.ImageTooLargeError("x")) == 413
    assert http_status(errors.ImageDecodeError("x")) == 400
    assert http_status(errors.ServerUnavailableError("x")) == 502
    assert http_status(errors.ServerBusyError("x")) == 502
    assert http_status(errors.ServerTimeoutError("x")) == 504
    assert http_status(errors.ConfigError("x")) == 400
    assert http_status(errors.StoreError("x")) == 503
    assert http_status(errors.SettingNotAllowedError("x")) == 403
    # failed rows' kinds: an answer the model server got wrong is a bad gateway, not a 500
    for kind in (errors.EmptyAnswerError, errors.ParseError, errors.TruncatedError,
                 errors.ValidationError, errors.NotStoredError):
        assert http_status(kind) == 502, kind


def test_row_error_status_comes_from_error_type_not_text() -> None:
    # the text names no class: only error_type decides (404 for a missing image)
    assert handlers._status_of_row_error("ImageNotFoundError") == 404
    assert handlers._status_of_row_error("TruncatedError") == 502
    assert handlers._status_of_row_error("RuntimeError") == 502  # not ours: a bad gateway
    assert handlers._status_of_row_error(None) == 502


def test_parse_metrics() -> None:
    text = (
        "# HELP vllm:num_requests_running x\n"
        'vllm:num_requests_running{engine="0",model_name="caprl"} 3.0\n'
        'vllm:num_requests_running{engine="1",model_name="caprl"} 2.0\n'
        'vllm:num_requests_waiting{model_name="caprl"} 7\n'
        "vllm:generation_tokens_total 1.5e4\n"
    )
    assert parse_metrics(text) == {
        "vllm:num_requests_running": 5.0, "vllm:num_requests_waiting": 7.0,
        "vllm:generation_tokens_total": 15000.0,
    }


@pytest.mark.vllm
async def test_caption_and_status_against_real_vllm(
    jp_fetch, vllm_server: str, monkeypatch: pytest.MonkeyPatch, picture: str
) -> None:
    monkeypatch.setenv("CAPRL_BASE_URL", vllm_server)
    code, status = await _json(jp_fetch, "caprl", "status")
    assert status["state"] in ("up", "busy") and status["vllm_version"] == "0.32.0"
    assert status["max_model_len"] == 2048 and status["requests_running"] is not None
    code, doc = await _json(jp_fetch, "caprl", "caption", method="POST", body={"path": picture})
    assert code == 200 and isinstance(doc["caption"], str) and doc["completion_tokens"] >= 1
    assert doc["base_url"] == vllm_server and doc["finish_reason"] in ("stop", "length")


# -- extract-table, recent inputs --------------------------------------------------------------
def _bar_chart(path: Path) -> None:
    """A plain bar chart: title, three bars, axes."""
    from PIL import ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new("RGB", (320, 220), "white")
    draw = ImageDraw.Draw(image)
    draw.text((100, 8), "Sales by year", fill="black")
    draw.line((40, 190, 300, 190), fill="black")
    draw.line((40, 30, 40, 190), fill="black")
    for i, (year, height) in enumerate([("2021", 60), ("2022", 110), ("2023", 140)]):
        left = 70 + 80 * i
        draw.rectangle((left, 190 - height, left + 40, 190), fill="steelblue")
        draw.text((left + 6, 196), year, fill="black")
    image.save(path)


async def test_extract_table_reports_the_simulators_prose_as_a_parse_error(
    jp_fetch, sim_env: VLLMSimulator, jp_root_dir: Path
) -> None:
    _bar_chart(jp_root_dir / "charts" / "sales.png")
    code, doc = await _error(jp_fetch, "caprl", "extract-table", method="POST", body={"path": "charts/sales.png"})
    # the simulator answers captions, not JSON: the row's parse error, with its reason, as a 502
    assert (code, doc["status"]) == (502, 502)
    assert doc["error"].startswith("ParseError: no JSON object in the answer (it begins 'sim caption")
    assert doc["error_type"] == "ParseError"
    assert len(sim_env.requests) == 1
    # the file as the browser named it, not where the Jupyter root lives on the server
    assert "file 'charts/sales.png'" in doc["error"] and str(jp_root_dir) not in doc["error"]


@pytest.mark.parametrize(
    ("path", "status", "fragment"),
    [
        ("../outside.png", 403, "climbs with '..'"),
        ("charts/../../outside.png", 403, "climbs with '..'"),
        ("/../outside.png", 403, "absolute path"),
        ("link.png", 403, "outside the Jupyter root"),
        ("missing.png", 404, "No file"),
        ("notes.txt", 400, "not an image"),
        ("", 400, "path"),
        ("pic\x00.png", 400, "NUL byte"),
        (".hidden/pic.png", 403, "ContentsManager.allow_hidden"),
        ("to-hidden.png", 403, "ContentsManager.allow_hidden"),
        ("loop.png", 404, "Cannot open"),
    ],
)
async def test_extract_table_refuses_bad_paths(
    jp_fetch, sim_env: VLLMSimulator, jp_root_dir: Path, path: str, status: int, fragment: str
) -> None:
    _bad_paths(jp_root_dir)
    (jp_root_dir / "charts").mkdir()
    code, doc = await _error(jp_fetch, "caprl", "extract-table", method="POST", body={"path": path})
    assert (code, doc["status"]) == (status, status) and fragment in doc["error"]
    # the error's class, by name: the one the status was chosen from
    assert http_status(error_class(doc["error_type"])) == status, doc["error_type"]
    assert sim_env.requests == []


async def test_extract_table_too_large(jp_fetch, sim_env: VLLMSimulator, jp_serverapp, picture: str) -> None:
    app = next(iter(jp_serverapp.extension_manager.extension_apps["caprl_nb"]))
    app.max_file_bytes = 100
    code, doc = await _error(jp_fetch, "caprl", "extract-table", method="POST", body={"path": picture})
    assert code == 413 and "max_file_bytes" in doc["error"]
    assert sim_env.requests == []


async def test_extract_table_with_model_server_down_is_502(
    jp_fetch, monkeypatch: pytest.MonkeyPatch, picture: str
) -> None:
    monkeypatch.setenv("CAPRL_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    code, doc = await _error(jp_fetch, "caprl", "extract-table", method="POST", body={"path": picture})
    assert code == 502 and "caprl-nb serve" in doc["error"]


async def test_extract_table_leaves_the_server_answering_meanwhile(
    jp_fetch, sim_env: VLLMSimulator, picture: str
) -> None:
    # chart_table is synchronous; the handler runs it in a worker thread, not on the event loop
    sim_env.latency = 3.0
    extraction = asyncio.ensure_future(
        _error(jp_fetch, "caprl", "extract-table", method="POST", body={"path": picture}))
    deadline = time.monotonic() + 20
    while sim_env.in_flight == 0 and not extraction.done():  # poll until it reaches the server
        assert time.monotonic() < deadline, "the extraction never reached the model server"
        await asyncio.sleep(POLL_INTERVAL)
    code, _settings = await _json(jp_fetch, "caprl", "settings")
    assert code == 200 and not extraction.done()
    code, doc = await extraction
    assert code == 502 and doc["error"].startswith("ParseError")


async def test_recent_shows_paths_relative_to_the_jupyter_root(
    jp_fetch, sim_env: VLLMSimulator, jp_root_dir: Path, picture: str
) -> None:
    _bar_chart(jp_root_dir / "charts" / "sales.png")
    await _json(jp_fetch, "caprl", "caption", method="POST", body={"path": picture})
    await _json(jp_fetch, "caprl", "caption", method="POST", body={"path": "charts/sales.png"})
    code, recent = await _json(jp_fetch, "caprl", "recent")
    assert code == 200
    assert sorted(r["input"] for r in recent["results"]) == ["file 'charts/sales.png'", "file 'pic.png'"]
    assert str(jp_root_dir) not in json.dumps(recent)


def test_relative_input_leaves_other_inputs_alone(tmp_path: Path) -> None:
    relative_input = handlers.relative_input
    root = tmp_path / "root"
    root.mkdir()
    inside = str(root / "a b" / "it's.png")
    assert relative_input(f"file {inside!r}", root) == "file \"a b/it's.png\""
    assert relative_input(f"file {str(tmp_path / 'rootless.png')!r}", root) == (
        f"file {str(tmp_path / 'rootless.png')!r}")
    for kept in ("file 'photo.png'", "URL https://example.com/x.png", "bytes (1,024 B)",
                 "PIL image 10x10 RGB", "file 'broken"):
        assert relative_input(kept, root) == kept


@pytest.mark.vllm
# The tiny server's 2048-token context makes the library lower max_tokens, and say so (expected).
@pytest.mark.filterwarnings("ignore:max_tokens lowered:UserWarning")
async def test_extract_table_against_real_vllm(
    jp_fetch, vllm_server: str, monkeypatch: pytest.MonkeyPatch, jp_root_dir: Path
) -> None:
    monkeypatch.setenv("CAPRL_BASE_URL", vllm_server)
    _bar_chart(jp_root_dir / "charts" / "sales.png")
    body = json.dumps({"path": "charts/sales.png"})
    response = await jp_fetch("caprl", "extract-table", method="POST", body=body, raise_error=False,
                              request_timeout=600)
    doc = json.loads(response.body)
    # the tiny random model writes noise inside the schema: a table, or a failure that says why
    if response.code == 200:
        assert doc["path"] == "charts/sales.png"
        assert all(isinstance(doc[k], str) for k in ("title", "x_label", "y_label", "units"))
        assert doc["columns"] and all(isinstance(c, str) for c in doc["columns"])
        assert isinstance(doc["rows"], list)
        for row in doc["rows"]:
            assert len(row) == len(doc["columns"])
            assert all(cell is None or isinstance(cell, (int, float, str)) for cell in row)
        assert doc["model"] and doc["finish_reason"] == "stop" and doc["cached"] is False
        assert doc["latency_s"] > 0
    else:
        assert (response.code, doc["status"]) == (502, 502), doc
        assert doc["error"].startswith(("ParseError: ", "ValidationError: ", "Truncated: ")), doc
        assert doc["error_type"] in ("ParseError", "ValidationError", "TruncatedError"), doc


async def test_recent_hides_url_queries_and_passwords(jp_fetch, sim_env: VLLMSimulator) -> None:
    # Rows stored by older versions kept the whole URL; what is shown drops its tokens.
    inputs = [
        "URL https://bucket.s3.amazonaws.com/a.png?X-Amz-Signature=SIG123&X-Amz-Credential=AKIAX",
        "url 'https://cdn.example.com/b.png?token=TOK456#frag'",
        "URL https://user:PW789@host.example.com/c.png",
    ]
    with ResultStore(sim_env_store()) as store:
        for i, text in enumerate(inputs):
            store.put(key=f"k{i}", task="caption", image_sha256=f"{i:064d}", model="caprl", params={},
                      text="a caption", input=text, created_at=1000.0 + i)
    code, recent = await _json(jp_fetch, "caprl", "recent")
    assert code == 200
    assert [r["input"] for r in recent["results"]] == [
        "URL https://host.example.com/c.png",
        "url 'https://cdn.example.com/b.png'",
        "URL https://bucket.s3.amazonaws.com/a.png",
    ]
    for secret in ("SIG123", "AKIAX", "TOK456", "PW789"):
        assert secret not in json.dumps(recent)


def sim_env_store() -> Path:
    return Path(os.environ["CAPRL_HOME"]) / "results.sqlite3"


def test_shown_input_leaves_plain_inputs_alone(tmp_path: Path) -> None:
    shown_input = handlers.shown_input
    for kept in ("file 'photo.png'", "URL https://example.com/x.png", "bytes (1,024 B)",
                 "file 'what?.png'", "data URL (image/png, ~10 B)"):
        assert shown_input(kept, tmp_path) == kept
    assert shown_input(f"file {str(tmp_path / 'a.png')!r}", tmp_path) == "file 'a.png'"


async def _latency(jp_fetch, name: str) -> float:
    started = time.monotonic()
    response = await jp_fetch("caprl", name)
    assert response.code == 200
    return time.monotonic() - started


async def test_the_server_answers_while_a_caption_waits_for_the_store(
    jp_fetch, sim_env: VLLMSimulator, jp_serverapp, picture: str
) -> None:
    """A kernel holding the store's write lock stalls the caption, never the Jupyter server."""
    app = next(iter(jp_serverapp.extension_manager.extension_apps["caprl_nb"]))
    app.probe.ttl = 600  # the model server's part of /caprl/status is not what is measured
    ResultStore(sim_env_store()).close()
    await _json(jp_fetch, "caprl", "status")
    sim_env.latency = 1.0
    caption = asyncio.ensure_future(_json(jp_fetch, "caprl", "caption", method="POST", body={"path": picture}))
    deadline = time.monotonic() + 30
    while sim_env.in_flight == 0:  # the caption reached the model server
        assert not caption.done() and time.monotonic() < deadline, "the caption never reached the server"
        await asyncio.sleep(POLL_INTERVAL)
    kernel = sqlite3.connect(sim_env_store(), timeout=5, isolation_level=None)
    try:
        kernel.execute("BEGIN EXCLUSIVE")  # as a kernel's long write would hold it
        while sim_env.in_flight:  # the answer is on its way to the store, which is locked
            assert time.monotonic() < deadline, "the model server never answered"
            await asyncio.sleep(POLL_INTERVAL)
        latencies: dict[str, list[float]] = {"settings": [], "status": []}
        for _ in range(5):
            for name, seen in latencies.items():
                seen.append(await _latency(jp_fetch, name))
        for name, seen in latencies.items():
            assert max(seen) < 0.1, f"/caprl/{name} took {max(seen):.3f} s while the store was locked"
        assert not caption.done(), "the caption did not wait for the store: nothing was measured"
    finally:
        kernel.execute("ROLLBACK")
        kernel.close()
    code, doc = await caption
    assert code == 200 and not doc["cached"]
    code, again = await _json(jp_fetch, "caprl", "caption", method="POST", body={"path": picture})
    assert again["cached"] and again["caption"] == doc["caption"]  # it was stored once unlocked
