"""Run every benchmark in bench/ and write bench/RESULTS.md.

    .venv/bin/python -m bench [--profile quick|full] [--only NAME ...] [--skip NAME ...]

Each script in BENCHES that is present runs in its own process (repository root as cwd and on
PYTHONPATH), one after the other, with its arguments for the profile: ``quick`` (minutes, the
figures' shape) or ``full`` (the sizes the issue's bars are stated at). Arguments a script's
``--help`` does not list are dropped and reported, so a script that changed its options still
runs. Scripts that are missing, or whose requirement is not met (an engine for the real-vLLM
benches, Chromium for the browser ones), are listed as skipped with the reason.

RESULTS.md holds the machine (CPU model, cores, RAM, OS, load average before and after), the
date, the git commit and the exact command; a summary table of the figures the scripts report;
then every script's command, exit status, wall time and whole output, so nothing depends on
the convention below.

Convention: a bench script may print lines ``RESULT {json}`` with the keys ``name``, ``value``,
``unit``, ``baseline`` (what the figure is measured against, in the same run),
``baseline_value``, ``ratio`` and ``target`` (e.g. ``">= 0.95x"`` for the ratio, ``"<= 20 ms"``
for the value). The summary shows them and whether the target was met.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULT_PREFIX = "RESULT "


@dataclass(frozen=True)
class Bench:
    """One script and its arguments per profile; ``needs`` names a requirement checked first."""

    name: str
    script: str
    quick: list[str]
    full: list[str]
    needs: str | None = None
    about: str = ""


# The order is the order they run in: simulator benches first, then the browser, then the real vLLM.
BENCHES = [
    Bench("request_path", "request_path.py",
          ["--images", "500", "--capacity", "64", "--latency", "0.5", "--repeat", "2"],
          ["--images", "2000", "--capacity", "256", "--latency", "1", "--repeat", "3"],
          about="caprl_nb vs the hand-written asyncio loop against the simulator"),
    Bench("fleet", "fleet.py",
          ["--rows", "1000", "--capacity", "32", "--latency", "0.5", "--repeat", "1"],
          ["--rows", "3000", "--capacity", "64", "--latency", "0.5", "--repeat", "2"],
          about="One call over two simulated servers vs one server"),
    Bench("throughput", "throughput.py",
          ["--rows", "200", "--baseline-rows", "10"],
          ["--rows", "2000", "--baseline-rows", "20", "--capacity", "256", "--latency", "1"],
          about="caprl_nb vs a sequential openai loop against the simulator"),
    Bench("cached_rerun", "cached_rerun.py",
          ["--rows", "2000", "--repeats", "2"],
          ["--rows", "20000", "--repeats", "3"],
          about="Fully cached re-run in a new process vs a hand-written JSON cache"),
    Bench("prepare_image", "prepare_image.py", ["--repeats", "5"], [],
          about="12 MP JPEG / PNG chart preparation vs PIL-to-PNG"),
    Bench("memory_rows", "memory_rows.py",
          ["--rows", "1000", "5000", "--files", "500"],
          ["--rows", "2000", "50000", "--files", "2000"],
          about="Peak memory over many rows vs a small batch"),
    Bench("outage", "outage.py",
          ["--rows", "2000", "--kill-after", "3", "--restart-after", "2", "--outage-timeout", "10"],
          [],
          about="Server killed mid-batch: time to return, rows lost on restart"),
    Bench("gallery_first_paint", "gallery_first_paint.py",
          ["--rows", "10000", "--files", "100", "--repeat", "1"],
          ["--files", "200", "--repeat", "3"],  # its default row counts
          needs="chromium",
          about="Gallery first card in JupyterLab vs a naive HTML gallery"),
    Bench("vllm_serving", "vllm_serving.py",
          ["--rows", "128", "--concurrency", "8", "--max-tokens", "16", "--repeat", "3"],
          ["--rows", "512", "--concurrency", "32", "--max-tokens", "16", "--repeat", "3"],
          needs="engine",
          about="caprl_nb vs `vllm bench serve` against the real tiny vLLM"),
    Bench("extract_tiny_vllm", "extract_tiny_vllm.py", ["--repeat", "1"], ["--repeat", "2"],
          needs="engine",
          about="Structured extraction wall time on the real tiny vLLM"),
]
TIMEOUT_S = {"quick": 900.0, "full": 3600.0}  # per script


@dataclass
class Outcome:
    bench: Bench
    command: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    skipped: str | None = None
    returncode: int | None = None
    timed_out: bool = False
    wall_s: float = 0.0
    output: str = ""
    results: list[dict[str, Any]] = field(default_factory=list)


def unmet(needs: str | None, env: Mapping[str, str]) -> str | None:
    """Why a requirement is not met in the scripts' environment ``env``, or None."""
    if needs == "engine":
        python = env.get("CAPRL_VLLM_PYTHON")
        if not python or not Path(python).exists():
            return "needs a vLLM engine: set CAPRL_VLLM_PYTHON (see `caprl-nb install-engine`)"
    if needs == "chromium" and not (Path("/usr/bin/chromium").exists() or shutil.which("chromium")):
        return "needs Chromium at /usr/bin/chromium"
    return None


def known_options(script: Path, env: dict[str, str]) -> set[str] | None:
    """The --options the script's --help lists; None when --help itself failed."""
    proc = subprocess.run([sys.executable, str(script), "--help"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    if proc.returncode != 0:
        return None
    return set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", proc.stdout))


def keep_known(args: list[str], known: set[str] | None) -> tuple[list[str], list[str]]:
    """``args`` without the options (and their values) not in ``known``; and what was dropped."""
    if known is None:
        return args, []
    kept: list[str] = []
    dropped: list[str] = []
    target = kept
    for arg in args:
        if arg.startswith("--"):
            target = kept if arg.split("=")[0] in known else dropped
        target.append(arg)
    return kept, dropped


def parse_results(output: str) -> list[dict[str, Any]]:
    results = []
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            try:
                value = json.loads(line[len(RESULT_PREFIX):])
            except json.JSONDecodeError:
                continue
            if isinstance(value, dict):
                results.append(value)
    return results


def run_one(bench: Bench, profile: str, env: dict[str, str], timeout: float) -> Outcome:
    outcome = Outcome(bench)
    script = BENCH / bench.script
    if not script.exists():
        outcome.skipped = f"bench/{bench.script} is not in this checkout"
        return outcome
    reason = unmet(bench.needs, env)
    if reason:
        outcome.skipped = reason
        return outcome
    args, outcome.dropped = keep_known(getattr(bench, profile), known_options(script, env))
    shown = script.relative_to(ROOT) if script.is_relative_to(ROOT) else script
    outcome.command = [sys.executable, str(shown), *args]
    print(f"\n=== {bench.name}: {shlex.join(outcome.command)}", flush=True)
    if outcome.dropped:
        print(f"    (its --help does not list {shlex.join(outcome.dropped)}: dropped)", flush=True)
    lines: list[str] = []
    started = time.perf_counter()
    # Its own session, so a timeout can interrupt it and everything it started; SIGINT restored
    # (a runner started in the background by a shell ignores it, and its children would too).
    proc = subprocess.Popen(outcome.command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            sys.stdout.write("    " + line)
            sys.stdout.flush()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        outcome.timed_out = True
        interrupt(proc)
    except KeyboardInterrupt:
        interrupt(proc)  # it runs in its own session: Ctrl-C reached only this process
        raise
    reader.join(10)
    outcome.wall_s = time.perf_counter() - started
    outcome.returncode = proc.returncode
    outcome.output = "".join(lines)
    outcome.results = parse_results(outcome.output)
    return outcome


def interrupt(proc: subprocess.Popen[str]) -> None:
    """SIGINT to the script's process group (its finally blocks stop the servers it started), then SIGKILL."""
    os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def ratio_lines(output: str) -> list[str]:
    """The lines of a script without RESULT lines that state a ratio, target or bound, for the summary."""
    return [line.strip() for line in output.splitlines()
            if re.search(r"\b(ratio|target|bound)\b", line, re.IGNORECASE) and not line.startswith(RESULT_PREFIX)]


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    cores = os.cpu_count()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cores
    return {"CPU": cpu, "cores": f"{cores} logical ({usable} usable by this process)", "RAM": ram,
            "OS": platform.platform(), "Python": platform.python_version()}


def git(*args: str) -> str:
    proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=False)
    return proc.stdout.strip() if proc.returncode == 0 else "unknown"


def load() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def met(result: dict[str, Any]) -> str:
    """'met' / 'missed' for targets like '>= 0.95x' (the ratio) or '<= 20 ms' (the value)."""
    match = re.match(r"\s*(>=|<=)\s*([0-9.]+)\s*(x?)", str(result.get("target") or ""))
    if not match:
        return ""
    op, bound, on_ratio = match.group(1), float(match.group(2)), match.group(3) == "x"
    figure = result.get("ratio" if on_ratio else "value")
    if not isinstance(figure, (int, float)):
        return ""
    ok = figure >= bound if op == ">=" else figure <= bound
    return "met" if ok else "missed"


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def render(outcomes: list[Outcome], info: dict[str, str], profile: str, note: str) -> str:
    out = [
        "# Benchmark results",
        "",
        f"Written by `python -m bench` ({profile} profile; the exact command is below). Every figure",
        "is set beside its baseline measured in the same run, on the same machine.",
        "",
        "| | |",
        "|---|---|",
    ]
    for key in ("date", "commit", "command", "CPU", "cores", "RAM", "OS", "Python", "load before",
                "load after", "wall"):
        value = info[key]
        out.append(f"| {key} | {'`' + value + '`' if key in ('command', 'commit') else cell(value)} |")
    if note:
        out += ["", f"Note: {note}"]
    out += ["", "## Summary", "",
            "| bench | figure | value | unit | baseline | baseline value | ratio | target | |",
            "|---|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        if o.skipped:
            out.append(f"| {o.bench.name} | skipped: {cell(o.skipped)} | | | | | | | |")
            continue
        status = "timed out" if o.timed_out else ("" if o.returncode == 0 else f"exit {o.returncode}")
        if not o.results:
            stated = "<br>".join(cell(line) for line in ratio_lines(o.output)[:6])
            out.append(f"| {o.bench.name} | {stated or '(no RESULT line: see its output below)'} "
                       f"| | | | | | | {status} |")
        for r in o.results:
            out.append("| " + " | ".join([
                o.bench.name, cell(r.get("name")), cell(r.get("value")), cell(r.get("unit")),
                cell(r.get("baseline")), cell(r.get("baseline_value")), cell(r.get("ratio")),
                cell(r.get("target")), status or met(r)]) + " |")
    for o in outcomes:
        out += ["", f"## {o.bench.name}", ""]
        if o.bench.about:
            out += [o.bench.about + ".", ""]
        if o.skipped:
            out.append(f"Skipped: {o.skipped}.")
            continue
        state = "timed out" if o.timed_out else f"exit status {o.returncode}"
        out.append(f"`{shlex.join(['python', *o.command[1:]])}`: {state}, {o.wall_s:.0f} s wall.")
        if o.dropped:
            out.append(f"Its `--help` does not list `{shlex.join(o.dropped)}`: dropped.")
        out += ["", "~~~~text", o.output.rstrip("\n"), "~~~~"]
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--profile", choices=["quick", "full"], default="quick",
                        help="quick: minutes, small sizes; full: the issue's sizes (hours on a CPU)")
    names = [b.name for b in BENCHES]
    parser.add_argument("--only", nargs="+", choices=names, metavar="NAME", help=f"of {names}")
    parser.add_argument("--skip", nargs="+", choices=names, metavar="NAME", default=[])
    parser.add_argument("--output", type=Path, default=BENCH / "RESULTS.md")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per script")
    parser.add_argument("--note", default="", help="a line for RESULTS.md, e.g. what else ran")
    args = parser.parse_args(argv)

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)}
    timeout = args.timeout or TIMEOUT_S[args.profile]
    info = {
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git("rev-parse", "--short=12", "HEAD") + (
            " (with uncommitted changes)" if git("status", "--porcelain", "--untracked-files=no") else ""),
        "command": shlex.join(["python", *sys.orig_argv[1:]]) if hasattr(sys, "orig_argv")
        else shlex.join(["python", "-m", "bench", *(argv or sys.argv[1:])]),
        **machine(),
        "load before": load(),
    }
    started = time.perf_counter()
    outcomes = []
    for bench in BENCHES:
        if (args.only and bench.name not in args.only) or bench.name in args.skip:
            continue
        outcomes.append(run_one(bench, args.profile, env, timeout))
    info["load after"] = load()
    info["wall"] = f"{time.perf_counter() - started:.0f} s"
    args.output.write_text(render(outcomes, info, args.profile, args.note))
    print(f"\nwrote {args.output}")
    failed = [o.bench.name for o in outcomes if not o.skipped and o.returncode != 0]
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
