"""A fast start: `import kdviz` and the command line's help and argument errors load no torch, and
kdviz's public names load on first use, each the object its module defines."""

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import kdviz
import kdviz.experiments
import kdviz.train

HEAVY = ("torch", "torchvision", "matplotlib", "seaborn", "pandas", "ipywidgets")
ROOT = Path(__file__).resolve().parents[1]

PROBE = """
import json, sys
code = 0
try:
    {body}
except SystemExit as e:
    code = e.code
print(json.dumps({{"code": code, "loaded": [m for m in {heavy!r} if m in sys.modules]}}), file=sys.__stderr__)
"""


def probe(body: str) -> dict:
    """Run `body` in a fresh interpreter: its exit code and which heavy modules it loaded."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    script = PROBE.format(body=body, heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, capture_output=True, text=True)
    return json.loads(done.stderr.strip().splitlines()[-1])


def test_import_kdviz_loads_no_torch():
    assert probe("import kdviz") == {"code": 0, "loaded": []}


@pytest.mark.parametrize(
    "argv, code",
    [
        (["--help"], 0),
        (["distill", "--help"], 0),
        (["quickstart", "--help"], 0),
        (["distill", "--epochs", "0", "--out", "o", "--teacher", "t.pt"], 2),  # a bad number
        (["train-teacher"], 2),  # --out missing
        (["sweep"], 2),  # the experiment missing
        (["no-such-command"], 2),
    ],
)
def test_help_and_argument_errors_answer_without_importing_torch(argv, code):
    assert probe(f"from kdviz.cli import main; main({argv!r})") == {"code": code, "loaded": []}


def test_the_distill_help_states_the_disk_cache_threshold(capsys):
    from kdviz.cli import build_parser
    from kdviz.train.teacher import DISK_CACHE_IMAGES

    with pytest.raises(SystemExit):
        build_parser().parse_args(["distill", "--help"])
    assert f"below {DISK_CACHE_IMAGES:,} images" in " ".join(capsys.readouterr().out.split())


@pytest.mark.parametrize("package", [kdviz, kdviz.experiments, sys.modules["kdviz.train"]])
def test_every_public_name_loads_as_its_modules_object(package):
    exports = package._EXPORTS
    assert set(exports) <= set(package.__all__) and set(package.__all__) <= set(dir(package))
    for name, module in exports.items():
        defined = getattr(importlib.import_module(f"{package.__name__}.{module}"), name)
        assert getattr(package, name) is defined, name


def test_kd_train_is_the_function_though_the_subpackage_kdviz_train_is_imported():
    # conftest and this module import kdviz.train (the subpackage); kd.train stays the training function.
    assert kdviz.train is sys.modules["kdviz.train.loop"].train
    assert callable(kdviz.train) and kdviz.distill is sys.modules["kdviz.train"].distill


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="module 'kdviz' has no attribute 'trian'"):
        kdviz.trian  # noqa: B018
