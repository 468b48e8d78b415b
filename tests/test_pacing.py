"""pacing.py: the in-flight limit follows the server's queue, against the simulator's /metrics."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path

from caprl_nb.batch import BatchRunner
from caprl_nb.config import resolve_settings
from caprl_nb.pacing import START, Pacer, queue_depth
from caprl_nb.prompts import caption_task

from tests.conftest import make_images
from tests.support.vllm_sim import VLLMSimulator

VLLM_METRICS = """\
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="a b"} 7.0
vllm:num_requests_running{engine="1",model_name="a b"} 5.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="a b"} 3.0
vllm:num_requests_waiting{engine="1",model_name="a b"} 0.0
vllm:num_requests_waiting_by_reason{reason="capacity"} 99.0
"""


def test_queue_depth_sums_engines_and_needs_both_gauges() -> None:
    assert queue_depth(VLLM_METRICS) == (12, 3)
    assert queue_depth("vllm:num_requests_running 4\n") is None
    assert queue_depth(None) is None and queue_depth("<html>not prometheus</html>") is None


def _run(files: list[str], sim: VLLMSimulator, **settings: object) -> tuple[BatchRunner, list[int]]:
    """Run a batch; sample the server's in-flight count every 20 ms while it runs."""
    s = resolve_settings(base_url=sim.base_url, max_backoff=0.05, **settings)
    runner = BatchRunner(caption_task(max_tokens=8), s, cache=False)
    samples: list[int] = []
    done = threading.Event()

    def sample() -> None:
        while not done.wait(0.02):
            samples.append(sim.in_flight)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    try:
        results = asyncio.run(runner.run(files, len(files)))
    finally:
        done.set()
        sampler.join()
    assert all(r.error is None for r in results)
    return runner, samples


def test_a_small_server_gets_its_capacity_and_a_short_queue_not_the_whole_batch(tmp_path: Path) -> None:
    files = make_images(tmp_path / "i", 160)
    with VLLMSimulator(latency=0.1, capacity=8, keep_bodies=False) as sim:
        runner, samples = _run(files, sim)  # concurrency: the default 256
        assert sim.max_running == 8  # the server was kept full
        most = sim.max_in_flight
    assert runner.pacer is not None and runner.pacer.adaptive
    assert most <= 32, f"{most} requests at once at a server that runs 8"
    first = next(i for i, n in enumerate(samples) if n)
    last = len(samples) - next(i for i, n in enumerate(reversed(samples)) if n)
    busy = sorted(samples[first:last])  # from the first request to the last answer
    assert busy[len(busy) // 2] >= 8  # most of the time, every slot had a request


def test_a_large_server_gets_the_whole_concurrency(tmp_path: Path) -> None:
    files = make_images(tmp_path / "i", 300)
    with VLLMSimulator(latency=0.5, capacity=256, keep_bodies=False) as sim:
        runner, _ = _run(files, sim, concurrency=96)
        most = sim.max_in_flight
    assert runner.pacer is not None and runner.pacer.limit == 96
    assert most == 96  # a concurrency the user chose is reached, never passed


async def _no_metrics() -> str | None:
    return None


def test_without_metrics_the_concurrency_is_fixed() -> None:
    async def go() -> tuple[int, int]:
        pacer = Pacer(40, _no_metrics)
        before = pacer.limit
        await pacer.run()  # returns at once: nothing to follow
        return before, pacer.limit

    before, after = asyncio.run(go())
    assert (before, after) == (START, 40) and before < after


def test_a_growing_queue_lowers_the_limit_and_waiters_go_when_it_rises() -> None:
    async def go() -> list[int]:
        pacer = Pacer(256, _no_metrics)
        seen = [pacer.limit]
        pacer._peak = pacer.limit
        pacer._set(pacer.decide(running=8, waiting=60))  # flooded: back to running + a short queue
        seen.append(pacer.limit)
        started = 0
        release = asyncio.Event()  # every request holds its slot until the checks are done

        async def request() -> None:
            nonlocal started
            async with pacer.slot():
                started += 1
                await release.wait()

        async def settle() -> None:  # let every task that can run, run: no wall clock involved
            for _ in range(20):
                await asyncio.sleep(0)

        tasks = [asyncio.ensure_future(request()) for _ in range(20)]
        await settle()
        seen.append(started)
        pacer._set(20)  # the limit rises: the waiting requests go at once
        await settle()
        seen.append(started)
        release.set()
        await asyncio.gather(*tasks)
        return seen

    start, lowered, first, after_rise = asyncio.run(go())
    assert start == START and lowered == 12
    assert (first, after_rise) == (12, 20)
