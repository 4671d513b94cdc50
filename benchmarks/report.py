"""Turn a pytest-benchmark JSON file into the Markdown tables of benchmarks/RESULTS.md.

pytest benchmarks/test_bench_ops.py --benchmark-json=bench.json
python benchmarks/report.py bench.json >> benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import subprocess
from collections import defaultdict
from pathlib import Path


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def _mib(value: float | None) -> str:
    return "n/a" if value is None else f"{value} MiB"


def render(data: dict) -> str:
    machine = data.get("machine_info", {})
    lines = [
        f"Machine: {machine.get('cpu', {}).get('brand_raw', machine.get('processor', '?'))}, "
        f"{machine.get('cpu', {}).get('count', '?')} logical CPUs; Python {machine.get('python_version', '?')}; "
        f"commit {data.get('commit_info', {}).get('id', _commit())[:7]}; {data.get('datetime', '')[:19]}",
        "",
    ]
    groups: dict[str, dict[str, dict]] = defaultdict(dict)
    for bench in data["benchmarks"]:
        impl = bench["params"].get("impl", bench["name"])
        groups[bench["group"]][impl] = bench
    for group, impls in sorted(groups.items()):
        events = any("cuda_event_median_ms" in b.get("extra_info", {}) for b in impls.values())
        lines += [
            f"**{group}**",
            "",
            "| implementation | median | IQR | "
            + ("CUDA-event median | " if events else "")
            + "peak memory | kept for backward | effective bandwidth | speed-up of fused |",
            "|---|---|---|" + ("---|" if events else "") + "---|---|---|---|",
        ]
        fused = impls.get("fused")
        for impl in ("eager", "compiled", "fused"):
            if impl not in impls:
                continue
            b = impls[impl]
            stats, extra = b["stats"], b.get("extra_info", {})
            speedup = (
                f"{stats['median'] / fused['stats']['median']:.2f}x" if fused and impl != "fused" else ""
            )
            bw = f"{extra['GBps']} GB/s" if "GBps" in extra else ""
            if "fraction_of_copy_bw" in extra:
                bw += f" ({100 * extra['fraction_of_copy_bw']:.0f}% of copy)"
            event = f"{extra.get('cuda_event_median_ms', 'n/a')} ms | " if events else ""
            lines.append(
                f"| {impl} | {stats['median'] * 1e3:.3f} ms | {stats['iqr'] * 1e3:.3f} ms | {event}"
                f"{_mib(extra.get('peak_memory_MiB'))} | {_mib(extra.get('saved_for_backward_MiB'))} | {bw} | {speedup} |"
            )
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("json_file", type=Path)
    args = parser.parse_args()
    print(render(json.loads(args.json_file.read_text())))


if __name__ == "__main__":
    main()
