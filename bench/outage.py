"""A server killed mid-batch: how long the call takes to return, and what a quick restart loses.

The vLLM-shaped simulator runs in its own process, so it can be killed for real (SIGKILL: no
goodbye, in-flight connections reset, then connection refused). Two runs over the same rows:

* killed: the server is killed KILL_AFTER seconds in and never comes back. Prints the seconds
  from the kill to the call's return against the bound it must meet (``outage_timeout`` plus a
  margin), the rows captioned before the kill, and the error the rest carry.
* restarted: the server is killed and a new one listens on the same port RESTART_AFTER seconds
  later. Every row must come back captioned.

    .venv/bin/python bench/outage.py [--rows 20000] [--kill-after 10] [--restart-after 5]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SERVER = (
    "import signal, sys; from tests.support.vllm_sim import VLLMSimulator; "
    "VLLMSimulator(port=int(sys.argv[1]), latency=0.5, capacity=256, keep_bodies=False).start(); "
    "print('up', flush=True); signal.pause()"
)


def start_server(port: int) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", SERVER, str(port)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
    return proc


def run(files: list[str], port: int, home: Path, kill_after: float, restart_after: float | None,
        outage_timeout: float) -> tuple[float, float, pd.DataFrame]:
    import pandas as pd

    import caprl_nb  # noqa: F401  (registers Series.caprl)

    server = start_server(port)
    servers = [server]
    killed: dict[str, float] = {}

    def kill_then_maybe_restart() -> None:
        time.sleep(kill_after)
        os.kill(server.pid, signal.SIGKILL)
        killed["at"] = time.monotonic()
        if restart_after is not None:
            time.sleep(restart_after)
            servers.append(start_server(port))

    threading.Thread(target=kill_then_maybe_restart, daemon=True).start()
    started = time.monotonic()
    try:
        out = pd.Series(files).caprl.caption(
            details=True, max_tokens=16, base_url=f"http://127.0.0.1:{port}/v1", home=home,
            cache=False, progress=False, outage_timeout=outage_timeout,
        )
    finally:
        for proc in servers:
            proc.kill()
            proc.wait()
    ended = time.monotonic()
    return ended - killed["at"], ended - started, out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=20_000)
    parser.add_argument("--kill-after", type=float, default=10.0)
    parser.add_argument("--restart-after", type=float, default=5.0)
    parser.add_argument("--outage-timeout", type=float, default=30.0)
    args = parser.parse_args()

    import warnings

    from caprl_nb.engine import free_port

    from tests.conftest import make_images

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        distinct = make_images(Path(tmp) / "images", 500)
        files = [distinct[i % len(distinct)] for i in range(args.rows)]
        port = free_port()

        after_kill, total, out = run(files, port, Path(tmp) / "h1", args.kill_after, None,
                                     args.outage_timeout)
        ok = int(out["error"].isna().sum())
        errors = out["error"].dropna()
        bound = args.outage_timeout + 30
        print(f"killed, not restarted: returned {after_kill:.1f} s after the kill "
              f"({after_kill / bound:.2f} of the {bound:.0f} s bound = outage_timeout + 30 s); "
              f"{total:.1f} s in all")
        print(f"  {ok} of {len(files)} rows captioned before the kill, {len(errors)} failed with "
              f"{out['error_type'].dropna().unique().tolist()}")
        print(f"  first error: {errors.iloc[0][:240]}" if len(errors) else "  no errors")

        _, total, out = run(files, port, Path(tmp) / "h2", args.kill_after, args.restart_after,
                            args.outage_timeout)
        ok = int(out["error"].isna().sum())
        print(f"killed, restarted {args.restart_after:g} s later on the same port: "
              f"{ok} of {len(files)} rows captioned, {len(files) - ok} failed; {total:.1f} s in all")


if __name__ == "__main__":
    main()
