"""mkdocs hooks (mkdocs.yml `hooks:`): the site renders the notebooks' formulas with a MathJax
copied from the `jupyter_server_mathjax` package, so that no page loads a script from a CDN."""

import shutil
from pathlib import Path

import jupyter_server_mathjax

MATHJAX = Path(jupyter_server_mathjax.__file__).parent / "static"


def on_post_build(config, **kwargs):
    target = Path(config["site_dir"]) / "assets" / "mathjax"
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(MATHJAX, target)
