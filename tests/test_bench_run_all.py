"""bench/run_all.py (``python -m bench``): runs scripts, keeps their output, writes RESULTS.md."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from bench import run_all

SCRIPT = textwrap.dedent("""\
    import argparse, json, time
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--sleep", type=float, default=0)
    args = parser.parse_args()
    time.sleep(args.sleep)
    print(f"ours: {args.rows} rows/s; ratio ours / loop: 1.2x (target >= 1.15x)")
    print("RESULT " + json.dumps({"name": "rate", "value": args.rows, "unit": "rows/s",
                                  "baseline": "loop", "baseline_value": 10, "ratio": 1.2,
                                  "target": ">= 1.15x"}))
""")


@pytest.fixture
def bench_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "fake.py").write_text(SCRIPT)
    (tmp_path / "plain.py").write_text("print('ratio a / b: 0.5x (target >= 0.95x)')\n")
    monkeypatch.setattr(run_all, "BENCH", tmp_path)
    return tmp_path


def test_a_script_runs_with_the_profiles_arguments_and_unknown_options_are_dropped(bench_dir: Path) -> None:
    bench = run_all.Bench("fake", "fake.py", ["--rows", "42", "--gone", "1", "2"], [])
    outcome = run_all.run_one(bench, "quick", dict(os.environ), timeout=60)
    assert outcome.returncode == 0
    assert outcome.dropped == ["--gone", "1", "2"]
    assert outcome.command[1:] == [str(bench_dir / "fake.py"), "--rows", "42"]
    assert "ours: 42 rows/s" in outcome.output
    assert outcome.results == [{"name": "rate", "value": 42, "unit": "rows/s", "baseline": "loop",
                                "baseline_value": 10, "ratio": 1.2, "target": ">= 1.15x"}]


def test_results_md_holds_the_machine_the_summary_and_every_output(bench_dir: Path) -> None:
    env = dict(os.environ)
    outcomes = [
        run_all.run_one(run_all.Bench("fake", "fake.py", ["--rows", "42"], []), "quick", env, 60),
        run_all.run_one(run_all.Bench("plain", "plain.py", [], []), "quick", env, 60),
        run_all.run_one(run_all.Bench("absent", "absent.py", [], []), "quick", env, 60),
        run_all.run_one(run_all.Bench("engine", "fake.py", [], [], needs="engine"), "quick",
                        {**env, "CAPRL_VLLM_PYTHON": ""}, 60),
    ]
    info = {"date": "D", "commit": "abc", "command": "python -m bench", **run_all.machine(),
            "load before": "1", "load after": "2", "wall": "3 s"}
    text = run_all.render(outcomes, info, "quick", "the machine was loaded")
    for key in ("CPU", "cores", "RAM", "OS", "date", "commit", "command"):
        assert f"| {key} |" in text
    assert "Note: the machine was loaded" in text
    assert "| fake | rate | 42 | rows/s | loop | 10 | 1.2 | >= 1.15x | met |" in text
    assert "ratio a / b: 0.5x (target >= 0.95x)" in text.split("## plain")[0]  # quoted in the summary
    assert "| absent | skipped: bench/absent.py is not in this checkout |" in text
    assert "skipped: needs a vLLM engine" in text
    assert "ours: 42 rows/s" in text.split("## fake")[1]  # the whole output under its heading


def test_a_script_past_its_timeout_is_stopped_and_reported(bench_dir: Path) -> None:
    bench = run_all.Bench("slow", "fake.py", ["--sleep", "60"], [])
    outcome = run_all.run_one(bench, "quick", dict(os.environ), timeout=2)
    assert outcome.timed_out
    assert outcome.wall_s < 40
    assert outcome.results == []


@pytest.mark.parametrize(("result", "expected"), [
    ({"ratio": 0.97, "target": ">= 0.95x"}, "met"),
    ({"ratio": 0.5, "target": ">= 0.95x"}, "missed"),
    ({"value": 18.0, "target": "<= 20 ms"}, "met"),
    ({"value": 25.0, "target": "<= 20 ms"}, "missed"),
    ({"value": 1.0, "target": "no target"}, ""),
])
def test_targets_are_checked_against_the_ratio_or_the_value(result: dict[str, object], expected: str) -> None:
    assert run_all.met(result) == expected


def test_result_lines_that_are_not_json_objects_are_ignored() -> None:
    output = "RESULT not json\nRESULT [1]\nRESULT " + json.dumps({"name": "x"}) + "\nresult {}\n"
    assert run_all.parse_results(output) == [{"name": "x"}]
