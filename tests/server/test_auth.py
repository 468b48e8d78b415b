"""Every ``/caprl/`` endpoint refuses whoever Jupyter refuses, as a browser would meet it.

The requests are real HTTP to a running Jupyter server, with real XSRF tokens and login cookies:

* a valid XSRF token (cookie + header, from Jupyter's login page) but no credentials: refused
  (so the refusal comes from authentication, not from the XSRF check);
* a login cookie but no XSRF token on a POST: refused; with the token: answered (the control);
* a deployment's Authorizer that denies the ``caprl`` resource: refused, while Jupyter's own
  endpoints still answer; the Authorizer sees resource ``caprl`` and the verb's action.

A static check names any handler verb missing ``@tornado.web.authenticated`` or ``@authorized``.
"""

from __future__ import annotations

import ast
import inspect
import json
import textwrap
import urllib.parse
from typing import Any, ClassVar

import pytest
import tornado.web
from jupyter_server.auth import Authorizer
from jupyter_server.auth.decorator import authorized
from jupyter_server.utils import url_path_join
from PIL import Image

from caprl_nb.server import handlers
from caprl_nb.server.handlers import HANDLERS

from tests.support.vllm_sim import VLLMSimulator

VERBS = ("get", "post", "put", "patch", "delete", "head", "options")
ENDPOINTS = [("status", "GET"), ("caption", "POST"), ("extract-table", "POST"), ("recent", "GET"),
             ("settings", "GET"), ("settings", "POST")]
ACTIONS = {"GET": "read", "POST": "write"}


class RecordingAuthorizer(Authorizer):
    """Allows everything except the resources in ``denied``; records what it was asked."""

    denied: ClassVar[set[str]] = set()
    asked: ClassVar[list[tuple[str, str, str]]] = []  # (path, action, resource)

    def is_authorized(self, handler: Any, user: Any, action: str, resource: str) -> bool:
        RecordingAuthorizer.asked.append((handler.request.path, action, resource))
        return resource not in self.denied


@pytest.fixture
def jp_server_config():
    return {"ServerApp": {"jpserver_extensions": {"caprl_nb": True}, "authorizer_class": RecordingAuthorizer}}


@pytest.fixture(autouse=True)
def _fresh_authorizer() -> None:
    RecordingAuthorizer.denied = set()
    RecordingAuthorizer.asked = []


@pytest.fixture
def sim_env(sim: VLLMSimulator, monkeypatch: pytest.MonkeyPatch, jp_root_dir) -> VLLMSimulator:
    monkeypatch.setenv("CAPRL_BASE_URL", sim.base_url)
    monkeypatch.setenv("CAPRL_API_KEY", "sk-secret-value")
    Image.new("RGB", (64, 48), "orange").save(jp_root_dir / "pic.png")
    return sim


# -- the static check -------------------------------------------------------------------------
def _own_verbs(cls: type) -> list[str]:
    """The HTTP verbs ``cls`` answers with code from caprl_nb (not inherited from Jupyter/tornado)."""
    return [verb for verb in VERBS
            if inspect.unwrap(getattr(cls, verb)).__module__ == handlers.__name__]


def _decorators(function: Any) -> list[str]:
    node = ast.parse(textwrap.dedent(inspect.getsource(function))).body[0]
    assert isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
    return [ast.unparse(d) for d in node.decorator_list]


def test_every_handler_verb_is_authenticated_and_authorized() -> None:
    assert handlers.authorized is authorized and handlers.tornado.web.authenticated is tornado.web.authenticated
    found = []
    for name, cls in HANDLERS:
        assert cls.auth_resource == "caprl", f"{cls.__name__}.auth_resource is {cls.auth_resource!r}"
        for verb in _own_verbs(cls):
            # authenticated first: an anonymous request is refused before anyone asks the Authorizer
            assert _decorators(getattr(cls, verb))[:2] == ["tornado.web.authenticated", "authorized"], (
                f"{cls.__name__}.{verb} needs @tornado.web.authenticated then @authorized")
            found.append((name, verb.upper()))
    assert sorted(found) == sorted(ENDPOINTS)


# -- a browser session, cookie by cookie ------------------------------------------------------
class Browser:
    """Cookies as a browser keeps them, against the test's Jupyter server (no token header)."""

    def __init__(self, client: Any, base_url: str) -> None:
        self.client = client
        self.base_url = base_url
        self.cookies: dict[str, str] = {}

    async def fetch(self, path: str, method: str = "GET", body: str | None = None,
                    headers: dict[str, str] | None = None) -> Any:
        headers = dict(headers or {})
        if self.cookies:
            headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self.cookies.items())
        if method == "POST" and body is None:
            body = ""
        response = await self.client.fetch(url_path_join(self.base_url, path), method=method, body=body,
                                           headers=headers, raise_error=False, follow_redirects=False)
        for header in response.headers.get_list("Set-Cookie"):
            name, _, rest = header.partition("=")
            self.cookies[name] = rest.split(";", 1)[0]
        return response

    async def xsrf(self) -> str:
        """A valid XSRF token from Jupyter's login page (set as a cookie, sent back as a header)."""
        response = await self.fetch("login")
        assert response.code == 200 and "_xsrf" in self.cookies
        return self.cookies["_xsrf"]

    async def log_in(self, token: str) -> None:
        xsrf = await self.xsrf()
        form = urllib.parse.urlencode({"_xsrf": xsrf, "password": token})
        response = await self.fetch("login", "POST", form)
        assert response.code == 302, response.body
        assert any(name.startswith("username-") for name in self.cookies), self.cookies

    async def caprl(self, name: str, method: str, xsrf: str | None) -> Any:
        body = json.dumps({"path": "pic.png"} if name != "settings" else {"model": "chosen"})
        headers = {"X-XSRFToken": xsrf} if xsrf else {}
        return await self.fetch(f"caprl/{name}", method, body if method == "POST" else None, headers)


@pytest.fixture
def browser(http_server_client: Any, jp_base_url: str) -> Browser:
    return Browser(http_server_client, jp_base_url)


def _token(jp_serverapp: Any) -> str:
    return jp_serverapp.identity_provider.token


@pytest.mark.parametrize(("name", "method"), ENDPOINTS)
async def test_a_valid_xsrf_token_without_credentials_is_refused(
    browser: Browser, sim_env: VLLMSimulator, jp_serverapp: Any, name: str, method: str
) -> None:
    xsrf = await browser.xsrf()
    response = await browser.caprl(name, method, xsrf)
    assert response.code in (401, 403), (response.code, response.body)
    assert sim_env.requests == []
    # the same token is valid: a logged-in browser sending it is answered
    await browser.log_in(_token(jp_serverapp))
    response = await browser.caprl(name, method, xsrf)
    assert response.code not in (401, 403), (response.code, response.body)


@pytest.mark.parametrize("name", [name for name, method in ENDPOINTS if method == "POST"])
async def test_credentials_without_xsrf_are_refused(
    browser: Browser, sim_env: VLLMSimulator, jp_serverapp: Any, name: str
) -> None:
    await browser.log_in(_token(jp_serverapp))
    response = await browser.caprl(name, "POST", None)
    assert response.code == 403, (response.code, response.body)
    assert sim_env.requests == []
    response = await browser.caprl("settings", "GET", None)
    assert json.loads(response.body)["model"] is None  # the refused POST changed nothing


@pytest.mark.parametrize(("name", "method"), ENDPOINTS)
async def test_an_authorizer_that_denies_caprl_is_obeyed(
    jp_fetch: Any, sim_env: VLLMSimulator, name: str, method: str
) -> None:
    RecordingAuthorizer.denied = {"caprl"}
    body = json.dumps({"path": "pic.png"}) if method == "POST" else None
    response = await jp_fetch("caprl", name, method=method, body=body, raise_error=False)
    assert response.code == 403, (response.code, response.body)
    assert sim_env.requests == []
    assert (ACTIONS[method], "caprl") in [(action, resource) for _, action, resource in RecordingAuthorizer.asked]
    # Jupyter's own endpoints still answer: the refusal is the caprl resource's
    response = await jp_fetch("api", "contents", raise_error=False)
    assert response.code == 200


async def test_an_authorizer_that_allows_caprl_lets_requests_through(jp_fetch: Any, sim_env: VLLMSimulator) -> None:
    RecordingAuthorizer.denied = {"contents"}
    response = await jp_fetch("caprl", "settings", raise_error=False)
    assert response.code == 200
    assert [(action, resource) for _, action, resource in RecordingAuthorizer.asked] == [("read", "caprl")]
