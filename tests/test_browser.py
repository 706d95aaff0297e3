"""The ICC explorer and the tutorial as a user meets them: JupyterLab 4 headless, the notebook run in Debian's
chromium (driven by playwright, never a downloaded browser), the controls moved by the browser.

Screenshots go to $KDVIZ_SCREENSHOTS (default build/browser/): explorer.png (the explorer as the
notebook opens it), explorer-moved.png (after the moves) and page.png (the whole window).
docs/img/explorer.png is the first from a real run.
Skipped where chromium or playwright is missing, except under CI=true, where that fails.
"""

import contextlib
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "notebooks" / "01_icc_explorer.ipynb"
TUTORIAL = ROOT / "notebooks" / "00_kd_tutorial.ipynb"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = Path(os.environ.get("KDVIZ_SCREENSHOTS", ROOT / "build" / "browser"))
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _require(ok: bool, reason: str) -> None:
    if ok:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}; CI must run the browser test (.ci/run installs chromium, the dev extra playwright)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def playwright_api():
    """playwright's sync API, or a skip (a failure under CI=true) saying what is missing."""
    _require(Path(CHROMIUM).exists(), f"no chromium at {CHROMIUM} (Debian: apt-get install chromium)")
    try:
        from playwright import sync_api
    except ImportError:
        _require(False, 'the playwright package is not installed (pip install -e ".[dev]")')
    return sync_api


@pytest.fixture
def jupyterlab(playwright_api, tmp_path, request):
    """A JupyterLab server on 127.0.0.1 over a temporary folder holding the explorer notebook, or
    the notebook a test passes as the fixture's indirect parameter (a notebook's Path, or {"name":
    file name, "cells": [code, ...]}); yields its URL for that notebook."""
    root, state = tmp_path / "root", tmp_path / "state"
    root.mkdir()
    notebook = getattr(request, "param", NOTEBOOK)
    if isinstance(notebook, Path):
        shutil.copy(notebook, root)
        name = notebook.name
    else:
        import nbformat

        name = notebook["name"]
        cells = [nbformat.v4.new_code_cell(code) for code in notebook["cells"]]
        # A kernelspec, or JupyterLab asks which kernel to start and the cells never run.
        kernel = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nbformat.v4.new_notebook(cells=cells, metadata={"kernelspec": kernel}), root / name)
    # No "would you like news?" toast over the notebook (it would also sit in the screenshots).
    settings = state / "settings" / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    settings.parent.mkdir(parents=True)
    settings.write_text(json.dumps({"fetchNews": "false"}))
    port, token = _free_port(), secrets.token_hex(16)
    env = {
        **os.environ,
        "KDVIZ_SMOKE": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "JUPYTER_RUNTIME_DIR": str(state / "runtime"),
        "JUPYTER_CONFIG_DIR": str(state / "config"),
        "OMP_NUM_THREADS": "1",
    }
    env.pop("MPLBACKEND", None)  # the kernel's own backend
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={port}",
            f"--IdentityProvider.token={token}",
            f"--ServerApp.root_dir={root}",
            "--LabApp.expose_app_in_browser=True",
            f"--LabApp.user_settings_dir={state / 'settings'}",
            f"--LabApp.workspaces_dir={state / 'workspaces'}",
            "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
            "--LabApp.news_url=None",
            "--LabApp.extension_manager=readonly",
            "--allow-root",
        ],  # nothing fetched from outside; CI runs as root
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=(log := open(tmp_path / "jupyterlab.log", "wb")),
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/api/status?token={token}", timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        "JupyterLab did not start:\n" + (tmp_path / "jupyterlab.log").read_text()[-3000:]
                    ) from None
                time.sleep(0.5)
        yield f"http://127.0.0.1:{port}/lab/tree/{name}?token={token}&reset"
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()


# Runs every cell through JupyterLab's own command; resolves to the error outputs (none, we hope).
RUN_ALL = """async () => {
    const app = window.jupyterapp;
    const panel = app.shell.currentWidget;
    await panel.context.ready;
    await panel.sessionContext.ready;
    await app.commands.execute("notebook:run-all-cells");
    const errors = [];
    const cells = panel.content.model.cells;
    for (let i = 0; i < cells.length; i++) {
        const cell = cells.get(i);
        if (cell.type !== "code") continue;
        for (let j = 0; j < cell.outputs.length; j++) {
            const out = cell.outputs.get(j).toJSON();
            if (out.output_type === "error") errors.push(`cell ${i}: ${out.ename}: ${out.evalue}`);
        }
    }
    return errors;
}"""


@contextlib.contextmanager
def _notebook_page(playwright_api, url: str, tmp_path: Path, width: int = 1280):
    """A headless chromium page on the notebook at `url`, its cells run without an error."""
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch_persistent_context(
            str(tmp_path / "chromium-profile"),
            executable_path=CHROMIUM,
            headless=True,
            args=CHROMIUM_FLAGS,
            viewport={"width": width, "height": 1800},  # the whole explorer fits: element screenshots stay clean
        )
        try:
            page = browser.new_page()
            page.set_default_timeout(60_000)
            page.goto(url)
            page.wait_for_function(
                "window.jupyterapp && window.jupyterapp.shell.currentWidget "
                "&& window.jupyterapp.shell.currentWidget.sessionContext"
            )
            errors = page.evaluate(RUN_ALL)
            assert errors == [], f"cells failed: {errors}"
            yield page
        finally:
            browser.close()


def test_explorer_notebook_runs_and_its_controls_redraw_the_heatmaps(playwright_api, jupyterlab, tmp_path):
    expect = playwright_api.expect
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with _notebook_page(playwright_api, jupyterlab, tmp_path) as page:
        explorer = page.locator(".jp-CodeCell").filter(has_text="kd.run_explorer(").locator(".jp-OutputArea-output")
        heatmap = explorer.locator("img").nth(1)  # images: the error curves, then the heatmaps
        expect(heatmap).to_be_visible()
        assert heatmap.evaluate("img => img.naturalWidth") > 500  # a decoded figure, not a broken image
        explorer.scroll_into_view_if_needed()
        explorer.screenshot(path=SCREENSHOTS / "explorer.png")

        def moved(action) -> None:
            """Do `action`; the heatmap image must be replaced by a different one."""
            src, pixels = heatmap.get_attribute("src"), heatmap.screenshot()
            action()
            page.wait_for_function(
                "([img, src]) => img.src !== src && img.complete && img.naturalWidth > 0",
                arg=[heatmap.element_handle(), src],
            )
            assert heatmap.screenshot() != pixels

        handle = explorer.locator(".widget-slider .noUi-handle").first
        moved(lambda: (handle.focus(), page.keyboard.press("Home")))  # the epoch slider to epoch 0
        expect(explorer.locator(".widget-slider .widget-readout").first).to_have_text("0")
        model = (
            explorer.locator(".widget-dropdown").filter(has=page.locator("label", has_text="model")).locator("select")
        )
        moved(lambda: model.select_option("student alone"))

        for bad in ("Error displaying widget", "could not redraw", "Traceback"):
            assert page.get_by_text(bad).count() == 0, f"the page shows {bad!r}"
        explorer.screenshot(path=SCREENSHOTS / "explorer-moved.png")
        page.screenshot(path=SCREENSHOTS / "page.png")


PLANTED_NOTEBOOK = {
    "name": "planted.ipynb",
    "cells": [
        "import kdviz as kd\n"
        'data = kd.load_dataset("planted", classes=6, groups=2, n_images=300, n_test=100)\n'
        'run = kd.train(data, "mlp", "ce", epochs=3, progress=False)',
        'kd.run_explorer({"mlp on planted": run})',
    ],
}


@pytest.mark.parametrize("jupyterlab", [PLANTED_NOTEBOOK], indirect=True)
def test_explorer_on_a_planted_run_shows_the_truth_and_follows_the_epoch_slider(playwright_api, jupyterlab, tmp_path):
    expect = playwright_api.expect
    with _notebook_page(playwright_api, jupyterlab, tmp_path) as page:
        explorer = page.locator(".jp-CodeCell").filter(has_text="kd.run_explorer(").locator(".jp-OutputArea-output")
        truth = explorer.locator("img").nth(2)  # images: the error curves, the heatmaps, the truth
        expect(truth).to_be_visible()
        assert truth.evaluate("img => img.naturalWidth") > 500
        expect(explorer.get_by_text("distance to truth")).to_be_visible()
        src = truth.get_attribute("src")
        handle = explorer.locator(".widget-slider .noUi-handle").first
        handle.focus()
        page.keyboard.press("Home")  # the epoch slider to epoch 0: the truth figure marks it
        expect(explorer.locator(".widget-slider .widget-readout").first).to_have_text("0")
        page.wait_for_function(
            "([img, src]) => img.src !== src && img.complete && img.naturalWidth > 0",
            arg=[truth.element_handle(), src],
        )
        for bad in ("Error displaying widget", "could not redraw", "Traceback"):
            assert page.get_by_text(bad).count() == 0, f"the page shows {bad!r}"


@pytest.mark.parametrize("jupyterlab", [TUTORIAL], indirect=True)
def test_tutorial_runs_its_figures_show_and_the_tau_slider_redraws_the_soft_targets(
    playwright_api, jupyterlab, tmp_path
):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    with _notebook_page(playwright_api, jupyterlab, tmp_path, width=1400) as page:
        figures = page.locator(".jp-OutputArea-output img")
        assert figures.count() >= 10, f"only {figures.count()} figures in the tutorial's outputs"
        for i in range(figures.count()):
            figure = figures.nth(i)
            figure.scroll_into_view_if_needed()
            assert figure.evaluate("img => img.complete && img.naturalWidth > 100"), f"figure {i} did not render"

        slider_cell = page.locator(".jp-CodeCell").filter(has_text="FloatLogSlider(")
        chart = slider_cell.locator(".jp-OutputArea-output img").first
        slider_cell.scroll_into_view_if_needed()
        playwright_api.expect(chart).to_be_visible()
        before = chart.get_attribute("src")
        readout = slider_cell.locator(".widget-readout").first
        start = readout.inner_text()
        handle = slider_cell.locator(".noUi-handle").first
        handle.focus()
        page.keyboard.press("End")  # tau to the slider's maximum, 2**5
        playwright_api.expect(readout).not_to_have_text(start)
        deadline = time.monotonic() + 60
        while chart.get_attribute("src") == before:  # the Output widget redraws the chart in place
            assert time.monotonic() < deadline, "moving the tau slider did not redraw the soft-target chart"
            time.sleep(0.5)
        assert chart.evaluate("img => img.complete && img.naturalWidth > 100")
        for bad in ("Error displaying widget", "Traceback"):
            assert page.get_by_text(bad).count() == 0, f"the page shows {bad!r}"
        slider_cell.screenshot(path=SCREENSHOTS / "tutorial-slider.png")
