"""client.py against the vLLM-shaped simulator: protocol, retries, error translation."""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from pathlib import Path

import certifi
import httpx
import pytest

from caprl_nb.client import (
    CapRLClient,
    ServerInfo,
    _tls,
    fetch_plain,
    fetch_server_info,
    is_healthy,
    retry_delay,
)
from caprl_nb.config import resolve_settings
from caprl_nb.errors import (
    RequestRejectedError,
    ServerBusyError,
    ServerTimeoutError,
    ServerUnavailableError,
)
from caprl_nb.prompts import caption_task

from tests.support.vllm_sim import Fault, VLLMSimulator

PNG = "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAIAAACQd1PeAAAADElEQVR4nGP4z8AAAAMBAQDJ/pLvAAAAAElFTkSuQmCC"


def _complete(sim: VLLMSimulator, **settings: object):
    s = resolve_settings(base_url=sim.base_url, max_backoff=0.05, **settings)
    task = caption_task(max_tokens=8)

    async def go():
        async with CapRLClient(s) as client:
            return await client.complete(
                model="caprl", messages=task.messages(PNG), temperature=1.0, top_p=1.0,
                max_tokens=8, repetition_penalty=1.0,
            )

    return asyncio.run(go())


def test_sends_the_authors_request(sim: VLLMSimulator) -> None:
    done = _complete(sim)
    assert done.text and done.finish_reason in ("stop", "length")
    assert done.prompt_tokens and done.completion_tokens
    assert done.attempts == 1
    body = sim.requests[0]
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert body["messages"][0]["content"][0]["type"] == "image_url"
    assert body["messages"][0]["content"][1]["text"] == "Please describe this image in detail."
    assert (body["temperature"], body["top_p"], body["repetition_penalty"]) == (1.0, 1.0, 1.0)


def test_retries_5xx_and_429_then_succeeds(sim: VLLMSimulator) -> None:
    sim.add_faults(Fault("status", 500), Fault("status", 503), Fault("status", 429, retry_after=0))
    done = _complete(sim)
    assert done.attempts == 4
    assert [r["_outcome"] for r in sim.requests] == ["status:500", "status:503", "status:429", "ok"]


def test_honours_retry_after(sim: VLLMSimulator) -> None:
    sim.add_faults(Fault("status", 429, retry_after=1))
    started = time.monotonic()
    # max_backoff caps ordinary backoff, not a server's Retry-After below the cap.
    s = resolve_settings(base_url=sim.base_url, max_backoff=5)
    task = caption_task(max_tokens=8)

    async def go():
        async with CapRLClient(s) as client:
            return await client.complete(model="caprl", messages=task.messages(PNG), temperature=1.0,
                                         top_p=1.0, max_tokens=8, repetition_penalty=1.0)

    assert asyncio.run(go()).attempts == 2
    assert time.monotonic() - started >= 1.0


def test_400_is_not_retried(sim: VLLMSimulator) -> None:
    sim.add_faults(Fault("status", 400))
    with pytest.raises(RequestRejectedError, match="HTTP 400") as info:
        _complete(sim)
    assert info.value.status_code == 400
    assert len(sim.requests) == 1


def test_gives_up_after_max_retries(sim: VLLMSimulator) -> None:
    sim.add_faults(*[Fault("status", 502)] * 3)
    with pytest.raises(ServerBusyError, match="concurrency"):
        _complete(sim, max_retries=2)
    assert len(sim.requests) == 3


def test_reset_and_timeout_are_retried(sim: VLLMSimulator) -> None:
    sim.add_faults(Fault("reset"), Fault("timeout", hold=5))
    done = _complete(sim, read_timeout=0.5)
    assert done.attempts == 3
    assert [r["_outcome"] for r in sim.requests] == ["reset", "timeout", "ok"]


def test_timeout_message(sim: VLLMSimulator) -> None:
    sim.add_faults(*[Fault("timeout", hold=5)] * 2)
    with pytest.raises(ServerTimeoutError, match="read_timeout"):
        _complete(sim, read_timeout=0.3, max_retries=1)


def test_unknown_model_is_rejected_not_retried(sim: VLLMSimulator) -> None:
    s = resolve_settings(base_url=sim.base_url)

    async def go():
        async with CapRLClient(s) as client:
            return await client.complete(model="nope", messages=caption_task().messages(PNG),
                                         temperature=1.0, top_p=1.0, max_tokens=8, repetition_penalty=1.0)

    with pytest.raises(RequestRejectedError, match="model"):
        asyncio.run(go())
    assert len(sim.requests) == 1


def test_server_info() -> None:
    with VLLMSimulator(model_id="caprl", root="internlm/CapRL-InternVL3.5-8B", max_model_len=4096,
                       version="0.32.0") as sim:
        info = asyncio.run(fetch_server_info(resolve_settings(base_url=sim.base_url)))
    assert (info.model, info.root, info.max_model_len, info.version) == (
        "caprl", "internlm/CapRL-InternVL3.5-8B", 4096, "0.32.0")
    assert info.models == ("caprl",)


def test_server_info_wrong_model_lists_served(sim: VLLMSimulator) -> None:
    with pytest.raises(RequestRejectedError, match="'caprl'"):
        asyncio.run(fetch_server_info(resolve_settings(base_url=sim.base_url), "other"))


def test_no_server_says_what_to_do() -> None:
    from caprl_nb.engine import free_port

    s = resolve_settings(base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0)
    with pytest.raises(ServerUnavailableError, match="caprl-nb serve"):
        asyncio.run(fetch_server_info(s))


def test_retry_delay_is_capped_and_jittered() -> None:
    delays = {retry_delay(3, None, cap=60) for _ in range(20)}
    assert all(1.0 <= d <= 2.0 for d in delays) and len(delays) > 1
    assert retry_delay(30, None, cap=4) <= 4
    assert retry_delay(1, 7.0, cap=60) == 7.0
    assert retry_delay(1, 700.0, cap=60) == 60


def test_a_refused_tile_count_says_how_to_serve_internvl(sim: VLLMSimulator) -> None:
    # What vLLM 0.32 answers to mm_processor_kwargs without --trust-request-mm-kwargs.
    refusal = json.dumps({"error": {
        "message": "Per-request mm_processor_kwargs are disabled by default because they can change "
                   "multimodal preprocessing resource usage. Start the server with "
                   "--trust-request-mm-kwargs only when clients are trusted.",
        "type": "BadRequestError", "param": "mm_processor_kwargs", "code": 400}})
    sim.add_faults(Fault("status", 400, body=refusal))

    async def call() -> None:
        async with CapRLClient(resolve_settings(base_url=sim.base_url)) as client:
            await client.complete(model="caprl", messages=[{"role": "user", "content": "x"}],
                                  temperature=1.0, top_p=1.0, max_tokens=8, repetition_penalty=1.0,
                                  processor_kwargs={"max_dynamic_patch": 2})

    with pytest.raises(RequestRejectedError, match="--trust-request-mm-kwargs .caprl-nb serve adds it"):
        asyncio.run(call())
    assert sim.requests[0]["mm_processor_kwargs"] == {"max_dynamic_patch": 2}


def test_several_models_and_none_named_caprl_is_one_clear_error(image_files: list[str]) -> None:
    import caprl_nb
    from caprl_nb.errors import ConfigError

    with VLLMSimulator(model_id="qwen-a", served_names=("qwen-a", "qwen-b")) as sim:
        with pytest.raises(ConfigError) as caught:
            caprl_nb.caption(image_files, base_url=sim.base_url, progress=False)
        message = str(caught.value)
        assert "'qwen-a', 'qwen-b'" in message and "model=" in message and "CAPRL_MODEL" in message
        assert sim.requests == []  # raised before the batch started: no row was sent
        chosen = caprl_nb.caption(image_files[:2], base_url=sim.base_url, model="qwen-b",
                                  progress=False, details=True)
        assert chosen["error"].isna().all() and set(chosen["model"]) == {"qwen-b"}
        assert {r["model"] for r in sim.requests} == {"qwen-b"}


def test_several_models_one_named_caprl_picks_it() -> None:
    with VLLMSimulator(model_id="caprl", served_names=("other", "caprl")) as sim:
        info = asyncio.run(fetch_server_info(resolve_settings(base_url=sim.base_url)))
    assert info.model == "caprl" and info.models == ("other", "caprl")


def test_is_healthy_polls_the_servers_health(sim: VLLMSimulator) -> None:
    from caprl_nb.engine import free_port

    assert is_healthy(resolve_settings(base_url=sim.base_url).server_root)
    assert not is_healthy(f"http://127.0.0.1:{free_port()}", timeout=1.0)  # nothing listens


def test_request_body_splices_image_urls_as_bytes_and_stays_valid_json() -> None:
    import base64
    import os

    from caprl_nb.client import request_body

    big = "data:image/jpeg;base64," + base64.b64encode(os.urandom(30_000)).decode()
    odd = 'data:image/png;base64,"quoted\\' + "A" * 2000  # must be escaped, never spliced raw
    fields = {
        "model": "caprl", "max_tokens": 16, "temperature": 1.0,
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": big}},
            {"type": "image_url", "image_url": {"url": odd}},
            {"type": "text", "text": "Please describe this image in detail. é"}]}],
    }
    body = request_body(fields)
    assert json.loads(body) == fields
    assert big.encode() in body  # the payload went in as it was, not through the JSON encoder
    assert fields["messages"][0]["content"][0]["image_url"]["url"] == big  # the caller's dicts untouched


def test_tls_contexts_are_built_once_per_process_and_http_gets_one_that_trusts_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A batch makes one httpx client per lane of 16 connections: each used to load the CA
    # bundle again (tens of milliseconds). An https server's lanes share one verifying context.
    for name in ("SSL_CERT_FILE", "SSL_CERT_DIR", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    https = _tls("https://models.example/v1")
    assert _tls("HTTPS://other.example/v1") is https
    assert https.verify_mode == ssl.CERT_REQUIRED and https.check_hostname
    assert https.cert_store_stats()["x509_ca"] > 0
    # An http server's clients never follow a redirect, so they never speak TLS; if one did,
    # a context with no CA certificates refuses every server (it fails closed, never open).
    plain = _tls("http://127.0.0.1:8000/v1")
    assert plain.verify_mode == ssl.CERT_REQUIRED and plain.check_hostname
    assert plain.cert_store_stats()["x509_ca"] == 0
    # Through a proxy (which may be an https:// one) an http server's clients verify too.
    monkeypatch.setenv("HTTP_PROXY", "https://proxy.example:3128")
    assert _tls("http://127.0.0.1:8000/v1") is https
    monkeypatch.delenv("HTTP_PROXY")
    # The CA bundle named by SSL_CERT_FILE is honoured when it changes.
    monkeypatch.setenv("SSL_CERT_FILE", certifi.where())
    assert _tls("https://models.example/v1") is not https


def test_server_info_asks_models_and_version_through_one_client_and_leaves_it_open(sim: VLLMSimulator) -> None:
    s = resolve_settings(base_url=sim.base_url)

    async def go() -> tuple[ServerInfo, str | None, bool]:
        async with CapRLClient(s) as client:
            info = await client.server_info()
            # /version again through the same client: it is still open after server_info.
            text = await fetch_plain(s, "/version", client._discovery)
            return info, text, client._discovery.is_closed

    info, text, closed = asyncio.run(go())
    assert info.version == sim.version and info.root == sim.root
    assert text is not None and json.loads(text)["version"] == sim.version
    assert not closed


def test_an_http_server_that_redirects_discovery_to_https_is_followed_and_verified(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # An http:// server's discovery client loads no CA bundle up front, but it follows
    # redirects as openai's own client does: the https hop is verified, with SSL_CERT_FILE.
    import http.server
    import subprocess
    import threading

    from tests.support.loopback import serving

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    with VLLMSimulator(root="internlm/CapRL-3B", version="0.11.0") as sim:
        sim_root = sim.base_url.removesuffix("/v1")

        class Proxy(http.server.BaseHTTPRequestHandler):  # the https side: relays to the simulator
            def do_GET(self) -> None:
                answer = httpx.get(f"{sim_root}{self.path}")
                self.send_response(answer.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer.content)))
                self.end_headers()
                self.wfile.write(answer.content)

            def log_message(self, *args: object) -> None:
                pass

        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        tls.load_cert_chain(cert, key)
        httpsd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
        httpsd.socket = tls.wrap_socket(httpsd.socket, server_side=True)
        threading.Thread(target=httpsd.serve_forever, daemon=True).start()
        secure = f"https://127.0.0.1:{httpsd.server_address[1]}"

        class Redirect(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(301)
                self.send_header("Location", f"{secure}{self.path}")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        try:
            with serving(Redirect) as plain:
                settings = resolve_settings(base_url=f"{plain}/v1", max_retries=0)
                with pytest.raises(ServerUnavailableError, match="CERTIFICATE_VERIFY_FAILED|certificate verify"):
                    asyncio.run(fetch_server_info(settings))  # a certificate nobody vouched for
                monkeypatch.setenv("SSL_CERT_FILE", str(cert))
                info = asyncio.run(fetch_server_info(settings))
        finally:
            httpsd.shutdown()
            httpsd.server_close()
    assert info.root == "internlm/CapRL-3B"
