"""Peak memory and wall time of ``verify`` over many images: first run, then the cached re-run.

Setup (not timed): IMAGES distinct small PNG files, each with QUESTIONS given questions of its
own (four options), and a caption that holds the answer to some of them. One or more vLLM-shaped
simulators (tests/support/vllm_sim.py) run in another process, answering as a scripted model:
right with the image, wrong without it, from a caption right when the caption holds the answer.

Each phase runs in a fresh process against the same store: ``first`` (every request sent) and
``again`` (the identical call: nothing may be sent). Prints each phase's wall time around the
call, its peak RSS (which includes the store's memory-mapped pages it read), with ``--trace``
the peak of Python's own allocations, and the requests the servers received.

    .venv/bin/python bench/verify_scale.py [--images 600] [--questions 5] [--samples 3] [--servers 1] [--trace]
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
import json, resource, sys, time, tracemalloc, warnings
import pandas as pd
import caprl_nb.accessor
spec = json.loads(open(sys.argv[1]).read())
df = pd.DataFrame({"image": spec["files"], "caption": spec["captions"], "qs": spec["questions"]})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
if spec["trace"]:
    tracemalloc.start()
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    started = time.perf_counter()
    out = df.caprl.verify("image", caption="caption", questions="qs", samples=spec["samples"],
                          base_url=sys.argv[2], details=True, progress=False)
    seconds = time.perf_counter() - started
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
traced = tracemalloc.get_traced_memory()[1] if spec["trace"] else 0
print(json.dumps({"seconds": seconds, "peak_kib": after, "before_kib": before, "traced": traced,
                  "scored": int(out["caption_score"].notna().sum()), "sent": int(out["requests_sent"].sum()),
                  "mean": float(out["caption_score"].mean())}))
"""

SIM = r"""
import re, sys
from tests.support.vllm_sim import VLLMSimulator

def respond(body):
    content = body["messages"][-1]["content"]
    text = "\n".join(p["text"] for p in content if p.get("type") == "text")
    has_image = any(p.get("type") == "image_url" for p in content)
    question = re.search(r"^Question: (.*)$", text, re.M).group(1)
    shown = re.findall(r"^([A-Z])\. (.*)$", text, re.M)
    answer = question.rsplit("#", 1)[1]  # the bench writes the answer into the question
    caption = re.search(r"Here is a description of an image:\n\n(.*?)\n\nAnswer the question", text, re.S)
    if caption is not None:
        right = answer in caption.group(1)
        pick = next(l for l, o in shown if o == answer) if right else shown[-1][0]
    elif has_image:
        pick = next(l for l, o in shown if o == answer)
    else:
        pick = next(l for l, o in shown if o != answer)
    return pick

sims = [VLLMSimulator(keep_bodies=False, respond=respond).start() for _ in range(int(sys.argv[1]))]
print(",".join(s.base_url for s in sims), flush=True)
sys.stdin.readline()
print(",".join(str(len(s.requests)) for s in sims), flush=True)
sys.stdin.read()
for s in sims:
    s.stop()
"""


def _spec(files: list[str], questions: int, samples: int, trace: bool) -> dict[str, object]:
    words = ["red", "blue", "green", "white"]
    qs, captions = [], []
    for i, _ in enumerate(files):
        row: list[dict[str, str | list[str]]] = []
        answers: list[str] = []
        for q in range(questions):
            answer = f"{words[(i + q) % 4]}-{i}-{q}"
            options = [f"{w}-{i}-{q}" for w in words]
            row.append({"question": f"Which tag has picture {i}, question {q}? #{answer}",
                        "options": options, "answer": answer})
            answers.append(answer)
        qs.append(row)
        # The caption names the answers of the row's first 1 + i % questions questions.
        captions.append("A picture tagged " + ", ".join(answers[: 1 + i % questions]) + ".")
    return {"files": files, "captions": captions, "questions": qs, "samples": samples, "trace": trace}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=600)
    parser.add_argument("--questions", type=int, default=5)
    parser.add_argument("--samples", type=int, default=3)
    parser.add_argument("--servers", type=int, default=1)
    parser.add_argument("--trace", action="store_true",
                        help="also the peak of Python allocations (tracemalloc: slower)")
    args = parser.parse_args()
    from tests.conftest import make_images

    with tempfile.TemporaryDirectory() as tmp:
        files = make_images(Path(tmp) / "images", args.images)
        listing = Path(tmp) / "spec.json"
        listing.write_text(json.dumps(_spec(files, args.questions, args.samples, args.trace)))
        sim = subprocess.Popen([sys.executable, "-c", SIM, str(args.servers)], cwd=ROOT, stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
        assert sim.stdin is not None and sim.stdout is not None  # both are pipes
        base_url = sim.stdout.readline().strip()
        env = {"CAPRL_HOME": str(Path(tmp) / "home"), "PATH": "/usr/bin:/bin", "CAPRL_SKIP_CHECK": "1",
               "PYTHONPATH": str(ROOT)}
        try:
            for phase in ("first", "again"):
                started = time.perf_counter()
                done = subprocess.run([sys.executable, "-c", CHILD, str(listing), base_url],
                                      cwd=ROOT, env=env, capture_output=True, text=True)
                if done.returncode:
                    raise SystemExit(done.stderr)
                r = json.loads(done.stdout.strip().splitlines()[-1])
                print(f"{phase:>5}: {args.images:,} images x {args.questions} questions x {args.samples} samples: "
                      f"{r['seconds']:6.1f} s in verify ({time.perf_counter() - started:.1f} s with start), "
                      f"peak RSS {r['peak_kib'] / 1024:6.1f} MiB (before the call {r['before_kib'] / 1024:.1f}), "
                      + (f"Python allocations peak {r['traced'] / 2**20:.1f} MiB, " if args.trace else "")
                      + f"{r['scored']:,} scored (mean {r['mean']:.3f}), {r['sent']:,} requests sent", flush=True)
            sim.stdin.write("\n")
            sim.stdin.flush()
            print(f"requests per server: {sim.stdout.readline().strip()}")
        finally:
            sim.stdin.close()
            sim.wait(30)


if __name__ == "__main__":
    main()
