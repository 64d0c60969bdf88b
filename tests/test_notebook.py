"""notebooks/walkthrough.ipynb runs top to bottom on the CPU (nbclient; jupyter_client starts the python3 kernel with
this interpreter),
on a copy in a temporary folder so nothing in the repository is touched; and the committed notebook keeps its
outputs (it is read on GitHub without being run)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")
pytest.importorskip("ipykernel")

REPO = Path(__file__).resolve().parents[1]
NOTEBOOK = REPO / "notebooks" / "walkthrough.ipynb"
BUDGET_S = 240  # whole notebook; it takes about a minute on the shared 2-core CPU


def _code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


def _images(cells: list) -> int:
    return sum("image/png" in out.get("data", {}) for c in cells for out in c.get("outputs", []))


def _text(cells: list) -> str:
    parts = []
    for cell in cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


def test_committed_notebook_has_its_outputs() -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    cells = _code_cells(nb)
    assert [c.execution_count for c in cells] == list(range(1, len(cells) + 1)), "run it top to bottom, then save"
    assert not any(out.get("output_type") == "error" for c in cells for out in c.outputs)
    assert _images(cells) >= 4 and "walkthrough finished" in _text(cells)


@pytest.mark.slow
@pytest.mark.timeout(BUDGET_S + 60)
def test_notebook_runs_top_to_bottom(tmp_path) -> None:
    work = tmp_path / "notebooks"
    work.mkdir()
    shutil.copy(NOTEBOOK, work / NOTEBOOK.name)
    nb = nbformat.read(work / NOTEBOOK.name, as_version=4)
    env = {k: v for k, v in os.environ.items() if k != "MPLBACKEND"}  # the kernel draws inline
    env["CUDA_VISIBLE_DEVICES"] = ""  # the notebook hides GPUs itself too; the test must not depend on one
    client = nbclient.NotebookClient(
        nb, timeout=BUDGET_S, kernel_name="python3", resources={"metadata": {"path": str(work)}}, allow_errors=False
    )
    client.execute(cwd=str(work), env=env)
    cells = _code_cells(nb)
    assert all(c.execution_count for c in cells)
    text = _text(cells)
    assert "walkthrough finished" in text and "biplane" in text and "limits of agreement" in text
    assert _images(cells) >= 4
    assert sorted(p.name for p in work.iterdir()) == [NOTEBOOK.name]  # it wrote nothing beside itself
