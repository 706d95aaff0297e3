"""The notebooks: each runs top to bottom in its smoke setting (an error in any cell fails), and
each committed notebook carries the outputs of one real run, executed in order, without errors.

Re-execute and rewrite the committed notebooks (README, "Notebooks"):
    jupyter nbconvert --to notebook --execute --inplace notebooks/*.ipynb
"""

import base64
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
MAX_BYTES = 600_000  # a committed notebook with its figures stays readable on GitHub


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def pngs(nb):
    return [o["data"]["image/png"] for cell in code_cells(nb) for o in cell.outputs if "image/png" in o.get("data", {})]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs_in_its_smoke_setting(path, tmp_path, monkeypatch):
    monkeypatch.setenv("KDVIZ_SMOKE", "1")
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's inline backend renders PNGs
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    assert pngs(nb), "the notebook shows no figure"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_notebook_was_executed_top_to_bottom_without_errors(path):
    nb = nbformat.read(path, as_version=4)
    cells = code_cells(nb)
    counts = [cell.execution_count for cell in cells]
    assert counts == list(range(1, len(cells) + 1)), (
        f"{path.name} was not run top to bottom in one kernel: execution counts {counts}"
    )
    errors = [(i, o.get("ename")) for i, cell in enumerate(cells) for o in cell.outputs if o.output_type == "error"]
    assert not errors, f"{path.name} was committed with errors in code cells {errors}"
    stderr = [
        i
        for i, cell in enumerate(cells)
        for o in cell.outputs
        if o.get("name") == "stderr" and "Traceback" in o.get("text", "")
    ]
    assert not stderr, f"{path.name} has a traceback in the stderr of code cells {stderr}"
    figures = pngs(nb)
    assert figures and all(base64.b64decode(png).startswith(b"\x89PNG") for png in figures), (
        f"{path.name} holds no PNG figure"
    )
    assert path.stat().st_size <= MAX_BYTES, f"{path.name} is {path.stat().st_size:,} bytes; keep figures small"


def test_the_tutorial_comes_first():
    assert NOTEBOOKS[0].name == "00_kd_tutorial.ipynb"


def test_notebooks_call_no_notebook_only_helpers():
    """Cells call kdviz's public, tested API; the quickstart's run helper was one such helper."""
    for path in NOTEBOOKS:
        source = "\n".join(cell.source for cell in code_cells(nbformat.read(path, as_version=4)))
        assert "train_quickstart_run" not in source and "kdviz.quickstart" not in source, path.name
