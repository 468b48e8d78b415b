"""Who the server extension talks to: the API key goes only where the admin's configuration says.

A base URL chosen in JupyterLab (``POST /caprl/settings``) is refused unless the admin allows it
(``CapRLApp.allowed_base_urls``, ``CapRLApp.allow_browser_base_url``); an allowed one is sent no
API key, and ``/caprl/status`` does not show what it answers. A recording listener stands in for a
host an attacker controls: it logs every request's Authorization header and answers 500 with a
body that echoes that header.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from PIL import Image
from tornado.httpclient import HTTPClientError

from tests.support.vllm_sim import Fault, VLLMSimulator

KEY = "sk-secret-value"
MARKER = "REMOTE-BODY-7f3a"


class Listener:
    """A host on loopback that records requests and answers every one with a 500 echoing its key."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []  # (path, Authorization header)
        seen = self.seen

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                auth = self.headers.get("Authorization", "")
                seen.append((self.path, auth))
                body = json.dumps({"error": {"message": f"{MARKER} you sent {auth}"}}).encode()
                self.send_response(500)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _answer

            def log_message(self, *args: object) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self._server.server_address[1]}/v1"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


@pytest.fixture
def listener() -> Iterator[Listener]:
    host = Listener()
    yield host
    host.close()


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"caprl_nb": True}}}


@pytest.fixture
def sim_env(sim: VLLMSimulator, monkeypatch: pytest.MonkeyPatch) -> VLLMSimulator:
    monkeypatch.setenv("CAPRL_BASE_URL", sim.base_url)
    monkeypatch.setenv("CAPRL_API_KEY", KEY)
    # a failed caption must not spend the test's time on retries
    monkeypatch.setenv("CAPRL_MAX_RETRIES", "0")
    return sim


@pytest.fixture
def app(jp_serverapp):
    return next(iter(jp_serverapp.extension_manager.extension_apps["caprl_nb"]))


@pytest.fixture
def picture(jp_root_dir: Path) -> str:
    Image.new("RGB", (64, 48), "orange").save(jp_root_dir / "pic.png")
    return "pic.png"


async def _call(jp_fetch, name: str, method: str = "GET", body: object = None) -> tuple[int, dict]:
    response = await jp_fetch("caprl", name, method=method, raise_error=False,
                              body=None if body is None else json.dumps(body), request_timeout=60)
    return response.code, json.loads(response.body)


async def test_a_browser_base_url_is_refused_by_default(jp_fetch, sim_env, listener: Listener, picture: str) -> None:
    code, doc = await _call(jp_fetch, "settings", "POST", {"base_url": listener.base_url})
    assert (code, doc["status"]) == (403, 403)
    assert "CapRLApp.allowed_base_urls" in doc["error"] and "CapRLApp.allow_browser_base_url" in doc["error"]
    # nothing changed: every endpoint still talks to the configured server, with its key
    code, doc = await _call(jp_fetch, "settings")
    assert doc == {"base_url": sim_env.base_url, "model": None, "has_api_key": True}
    code, status = await _call(jp_fetch, "status")
    assert status["state"] == "up" and status["base_url"] == sim_env.base_url
    code, caption = await _call(jp_fetch, "caption", "POST", {"path": picture})
    assert code == 200 and caption["base_url"] == sim_env.base_url
    assert listener.seen == []


async def test_an_allowed_browser_base_url_never_gets_the_key(
    jp_fetch, sim_env, app, listener: Listener, picture: str
) -> None:
    app.allowed_base_urls = [listener.base_url + "/"]  # written with a slash: the same URL
    code, doc = await _call(jp_fetch, "settings", "POST", {"base_url": listener.base_url})
    assert code == 200 and doc == {"base_url": listener.base_url, "model": None, "has_api_key": False}
    code, status = await _call(jp_fetch, "status")
    assert status["state"] == "down" and "HTTP 500" in status["error"]
    assert MARKER not in json.dumps(status)  # the host's reply is not reflected
    code, caption = await _call(jp_fetch, "caption", "POST", {"path": picture})
    assert code >= 500 and KEY not in json.dumps(caption)
    assert MARKER not in json.dumps(caption) and "answered HTTP 500" in caption["error"]
    paths = {path for path, _ in listener.seen}
    assert {"/v1/models", "/metrics"} <= paths
    assert all(KEY not in auth for _, auth in listener.seen), listener.seen
    # another URL is still refused: the allow-list is a list, not a switch
    code, doc = await _call(jp_fetch, "settings", "POST", {"base_url": "http://127.0.0.1:9/v1"})
    assert code == 403


async def test_allow_browser_base_url_allows_any_url_without_the_key(jp_fetch, sim_env, app, listener: Listener) -> None:
    app.allow_browser_base_url = True
    code, doc = await _call(jp_fetch, "settings", "POST", {"base_url": listener.base_url})
    assert code == 200 and doc["has_api_key"] is False
    await _call(jp_fetch, "status")
    assert listener.seen and all(KEY not in auth for _, auth in listener.seen)


async def test_the_configured_server_gets_the_key_and_never_shows_it(
    jp_fetch, sim_env, app, listener: Listener
) -> None:
    # the listener works: configured by the admin, it is trusted with the key and its words
    app.base_url = listener.base_url
    app.api_key = KEY
    code, status = await _call(jp_fetch, "status")
    assert status["state"] == "down" and MARKER in status["error"]
    assert ("/v1/models", f"Bearer {KEY}") in listener.seen
    assert KEY not in json.dumps(status)  # echoed by the host, redacted by us


@pytest.mark.parametrize("cleared", [None, "", "  "])
async def test_clearing_a_setting_in_the_browser_resets_the_server(
    jp_fetch, sim_env, app, listener: Listener, cleared: str | None
) -> None:
    app.allowed_base_urls = [listener.base_url]
    code, doc = await _call(jp_fetch, "settings", "POST", {"base_url": listener.base_url, "model": "other"})
    assert (doc["base_url"], doc["model"], doc["has_api_key"]) == (listener.base_url, "other", False)
    code, doc = await _call(jp_fetch, "settings", "POST", {"model": cleared})
    assert (doc["base_url"], doc["model"]) == (listener.base_url, None)
    code, doc = await _call(jp_fetch, "settings", "POST", {"base_url": cleared})
    assert code == 200 and doc == {"base_url": sim_env.base_url, "model": None, "has_api_key": True}
    code, status = await _call(jp_fetch, "status")
    assert status["state"] == "up" and status["base_url"] == sim_env.base_url


async def test_choosing_the_configured_url_is_always_allowed(jp_fetch, sim_env) -> None:
    code, doc = await _call(jp_fetch, "settings", "POST", {"base_url": sim_env.base_url + "/"})
    assert code == 200 and doc == {"base_url": sim_env.base_url, "model": None, "has_api_key": True}


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        ({"base_url": "nope"}, 400, "http://"),
        ({"base_url": 5}, 400, "must be a string"),
        ({"api_key": "x"}, 400, "Only base_url and model"),
        ({"home": "/tmp"}, 400, "Only base_url and model"),
        (["base_url"], 400, "JSON object"),
    ],
)
async def test_bad_settings_are_refused(jp_fetch, sim_env, body: object, status: int, fragment: str) -> None:
    code, doc = await _call(jp_fetch, "settings", "POST", body)
    assert (code, doc["status"]) == (status, status) and fragment in doc["error"]
    code, doc = await _call(jp_fetch, "settings")
    assert doc == {"base_url": sim_env.base_url, "model": None, "has_api_key": True}


async def test_a_bad_json_body_is_a_400(jp_fetch, sim_env) -> None:
    with pytest.raises(HTTPClientError) as info:
        await jp_fetch("caprl", "settings", method="POST", body="{not json")
    assert info.value.code == 400 and "not JSON" in json.loads(info.value.response.body)["error"]


async def test_several_models_and_none_chosen_is_up_with_the_models_to_choose_from(
    jp_fetch, monkeypatch: pytest.MonkeyPatch
) -> None:
    with VLLMSimulator(served_names=("caprl-3b", "caprl-qwen3")) as several:
        monkeypatch.setenv("CAPRL_BASE_URL", several.base_url)
        code, status = await _call(jp_fetch, "status")
        assert code == 200 and status["state"] == "no-model" and status["model"] is None
        assert status["models"] == ["caprl-3b", "caprl-qwen3"]
        assert "is up and serves several models" in status["error"]
        assert "CapRL settings" in status["error"] and "CapRLApp.model" in status["error"]
        code, doc = await _call(jp_fetch, "settings", "POST", {"model": "caprl-qwen3"})
        assert code == 200
        code, status = await _call(jp_fetch, "status")
        assert status["state"] == "up" and status["model"] == "caprl-qwen3" and status["error"] is None
        assert status["models"] == ["caprl-3b", "caprl-qwen3"]


@pytest.mark.parametrize("endpoint", ["caption", "extract-table"])
async def test_a_chosen_servers_error_reply_is_summarised_by_its_status(
    jp_fetch, sim_env, app, picture: str, endpoint: str
) -> None:
    rejecting = Fault("status", 400, body=json.dumps({"error": {"message": f"{MARKER} <b>nope</b>"}}))
    with VLLMSimulator(faults=[rejecting]) as chosen:
        app.allowed_base_urls = [chosen.base_url]
        code, doc = await _call(jp_fetch, "settings", "POST", {"base_url": chosen.base_url})
        assert code == 200 and doc["has_api_key"] is False
        code, answer = await _call(jp_fetch, endpoint, "POST", {"path": picture})
        assert [r["_outcome"] for r in chosen.requests] == ["status:400"]  # it did answer, with its words
    assert code == 502 and MARKER not in json.dumps(answer)
    assert "answered HTTP 400" in answer["error"] and "not shown" in answer["error"]


async def test_the_configured_servers_error_reply_is_shown(jp_fetch, sim_env, picture: str) -> None:
    sim_env.add_faults(Fault("status", 400, body=json.dumps({"error": {"message": MARKER}})))
    code, answer = await _call(jp_fetch, "caption", "POST", {"path": picture})
    assert code == 502 and MARKER in answer["error"]  # the admin's own server: its words help
