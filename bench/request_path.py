"""The request path against the loop an analyst writes by hand, in one run.

The vLLM-shaped simulator (tests/support/vllm_sim.py) runs in its own *process* with CAPACITY
slots and LATENCY seconds per completion, so the ceiling is C/L images/s and its CPU is not
the client's. N distinct ~340 KB 800x600 JPEGs (random noise, made once in a temp dir) are
captioned with max_tokens=16 by:

* ``loop``: asyncio + openai.AsyncOpenAI + Semaphore(C), base64 data URLs (the 15 lines below);
* ``caprl cache=False``: ``df.caprl.caption("image", max_tokens=16, cache=False)``;
* ``caprl default``: the same with the default cache=True, on a fresh store.

Each client is run ``--repeat`` times, alternating, against the same simulator process.
Printed per run: images/s, the fraction of C/L, the ratio to the loop's median, and client CPU
seconds per image (``time.process_time`` deltas of this process, all threads). The simulator's
own CPU per request is printed too: above ~1/(C/L) s per request it cannot sustain C/L on
this machine, whatever the client does.

    .venv/bin/python bench/request_path.py [--images 2000] [--capacity 256] [--latency 1] [--repeat 2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

# The simulator process: start, print its URL, answer "cpu" with its CPU seconds, stop at EOF.
_SIM = """
import sys, time
sys.path.insert(0, {root!r})
from tests.support.vllm_sim import VLLMSimulator
with VLLMSimulator(latency={latency}, capacity={capacity}, keep_bodies=False) as sim:
    print(sim.base_url, flush=True)
    for line in sys.stdin:
        print(time.process_time(), sim.max_in_flight, flush=True)
        sim.reset_log()
"""


class Simulator:
    def __init__(self, latency: float, capacity: int) -> None:
        code = _SIM.format(root=str(ROOT), latency=latency, capacity=capacity)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        assert self.proc.stdout is not None
        self.base_url = self.proc.stdout.readline().strip()

    def sample(self) -> tuple[float, int]:
        """(CPU seconds so far, most requests in flight since the last sample)."""
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write("cpu\n")
        self.proc.stdin.flush()
        cpu, most = self.proc.stdout.readline().split()
        return float(cpu), int(most)

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


def make_jpegs(
    folder: Path, n: int, size: tuple[int, int] = (800, 600), quality: int = 85, seed: int = 11, stem: str = "photo",
) -> list[str]:
    """``n`` distinct noise JPEGs (800x600 at q85: about 340 KB each)."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        pixels = rng.integers(0, 256, size=(size[1], size[0], 3), dtype=np.uint8)
        path = folder / f"{stem}{i:05d}.jpg"
        Image.fromarray(pixels).save(path, "JPEG", quality=quality)
        paths.append(str(path))
    return paths


# -- the hand-written loop (what the baseline is) -------------------------------------
async def hand_written(files: list[str], base_url: str, concurrency: int) -> list[str]:
    import openai

    client = openai.AsyncOpenAI(base_url=base_url, api_key="EMPTY")
    gate = asyncio.Semaphore(concurrency)

    async def one(path: str) -> str:
        async with gate:
            url = "data:image/jpeg;base64," + base64.b64encode(Path(path).read_bytes()).decode()
            response = await client.chat.completions.create(
                model="caprl", max_tokens=16,
                messages=[{"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": url}},
                    {"type": "text", "text": "Please describe this image in detail."}]}],
            )
            return response.choices[0].message.content or ""

    try:
        return await asyncio.gather(*(one(f) for f in files))
    finally:
        await client.close()


def run_loop(files: list[str], base_url: str, concurrency: int) -> int:
    texts = asyncio.run(hand_written(files, base_url, concurrency))
    return sum(bool(t) for t in texts)


def run_caprl(files: list[str], base_url: str, cache: bool, home: Path) -> int:
    import pandas as pd

    import caprl_nb

    caprl_nb.configure(home=home)
    df = pd.DataFrame({"image": files})
    out = df.caprl.caption("image", max_tokens=16, cache=cache, base_url=base_url, progress=False)
    return int(out.notna().sum())


def measure(name: str, call: Callable[[], int], n: int, sim: Simulator, bound: float) -> dict[str, Any]:
    sim_cpu0, _ = sim.sample()
    cpu0, wall0 = time.process_time(), time.perf_counter()
    ok = call()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    sim_cpu1, most = sim.sample()
    rate = n / wall
    row = {
        "client": name, "ok": ok, "rate": rate, "of_bound": rate / bound,
        "cpu_ms": 1000 * cpu / n, "sim_cpu_ms": 1000 * (sim_cpu1 - sim_cpu0) / n, "in_flight": most,
    }
    print(f"  {name:<20} {rate:7.1f} img/s  {rate / bound:5.2f} of C/L  client CPU {row['cpu_ms']:5.2f} ms/img"
          f"  sim CPU {row['sim_cpu_ms']:5.2f} ms/req  in flight <= {most}  ({ok}/{n} ok)", flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--capacity", type=int, default=256)
    parser.add_argument("--latency", type=float, default=1.0)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--clients", default="loop,caprl cache=False,caprl default")
    args = parser.parse_args()
    bound = args.capacity / args.latency
    import openai  # noqa: F401 - imported before any timing, so no client pays for imports
    import pandas  # noqa: F401

    import caprl_nb  # noqa: F401
    chosen = [c.strip() for c in args.clients.split(",")]

    with tempfile.TemporaryDirectory() as tmp:
        files = make_jpegs(Path(tmp) / "images", args.images)
        size = statistics.mean(os.path.getsize(f) for f in files) / 1024
        sim = Simulator(args.latency, args.capacity)
        print(f"{args.images} JPEGs 800x600, {size:.0f} KB on average; simulator C={args.capacity}, "
              f"L={args.latency:g} s (C/L = {bound:g} img/s) in process {sim.proc.pid}; "
              f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.1f}")
        rows: list[dict[str, Any]] = []
        try:
            for rep in range(args.repeat):
                for name in chosen:
                    if name == "loop":
                        call: Callable[[], int] = partial(run_loop, files, sim.base_url, args.capacity)
                    else:
                        home = Path(tmp) / f"home-{rep}-{len(rows)}"  # a fresh store every run
                        call = partial(run_caprl, files, sim.base_url, name != "caprl cache=False", home)
                    rows.append(measure(name, call, args.images, sim, bound))
        finally:
            sim.close()

    loop_rates = [r["rate"] for r in rows if r["client"] == "loop"]
    base = statistics.median(loop_rates) if loop_rates else float("nan")
    print()
    print("| client | images/s | of C/L | x loop | client CPU ms/img | sim CPU ms/req |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['client']} | {r['rate']:.1f} | {r['of_bound']:.2f} | {r['rate'] / base:.2f} | "
              f"{r['cpu_ms']:.2f} | {r['sim_cpu_ms']:.2f} |")
    for name in [c for c in chosen if c != "loop"]:
        mine = [r for r in rows if r["client"] == name]
        if not mine:
            continue
        rate = statistics.median(r["rate"] for r in mine)
        cpu = statistics.median(r["cpu_ms"] for r in mine)
        loop_cpu = statistics.median(r["cpu_ms"] for r in rows if r["client"] == "loop") if loop_rates else None
        print("RESULT " + json.dumps({
            "name": f"{name}: throughput vs the hand-written loop", "value": round(rate, 1), "unit": "images/s",
            "baseline": "hand-written asyncio + AsyncOpenAI loop", "baseline_value": round(base, 1),
            "ratio": round(rate / base, 3), "target": ">= 1.15x",
        }))
        print("RESULT " + json.dumps({
            "name": f"{name}: fraction of C/L", "value": round(rate, 1), "unit": "images/s",
            "baseline": "C/L (simulator capacity / latency)", "baseline_value": bound,
            "ratio": round(rate / bound, 3), "target": ">= 0.85x",
        }))
        if loop_cpu is not None:
            print("RESULT " + json.dumps({
                "name": f"{name}: client CPU per image", "value": round(cpu, 2), "unit": "ms",
                "baseline": "the hand-written loop's", "baseline_value": round(loop_cpu, 2),
                "ratio": round(cpu / loop_cpu, 3), "target": "<= 1x",
            }))
    sim_ms = statistics.median(r["sim_cpu_ms"] for r in rows)
    print(f"\nThe simulator spends {sim_ms:.2f} ms CPU per request: at C/L it needs "
          f"{sim_ms * bound / 1000:.2f} of a core ({os.cpu_count()} here, shared with the client).")


if __name__ == "__main__":
    main()
