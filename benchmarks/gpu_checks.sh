#!/usr/bin/env bash
# Every GPU check of kdviz in one short run, for a session that is lent a GPU for a few minutes:
# the CUDA tests (no host sync per step, bf16 autocast, channels_last, torch.compile, the teacher
# cache on the GPU), a profile of the resnet8x4 KD step (is the GPU busy, or waiting for the
# CPU?), then the gpu suite of bench_distill.py on CRD's two pairs (one round each;
# the ShuffleNetV2 pair on a quarter of CIFAR's 50,000 images). Each step has its own time limit, so
# that a slow one cannot take the others' results with it. About 6 minutes on an H200.
#
#   bash benchmarks/gpu_checks.sh [OUT_DIR]      (default: benchmarks/results)
set -u
out=${1:-benchmarks/results}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, torchvision; print('torch', torch.__version__, '| torchvision', torchvision.__version__, '|', torch.cuda.get_device_name())"
timeout 90 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py \
    tests/test_data_paper.py::test_crop_flip_on_gpu_matches_cpu \
    tests/test_losses_expressive.py::test_no_registered_term_syncs_on_cuda 2>&1 | tee "$out/gpu_tests.log"
timeout 90 python3 benchmarks/profile_step.py --out "$out/profile_step_cuda.json"
timeout 220 python3 benchmarks/bench_distill.py --suite gpu --pairs resnet32x4:resnet8x4 --rounds 1 \
    --out "$out/bench_distill_gpu_resnet32x4.json"
timeout 150 python3 benchmarks/bench_distill.py --suite gpu --pairs shufflenetv2_1_0:shufflenetv2_0_5 --rounds 1 \
    --n-train 12500 --out "$out/bench_distill_gpu_shufflenetv2.json"
