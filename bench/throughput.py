"""Rows per second of df.caprl.caption against the naive baseline, one request at a time.

Both caption the same image files through the vLLM-shaped simulator set up like a batching
server (each completion takes LATENCY seconds, up to CAPACITY at once). The baseline is the
loop an analyst writes first: openai.OpenAI, one chat completion per row, in order. Prints
both rates and their ratio.

    .venv/bin/python bench/throughput.py [--rows 400] [--latency 0.5] [--capacity 256]
"""

from __future__ import annotations

import argparse
import base64
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=400)
    parser.add_argument("--baseline-rows", type=int, default=10)
    parser.add_argument("--latency", type=float, default=0.5)
    parser.add_argument("--capacity", type=int, default=256)
    args = parser.parse_args()

    import openai
    import pandas as pd

    import caprl_nb

    from tests.conftest import make_images
    from tests.support.vllm_sim import VLLMSimulator

    with tempfile.TemporaryDirectory() as tmp, VLLMSimulator(
        latency=args.latency, capacity=args.capacity, keep_bodies=False
    ) as sim:
        files = make_images(Path(tmp) / "images", args.rows)
        caprl_nb.configure(home=Path(tmp) / "home")

        client = openai.OpenAI(base_url=sim.base_url, api_key="EMPTY")
        started = time.perf_counter()
        for path in files[: args.baseline_rows]:
            url = "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode()
            client.chat.completions.create(
                model="caprl", max_tokens=64,
                messages=[{"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": url}},
                    {"type": "text", "text": caprl_nb.CAPTION_PROMPT}]}],
            )
        baseline = args.baseline_rows / (time.perf_counter() - started)

        df = pd.DataFrame({"image": files})
        started = time.perf_counter()
        out = df.caprl.caption("image", max_tokens=64, base_url=sim.base_url, progress=False)
        ours = len(df) / (time.perf_counter() - started)
        assert out.notna().all()
        in_flight = sim.max_in_flight

    print(f"baseline (sequential openai.OpenAI loop): {baseline:8.1f} rows/s")
    print(f"df.caprl.caption (concurrency 256):       {ours:8.1f} rows/s, {in_flight} in flight at most")
    print(f"ratio caprl_nb / sequential baseline: {ours / baseline:.1f}x "
          f"(simulated server: {args.latency:g} s per completion, capacity {args.capacity})")


if __name__ == "__main__":
    main()
