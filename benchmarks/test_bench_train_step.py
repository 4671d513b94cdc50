"""One training step: the ECG student alone against AT+SD+CL distillation three ways, side by side.

Four steps share one benchmark group per size, all with the same student, inputs and Adam update:

* ``baseline`` -- the ECG baseline: student forward, weighted cross-entropy, backward, Adam;
* ``authors`` -- AT+SD+CL as the authors' code runs it: the frozen teacher's forward pass (logits and twelve
  feature maps) every step, the eager pure-PyTorch losses (:mod:`kdsleep.ops.reference`);
* ``live`` -- kdsleep with the live teacher: the same teacher pass, the fused losses of :mod:`kdsleep.ops`;
* ``cached`` -- kdsleep with the teacher's outputs read from a :class:`~kdsleep.distill.teacher_cache.TeacherCache`
  (built once before timing): no teacher pass, attention transfer against the stored float16 maps
  (:func:`~kdsleep.distill.teacher_cache.attention_transfer_from_maps`), softmax distillation against the
  stored logits.

The three distillation steps compute the same loss (canonical attention transfer with
:class:`~kdsleep.distill.losses.FeatureLoss`'s default distance, plus ``0.5 * WCE + 0.5 * KL``). Each
benchmark's ``extra_info`` holds ``saved_for_backward_MiB`` (the tensors autograd keeps between the forward
pass and backward, beyond the inputs and the parameters, measured with ``saved_tensors_hooks`` as in
``test_bench_ops.py``) and ``peak_rss_step_MiB`` (the rise of the process's resident memory during one step
over its level before the step, from the kernel's high-water mark reset through ``/proc/self/clear_refs``;
Linux only, ``None`` elsewhere; on CUDA the allocator peak instead).

Sizes:

* ``--kd-size=small`` (default, CI): batch 2 of 5-epoch windows at 50 Hz with a narrow U-Time.
* ``--kd-size=paper``: the quick preset (``configs/synthetic_quick.toml``: batch 16 of 15-epoch windows at
  32 Hz, filters 8-32) and the paper's setting (``configs/paper.toml``: full U-Time, batch 16 of 35-epoch
  windows at 200 Hz; about 20 s per step on one CPU thread, and a peak of about 5 GiB).

Tables for ``benchmarks/RESULTS.md``:
``python benchmarks/test_bench_train_step.py bench.json`` after ``pytest ... --benchmark-json=bench.json``;
``python benchmarks/test_bench_train_step.py --interleaved paper 5`` times the four steps round-robin (one of
each per round), which a machine shared with other work disturbs less than four consecutive runs.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from kdsleep._torch import flush_denormals, saved_for_backward_bytes
from kdsleep.distill.losses import FeatureLoss, FinalLoss
from kdsleep.distill.teacher_cache import TeacherCache, attention_transfer_from_maps
from kdsleep.models import FeatureTaps, UTime

SIZES = {
    "small": {
        "batch": 2,
        "model": {"sfreq": 50.0, "n_epochs": 5, "pools": [5, 5, 3, 2, 2], "filters": [8, 16, 16, 32, 32]},
        "rounds": 5,
    },
    "quick": {
        "batch": 16,
        "model": {"sfreq": 32.0, "n_epochs": 15, "pools": [4, 4, 3, 2, 2], "filters": [8, 16, 16, 32, 32]},
        "rounds": 10,
    },
    "paper": {"batch": 16, "model": {"sfreq": 200.0, "n_epochs": 35}, "rounds": 3},
}
KINDS = ["baseline", "authors", "live", "cached"]
RUN_SIZES = {"small": ["small"], "paper": ["quick", "paper"]}


def make_step(kind: str, size: str, device: str, cache_dir: Path):
    """``(step, forward_loss, inputs)`` of one training step; ``forward_loss`` stops before backward."""
    torch.manual_seed(0)
    shape = SIZES[size]
    batch = shape["batch"]
    teacher = UTime(1, 4, **shape["model"]).to(device).eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    student = UTime(1, 4, **shape["model"]).to(device).train()
    optimizer = torch.optim.Adam(student.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    eeg = torch.randn(batch, 1, student.n_times, generator=g).to(device)
    ecg = torch.randn(batch, 1, student.n_times, generator=g).to(device)
    labels = torch.randint(0, 4, (batch, student.n_epochs), generator=g).to(device)
    labels[:, 0] = -1  # an unscored epoch in every window
    weights = torch.tensor([0.5, 0.8, 2.0, 1.2], device=device)
    backend = "reference" if kind == "authors" else "fused"
    final_loss = FinalLoss(weights, weight_kd=0.0 if kind == "baseline" else 0.5, backend=backend)
    feature_loss = FeatureLoss(backend=backend)
    index = torch.arange(batch)
    cache = None
    if kind == "cached":
        windows = [(eeg[i].cpu(), ecg[i].cpu(), labels[i].cpu()) for i in range(batch)]
        cache = TeacherCache.build(
            teacher, windows, cache_dir, window_ids=[f"w{i}" for i in range(batch)], batch_size=batch
        )

    def forward_loss() -> torch.Tensor:
        if kind == "baseline":
            return final_loss(student(ecg), labels)
        if kind == "cached":
            assert cache is not None
            teacher_maps, teacher_logits = cache.lookup(index, device=device)
            with FeatureTaps(student, student.tap_names) as taps:
                logits = student(ecg)
            at = attention_transfer_from_maps(
                taps.features, teacher_maps, p=feature_loss.p, distance=feature_loss.distance
            )
            return at + final_loss(logits, labels, teacher_logits)
        with torch.no_grad():
            teacher_logits, teacher_maps = teacher.features(eeg, detach=True)
        with FeatureTaps(student, student.tap_names) as taps:
            logits = student(ecg)
        return feature_loss(taps.features, teacher_maps) + final_loss(logits, labels, teacher_logits)

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        loss = forward_loss()
        loss.backward()
        optimizer.step()
        if device == "cuda":
            torch.cuda.synchronize()
        return float(loss.detach())

    persistent = [eeg, ecg, labels, *student.parameters(), *student.buffers(), *teacher.parameters()]
    return step, forward_loss, persistent


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def _peak_step_memory(step, device: str) -> float | None:
    """MiB by which one step raises the peak (CUDA allocator, or resident memory on Linux)."""
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        step()
        return (torch.cuda.max_memory_allocated() - base) / 2**20
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")  # reset VmHWM to the current resident size
        before = _status_kib("VmRSS")
        step()
        return (_status_kib("VmHWM") - before) / 1024
    except OSError:
        return None


@pytest.fixture(params=[0, 1], ids=lambda i: ["first", "second"][i])
def size(request, kd_size):
    sizes = RUN_SIZES[kd_size]
    if request.param >= len(sizes):
        pytest.skip(f"--kd-size={kd_size} runs {sizes}")
    return sizes[request.param]


@pytest.mark.parametrize("kind", KINDS)
def test_train_step(benchmark, kind, size, kd_device, tmp_path):
    benchmark.group = f"train_step {size} batch {SIZES[size]['batch']} {kd_device}"
    step, forward_loss, persistent = make_step(kind, size, kd_device, tmp_path)
    # as in training: denormal activations would dominate the CPU timings otherwise
    with flush_denormals():
        step()  # warm-up (allocations, first-call dispatch)
        benchmark.extra_info["saved_for_backward_MiB"] = round(
            saved_for_backward_bytes(forward_loss, persistent) / 2**20, 2
        )
        peak = _peak_step_memory(step, kd_device)
        benchmark.extra_info["peak_rss_step_MiB"] = None if peak is None else round(peak, 1)
        loss = benchmark.pedantic(step, rounds=SIZES[size]["rounds"], iterations=1, warmup_rounds=0)
    benchmark.extra_info["threads"] = torch.get_num_threads()
    assert torch.isfinite(torch.tensor(loss))


def test_distillation_steps_agree(kd_device, tmp_path):
    """The three distillation steps give the same first loss (same weights, same inputs)."""
    losses = {kind: make_step(kind, "small", kd_device, tmp_path)[0]() for kind in KINDS[1:]}
    assert losses["live"] == pytest.approx(losses["authors"], rel=1e-4, abs=1e-6)
    assert losses["cached"] == pytest.approx(losses["live"], rel=1e-4)  # float16 maps


def render(data: dict) -> str:
    """Markdown tables (one per group) with the ratios to the student-alone step."""
    lines = []
    groups: dict[str, dict[str, dict]] = {}
    for bench in data["benchmarks"]:
        groups.setdefault(bench["group"], {})[bench["params"]["kind"]] = bench
    for group, kinds in groups.items():
        base = kinds.get("baseline")
        lines += [
            f"**{group}**",
            "",
            "| step | median | IQR | × student alone | kept for backward | × student alone | peak RSS rise in a step "
            "| fresh process: RSS before → peak in first step |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for kind in KINDS:
            if kind not in kinds:
                continue
            stats, extra = kinds[kind]["stats"], kinds[kind]["extra_info"]
            saved = extra["saved_for_backward_MiB"]
            t_ratio = f"{stats['median'] / base['stats']['median']:.3f}" if base else ""
            m_ratio = f"{saved / base['extra_info']['saved_for_backward_MiB']:.3f}" if base else ""
            peak = extra.get("peak_rss_step_MiB")
            fresh = extra.get("fresh_process_MiB")
            fresh_text = f"{fresh['rss_MiB']} → {fresh['peak_MiB']} MiB" if fresh else "n/a"
            lines.append(
                f"| {kind} | {stats['median'] * 1e3:.1f} ms | {stats['iqr'] * 1e3:.1f} ms | {t_ratio} | "
                f"{saved} MiB | {m_ratio} | {'n/a' if peak is None else f'{peak} MiB'} | {fresh_text} |"
            )
        lines.append("")
    return "\n".join(lines)


def fresh_process_peak(kind: str, size: str, cache_dir: Path) -> dict[str, float] | None:
    """Resident memory of a fresh process that builds the step and runs it once (Linux): ``rss_MiB``
    before the step and ``peak_MiB`` during it (the teacher cache, for ``cached``, is already built)."""
    import os
    import subprocess

    if not Path("/proc/self/clear_refs").exists():
        return None
    out = subprocess.run(
        [sys.executable, __file__, "--peak", kind, size, str(cache_dir)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _peak_main(kind: str, size: str, cache_dir: str) -> None:
    step, _, _ = make_step(kind, size, "cpu", Path(cache_dir))
    with flush_denormals():
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        before = _status_kib("VmRSS")
        step()
        peak = _status_kib("VmHWM")
    print(json.dumps({"rss_MiB": round(before / 1024, 1), "peak_MiB": round(peak / 1024, 1)}))


def interleaved(size: str, rounds: int, device: str = "cpu") -> dict:
    """The four steps timed round-robin (one step of each per round), so that load from other processes
    affects them alike; a pytest-benchmark-like dict for :func:`render`."""
    import tempfile
    import time

    benchmarks = []
    with tempfile.TemporaryDirectory() as tmp, flush_denormals():
        made = {kind: make_step(kind, size, device, Path(tmp)) for kind in KINDS}
        times: dict[str, list[float]] = {kind: [] for kind in KINDS}
        extra = {}
        for kind, (step, forward_loss, persistent) in made.items():
            step()  # warm-up
            saved = round(saved_for_backward_bytes(forward_loss, persistent) / 2**20, 2)
            peak = _peak_step_memory(step, device)
            extra[kind] = {
                "saved_for_backward_MiB": saved,
                "peak_rss_step_MiB": None if peak is None else round(peak, 1),
            }
        for _ in range(rounds):
            for kind, (step, _, _) in made.items():
                started = time.perf_counter()
                step()
                times[kind].append(time.perf_counter() - started)
        del made
        for kind in KINDS:
            fresh = fresh_process_peak(kind, size, Path(tmp)) if device == "cpu" else None
            if fresh is not None:
                extra[kind]["fresh_process_MiB"] = fresh
    for kind in KINDS:
        t = sorted(times[kind])
        q = torch.tensor(t, dtype=torch.float64).quantile(
            torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64)
        )
        benchmarks.append(
            {
                "group": f"train_step {size} batch {SIZES[size]['batch']} {device}, interleaved, {rounds} rounds",
                "params": {"kind": kind},
                "stats": {"median": float(q[1]), "iqr": float(q[2] - q[0]), "min": t[0], "max": t[-1]},
                "extra_info": {**extra[kind], "threads": torch.get_num_threads(), "times_s": t},
            }
        )
    return {"benchmarks": benchmarks}


if __name__ == "__main__":
    # python benchmarks/test_bench_train_step.py bench.json            tables of a pytest-benchmark run
    # python benchmarks/test_bench_train_step.py --interleaved SIZE N   round-robin timing, N rounds
    if sys.argv[1] == "--peak":
        _peak_main(*sys.argv[2:5])
    elif sys.argv[1] == "--interleaved":
        result = interleaved(sys.argv[2], int(sys.argv[3]))
        print(json.dumps(result), file=sys.stderr)
        print(render(result))
    else:
        print(render(json.loads(Path(sys.argv[1]).read_text())))
