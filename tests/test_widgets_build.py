"""The built wheel: it carries the widgets' bundles and the labextension, and works without npm.

The widgets' front ends are TypeScript (labextension/src/widgets/) bundled by esbuild into the
git-ignored caprl_nb/widgets/static/ at build time, so a wheel that forgot them would install
and then fail on `import caprl_nb.widgets`. One wheel is built (``pip wheel``: hatch runs npm) from a copy of the
tracked tree, so the checkout's own builds are left as they are, then installed into a fresh
venv (its dependencies come from PyPI) and imported with no npm or node on PATH.

The two wheel tests take about a minute (several on a busy machine) and are marked ``wheel``:
``-m "not wheel"`` leaves them out locally; the full suite (scripts/test, CI) runs them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from caprl_nb.errors import ConfigError
from caprl_nb.widgets.bundles import BUNDLES, require_bundles

ROOT = Path(__file__).resolve().parent.parent
PACKAGE_JSON = ROOT / "labextension" / "package.json"


def _run(
    cmd: list[str], *, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 600
) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        cmd, cwd=cwd, env=env, timeout=timeout, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def _copy_tracked_tree(dest: Path) -> None:
    """The files git tracks, and the untracked ones it does not ignore, as they are now."""
    listed = _run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT)
    for name in filter(None, listed.stdout.split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    modules = ROOT / "labextension" / "node_modules"
    if modules.is_dir():  # spares the copy an `npm install` from the registry
        (dest / "labextension" / "node_modules").symlink_to(modules, target_is_directory=True)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tree = tmp_path_factory.mktemp("tree")
    _copy_tracked_tree(tree)
    out = tmp_path_factory.mktemp("wheel")
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(tree)],
         timeout=900)
    (built,) = out.glob("caprl_nb-*.whl")
    return built


@pytest.mark.wheel
def test_the_wheel_carries_the_widget_bundles_and_the_labextension(wheel: Path) -> None:
    version = json.loads(PACKAGE_JSON.read_text(encoding="utf-8"))["version"]
    assert wheel.name.startswith(f"caprl_nb-{version}-"), wheel.name
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = [f"caprl_nb/widgets/static/{bundle}" for bundle in BUNDLES
               if f"caprl_nb/widgets/static/{bundle}" not in names]
    assert not missing, f"the wheel lacks the widget bundles {missing}"
    lab = f"caprl_nb-{version}.data/data/share/jupyter/labextensions/caprl-nb/"
    assert {lab + "package.json", lab + "static/style.js", lab + "install.json"} <= names
    sources = [name for name in names if name.endswith(".ts") or "node_modules" in name]
    assert not sources, f"TypeScript sources or node_modules in the wheel: {sources[:5]}"


@pytest.mark.wheel
def test_a_fresh_venv_without_npm_loads_the_widgets_from_the_wheel(wheel: Path, tmp_path: Path) -> None:
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    python = env_dir / "bin" / "python"
    # Only the venv on PATH: no npm, no node, nothing to build the front ends with.
    env = {"PATH": str(env_dir / "bin"), "HOME": str(tmp_path / "home"), "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    assert shutil.which("npm", path=env["PATH"]) is None
    _run([str(python), "-m", "pip", "install", "--quiet", str(wheel)], env=env, timeout=900)
    probe = (
        "import json, caprl_nb\n"
        "from caprl_nb.widgets.gallery import Gallery\n"
        "from caprl_nb.widgets.extraction import ExtractionReview\n"
        "print(json.dumps({'file': caprl_nb.__file__, 'version': caprl_nb.__version__,\n"
        "  'gallery_esm': str(Gallery._esm), 'gallery_css': str(Gallery._css),\n"
        "  'review_esm': str(ExtractionReview._esm), 'review_css': str(ExtractionReview._css)}))\n"
    )
    done = _run([str(python), "-c", probe], env=env, cwd=tmp_path, timeout=300)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["file"].startswith(str(env_dir)), seen["file"]
    assert seen["version"] == json.loads(PACKAGE_JSON.read_text(encoding="utf-8"))["version"]
    # anywidget read the bundles' text: the ES modules export render, the CSS has the tokens
    for key in ("gallery_esm", "review_esm"):
        assert "render" in seen[key] and "export" in seen[key], seen[key][:200]
    for key in ("gallery_css", "review_css"):
        assert "--caprl-accent" in seen[key], seen[key][:200]


def test_an_unbuilt_checkout_says_how_to_build_the_front_ends(tmp_path: Path) -> None:
    (tmp_path / "gallery.js").write_text("export default {render() {}};")
    with pytest.raises(ConfigError) as caught:
        require_bundles(tmp_path)
    message = str(caught.value)
    assert "gallery.css, extraction.js, extraction.css missing" in message, message
    assert "npm run build:widgets" in message and "pip install -e ." in message, message
    for name in BUNDLES:
        (tmp_path / name).write_text("/* built */")
    require_bundles(tmp_path)  # all there: nothing to say
