"""The benchmark script's code path, on tiny sizes (its numbers are not measurements here)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_distill.py"


def load_script():
    spec = importlib.util.spec_from_file_location("bench_distill", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_bench_distill_quick_writes_every_arm_and_target(tmp_path):
    bench = load_script()
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--device", "cpu", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    arms = {a["arm"] for a in report["arms"]}
    assert {
        "reference_kd",
        "kd_online",
        "kd_cached",
        "kd_cached_kview_aug",
        "kd_icc_mimic_cached",
        "student_alone",
        "teacher_ce",
        "teacher_icc",
    } <= arms
    assert all(a["images_per_s"] > 0 and a["measured"] for a in report["arms"])
    assert len(report["targets"]) == 6 and all(isinstance(t["pass"], bool) for t in report["targets"])
    assert report["quick"] is True and set(report["cache_build_seconds"]) == {"exact", "2 views"}


@pytest.mark.slow
def test_bench_distill_defaults_suite_measures_kdviz_with_nothing_set(tmp_path):
    out = tmp_path / "defaults.json"
    assert load_script().main(["--suite", "defaults", "--quick", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert [a["arm"] for a in report["arms"]] == ["reference_kd", "kd_defaults", "student_alone"]
    assert [(t["numerator"], t["denominator"]) for t in report["targets"]] == [
        ("kd_defaults", "reference_kd"),
        ("kd_defaults", "student_alone"),
    ]
    # What kdviz chose by itself for 28x28 images without augmentation, on a CPU: the exact cache, NHWC.
    assert report["kdviz_choices"]["kd_defaults"] == {
        "teacher_cache": True,
        "channels_last": True,
        "eval_test": False,
        "val_subset": 0,
    }
    assert report["kdviz_choices"]["student_alone"]["teacher_cache"] is False


def load_profile_script(name="profile_step"):
    spec = importlib.util.spec_from_file_location(name, SCRIPT.parent / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_profile_summary_reads_the_last_epoch_of_a_hand_made_trace():
    profile = load_profile_script()

    def event(cat, name, ts, dur):
        return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur}

    trace = {
        "traceEvents": [
            event("user_annotation", "kdviz.train_epoch", 0, 50),  # the warm-up epoch: ignored
            event("kernel", "early", 10, 30),
            event("user_annotation", "kdviz.train_epoch", 100, 1000),
            event("cpu_op", "aten::conv", 150, 10),
            event("cpu_op", "aten::add", 160, 5),
            event("kernel", "conv", 200, 100),
            event("kernel", "add", 250, 100),  # overlapping: [200, 350) counts 150
            event("kernel", "conv", 600, 50),
            event("gpu_memcpy", "HtoD", 900, 20),
            event("kernel", "late", 1200, 40),  # after the epoch: ignored
        ]
    }
    report = profile.summarize(trace, steps=2)
    assert report["wall_ms_per_step"] == 1000 / 2 / 1e3 and report["cpu_ops_per_step"] == 1
    assert report["gpu_busy_share"] == (150 + 50 + 20) / 1000 and report["kernels_per_step"] == 3 / 2
    assert [(k["name"], k["ms_per_step"]) for k in report["top_kernels"]] == [
        ("conv", 150 / 2 / 1e3),
        ("add", 100 / 2 / 1e3),
    ]
    no_gpu = profile.summarize({"traceEvents": trace["traceEvents"][2:4]}, steps=1)
    assert no_gpu["gpu_busy_share"] is None and no_gpu["cpu_ops_per_step"] == 1


def test_profile_step_quick_finds_the_training_epoch_in_a_real_trace(tmp_path):
    out = tmp_path / "profile.json"
    assert load_profile_script().main(["--quick", "--device", "cpu", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["steps"] == 4 and report["wall_ms_per_step"] > 0 and report["cpu_ops_per_step"] > 50


@pytest.mark.slow
def test_bench_captured_step_quick_times_the_eager_and_the_compiled_step(tmp_path):
    out = tmp_path / "captured.json"
    report = load_profile_script("bench_captured_step").main(
        ["--quick", "--device", "cpu", "--backend", "aot_eager", "--out", str(out)]
    )
    assert json.loads(out.read_text()) == report
    assert set(report["ms_per_step"]) == {"eager", "compiled"} and all(v > 0 for v in report["ms_per_step"].values())
    assert report["teacher"] == "8-view logit cache" and report["machine"]["device"] == "cpu"
