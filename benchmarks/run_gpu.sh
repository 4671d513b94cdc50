#!/usr/bin/env bash
# On a machine with an NVIDIA GPU: build kdsleep with its CUDA kernels, run the CUDA tests and the
# paper-size kernel benchmarks, and write everything (GPU, versions, test log, JSON, Markdown) to OUT_DIR.
#
#   benchmarks/run_gpu.sh OUT_DIR
#
# Needs torch with CUDA, nvcc (CUDA_HOME), pytest, pytest-benchmark and hypothesis.
set -euo pipefail
out=${1:?usage: benchmarks/run_gpu.sh OUT_DIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.memory --format=csv | tee "$out/gpu.txt"
git rev-parse HEAD > "$out/commit.txt" 2>/dev/null || true
pip install --no-build-isolation --no-deps -e . > "$out/build.log" 2>&1
python -m kdsleep.info | tee "$out/info.txt"
python -m pytest tests/ops -q -p no:cacheprovider -m cuda 2>&1 | tee "$out/cuda_tests.txt"
python -m pytest benchmarks/test_bench_ops.py -q -p no:cacheprovider --kd-size=paper --kd-device=cuda \
  --benchmark-json="$out/bench_paper_cuda.json" 2>&1 | tail -5
python benchmarks/report.py "$out/bench_paper_cuda.json" | tee "$out/bench_paper_cuda.md"
