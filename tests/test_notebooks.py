"""The notebooks under notebooks/ run top to bottom in a real kernel against real vLLM.

A kernel runs its own event loop, so this also proves the batch works inside Jupyter. Every
notebook is committed as text only: no outputs, no execution counts, no saved widget state.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
IDS = [p.name for p in NOTEBOOKS]


def test_there_are_notebooks() -> None:
    assert {p.name for p in NOTEBOOKS} >= {"caption_a_column.ipynb", "review_captions.ipynb",
                                           "training_set.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_is_committed_without_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)  # raises ValidationError naming what is malformed
    kept = [index for index, cell in enumerate(notebook.cells) if cell.cell_type == "code"
            and (cell.get("outputs") or cell.get("execution_count") is not None)]
    assert kept == [], (
        f"{path.name}: code cells {kept} keep outputs or execution counts. Clear them "
        f"(JupyterLab: Edit > Clear Outputs of All Cells, then save; or "
        f"`jupyter nbconvert --clear-output --inplace {path.name}`).")
    assert "widgets" not in notebook.metadata, (
        f"{path.name} saved widget state; clear it (JupyterLab: Settings > Save Widget State "
        "Automatically, off) and save again.")
    assert notebook.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.mark.vllm
@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_runs(path: Path, vllm_server: str, monkeypatch: pytest.MonkeyPatch, output_dir: Path,
                       tmp_path: Path) -> None:
    monkeypatch.setenv("CAPRL_BASE_URL", vllm_server)
    # datasets' cache in the test's folder, not the home directory; nothing from the network
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    client.execute(env={**os.environ})
    nbformat.write(notebook, output_dir / path.name)
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
              if o.get("output_type") == "error"]
    assert not errors
    html = [o for c in notebook.cells if c.cell_type == "code" for o in c.get("outputs", [])
            if "text/html" in o.get("data", {})]
    assert html, "the notebook displayed no table"
