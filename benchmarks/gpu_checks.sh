#!/usr/bin/env bash
# Every GPU check of kdviz in one short run, for a session that is lent a GPU for a few minutes:
#   1. the CUDA tests: no host sync per step (every logit term, DKD and the feature terms with
#      CRD's bank, in real train() runs), bf16 autocast, channels_last, torch.compile, the teacher
#      cache on the GPU;
#   2. channels_last against NCHW per model on the GPU, in fp32 and under bf16 autocast (does
#      kdviz's CPU-only default for the layout hold on CUDA?);
#   3. what FitNet, AT and CRD add to a KD step on CRD's own pair (resnet32x4 -> resnet8x4,
#      CIFAR-100-sized data, CRD's bank over 50,000 samples);
#   4. kd.distill with nothing set against a tutorial KD loop and the student alone, on the GPU
#      (issue 15's pair and Fashion-MNIST data);
#   5. a profile of the resnet8x4 KD step (is the GPU busy, or waiting for the CPU?);
#   6. that step eager, compiled (inductor) and captured with CUDA graphs (mode reduce-overhead)
#      (issue #25: kdviz.train.step.TrainStep.compile; docs/captured_step.md).
# Each step has its own time limit, so that a slow one cannot take the others' results with it.
# Steps 1-5 took about 5 minutes on an H200; step 6 has not run on a GPU yet (at most 8 minutes).
# Fashion-MNIST: Debian's files, or a copy in .fmnist/ (the device
# machine has no dataset package; carry that folder).
#
#   bash benchmarks/gpu_checks.sh [OUT_DIR]      (default: benchmarks/results)
set -u
out=${1:-benchmarks/results}
mkdir -p "$out"
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
if [ ! -d /usr/share/datasets/fashion-mnist ] && [ -d .fmnist ]; then
    mkdir -p /usr/share/datasets && cp -r .fmnist /usr/share/datasets/fashion-mnist
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
python3 -c "import torch, torchvision; print('torch', torch.__version__, '| CUDA', torch.version.cuda, '| torchvision', torchvision.__version__, '|', torch.cuda.get_device_name())"
timeout 150 python3 -m pytest -q -p no:cacheprovider tests/test_cuda.py \
    tests/test_data_paper.py::test_crop_flip_on_gpu_matches_cpu \
    tests/test_losses_expressive.py::test_no_registered_term_syncs_on_cuda \
    tests/test_losses_baselines.py::test_no_feature_term_syncs_on_cuda 2>&1 | tee "$out/gpu_tests.log"
timeout 90 python3 benchmarks/bench_channels_last.py --device cuda --out "$out/bench_channels_last_cuda.json"
timeout 90 python3 benchmarks/bench_channels_last.py --device cuda --amp --out "$out/bench_channels_last_cuda_bf16.json"
timeout 90 python3 benchmarks/bench_feature_terms.py --suite gpu --out "$out/bench_feature_terms_gpu.json"
timeout 150 python3 benchmarks/bench_distill.py --suite defaults --device cuda --out "$out/bench_distill_defaults_cuda.json"
timeout 90 python3 benchmarks/profile_step.py --out "$out/profile_step_cuda.json"
timeout 240 python3 benchmarks/bench_captured_step.py --device cuda --out "$out/bench_captured_step_cuda.json"
timeout 240 python3 benchmarks/bench_captured_step.py --device cuda --mode reduce-overhead \
    --out "$out/bench_captured_step_cuda_graphs.json"
