"""The documentation site (mkdocs.yml): every public name has a reference entry, `mkdocs build
--strict` passes (a broken link or a missing reference fails it), no built page loads anything from
outside the site, and the built tutorial page shows its figures in Debian's chromium."""

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import kdviz

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def test_every_public_name_has_a_reference_entry():
    api = (ROOT / "docs" / "api.md").read_text()
    entries = set(re.findall(r"^::: [\w.]*?(\w+)$", api, re.M)) | set(re.findall(r"^### kd\.(\w+)$", api, re.M))
    missing = sorted(set(kdviz.__all__) - entries)
    assert not missing, f"docs/api.md has no entry for kdviz.{', kdviz.'.join(missing)}"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs", reason='the docs extra is not installed (pip install -e ".[docs]")')
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert build.returncode == 0, f"mkdocs build --strict failed:\n{build.stderr[-4000:]}"
    return out


# What a page may not do: load a script, a stylesheet or a font from another host.
EXTERNAL = [
    re.compile(r"<script[^>]+src=\"https?://", re.I),
    re.compile(r"<link[^>]+href=\"https?://[^\"]+\"[^>]*rel=\"(stylesheet|preload)\"", re.I),
    re.compile(r"<link[^>]+rel=\"(stylesheet|preload)\"[^>]*href=\"https?://", re.I),
    re.compile(r"@import\s+url\(['\"]?https?://", re.I),
    re.compile(r"fonts\.(googleapis|gstatic)\.com"),
    re.compile(r"unpkg\.com"),  # the widget renderer nbconvert adds when a notebook stores widget state
]


@pytest.mark.slow
def test_the_site_builds_strictly_and_loads_nothing_from_outside(site):
    pages = sorted(site.rglob("*.html"))
    notebook_pages = [p for p in pages if p.parent.parent.name == "notebooks"]
    assert len(notebook_pages) == len(list((ROOT / "notebooks").glob("*.ipynb"))), "a notebook has no page"
    assert (site / "api" / "index.html").read_text().count('class="doc doc-heading"') >= len(kdviz.__all__) - 4
    for page in pages:
        text = page.read_text(errors="replace")
        for pattern in EXTERNAL:
            assert not pattern.search(text), f"{page.relative_to(site)} loads from outside the site: {pattern.pattern}"
        if "mermaid.esm" in text:  # nbconvert imports mermaid from a CDN only for a page with a diagram
            assert "jp-Mermaid" not in text.split("</style>")[-1], f"{page.relative_to(site)} has a mermaid diagram"


@pytest.mark.browser
@pytest.mark.slow
def test_the_built_tutorial_page_shows_its_figures_in_chromium(site, tmp_path):
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("CI must run the browser tests: .ci/run installs Debian's chromium")
        pytest.skip(f"no chromium at {CHROMIUM}")
    sync_api = pytest.importorskip("playwright.sync_api")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    http.server.SimpleHTTPRequestHandler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    outside = []
    try:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(
                executable_path=CHROMIUM,
                headless=True,
                args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--no-first-run"],
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("request", lambda r: None if r.url.startswith((base, "data:")) else outside.append(r.url))
            page.goto(f"{base}/notebooks/00_kd_tutorial/", wait_until="load")
            page.wait_for_load_state("networkidle")
            widths = page.eval_on_selector_all(
                ".jp-RenderedImage img, .jp-OutputArea img", "els => els.map(e => e.naturalWidth)"
            )
            body = page.inner_text("body")
            browser.close()
    finally:
        server.shutdown()
    assert widths and all(w > 0 for w in widths), f"figures that did not load (natural widths {widths})"
    assert not outside, f"the page asked for files outside the site: {outside[:5]}"
    for error in ("Traceback", "Error:", "404"):
        assert error not in body, f"the built tutorial page shows {error!r}"
