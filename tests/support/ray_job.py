"""A Ray driver to kill: captions a list of image paths on a running Ray cluster.

``python -m tests.support.ray_job ADDRESS SPEC.json``: SPEC holds ``paths``, ``base_url``,
``home`` and the caption options. tests/test_ray.py kills it part way through (as a user's
job dies with its driver) and runs the same job again.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def main(address: str, spec_path: str) -> int:
    import ray
    import ray.data

    import caprl_nb.ray

    spec = json.loads(Path(spec_path).read_text())
    ray.init(address=address, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    ds = ray.data.from_items([{"id": i, "path": p} for i, p in enumerate(spec.pop("paths"))])
    caprl_nb.ray.caption(ds, "path", **spec).materialize()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
