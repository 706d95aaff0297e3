"""The notebooks: each runs top to bottom in its smoke setting (an error in any cell fails), and
each committed notebook carries the outputs of one real run, executed in order, without errors.

Re-execute and rewrite the committed notebooks (CONTRIBUTING.md, "Notebooks"):
    jupyter nbconvert --to notebook --execute --inplace notebooks/*.ipynb
"""

import base64
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
MAX_BYTES = 750_000  # a committed notebook with its figures (at the legible 100 dpi) stays light on GitHub


def code_cells(nb):
    return [cell for cell in nb.cells if cell.cell_type == "code"]


def pngs(nb):
    return [o["data"]["image/png"] for cell in code_cells(nb) for o in cell.outputs if "image/png" in o.get("data", {})]


@pytest.mark.notebooks
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


# --- What the committed outputs say, read without a kernel -------------------------------------------------------

# A decimal in a markdown cell is a setting (a weight, a temperature) or a result. A result must be printed by the
# notebook's own code (or rendered from its data), so the prose cannot drift from the outputs beside it.
SETTINGS_IN_PROSE = {"0.05", "0.1", "0.9", "0.03", "0.3", "0.8", "1.0", "2.0", "4.0", "8.0", "16.0"}
DECIMAL = re.compile(r"(?<![\w.])[-+−]?\d+\.\d+(?![.\d]*\d)")


def output_texts(cell) -> list[str]:
    """The text a reader sees of each output of a code cell (streams, text/markdown, text/html, text/plain)."""
    texts = []
    for o in cell.get("outputs", []):
        if o.output_type == "stream":
            texts.append(o.text)
        elif o.output_type in ("execute_result", "display_data"):
            texts += [o.data[k] for k in ("text/markdown", "text/html", "text/plain") if k in o.data]
        elif o.output_type == "error":
            texts.append("\n".join([o.ename, o.evalue, *o.traceback]))
    return texts


def shown_decimals(nb) -> set[float]:
    return {
        abs(float(m.replace("−", "-")))
        for cell in code_cells(nb)
        for text in output_texts(cell)
        for m in DECIMAL.findall(text)
    }


def numbers_not_in_outputs(nb) -> list[str]:
    """The decimals of the markdown cells that no output of the notebook shows, at the precision the prose gives."""
    shown = shown_decimals(nb)
    missing = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        for number in DECIMAL.findall(cell.source):
            bare = number.lstrip("+-−")
            if bare in SETTINGS_IN_PROSE:
                continue
            places = len(bare.split(".")[1])
            if not any(round(x, places) == round(float(bare), places) for x in shown):
                missing.append(f"c{i}: {number}")
    return missing


def test_the_prose_check_finds_a_number_that_no_output_shows():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("sigma 0.041 against 0.061, at tau 4.0"),
        nbformat.v4.new_code_cell(outputs=[nbformat.v4.new_output("stream", text="0.0316 and 0.0608\n")]),
    ]
    assert numbers_not_in_outputs(nb) == ["c0: 0.041"]  # 0.0608 rounds to 0.061; 4.0 is a setting


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_every_number_in_the_prose_is_shown_by_an_output(path):
    missing = numbers_not_in_outputs(nbformat.read(path, as_version=4))
    assert not missing, (
        f"{path.name}: numbers in markdown that no output shows (render them from the data in a code cell, "
        f"or add a setting to SETTINGS_IN_PROSE): {missing}"
    )


# Where 03's smoke run may print: its training section, which says that a smoke run checks the code path only.
SMOKE_SECTION = {"03_paper_scale.ipynb": "## Training"}
FAULTS = {
    "an absolute path": re.compile(r"(?<![\w.~])(/(home|work|tmp|Users|root|usr|opt|var|mnt|private)/|[A-Z]:\\\\)"),
    "a warning": re.compile(r"\w*Warning\b|warnings\.warn"),
    "a traceback": re.compile(r"Traceback \(most recent call last\)"),
    "a progress bar that never moved": re.compile(r"(?<!\d)0%\|"),
}


def output_faults(path: Path, nb) -> list[str]:
    """What a reader without a kernel should never see in a committed notebook's outputs."""
    faults, smoke_allowed = [], False
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            heading = SMOKE_SECTION.get(path.name)
            smoke_allowed = smoke_allowed or bool(heading and cell.source.startswith(heading))
            continue
        for text in output_texts(cell):
            faults += [f"c{i}: {what}" for what, pattern in FAULTS.items() if pattern.search(text)]
            if "smoke" in text.lower() and not smoke_allowed:
                faults.append(f"c{i}: output of a smoke run")
    return sorted(set(faults))


def test_the_output_check_finds_each_fault():
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell(
            outputs=[
                nbformat.v4.new_output("stream", name="stderr", text="/work/x/loop.py:76: UserWarning: big\n"),
                nbformat.v4.new_output("display_data", data={"text/plain": "mlp:   0%|          | 0/40"}),
                nbformat.v4.new_output("stream", text="smoke setting (tiny files, 1 epoch)\n"),
            ]
        )
    ]
    assert output_faults(Path("00.ipynb"), nb) == [
        "c0: a progress bar that never moved",
        "c0: a warning",
        "c0: an absolute path",
        "c0: output of a smoke run",
    ]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_committed_outputs_are_clean(path):
    nb = nbformat.read(path, as_version=4)
    faults = output_faults(path, nb)
    assert not faults, f"{path.name}: committed outputs a reader should not see: {faults}"
    counts = [cell.execution_count for cell in code_cells(nb)]
    assert counts == list(range(1, len(counts) + 1)), f"{path.name}: execution counts {counts}"
    # Stored widget state makes nbconvert (GitHub, the docs site) load a widget renderer from a CDN;
    # the static companion of each control carries the lesson instead (CONTRIBUTING.md strips it).
    assert "widgets" not in nb.metadata, f"{path.name} stores widget state: strip metadata.widgets"


PUBLIC_SUBPACKAGES = {"kdviz.experiments"}  # documented in docs/api.md besides `import kdviz as kd`


def test_notebooks_use_only_the_public_api():
    """No import from kdviz's inner modules (kdviz.inference, kdviz.losses, kdviz.data.sample_files, ...), and no
    file found relative to the package (kd.__file__), which breaks once kdviz is installed from a wheel."""
    for path in NOTEBOOKS:
        source = "\n".join(cell.source for cell in code_cells(nbformat.read(path, as_version=4)))
        modules = set(re.findall(r"^\s*from (kdviz[\w.]*) import", source, re.M))
        modules |= set(re.findall(r"^\s*import (kdviz\.[\w.]+)", source, re.M))
        assert modules <= PUBLIC_SUBPACKAGES | {"kdviz"}, f"{path.name} imports {sorted(modules - PUBLIC_SUBPACKAGES)}"
        assert "__file__" not in source, f"{path.name} finds files through a module's __file__"
