"""Milliseconds to prepare a 12-megapixel JPEG photo, against the PIL loop a user would write.

Both turn the same 4000x3000 JPEG (a smooth gradient with noise, ~q90) into an image within
the model's budget (qwen2.5-vl's preset, ``--max-image-tokens``, as caprl_nb sends it):

* baseline, "PIL to PNG": ``Image.open``, ``convert("RGB")``, ``resize`` to the size caprl_nb
  sends (LANCZOS), ``save`` as PNG: what a user writes to shrink a photo before sending it;
* caprl_nb: ``images.identify`` + ``images.prepare`` (JPEG draft-mode decoding at the nearest
  1/2..1/8 scale, one resize, one JPEG encode).

One core (the process is pinned to one CPU where the OS allows). Prints the median of
``--repeats`` runs of each, alternating, and the ratio; the issue's bar is <= 20 ms.

    .venv/bin/python bench/prepare_image.py [--repeats 15] [--size 4000x3000]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--size", default="4000x3000")
    parser.add_argument("--max-image-tokens", type=int, default=1280,
                        help="the image budget (a server's max_model_len sets it; 1280 ~ 1 megapixel)")
    args = parser.parse_args()
    width, height = (int(n) for n in args.size.split("x"))
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})

    import numpy as np
    from PIL import Image

    from caprl_nb import images
    from caprl_nb.models import PRESETS

    preset = PRESETS["qwen2.5-vl"]
    rng = np.random.default_rng(0)
    x = np.linspace(0, 255, width)[None, :, None]
    y = np.linspace(0, 255, height)[:, None, None]
    pixels = np.clip(x * 0.6 + y * 0.4 + rng.normal(0, 12, (height, width, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, "JPEG", quality=90)
    data = buf.getvalue()
    budget = args.max_image_tokens
    target = preset.fit(width, height, budget).size

    def baseline() -> bytes:
        img = Image.open(io.BytesIO(data)).convert("RGB").resize(target, Image.Resampling.LANCZOS)
        out = io.BytesIO()
        img.save(out, "PNG")
        return out.getvalue()

    def ours() -> images.Payload:
        return images.prepare(images.identify(data), preset, max_image_tokens=budget)

    payload = ours()
    assert (payload.width, payload.height) == target, (payload.width, payload.height, target)
    base_ms: list[float] = []
    ours_ms: list[float] = []
    for _ in range(args.repeats):
        for fn, into in ((baseline, base_ms), (ours, ours_ms)):
            started = time.process_time()
            fn()
            into.append((time.process_time() - started) * 1e3)
    b, o = statistics.median(base_ms), statistics.median(ours_ms)
    print(f"machine: {os.cpu_count()} CPUs (pinned to one), load average {os.getloadavg()[0]:.1f}; "
          f"{width}x{height} JPEG of {len(data) / 1e6:.1f} MB -> {target[0]}x{target[1]}; "
          f"CPU time, median of {args.repeats}")
    print(f"baseline (PIL open + convert RGB + LANCZOS resize + save PNG): {b:7.1f} ms")
    print(f"caprl_nb identify + prepare ({payload.mime}, {payload.nbytes / 1e3:.0f} kB):     {o:7.1f} ms")
    print(f"ratio baseline / caprl_nb: {b / o:.1f}x faster; issue bar 20 ms: {'met' if o <= 20 else 'NOT met'}")


if __name__ == "__main__":
    main()
