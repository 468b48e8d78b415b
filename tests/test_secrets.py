"""The API key never leaves the process except in the Authorization header.

A caption run against the simulator that requires a distinctive key, then runs with a wrong key
(401) and with no server (connection error): the key must not appear in anything a user or a
log collector sees: stdout, stderr (progress included), log records, exception text, the
Settings repr, the returned frame, `caprl-nb doctor` output, or the store's bytes on disk.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

import caprl_nb
from caprl_nb.config import resolve_settings
from caprl_nb.engine import free_port
from caprl_nb.errors import CapRLError

from tests.support.vllm_sim import VLLMSimulator

KEY = "sk-SECRET-123"
WRONG = "sk-SECRET-wrong-456"


def _store_bytes() -> bytes:
    home = Path(os.environ["CAPRL_HOME"])
    return b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())


def _no_key_in(*texts: object) -> None:
    for text in texts:
        shown = text if isinstance(text, str) else repr(text)
        assert KEY not in shown and WRONG not in shown and "SECRET" not in shown


def test_the_key_is_sent_and_never_shown(
    image_files: list[str], capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    caplog.set_level(logging.DEBUG)
    monkeypatch.setenv("CAPRL_API_KEY", KEY)
    with VLLMSimulator(api_key=KEY) as sim:
        settings = resolve_settings(base_url=sim.base_url)
        out = caprl_nb.caption(image_files[:3], base_url=sim.base_url, details=True, progress=True)
        assert out["error"].isna().all() and len(sim.requests) == 3  # the key was accepted
        caprl_nb.configure(api_key=KEY)
        again = caprl_nb.ask(image_files[:1], "what?", base_url=sim.base_url, details=True)
        assert again["error"].isna().all()
        caprl_nb.configure()
        doctor = subprocess.run(
            [sys.executable, "-m", "caprl_nb.cli", "doctor", "--base-url", sim.base_url],
            capture_output=True, text=True, timeout=120,
        )
        assert doctor.returncode == 0, doctor.stdout  # doctor reached the server with the key
    captured = capfd.readouterr()
    _no_key_in(repr(settings), str(settings), out.to_string(), out.to_json(), again.to_string(),
               captured.out, captured.err, doctor.stdout, doctor.stderr, caplog.text,
               *[r.getMessage() for r in caplog.records])
    assert KEY.encode() not in _store_bytes()


def test_a_wrong_key_fails_with_a_message_that_names_the_fix_not_the_key(
    image_files: list[str], capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    with VLLMSimulator(api_key=KEY) as sim:
        with pytest.raises(CapRLError) as caught:
            caprl_nb.caption(image_files[:2], base_url=sim.base_url, api_key=WRONG, errors="raise")
        doctor = subprocess.run(
            [sys.executable, "-m", "caprl_nb.cli", "doctor", "--base-url", sim.base_url],
            capture_output=True, text=True, timeout=120, env={**os.environ, "CAPRL_API_KEY": WRONG},
        )
    message = str(caught.value)
    assert "401" in message and "CAPRL_API_KEY" in message and "api_key=" in message
    assert doctor.returncode == 1 and "401" in doctor.stdout and "CAPRL_API_KEY" in doctor.stdout
    chained = []
    exc: BaseException | None = caught.value
    while exc is not None:  # the whole chain a traceback would print
        chained.append(f"{type(exc).__name__}: {exc}")
        exc = exc.__cause__ or exc.__context__
    captured = capfd.readouterr()
    _no_key_in(*chained, captured.out, captured.err, doctor.stdout, doctor.stderr, caplog.text)
    assert WRONG.encode() not in _store_bytes()


def test_no_server_error_does_not_show_the_key(image_files: list[str], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(CapRLError) as caught:
        caprl_nb.caption(image_files[:1], base_url=url, api_key=KEY, errors="raise", progress=False)
    _no_key_in(str(caught.value), repr(caught.value), caplog.text)
