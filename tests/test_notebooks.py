"""The notebooks under notebooks/ run top to bottom in a real kernel against real vLLM.

A kernel runs its own event loop, so this also proves the batch works inside Jupyter.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
pytestmark = pytest.mark.vllm


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, vllm_server: str, monkeypatch: pytest.MonkeyPatch, output_dir: Path) -> None:
    monkeypatch.setenv("CAPRL_BASE_URL", vllm_server)
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
