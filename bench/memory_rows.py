"""Peak memory of a batch over 50,000 rows of file paths, against 2,000 rows (the baseline).

Each size runs in a fresh process captioning file paths (2,000 distinct PNG files, cycled)
against the vLLM-shaped simulator in another process, with progress off. Prints the peak RSS
of both and their ratio; the target is <= 1.15x.

    .venv/bin/python bench/memory_rows.py [--rows 2000 50000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

CHILD = r"""
import json, resource, sys, warnings
import pandas as pd
import caprl_nb
files = json.loads(open(sys.argv[1]).read())
rows = int(sys.argv[2])
df = pd.DataFrame({"image": [files[i % len(files)] for i in range(rows)]})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    out = df.caprl.caption("image", details=True, base_url=sys.argv[3], max_tokens=8, progress=False)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"rows": rows, "ok": int(out["error"].isna().sum()), "peak_kib": after,
                  "before_kib": before, "cached": int(out["cached"].sum())}))
"""

SIM = r"""
import sys, time
from tests.support.vllm_sim import VLLMSimulator
sim = VLLMSimulator(keep_bodies=False, completion_tokens=40).start()
print(sim.base_url, flush=True)
sys.stdin.read()
sim.stop()
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs=2, default=[2000, 50000])
    parser.add_argument("--files", type=int, default=2000)
    args = parser.parse_args()
    from tests.conftest import make_images

    with tempfile.TemporaryDirectory() as tmp:
        files = make_images(Path(tmp) / "images", args.files)
        listing = Path(tmp) / "files.json"
        listing.write_text(json.dumps(files))
        sim = subprocess.Popen([sys.executable, "-c", SIM], cwd=ROOT, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
        assert sim.stdin is not None and sim.stdout is not None  # both are pipes
        base_url = sim.stdout.readline().strip()
        results = {}
        try:
            for rows in args.rows:
                # Each size gets its own empty store, so both do the same mix of work per row.
                env = {"CAPRL_HOME": str(Path(tmp) / f"home-{rows}"), "PATH": "/usr/bin:/bin"}
                started = time.perf_counter()
                done = subprocess.run([sys.executable, "-c", CHILD, str(listing), str(rows), base_url],
                                      cwd=ROOT, env=env, capture_output=True, text=True, check=True)
                results[rows] = json.loads(done.stdout.strip().splitlines()[-1])
                results[rows]["seconds"] = time.perf_counter() - started
        finally:
            sim.stdin.close()
            sim.wait(30)
    small, large = (results[r] for r in args.rows)
    for r in (small, large):
        print(f"{r['rows']:>7,} rows: peak RSS {r['peak_kib'] / 1024:7.1f} MiB, {r['ok']:,} captioned "
              f"({r['cached']:,} from the store), {r['seconds']:.1f} s")
    ratio = large["peak_kib"] / small["peak_kib"]
    print(f"peak RSS ratio, {large['rows']:,} rows vs baseline {small['rows']:,} rows: {ratio:.3f}x (target <= 1.15x)")


if __name__ == "__main__":
    main()
