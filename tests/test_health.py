"""health.py through batches: a server that dies mid-batch ends it in seconds with one error per
unfinished row; one that comes back within outage_timeout loses nothing; a server that is still
starting can be waited for. Against the simulator, stopped and restarted on the same port."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from caprl_nb.batch import run_batch
from caprl_nb.config import resolve_settings
from caprl_nb.engine import free_port
from caprl_nb.errors import CapRLWarning, ServerUnavailableError
from caprl_nb.health import PROBE_INTERVAL, ServerWatch
from caprl_nb.prompts import caption_task

from tests.conftest import make_images
from tests.support.polling import wait_until
from tests.support.vllm_sim import Fault, VLLMSimulator

TASK = caption_task(max_tokens=8)
OUTAGE_S = 1.0  # how long a "restart" leaves nothing listening on the port
LOADING_S = 1.5  # how long a "starting" server takes before it listens


def _settings(url: str, **kw: object):
    return resolve_settings(base_url=url, max_backoff=0.05, **kw)


@pytest.fixture
def files(tmp_path: Path) -> list[str]:
    # Few distinct images, many rows: the row count is what must not matter.
    distinct = make_images(tmp_path / "i", 50)
    return [distinct[i % 50] for i in range(3000)]


def test_a_dead_server_ends_the_batch_in_seconds_with_one_error_per_unfinished_row(
    files: list[str],
) -> None:
    sim = VLLMSimulator(latency=0.05, capacity=8).start()
    try:
        settings = _settings(sim.base_url, concurrency=8, outage_timeout=2.0, max_retries=5)
        killed: dict[str, float] = {}

        def kill_after_some_rows() -> None:
            wait_until(lambda: len(sim.requests) >= 40, 30, "40 requests at the server")
            sim.stop()
            killed["at"] = time.monotonic()

        threading.Thread(target=kill_after_some_rows, daemon=True).start()
        with pytest.warns(CapRLWarning, match="stopped answering"):
            results = run_batch(files, TASK, settings, progress=False, cache=False)
        ended = time.monotonic()
    finally:
        sim.stop()
    assert ended - killed["at"] < 2.0 + 8.0  # the outage window, plus a margin for a loaded machine
    done = [r for r in results if r.error is None]
    failed = [r for r in results if r.error is not None]
    assert len(done) + len(failed) == len(files)
    assert 30 <= len(done) < len(files) and all(r.text for r in done)
    assert {r.error_type for r in failed} == {"ServerUnavailableError"}
    assert all(r.error.startswith("ServerUnavailableError: ") for r in failed)
    assert all(sim.base_url in r.error and "did not come back within 2 s" in r.error for r in failed)
    assert all(r.input for r in failed)


def test_a_server_restarted_within_the_window_loses_nothing(tmp_path: Path) -> None:
    files = make_images(tmp_path / "i", 200)
    port = free_port()
    sim = VLLMSimulator(latency=0.05, capacity=8, port=port).start()
    restarted: list[VLLMSimulator] = []
    try:
        settings = _settings(sim.base_url, concurrency=8, outage_timeout=20.0, max_retries=1)

        def restart() -> None:
            wait_until(lambda: len(sim.requests) >= 30, 30, "30 requests at the server")
            sim.stop()
            time.sleep(OUTAGE_S)
            restarted.append(VLLMSimulator(latency=0.05, capacity=8, port=port).start())

        threading.Thread(target=restart, daemon=True).start()
        results = run_batch(files, TASK, settings, progress=False)
    finally:
        sim.stop()
        for server in restarted:
            server.stop()
    assert [r.error for r in results] == [None] * len(files)
    assert restarted and len(restarted[0].requests) > 0  # the rest went to the restarted server


def test_a_server_that_returns_with_other_weights_ends_the_batch(tmp_path: Path) -> None:
    files = make_images(tmp_path / "i", 120)
    sim = VLLMSimulator(latency=0.05, capacity=4).start()
    try:
        settings = _settings(sim.base_url, concurrency=4, outage_timeout=20.0)

        def swap() -> None:
            wait_until(lambda: len(sim.requests) >= 20, 30, "20 requests at the server")
            sim.set_down(True)
            time.sleep(OUTAGE_S)
            sim.root = "internlm/CapRL-InternVL3.5-8B"
            sim.set_down(False)

        threading.Thread(target=swap, daemon=True).start()
        with pytest.warns(CapRLWarning):
            results = run_batch(files, TASK, settings, progress=False)
    finally:
        sim.stop()
    failed = [r.error for r in results if r.error is not None]
    assert failed and all("came back serving" in e and "InternVL" in e for e in failed)
    assert {r.error_type for r in results if r.error is not None} == {"CheckpointChangedError"}
    assert all(r.model == "caprl" for r in results if r.error is None)


def test_one_reset_on_a_healthy_server_is_an_ordinary_retry(sim: VLLMSimulator, image_files: list[str]) -> None:
    sim.add_faults(Fault("reset"), Fault("reset"))
    results = run_batch(image_files[:1], TASK, _settings(sim.base_url, max_retries=1), progress=False)
    # Two resets where one retry is allowed: the server answers probes, so they count as retries.
    assert results[0].error is not None and "ServerUnavailableError" in results[0].error
    assert results[0].error_type == "ServerUnavailableError"


def test_a_starting_server_is_waited_for_with_a_message(
    image_files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}/v1"
    started: list[VLLMSimulator] = []

    def start_later() -> None:
        time.sleep(LOADING_S)
        started.append(VLLMSimulator(port=port).start())

    threading.Thread(target=start_later, daemon=True).start()
    try:
        results = run_batch(image_files[:2], TASK, _settings(url, wait_for_server=30), progress=False)
    finally:
        for server in started:
            server.stop()
    assert [r.error for r in results] == [None, None]
    assert "waiting up to" in capsys.readouterr().err


def test_without_wait_for_server_a_missing_server_fails_at_once_and_says_how_to_wait(
    image_files: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    # the default retries, backoff (up to 60 s) and outage window (30 s): waiting in any of them
    # would take half a minute or more
    settings = resolve_settings(base_url=url)
    began = time.monotonic()
    with pytest.raises(ServerUnavailableError, match="wait_for_server"):
        run_batch(image_files[:2], TASK, settings, progress=False)
    took = time.monotonic() - began
    assert "waiting" not in capsys.readouterr().err  # no wait was announced (nor taken)
    assert took < 15  # "at once": about 0.1 s; any of the waits above takes 30 s or more


# -- ServerWatch on its own ---------------------------------------------------------------------
def test_the_watch_probes_once_for_many_rows_and_gives_up_after_the_window() -> None:
    async def scenario() -> None:
        state = {"up": True, "probes": 0}

        async def probe() -> None:
            state["probes"] += 1
            if not state["up"]:
                raise ServerUnavailableError("refused")

        watch = ServerWatch(probe, "http://gpu-box:8000/v1", outage_timeout=0.5)
        assert await watch.lost(OSError("reset")) is False  # healthy: the request's own failure
        state["up"], state["probes"] = False, 0
        outcomes = await asyncio.gather(*(watch.lost(OSError("refused")) for _ in range(200)),
                                        return_exceptions=True)
        assert all(isinstance(o, ServerUnavailableError) for o in outcomes)
        assert "http://gpu-box:8000/v1" in str(outcomes[0]) and "within 0.5 s" in str(outcomes[0])
        assert state["probes"] <= 0.5 / PROBE_INTERVAL + 2  # one probe loop, not one per row
        with pytest.raises(ServerUnavailableError):
            await watch.ready()

    asyncio.run(scenario())


def test_the_watch_lets_rows_go_on_when_the_server_answers_again() -> None:
    async def scenario() -> None:
        state = {"up": False}

        async def probe() -> None:
            if not state["up"]:
                raise ServerUnavailableError("refused")

        async def come_back() -> None:
            await asyncio.sleep(OUTAGE_S)
            state["up"] = True

        watch = ServerWatch(probe, "http://h/v1", outage_timeout=20)
        back = asyncio.ensure_future(come_back())
        assert await asyncio.gather(*(watch.lost(OSError("x")) for _ in range(10))) == [True] * 10
        await watch.ready()
        await back

    asyncio.run(scenario())
