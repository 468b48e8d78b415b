"""Wall time of df.caprl.extract over 50 mixed images on real vLLM (CPU), tiny random Qwen2.5-VL.

The figure tests/extract/test_vllm.py used to hold as an assert (< 60 s), kept here as a target:
on a loaded machine it is missed without anything being wrong. Starts `caprl-nb serve --model
tiny` on a free loopback port (needs CAPRL_VLLM_PYTHON, as the tests do), extracts a six-field
schema from 20 charts, 10 documents and 20 noise images with max_tokens=256, and prints the wall
time, rows per second, and how the rows ended.

    CAPRL_VLLM_PYTHON=.venvs/vllm/bin/python .venv/bin/python bench/extract_tiny_vllm.py [--repeat 1]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Literal

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
TARGET_S = 60.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=1, help="runs, each on a fresh result store")
    args = parser.parse_args()

    import pandas as pd
    import pydantic

    import caprl_nb  # noqa: F401  (registers df.caprl)
    from caprl_nb.extract import groundtruth

    from tests.conftest import make_images
    from tests.support.vllm_server import start_tiny_server

    class PageFacts(pydantic.BaseModel):
        title: str = pydantic.Field(max_length=40)
        kind: Literal["chart", "document", "photo", "other"]
        count: int
        amount: float
        has_text: bool
        labels: list[str] = pydantic.Field(max_length=3)

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        images = (list(groundtruth.charts(root / "charts", 20)["image"])
                  + list(groundtruth.documents(root / "docs", 10)["image"])
                  + make_images(root / "noise", 20, size=(160, 120)))
        df = pd.DataFrame({"image": images})
        engine = start_tiny_server(root / "server")
        try:
            for run in range(args.repeat):
                os.environ["CAPRL_HOME"] = str(root / f"home{run}")  # nothing cached
                started = time.perf_counter()
                with warnings.catch_warnings(record=True):
                    out = df.caprl.extract("image", PageFacts, base_url=engine.base_url, max_tokens=256,
                                           details=True, progress=False)
                elapsed = time.perf_counter() - started
                kinds = out["error_type"].value_counts(dropna=False).to_dict()
                print(f"run {run + 1}: {len(df)} images in {elapsed:.1f} s ({len(df) / elapsed:.2f} rows/s; "
                      f"target < {TARGET_S:.0f} s: {'met' if elapsed < TARGET_S else 'MISSED'}); rows: {kinds}")
        finally:
            engine.stop()


if __name__ == "__main__":
    main()
