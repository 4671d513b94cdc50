"""Regenerate the accuracy tables of docs/results/heartbeat_detector.md.

Scores :func:`kdsleep.data.heartbeats.detect_heartbeats` (and, when installed, sleepecg's detector on
the same signals) against the expert beat annotations in ``../shared/data/ecg-beats``: MIT-BIH
arrhythmia (MLII lead), the noise stress test record 118 at six SNRs, svdb 800 (128 Hz) and LUDB
(500 Hz, each of the 12 leads against its own annotations, inside the annotated span). A detection
matches a reference beat within 150 ms; only beat symbols count; ventricular flutter in mitdb 207
(between ``[`` and ``]``) is left out, as in standard evaluations.

Usage (from the repository root)::

    python scripts/evaluate_heartbeats.py [--data-dir ../shared/data/ecg-beats] [--no-sleepecg]

The tables are written between the ``<!-- BEGIN accuracy -->`` and ``<!-- END accuracy -->`` markers of
the results file (the rest of the file is kept); ``--json`` also writes the raw counts.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from kdsleep.data.heartbeats import detect_heartbeats  # noqa: E402
from kdsleep.data.readers.wfdb_io import read_annotated_ecg  # noqa: E402
from kdsleep.evaluation.beats import BeatScore, match_beats  # noqa: E402

logger = logging.getLogger("evaluate_heartbeats")

MITDB_RECORDS = "100 101 103 105 106 108 114 118 119 200 201 203 207 208 210 213 221 228 231 232".split()
NSTDB_RECORDS = ("118e24", "118e18", "118e12", "118e06", "118e00", "118e_6")
NSTDB_SNR = {"118e24": "24", "118e18": "18", "118e12": "12", "118e06": "6", "118e00": "0", "118e_6": "−6"}
LUDB_LEADS = ("i", "ii", "iii", "avr", "avl", "avf", "v1", "v2", "v3", "v4", "v5", "v6")
BEGIN, END = "<!-- BEGIN accuracy -->", "<!-- END accuracy -->"


def _detectors(use_sleepecg: bool) -> dict:
    detectors = {"kdsleep": detect_heartbeats}
    if use_sleepecg:
        try:
            import sleepecg
        except ImportError:
            logger.warning("sleepecg is not installed: its column is left out")
        else:
            detectors["sleepecg"] = lambda ecg, sfreq: sleepecg.detect_heartbeats(ecg, sfreq)
    return detectors


def _score(detector, record) -> BeatScore:
    ecg = np.ascontiguousarray(record.ecg)
    return match_beats(detector(ecg, record.sfreq), record.beats, record.sfreq, exclude=record.exclude)


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def evaluate(data_dir: Path, use_sleepecg: bool = True) -> dict:
    """Score every detector on every available record; returns the raw counts as a nested dict."""
    from tqdm import tqdm

    detectors = _detectors(use_sleepecg)
    results: dict = {"detectors": list(detectors), "mitdb": {}, "nstdb": {}, "svdb": {}, "ludb": {}}
    jobs = [("mitdb", r, {}) for r in MITDB_RECORDS] + [("nstdb", r, {}) for r in NSTDB_RECORDS]
    jobs += [("svdb", "800", {})]
    for folder, name, kwargs in tqdm(jobs, desc="records", disable=None):
        path = data_dir / folder / name
        if not path.with_suffix(".hea").exists():
            logger.warning("%s: not found, skipped", path)
            continue
        record = read_annotated_ecg(path, **kwargs)
        results[folder][name] = {
            det: _score(fn, record).__dict__ | {"lead": record.lead, "sfreq": record.sfreq}
            for det, fn in detectors.items()
        }
    ludb = sorted((data_dir / "ludb").glob("*.hea"), key=lambda p: int(p.stem) if p.stem.isdigit() else 0)
    for lead in tqdm(LUDB_LEADS, desc="LUDB leads", disable=None):
        totals = {det: np.zeros(3, dtype=np.int64) for det in detectors}
        for header in ludb:
            record = read_annotated_ecg(
                header.with_suffix(""), extension=lead, lead=lead, annotated_span_only=True
            )
            for det, fn in detectors.items():
                s = _score(fn, record)
                totals[det] += [s.true_positives, s.false_positives, s.false_negatives]
        results["ludb"][lead] = {
            det: {"true_positives": int(t[0]), "false_positives": int(t[1]), "false_negatives": int(t[2])}
            for det, t in totals.items()
        }
    results["ludb_records"] = len(ludb)
    return results


def _se_ppv(counts: dict) -> tuple[float, float]:
    tp, fp, fn = counts["true_positives"], counts["false_positives"], counts["false_negatives"]
    return (tp / (tp + fn) if tp + fn else 1.0), (tp / (tp + fp) if tp + fp else 1.0)


def to_markdown(results: dict) -> str:
    """The accuracy section of the results file."""
    dets = results["detectors"]
    lines = [BEGIN, "", "### MIT-BIH Arrhythmia Database (MLII, 30 min per record, 150 ms tolerance)", ""]
    header = "| record | beats |" + "".join(f" {d} TP | FP | FN | Se % | PPV % |" for d in dets)
    lines += [header, "|" + "---|" * (2 + 5 * len(dets))]
    per_det: dict = {d: {"se": [], "ppv": [], "tp": 0, "fp": 0, "fn": 0} for d in dets}
    for name, row in results["mitdb"].items():
        cells = [name, str(row[dets[0]]["n_reference"])]
        for d in dets:
            c = row[d]
            se, ppv = _se_ppv(c)
            per_det[d]["se"].append(se)
            per_det[d]["ppv"].append(ppv)
            for k in ("tp", "fp", "fn"):
                per_det[d][k] += c[
                    {"tp": "true_positives", "fp": "false_positives", "fn": "false_negatives"}[k]
                ]
            cells += [
                str(c["true_positives"]),
                str(c["false_positives"]),
                str(c["false_negatives"]),
                _pct(se),
                _pct(ppv),
            ]
        lines.append("| " + " | ".join(cells) + " |")
    mean_cells = ["**mean of records**", ""]
    gross_cells = [
        "**gross (all beats)**",
        str(sum(r[dets[0]]["n_reference"] for r in results["mitdb"].values())),
    ]
    for d in dets:
        p = per_det[d]
        mean_cells += ["", "", "", f"**{_pct(np.mean(p['se']))}**", f"**{_pct(np.mean(p['ppv']))}**"]
        gse = p["tp"] / (p["tp"] + p["fn"])
        gppv = p["tp"] / (p["tp"] + p["fp"])
        gross_cells += [str(p["tp"]), str(p["fp"]), str(p["fn"]), _pct(gse), _pct(gppv)]
    lines += ["| " + " | ".join(mean_cells) + " |", "| " + " | ".join(gross_cells) + " |", ""]

    lines += ["### Noise stress test (nstdb 118, electrode-motion noise, MLII)", ""]
    lines += ["| record | SNR (dB) |" + "".join(f" {d} Se % | {d} PPV % |" for d in dets)]
    lines += ["|" + "---|" * (2 + 2 * len(dets))]
    for name, row in results["nstdb"].items():
        cells = [name, NSTDB_SNR.get(name, "?")]
        for d in dets:
            se, ppv = _se_ppv(row[d])
            cells += [_pct(se), _pct(ppv)]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")

    if results["svdb"]:
        lines += ["### Supraventricular Arrhythmia Database (svdb 800, 128 Hz, first lead)", ""]
        lines += ["| record | beats |" + "".join(f" {d} Se % | {d} PPV % |" for d in dets)]
        lines += ["|" + "---|" * (2 + 2 * len(dets))]
        for name, row in results["svdb"].items():
            cells = [name, str(row[dets[0]]["n_reference"])]
            for d in dets:
                se, ppv = _se_ppv(row[d])
                cells += [_pct(se), _pct(ppv)]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")

    if results["ludb"]:
        n = results.get("ludb_records", 0)
        lines += [
            f"### LUDB ({n} records, 500 Hz, 10 s; each lead against its own annotations, annotated span only)",
            "",
        ]
        lines += ["| lead |" + "".join(f" {d} TP | FP | FN |" for d in dets)]
        lines += ["|" + "---|" * (1 + 3 * len(dets))]
        for lead, row in results["ludb"].items():
            cells = [lead]
            for d in dets:
                c = row[d]
                cells += [str(c["true_positives"]), str(c["false_positives"]), str(c["false_negatives"])]
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    lines.append(END)
    return "\n".join(lines)


def write_section(path: Path, section: str) -> None:
    """Replace the marked section of ``path`` (or append it), atomically."""
    text = path.read_text(encoding="utf-8") if path.exists() else "# Heartbeat detector\n\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        _, tail = rest.split(END, 1)
        text = head + section + tail
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "ecg-beats")
    parser.add_argument(
        "--output", type=Path, default=REPO_ROOT / "docs" / "results" / "heartbeat_detector.md"
    )
    parser.add_argument("--no-sleepecg", action="store_true", help="score kdsleep's detector only")
    parser.add_argument("--json", type=Path, default=None, help="also write the raw counts here")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if not args.data_dir.is_dir():
        print(f"error: data folder not found: {args.data_dir}", file=sys.stderr)
        return 2
    results = evaluate(args.data_dir, use_sleepecg=not args.no_sleepecg)
    section = to_markdown(results)
    write_section(args.output, section)
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=1), encoding="utf-8")
    print(section)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
