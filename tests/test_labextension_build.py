"""The JupyterLab extension: built, installed where JupyterLab looks, and written by the house rules.

``pip install -e .`` builds labextension/ (hatch-jupyter-builder runs npm) into
caprl_nb/labextension/ and copies it to ``<prefix>/share/jupyter/labextensions/caprl-nb``.
These tests check that JupyterLab finds that copy and that it is the current build, then lint the
TypeScript sources for what STYLE.md asks of them: no ``any``, no ``console.log``, every command
id in src/commands.ts.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

import caprl_nb

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "labextension"
SRC = PACKAGE / "src"
BUILT = ROOT / "caprl_nb" / "labextension"
INSTALLED = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / "caprl-nb"
SERVER_CONFIG = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d" / "caprl_nb.json"
REINSTALL = "Rebuild and reinstall it: .venv/bin/pip install -e '.[test]'"

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _sources() -> list[Path]:
    sources = sorted(SRC.glob("**/*.ts"))
    assert sources, f"no TypeScript sources under {SRC}"
    return sources


def _offending_lines(pattern: re.Pattern[str], files: list[Path]) -> list[str]:
    return [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if pattern.search(line)
    ]


def _build_entry(package_json: Path) -> dict[str, str]:
    assert package_json.is_file(), f"{package_json} is missing. {REINSTALL}"
    build = json.loads(package_json.read_text(encoding="utf-8")).get("jupyterlab", {}).get("_build")
    assert isinstance(build, dict), f"{package_json} has no jupyterlab._build entry. {REINSTALL}"
    return build


def test_jupyterlab_lists_the_extension_enabled_and_ok(tmp_path: Path) -> None:
    # Only the environment's own prefix may provide it: no user or home directories.
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "NO_COLOR": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    output = ANSI.sub("", done.stdout + done.stderr)
    assert done.returncode == 0, output
    lines = [line.split() for line in output.splitlines() if line.split()[:1] == ["caprl-nb"]]
    assert lines, f"`jupyter labextension list` does not list caprl-nb. {REINSTALL}\n{output}"
    (words,) = lines
    assert words[1] == f"v{caprl_nb.__version__}", output
    assert "enabled" in words and "OK" in words, output


def test_the_build_has_its_jupyterlab_entry_and_bundle() -> None:
    build = _build_entry(BUILT / "package.json")
    assert (BUILT / build["load"]).is_file(), build
    assert (BUILT / "static" / "style.js").is_file()
    schema = json.loads((BUILT / "schemas" / "caprl-nb" / "plugin.json").read_text(encoding="utf-8"))
    assert {"baseUrl", "model", "pollInterval"} <= set(schema["properties"])


def test_jupyterlab_loads_the_current_build() -> None:
    installed, built = _build_entry(INSTALLED / "package.json"), _build_entry(BUILT / "package.json")
    assert installed == built, (
        f"JupyterLab loads {INSTALLED}, an older build than caprl_nb/labextension. {REINSTALL}"
    )
    assert (INSTALLED / installed["load"]).is_file()


def test_the_server_extension_is_enabled_by_the_installed_config() -> None:
    config = json.loads(SERVER_CONFIG.read_text(encoding="utf-8"))
    assert config == {"ServerApp": {"jpserver_extensions": {"caprl_nb": True}}}


def test_the_version_is_written_once_in_package_json() -> None:
    package = json.loads((PACKAGE / "package.json").read_text(encoding="utf-8"))
    assert package["name"] == "caprl-nb"
    pyproject = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    section = re.search(r"^\[tool\.hatch\.version\]\n(.*?)^\[", pyproject, re.MULTILINE | re.DOTALL)
    assert section, "pyproject.toml has no [tool.hatch.version]"
    settings = {line.replace(" ", "") for line in section.group(1).splitlines()}
    assert {'source="nodejs"', 'path="labextension/package.json"'} <= settings, (
        "hatch must read the version from labextension/package.json, its one written copy"
    )
    literal = re.compile(r"""__version__\s*=\s*['"]\d+\.\d+""")
    written = _offending_lines(literal, sorted((ROOT / "caprl_nb").glob("**/*.py")))
    assert not written, "a second written copy of the version:\n" + "\n".join(written)
    assert caprl_nb.__version__ == package["version"], (
        f"the installed caprl_nb is {caprl_nb.__version__}, package.json says {package['version']}. "
        + REINSTALL
    )


def test_the_lock_file_resolves_from_the_npm_registry_only() -> None:
    lock = json.loads((PACKAGE / "package-lock.json").read_text(encoding="utf-8"))
    resolved = [
        meta["resolved"] for name, meta in lock["packages"].items() if name and "resolved" in meta
    ]
    assert resolved, "package-lock.json records no download addresses"
    strays = [url for url in resolved if not url.startswith("https://registry.npmjs.org/")]
    assert not strays, strays


@pytest.mark.parametrize(
    ("what", "pattern"),
    [
        ("`any` type", re.compile(r":\s*any\b|\bas\s+any\b|<any>")),
        ("console.log", re.compile(r"\bconsole\.log\b")),
    ],
)
def test_sources_do_not_use(what: str, pattern: re.Pattern[str]) -> None:
    offending = _offending_lines(pattern, _sources())
    assert not offending, f"{what} in labextension/src:\n" + "\n".join(offending)


def test_command_ids_are_spelled_only_in_commands_ts() -> None:
    others = [path for path in _sources() if path.name != "commands.ts"]
    offending = _offending_lines(re.compile(r"""['"`]caprl-nb:"""), others)
    assert not offending, "use CommandIDs from src/commands.ts:\n" + "\n".join(offending)
    commands = (SRC / "commands.ts").read_text(encoding="utf-8")
    assert commands.count("export namespace CommandIDs") == 1


def test_jupyter_server_lists_the_server_extension_enabled_and_ok(tmp_path: Path) -> None:
    # As above: only the environment's own prefix may enable it.
    env = {
        **os.environ,
        "HOME": str(tmp_path),
        "JUPYTER_CONFIG_DIR": str(tmp_path / "config"),
        "JUPYTER_DATA_DIR": str(tmp_path / "data"),
        "JUPYTER_RUNTIME_DIR": str(tmp_path / "runtime"),
        "NO_COLOR": "1",
    }
    done = subprocess.run(
        [sys.executable, "-m", "jupyter", "server", "extension", "list"],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )
    output = ANSI.sub("", done.stdout + done.stderr)  # the listing goes to stderr
    assert done.returncode == 0, output
    listed = [line.split() for line in output.splitlines() if line.split()[:1] == ["caprl_nb"]]
    # "caprl_nb enabled", then "- Validating caprl_nb..." and "caprl_nb <version> OK"
    assert ["caprl_nb", "enabled"] in listed, f"caprl_nb is not enabled. {REINSTALL}\n{output}"
    assert ["caprl_nb", caprl_nb.__version__, "OK"] in listed, f"caprl_nb did not validate:\n{output}"
