#!/usr/bin/env bash
# One self-contained GPU run: build kdsleep with its CUDA kernels, run every CUDA test, then the paper-size
# kernel benchmarks (CUDA-event timing, fraction of the measured device-to-device copy bandwidth). Writes
# every log to OUT_DIR and keeps going when a step fails; the exit status is that of the first failing step.
#
#   benchmarks/run_gpu.sh OUT_DIR
#
# Fits 8 minutes on a fresh H100/H200 (16 cores): each step has a time limit, cut further so that the whole
# run ends within KDSLEEP_GPU_BUDGET_S seconds (default 460); a step with no time left is skipped. Works
# offline: the build uses the installed torch (no build isolation, no downloads). Needs python3 with torch
# (CUDA build), setuptools and nvcc (CUDA_HOME, default /usr/local/cuda). pytest, hypothesis and
# pytest-benchmark are used when installed; KDSLEEP_WHEELS=DIR installs them from local wheels first
# (`python3 -m pip install --no-index --find-links DIR`). Without pytest-benchmark the kernel timings still
# run (a standalone CUDA-event timing of the fused ops, written to kernels_cuda.md).
set -uo pipefail

out=${1:?usage: benchmarks/run_gpu.sh OUT_DIR}
mkdir -p "$out" || exit 1
out=$(cd "$out" && pwd)  # absolute: later steps change directory
cd "$(dirname "$0")/.." || exit 1
export CUDA_HOME=${CUDA_HOME:-/usr/local/cuda} PYTHONUNBUFFERED=1 PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export MAX_JOBS=${MAX_JOBS:-$(nproc)}
PY=${PYTHON:-python3}
status=0
started=$(date +%s)
deadline=$(( started + ${KDSLEEP_GPU_BUDGET_S:-460} ))

# step NAME LIMIT_S COMMAND...: runs COMMAND with a time limit, its output to OUT_DIR/NAME.log, and records
# the outcome in OUT_DIR/steps.txt; a failure is remembered but does not stop the run.
step() {
  local name=$1 limit=$2
  shift 2
  local t0 rc left
  t0=$(date +%s)
  left=$(( deadline - t0 ))
  if [ "$left" -lt 15 ]; then
    printf '%-22s skipped: the run is out of time\n' "$name" | tee -a "$out/steps.txt"
    [ "$status" -eq 0 ] && status=124
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (limit ${limit}s)"
  timeout --signal=TERM --kill-after=10 "$limit" "$@" > "$out/$name.log" 2>&1
  rc=$?
  printf '%-22s rc=%-4s %4ss\n' "$name" "$rc" "$(( $(date +%s) - t0 ))" | tee -a "$out/steps.txt"
  tail -n 3 "$out/$name.log"
  if [ "$rc" -ne 0 ] && [ "$status" -eq 0 ]; then status=$rc; fi
  return 0
}

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  git rev-parse HEAD 2>/dev/null || echo "commit: not a git checkout"
  git status --short 2>/dev/null | head -20
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.memory --format=csv
  "$CUDA_HOME/bin/nvcc" --version | tail -2
  "$PY" -c "import sys, torch; print('python', sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0))"
} > "$out/environment.txt" 2>&1
cat "$out/environment.txt"

if [ -n "${KDSLEEP_WHEELS:-}" ]; then
  step install_test_deps 120 "$PY" -m pip install --no-index --find-links "$KDSLEEP_WHEELS" \
    pytest hypothesis pytest-benchmark
fi

# Build in place (the tests and benchmarks import the checkout through PYTHONPATH).
step build 210 env FORCE_CUDA=1 "$PY" setup.py build_ext --inplace
step registered 30 "$PY" - <<'PY'
import torch
import kdsleep.ops as ops

print("backends:", sorted(ops.BACKENDS))
assert ops.BACKENDS == {"cpu", "cuda"}, ops.BACKENDS
for op in ("attention_transfer", "attention_transfer_backward", "softmax_distillation", "self_distillation"):
    assert torch._C._dispatch_has_kernel_for_dispatch_key(f"kdsleep::{op}", "CUDA"), op
print("CUDA kernels registered for every op")
PY

have() { "$PY" -c "import $1" > /dev/null 2>&1; }

if have pytest && have hypothesis; then
  # -m cuda: the CUDA half of every device-parametrised test (every path the CPU tests cover); no -x, so
  # one failure does not hide the others
  step cuda_tests 150 "$PY" -m pytest tests/ops -q -p no:cacheprovider -m cuda -rfE \
    --junitxml="$out/cuda_tests.xml"
else
  echo "pytest or hypothesis missing: CUDA tests skipped (set KDSLEEP_WHEELS)" | tee -a "$out/steps.txt"
  [ "$status" -eq 0 ] && status=1
fi

# Standalone CUDA-event timings of the fused ops at the paper's sizes (needs only torch).
step kernels_cuda 60 "$PY" - "$out/kernels_cuda.md" <<'PY'
import sys

import torch

import kdsleep.ops as ops

# UTime(n_chans=1, n_outputs=5, sfreq=200, n_epochs=35).tap_shapes, written out so that this step needs
# only torch (the model module imports the data stack)
TAPS = [(16, 21000), (32, 4200), (64, 840), (128, 210), (256, 70), (512, 70), (256, 210), (128, 840),
        (64, 4200), (32, 21000), (16, 210000), (5, 210000)]


def event_median(fn, rounds=20):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(rounds):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    times.sort()
    return times[len(times) // 2]


dev = "cuda"
src = torch.empty(2**28, device=dev)
dst = torch.empty_like(src)
copy_bw = 2 * src.numel() * 4 / event_median(lambda: dst.copy_(src))
del src, dst
lines = [f"GPU {torch.cuda.get_device_name(0)}, torch {torch.__version__}; copy bandwidth {copy_bw / 1e9:.0f} GB/s", ""]
lines += ["| op | phase | CUDA-event median | bytes counted | fraction of copy bandwidth |", "|---|---|---|---|---|"]
shapes = TAPS
g = torch.Generator().manual_seed(0)
student = [torch.randn(12, c, n, generator=g).to(dev).requires_grad_(True) for c, n in shapes]
teacher = [torch.randn(12, c, n, generator=g).to(dev) for c, n in shapes]
in_bytes = sum(x.numel() * 4 for x in student + teacher)
out_bytes = sum(x.numel() * 4 for x in student)
for phase in ("fwd", "fwdbwd"):
    def at_step():
        loss = ops.attention_transfer_loss(student, teacher)
        if phase == "fwdbwd":
            torch.autograd.grad(loss, student)

    t = event_median(at_step)
    moved = in_bytes + (out_bytes if phase == "fwdbwd" else 0)
    lines.append(f"| attention_transfer (12 x U-Time taps) | {phase} | {t * 1e3:.3f} ms | {moved / 2**20:.0f} MiB | {moved / t / copy_bw:.2f} |")
s = (torch.randn(12, 5, 35, generator=g) * 3).to(dev).requires_grad_(True)
tl = (torch.randn(12, 5, 35, generator=g) * 3).to(dev)
y = torch.randint(-1, 5, (12, 35), generator=g).to(dev)
for phase in ("fwd", "fwdbwd"):
    def sd_step():
        loss = ops.distillation_loss(s, tl, y, weight_kd=0.5)
        if phase == "fwdbwd":
            torch.autograd.grad(loss, s)

    lines.append(f"| distillation_loss (12 x 35 x 5) | {phase} | {event_median(sd_step) * 1e3:.3f} ms | | |")
ds = torch.randn(10, 64, 65536, generator=g).to(dev).requires_grad_(True)
dt = torch.randn(2, 64, 65536, generator=g).to(dev)
dc = (torch.randn(65536, generator=g) * 0.1).to(dev)
for phase in ("fwd", "fwdbwd"):
    def dino_step():
        loss = ops.self_distillation_loss(ds, dt, dc)
        if phase == "fwdbwd":
            torch.autograd.grad(loss, ds)

    moved = (ds.numel() + dt.numel()) * 4 + (ds.numel() * 4 if phase == "fwdbwd" else 0)
    t = event_median(dino_step)
    lines.append(f"| self_distillation_loss (10 + 2 views, 64 x 65 536) | {phase} | {t * 1e3:.3f} ms | {moved / 2**20:.0f} MiB | {moved / t / copy_bw:.2f} |")
text = "\n".join(lines)
print(text)
with open(sys.argv[1], "w") as fh:
    fh.write(text + "\n")
PY

if have pytest_benchmark; then
  # eager vs torch.compile'd reference vs fused, paper size, side by side (compilation takes most of it)
  step bench_paper_cuda 150 "$PY" -m pytest benchmarks/test_bench_ops.py -q -p no:cacheprovider \
    --kd-size=paper --kd-device=cuda --benchmark-json="$out/bench_paper_cuda.json"
  step report 20 "$PY" benchmarks/report.py "$out/bench_paper_cuda.json"
  cp "$out/report.log" "$out/bench_paper_cuda.md" 2>/dev/null
else
  echo "pytest-benchmark missing: side-by-side benchmarks skipped (kernels_cuda.md has the fused timings)" \
    | tee -a "$out/steps.txt"
fi

echo "total $(( $(date +%s) - started ))s, exit status $status; logs in $out" | tee -a "$out/steps.txt"
exit "$status"
