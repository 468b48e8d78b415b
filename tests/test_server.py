"""The Jupyter server extension, through a real Jupyter server (pytest-jupyter's jp_fetch)."""

from __future__ import annotations

import ast
import inspect
import json
import os
import time
from pathlib import Path

import pytest
from PIL import Image
from tornado.httpclient import HTTPClientError

from caprl_nb import errors
from caprl_nb.engine import free_port
from caprl_nb.server import handlers
from caprl_nb.server.handlers import HANDLERS, http_status
from caprl_nb.server.status import parse_metrics

from .vllm_sim import Fault, VLLMSimulator

pytest_plugins = ["pytest_jupyter.jupyter_server"]


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


async def test_status_down_answers_fast(jp_fetch, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPRL_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    started = time.monotonic()
    code, doc = await _json(jp_fetch, "caprl", "status")
    assert code == 200 and doc["state"] == "down" and "caprl-nb serve" in doc["error"]
    assert time.monotonic() - started < 5


async def test_caption_a_file(jp_fetch, sim_env: VLLMSimulator, picture: str) -> None:
    code, doc = await _json(jp_fetch, "caprl", "caption", method="POST", body={"path": picture})
    assert code == 200 and doc["caption"].startswith("sim caption") and not doc["cached"]
    assert doc["model"] == "caprl" and doc["server_version"] == "0.32.0"
    assert doc["base_url"] == sim_env.base_url and doc["completion_tokens"] > 0
    code, again = await _json(jp_fetch, "caprl", "caption", method="POST", body={"path": picture})
    assert again["cached"] and again["caption"] == doc["caption"]
    code, recent = await _json(jp_fetch, "caprl", "recent")
    assert recent["results"][0]["text"] == doc["caption"][:300]


@pytest.mark.parametrize(
    ("path", "status", "fragment"),
    [
        ("../outside.png", 403, "outside the Jupyter root"),
        ("missing.png", 404, "No file"),
        ("notes.txt", 400, "not an image"),
        ("folder", 400, "folder"),
        ("", 400, "path"),
        ("link.png", 403, "outside"),
    ],
)
async def test_caption_refuses_bad_paths(
    jp_fetch, sim_env: VLLMSimulator, jp_root_dir: Path, tmp_path: Path, path: str, status: int, fragment: str
) -> None:
    outside = jp_root_dir.parent / "outside.png"
    Image.new("RGB", (50, 50)).save(outside)
    (jp_root_dir / "notes.txt").write_text("hello")
    (jp_root_dir / "folder").mkdir()
    os.symlink(outside, jp_root_dir / "link.png")
    code, doc = await _error(jp_fetch, "caprl", "caption", method="POST", body={"path": path})
    assert (code, doc["status"]) == (status, status) and fragment in doc["error"]
    assert sim_env.requests == []


async def test_caption_too_large(jp_fetch, sim_env: VLLMSimulator, jp_serverapp, picture: str) -> None:
    app = next(iter(jp_serverapp.extension_manager.extension_apps["caprl_nb"]))
    app.max_file_bytes = 100
    code, doc = await _error(jp_fetch, "caprl", "caption", method="POST", body={"path": picture})
    assert code == 413 and "max_file_bytes" in doc["error"]


async def test_caption_with_model_server_down_is_502(jp_fetch, monkeypatch: pytest.MonkeyPatch, picture: str) -> None:
    monkeypatch.setenv("CAPRL_BASE_URL", f"http://127.0.0.1:{free_port()}/v1")
    code, doc = await _error(jp_fetch, "caprl", "caption", method="POST", body={"path": picture})
    assert code == 502 and "caprl-nb serve" in doc["error"]


async def test_caption_timeout_is_504(jp_fetch, sim_env: VLLMSimulator, monkeypatch: pytest.MonkeyPatch, picture: str) -> None:
    monkeypatch.setenv("CAPRL_READ_TIMEOUT", "0.5")
    monkeypatch.setenv("CAPRL_MAX_RETRIES", "0")
    sim_env.add_faults(Fault("timeout", hold=5))
    code, doc = await _error(jp_fetch, "caprl", "caption", method="POST", body={"path": picture})
    assert code == 504 and "read_timeout" in doc["error"]


async def test_settings_never_reveal_the_key(jp_fetch, sim_env: VLLMSimulator) -> None:
    code, doc = await _json(jp_fetch, "caprl", "settings")
    assert doc == {"base_url": sim_env.base_url, "model": None, "has_api_key": True}
    code, doc = await _json(jp_fetch, "caprl", "settings", method="POST", body={"model": "other"})
    assert doc["model"] == "other" and "sk-secret" not in json.dumps(doc)
    code, doc = await _error(jp_fetch, "caprl", "settings", method="POST", body={"base_url": "nope"})
    assert code == 400 and "http://" in doc["error"]
    code, doc = await _error(jp_fetch, "caprl", "settings", method="POST", body={"api_key": "x"})
    assert code == 400


@pytest.mark.parametrize(("name", "method"), [("status", "GET"), ("caption", "POST"), ("recent", "GET"),
                                              ("settings", "GET"), ("settings", "POST")])
async def test_unauthenticated_requests_are_refused(jp_fetch, jp_serverapp, sim_env, name: str, method: str) -> None:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("caprl", name, method=method, body="{}" if method == "POST" else None,
                       headers={"Authorization": ""})
    assert info.value.code in (401, 403)


def test_every_handler_verb_is_authenticated() -> None:
    tree = ast.parse(inspect.getsource(handlers))
    verbs = {"get", "post", "put", "patch", "delete", "head", "options"}
    found = 0
    for cls in (n for n in tree.body if isinstance(n, ast.ClassDef)):
        for fn in (n for n in cls.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            if fn.name in verbs:
                found += 1
                names = [ast.unparse(d) for d in fn.decorator_list]
                assert "tornado.web.authenticated" in names, f"{cls.name}.{fn.name} is not authenticated"
    assert found >= len(HANDLERS)


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
