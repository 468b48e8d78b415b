"""fleet.py through batches: one call over several servers (vLLM simulators on loopback).

Requests spread over the servers; a server killed mid-run hands its unanswered rows to the
others and no row is sent again once its answer came back; a server that returns gets rows
again; servers serving different checkpoints are refused before any request; the store keys by
the checkpoint, so what one server answered is found again through another.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

import pytest

from caprl_nb.batch import run_batch
from caprl_nb.config import Settings, resolve_settings
from caprl_nb.errors import CapRLWarning, ConfigError
from caprl_nb.fleet import MixedCheckpointsError, check_same_checkpoint, short_name
from caprl_nb.prompts import caption_task

from tests.conftest import make_images
from tests.support.polling import wait_until
from tests.support.vllm_sim import VLLMSimulator

TASK = caption_task(max_tokens=8)


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _answered(sim: VLLMSimulator) -> list[str]:
    """Image digests of the requests a simulator logged."""
    return [digest for entry in sim.requests for digest in entry["_images"]]


def test_base_url_takes_a_list_or_commas_and_keeps_each_server_once(monkeypatch: pytest.MonkeyPatch) -> None:
    s = Settings(base_url=["http://a:8000/v1/", "http://b:8000/v1"])
    assert s.base_urls == ("http://a:8000/v1", "http://b:8000/v1")
    assert s.for_server("http://b:8000/v1").base_urls == ("http://b:8000/v1",)
    assert Settings(base_url="http://a/v1, http://b/v1,http://a/v1").base_urls == ("http://a/v1", "http://b/v1")
    monkeypatch.setenv("CAPRL_BASE_URL", "http://gpu1:8000/v1,http://gpu2:8000/v1")
    assert resolve_settings().base_urls == ("http://gpu1:8000/v1", "http://gpu2:8000/v1")
    with pytest.raises(ConfigError, match="empty entry"):
        Settings(base_url="http://a/v1,,http://b/v1")
    with pytest.raises(ConfigError, match="must start with http"):
        Settings(base_url=["http://a/v1", "gpu2:8000"])
    assert short_name("http://gpu1:8000/v1") == "gpu1:8000"


def test_rows_spread_over_two_servers_and_any_of_them_finds_them_again(tmp_path: Path) -> None:
    files = make_images(tmp_path / "i", 60)
    home = tmp_path / "home"
    with VLLMSimulator(latency=0.05, capacity=8) as a, VLLMSimulator(latency=0.05, capacity=8) as b:
        settings = resolve_settings(base_url=[a.base_url, b.base_url], home=home, concurrency=8)
        results = run_batch(files, TASK, settings, progress=False)
        assert [r.error for r in results] == [None] * 60
        assert [r.text.split()[2] for r in results] == [_sha(f)[:12] for f in files]  # each its own answer
        sent_a, sent_b = _answered(a), _answered(b)
        assert len(sent_a) + len(sent_b) == 60 and len(sent_a) >= 15 and len(sent_b) >= 15, (len(sent_a), len(sent_b))
        assert {r.base_url for r in results} == {a.base_url, b.base_url}  # provenance: who answered
        # Keyed by the checkpoint both serve: server b alone answers every row from the store.
        b.reset_log()
        again = run_batch(files, TASK, resolve_settings(base_url=b.base_url, home=home), progress=False)
        assert all(r.cached for r in again) and not b.requests
        assert [r.text for r in again] == [r.text for r in results]


def test_a_server_killed_mid_run_hands_its_rows_to_the_other_and_none_is_sent_again_after_its_answer(
    tmp_path: Path,
) -> None:
    files = make_images(tmp_path / "i", 300)
    with VLLMSimulator(latency=0.1, capacity=16) as a, VLLMSimulator(latency=0.1, capacity=16) as b:
        settings = resolve_settings(
            base_url=[a.base_url, b.base_url], home=tmp_path / "home", concurrency=16, max_backoff=0.05,
            outage_timeout=60.0,
        )

        def kill_a() -> None:
            wait_until(lambda: len(a.requests) >= 40, 30, "40 requests at server a")
            a.stop()  # every connection aborted, requests in flight included

        threading.Thread(target=kill_a, daemon=True).start()
        results = run_batch(files, TASK, settings, progress=False)
        assert [r.error for r in results] == [None] * 300  # every row captioned
        assert [r.text.split()[2] for r in results] == [_sha(f)[:12] for f in files]
        from_a = {_sha(f) for f, r in zip(files, results) if r.base_url == a.base_url}
        assert from_a, "server a answered nothing before it was killed"
        # A row whose answer came back from a was never sent to b.
        assert not from_a & set(_answered(b))
        # b did the rest: everything not answered by a, each once per row.
        assert len(from_a) + len(_answered(b)) == 300


def test_a_server_that_returns_gets_rows_again(tmp_path: Path) -> None:
    files = make_images(tmp_path / "i", 400)
    a = VLLMSimulator(latency=0.05, capacity=8).start()
    port = int(a.base_url.rsplit(":", 1)[1].split("/", 1)[0])
    try:
        with VLLMSimulator(latency=0.2, capacity=8) as b:
            settings = resolve_settings(
                base_url=[a.base_url, b.base_url], home=tmp_path / "home", concurrency=8, max_backoff=0.05,
                outage_timeout=60.0,
            )
            restarted: list[VLLMSimulator] = []

            def bounce_a() -> None:
                wait_until(lambda: len(a.requests) >= 30, 30, "30 requests at server a")
                a.stop()
                restarted.append(VLLMSimulator(latency=0.05, capacity=8, port=port).start())

            threading.Thread(target=bounce_a, daemon=True).start()
            results = run_batch(files, TASK, settings, progress=False)
            assert [r.error for r in results] == [None] * 400
            wait_until(lambda: restarted, 10, "server a restarted")
            assert restarted[0].requests, "the restarted server got no rows"
            restarted[0].stop()
    finally:
        a.stop()


def test_servers_serving_different_checkpoints_are_refused_before_any_request(tmp_path: Path) -> None:
    files = make_images(tmp_path / "i", 3)
    with VLLMSimulator(root="internlm/CapRL-3B") as a, VLLMSimulator(root="internlm/CapRL-InternVL3.5-8B") as b:
        settings = resolve_settings(base_url=[a.base_url, b.base_url], home=tmp_path / "home")
        with pytest.raises(MixedCheckpointsError, match="serve different checkpoints") as raised:
            run_batch(files, TASK, settings, progress=False)
        assert "internlm/CapRL-3B" in str(raised.value) and "internlm/CapRL-InternVL3.5-8B" in str(raised.value)
        assert not a.requests and not b.requests


def test_a_server_down_at_the_start_is_left_out_with_a_note(tmp_path: Path) -> None:
    files = make_images(tmp_path / "i", 20)
    gone = VLLMSimulator().start()
    gone_url = gone.base_url
    gone.stop()
    with VLLMSimulator(latency=0.01) as b:
        settings = resolve_settings(
            base_url=[gone_url, b.base_url], home=tmp_path / "home", outage_timeout=1.0, max_backoff=0.05,
        )
        with pytest.warns(CapRLWarning, match="did not answer at the start"):
            results = run_batch(files, TASK, settings, progress=False)
        assert [r.error for r in results] == [None] * 20
        assert len(_answered(b)) == 20


def test_check_same_checkpoint_accepts_one_checkpoint_under_several_aliases() -> None:
    from caprl_nb.client import ServerInfo

    a = ServerInfo("http://a/v1", "caprl", "internlm/CapRL-3B", 32768, "0.32.0")
    b = ServerInfo("http://b/v1", "CapRL-3B", "internlm/CapRL-3B", 16384, "0.31.0")
    check_same_checkpoint([a, b])
    unverified = ServerInfo("http://c/v1", "caprl", None, None, None)  # no root: its own checkpoint
    with pytest.raises(MixedCheckpointsError):
        check_same_checkpoint([a, unverified])


def test_the_progress_line_shows_each_servers_answers_and_rate() -> None:
    from types import SimpleNamespace

    from caprl_nb.batch import server_rates

    up = SimpleNamespace(name="gpu1:8000", answered=120, usable=True)
    down = SimpleNamespace(name="gpu2:8000", answered=30, usable=False)
    fleet = SimpleNamespace(lanes=[up, down])
    assert server_rates(fleet, 10.0) == "gpu1:8000: 120 12.0/s; gpu2:8000: 30 3.0/s (down)"  # type: ignore[arg-type]
    assert server_rates(fleet, 0.0) == "gpu1:8000: 120; gpu2:8000: 30 (down)"  # type: ignore[arg-type]
