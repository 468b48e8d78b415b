from pathlib import Path

import pytest

import caprl_nb
from caprl_nb.config import DEFAULT_BASE_URL, default_home, resolve_settings
from caprl_nb.errors import ConfigError


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAPRL_HOME")
    s = resolve_settings()
    assert s.base_url == DEFAULT_BASE_URL
    assert s.model is None
    assert s.api_key == "EMPTY"
    assert s.home == default_home()
    assert s.concurrency >= 256
    assert 0 < s.connect_timeout < s.read_timeout < float("inf")


def test_lookup_order_argument_over_configure_over_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPRL_BASE_URL", "http://env:1/v1")
    monkeypatch.setenv("CAPRL_CONCURRENCY", "7")
    assert resolve_settings().base_url == "http://env:1/v1"
    assert resolve_settings().concurrency == 7
    caprl_nb.configure(base_url="http://configured:2/v1/")
    assert resolve_settings().base_url == "http://configured:2/v1"  # trailing slash dropped
    assert resolve_settings(base_url="http://arg:3/v1").base_url == "http://arg:3/v1"
    assert resolve_settings(base_url=None).base_url == "http://configured:2/v1"
    caprl_nb.configure()
    assert resolve_settings().base_url == "http://env:1/v1"


def test_configure_none_unsets_that_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPRL_MODEL", "env-model")
    monkeypatch.setenv("CAPRL_BASE_URL", "http://env:1/v1")
    monkeypatch.delenv("CAPRL_PRESET", raising=False)
    caprl_nb.configure(model="configured-model", base_url="http://configured:2/v1", preset="qwen2.5-vl")
    assert resolve_settings().model == "configured-model"
    settings = caprl_nb.configure(model=None, base_url=None, preset=None)
    assert settings.model == "env-model" and settings.base_url == "http://env:1/v1"
    assert settings.preset is None  # no env: back to the built-in default
    assert resolve_settings().model == "env-model"
    monkeypatch.delenv("CAPRL_MODEL")
    assert resolve_settings().model is None
    caprl_nb.configure()


def test_an_invalid_configure_changes_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CAPRL_CONCURRENCY", raising=False)
    caprl_nb.configure(concurrency=8)
    with pytest.raises(ConfigError, match="concurrency"):
        caprl_nb.configure(concurrency=0)
    assert resolve_settings().concurrency == 8  # the process is not stuck with a bad default
    caprl_nb.configure()


def test_home_from_env_and_store_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPRL_HOME", str(tmp_path / "h"))
    s = resolve_settings()
    assert s.store_path == tmp_path / "h" / "results.sqlite3"
    assert resolve_settings(base_url="http://x:9/v1").server_root == "http://x:9"


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"base_url": "localhost:8000"}, "http://"),
        ({"concurrency": 0}, "concurrency"),
        ({"read_timeout": 0}, "finite"),
        ({"max_retries": -1}, "max_retries"),
        ({"url_timeout": 0}, "url_timeout must be a positive number"),
        ({"url_timeout": float("inf")}, "url_timeout.*finite"),
        ({"url_timeout": float("nan")}, "url_timeout"),
        ({"url_timeout": "5"}, "url_timeout"),
        ({"read_timeout": float("inf")}, "finite"),
        ({"bogus": 1}, "Known settings"),
    ],
)
def test_bad_values_say_what_to_do(options: dict, fragment: str) -> None:
    with pytest.raises(ConfigError, match=fragment):
        resolve_settings(**options)


def test_bad_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAPRL_CONCURRENCY", "lots")
    with pytest.raises(ConfigError, match="CAPRL_CONCURRENCY"):
        resolve_settings()


def test_url_timeout_from_argument_configure_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    assert resolve_settings().url_timeout == 60.0
    monkeypatch.setenv("CAPRL_URL_TIMEOUT", "7.5")
    assert resolve_settings().url_timeout == 7.5
    caprl_nb.configure(url_timeout=3)
    assert resolve_settings().url_timeout == 3
    assert resolve_settings(url_timeout=1).url_timeout == 1
    caprl_nb.configure()
    monkeypatch.setenv("CAPRL_URL_TIMEOUT", "soon")
    with pytest.raises(ConfigError, match="CAPRL_URL_TIMEOUT"):
        resolve_settings()
