"""Self-check of tests/support/vllm_sim.py: the vLLM-shaped fault/throughput simulator (not a model).

Driven the way caprl_nb will drive a real vLLM: httpx for the plain routes, the real
``openai.OpenAI`` client (max_retries=0, so every fault reaches the test) for completions.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from PIL import Image

from tests.support.vllm_sim import Fault, VLLMSimulator, expected_content, image_digest


def data_url(width: int = 64, height: int = 56, color: str | tuple[int, int, int] = "red") -> str:
    buf = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buf, "PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def messages(url: str, prompt: str = "Describe the image.") -> list[dict]:
    return [
        {
            "role": "user",
            "content": [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": prompt}],
        }
    ]


def wait_until(condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout} s")
        time.sleep(0.01)  # a poll interval, not a wait for something to happen


@pytest.fixture
def make_sim():
    sims: list[VLLMSimulator] = []

    def make(**kwargs) -> VLLMSimulator:
        sim = VLLMSimulator(**kwargs).start()
        sims.append(sim)
        return sim

    yield make
    for sim in sims:
        sim.stop()


def client_for(sim: VLLMSimulator, timeout: float = 5.0) -> openai.OpenAI:
    return openai.OpenAI(base_url=sim.base_url, api_key="sim", max_retries=0, timeout=timeout)


def test_plain_routes_have_vllm_shapes(make_sim):
    sim = make_sim(model_id="caprl", root="internlm/CapRL-3B", max_model_len=4096, version="0.32.0")
    server = sim.base_url.removesuffix("/v1")
    with httpx.Client(timeout=5) as http:
        health = http.get(f"{server}/health")
        assert (health.status_code, health.content) == (200, b"")
        assert http.get(f"{server}/version").json() == {"version": "0.32.0"}
        models = http.get(f"{sim.base_url}/models").json()
        metrics = http.get(f"{server}/metrics")
        missing = http.get(f"{server}/v2/nothing")
    assert models["object"] == "list"
    (card,) = models["data"]
    assert card["id"] == "caprl" and card["root"] == "internlm/CapRL-3B" and card["max_model_len"] == 4096
    assert card["owned_by"] == "vllm" and card["parent"] is None and card["permission"][0]["object"] == "model_permission"
    assert [m.id for m in client_for(sim).models.list()] == ["caprl"]
    for name in ("vllm:num_requests_running", "vllm:num_requests_waiting", "vllm:generation_tokens_total"):
        assert f'{name}{{engine="0",model_name="caprl"}} 0.0' in metrics.text
    assert metrics.headers["content-type"].startswith("text/plain")
    assert missing.status_code == 404 and missing.json() == {"detail": "Not Found"}


def test_completion_round_trip_is_deterministic_and_tagged(make_sim):
    sim = make_sim(completion_tokens=16)
    url = data_url()
    client = client_for(sim)
    first = client.chat.completions.create(model="caprl", messages=messages(url))
    again = client.chat.completions.create(model="caprl", messages=messages(url))
    other = client.chat.completions.create(model="caprl", messages=messages(data_url(color="blue")))
    short = client.chat.completions.create(model="caprl", messages=messages(url), max_tokens=3)

    text = first.choices[0].message.content
    assert first.object == "chat.completion" and first.model == "caprl"
    assert first.choices[0].message.role == "assistant" and first.choices[0].finish_reason == "stop"
    assert len(text.split()) == 16 and image_digest(url)[:12] in text
    assert text == again.choices[0].message.content == expected_content({"messages": messages(url)})
    assert other.choices[0].message.content != text
    # 64x56 px -> 3x2 tiles of 28 px; "Describe the image." is 19 chars -> 5 tokens
    assert (first.usage.prompt_tokens, first.usage.completion_tokens, first.usage.total_tokens) == (11, 16, 27)
    assert short.choices[0].finish_reason == "length"
    assert short.choices[0].message.content.split() == text.split()[:3]
    assert [r["_outcome"] for r in sim.requests] == ["ok"] * 4
    assert sim.requests[0]["_images"] == [image_digest(url)]
    assert sim.requests[0]["messages"] == messages(url)


def test_scripted_500_then_ok(make_sim):
    sim = make_sim(faults=[Fault("status", 500)])
    client = client_for(sim)
    with pytest.raises(openai.InternalServerError) as info:
        client.chat.completions.create(model="caprl", messages=messages(data_url()))
    assert info.value.status_code == 500
    assert info.value.body["type"] == "InternalServerError"  # vLLM's {"error": {...}} shape, unwrapped by openai
    assert client.chat.completions.create(model="caprl", messages=messages(data_url())).choices[0].message.content
    assert [r["_outcome"] for r in sim.requests] == ["status:500", "ok"]


def test_429_carries_retry_after(make_sim):
    sim = make_sim(faults=[Fault("status", 429, retry_after=2), Fault("status", 503, retry_after=0.5)])
    client = client_for(sim)
    with pytest.raises(openai.RateLimitError) as rate_limited:
        client.chat.completions.create(model="caprl", messages=messages(data_url()))
    with pytest.raises(openai.InternalServerError) as unavailable:
        client.chat.completions.create(model="caprl", messages=messages(data_url()))
    assert rate_limited.value.response.headers["retry-after"] == "2"
    assert unavailable.value.status_code == 503 and unavailable.value.response.headers["retry-after"] == "0.5"


def test_reset_is_a_connection_error_not_a_timeout(make_sim):
    sim = make_sim(faults=[Fault("reset")])
    with pytest.raises(openai.APIConnectionError) as info:
        client_for(sim).chat.completions.create(model="caprl", messages=messages(data_url()))
    assert not isinstance(info.value, openai.APITimeoutError)
    assert [r["_outcome"] for r in sim.requests] == ["reset"]


def test_timeout_fault_holds_until_the_client_gives_up(make_sim):
    sim = make_sim(faults=[Fault("timeout")])
    started = time.monotonic()
    with pytest.raises(openai.APITimeoutError):
        client_for(sim, timeout=0.3).chat.completions.create(model="caprl", messages=messages(data_url()))
    assert time.monotonic() - started >= 0.3
    assert [r["_outcome"] for r in sim.requests] == ["timeout"]
    wait_until(lambda: sim.in_flight == 0)  # the simulator notices the hang-up and lets go


def test_capacity_queues_and_latency_paces(make_sim):
    sim = make_sim(capacity=4, latency=0.2)
    client = client_for(sim)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        urls = [data_url(color=(i, 0, 0)) for i in range(8)]
        results = list(pool.map(lambda u: client.chat.completions.create(model="caprl", messages=messages(u)), urls))
    elapsed = time.monotonic() - started
    assert elapsed >= 0.4  # two waves of four
    assert sim.max_in_flight == 8 and sim.max_running == 4
    for url, result in zip(urls, results):
        assert image_digest(url)[:12] in result.choices[0].message.content


def test_context_length_and_model_are_validated_like_vllm(make_sim):
    sim = make_sim(max_model_len=1000)
    client = client_for(sim)
    big = data_url(28 * 40, 28 * 30)  # 1200 image tokens
    with pytest.raises(openai.BadRequestError) as too_long:
        client.chat.completions.create(model="caprl", messages=messages(big))
    assert "This model's maximum context length is 1000 tokens" in too_long.value.body["message"]
    assert too_long.value.body["type"] == "BadRequestError" and too_long.value.body["code"] == 400
    with pytest.raises(openai.BadRequestError, match="cannot be greater than max_model_len=1000"):
        client.chat.completions.create(model="caprl", messages=messages(data_url()), max_tokens=2000)
    with pytest.raises(openai.NotFoundError, match="The model `other` does not exist"):
        client.chat.completions.create(model="other", messages=messages(data_url()))
    with pytest.raises(openai.BadRequestError, match="missing ',' separator"):
        client.chat.completions.create(model="caprl", messages=messages("data:image/png;base64"))
    with pytest.raises(openai.BadRequestError, match="cannot identify image"):
        client.chat.completions.create(model="caprl", messages=messages("data:image/png;base64,aGVsbG8="))
    # vLLM 0.32 clamps a max_tokens that merely overflows the room left after the prompt
    clamped = client.chat.completions.create(model="caprl", messages=messages(data_url()), max_tokens=995)
    assert clamped.choices[0].finish_reason == "stop"
    missing = httpx.post(f"{sim.base_url}/chat/completions", json={"model": "caprl"}, timeout=5)
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "body.messages"


def test_reject_mode_refuses_prompt_plus_max_tokens(make_sim):
    sim = make_sim(max_model_len=1000, context_check="reject")
    with pytest.raises(openai.BadRequestError, match=r"you requested 1006 tokens \(11 in the messages, 995"):
        client_for(sim).chat.completions.create(model="caprl", messages=messages(data_url()), max_tokens=995)


def test_fail_image_and_down_server(make_sim):
    sim = make_sim()
    bad, good = data_url(color="black"), data_url(color="white")
    sim.fail_image(image_digest(bad)[:16], Fault("status", 500))
    client = client_for(sim)
    for _ in range(2):
        with pytest.raises(openai.InternalServerError):
            client.chat.completions.create(model="caprl", messages=messages(bad))
    assert client.chat.completions.create(model="caprl", messages=messages(good)).choices[0].message.content
    sim.set_down(True)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="caprl", messages=messages(good))
    sim.set_down(False)
    assert client.chat.completions.create(model="caprl", messages=messages(good)).choices[0].message.content


def test_fault_rate_is_reproducible_from_the_seed(make_sim):
    def outcomes(seed: int) -> list[str]:
        sim = make_sim(fault_rate=0.5, seed=seed)
        with httpx.Client(timeout=0.2) as http:
            for _ in range(12):
                try:
                    http.post(f"{sim.base_url}/chat/completions", json={"model": "caprl", "messages": messages(data_url())})
                except httpx.TransportError:
                    pass  # resets and timeouts are the point
        return [r["_outcome"] for r in sim.requests]

    first = outcomes(seed=3)
    assert first == outcomes(seed=3)
    assert "ok" in first and len(set(first)) > 2


def test_three_hundred_concurrent_keep_alive_connections(make_sim):
    sim = make_sim(latency=1.0)  # long enough for all 300 to be in flight at once
    url = data_url()

    async def burst() -> list[httpx.Response]:
        limits = httpx.Limits(max_connections=300, max_keepalive_connections=300)
        async with httpx.AsyncClient(limits=limits, timeout=20) as http:
            body = {"model": "caprl", "messages": messages(url)}
            return await asyncio.gather(*(http.post(f"{sim.base_url}/chat/completions", json=body) for _ in range(300)))

    responses = asyncio.run(burst())
    assert all(r.status_code == 200 for r in responses)
    assert sim.max_in_flight == 300
