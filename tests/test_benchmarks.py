"""The benchmark script's code path, on tiny sizes (its numbers are not measurements here)."""
import importlib.util
import json
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_distill.py"


def load_script():
    spec = importlib.util.spec_from_file_location("bench_distill", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_bench_distill_quick_writes_every_arm_and_target(tmp_path):
    bench = load_script()
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--device", "cpu", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    arms = {a["arm"] for a in report["arms"]}
    assert {"reference_kd", "kd_online", "kd_cached", "kd_cached_kview_aug", "kd_icc_mimic_cached", "student_alone",
            "teacher_ce", "teacher_icc"} <= arms
    assert all(a["images_per_s"] > 0 and a["measured"] for a in report["arms"])
    assert len(report["targets"]) == 6 and all(isinstance(t["pass"], bool) for t in report["targets"])
    assert report["quick"] is True and set(report["cache_build_seconds"]) == {"exact", "2 views"}
