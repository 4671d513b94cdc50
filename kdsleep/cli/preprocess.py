"""``kdsleep preprocess``: write a dataset's recordings into the preprocessed on-disk cache."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from kdsleep.cli import CLIError, show_progress

logger = logging.getLogger(__name__)


def _band(values: list[str] | None, name: str) -> tuple[float | None, float | None] | None:
    if values is None:
        return None
    if len(values) == 1 and values[0].lower() == "none":
        return None
    if len(values) != 2:
        raise CLIError(f"--{name} expects two frequencies in Hz (or 'none'), got {values}")
    try:
        lo, hi = (None if v.lower() == "none" else float(v) for v in values)
    except ValueError:
        raise CLIError(f"--{name} expects numbers in Hz (or 'none'), got {values}") from None
    return lo, hi


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "preprocess",
        help="resample, filter, scale and epoch a dataset into the on-disk cache",
        description=(
            "Read every recording of a dataset, resample to the target rate, band-pass, scale per recording, "
            "cut into epochs aligned to the scoring, and write each recording once into "
            "OUT/<config hash>/. Interrupted runs resume where they stopped. A recording already cached is "
            "reused only when its files have the same size and content and its cached arrays are whole; "
            "otherwise it is processed again, with a line saying which and why."
        ),
    )
    parser.add_argument(
        "--dataset",
        default="auto",
        help=(
            "dataset layout: mass, hmc, sleep-edf, slpdb, nsrr (shhs), generic, synthetic (the generator's MASS "
            "layout) or auto (default: detected from the file names)"
        ),
    )
    parser.add_argument(
        "--data-dir", type=Path, required=True, metavar="DIR", help="folder of the recordings"
    )
    parser.add_argument("--out", type=Path, required=True, metavar="CACHE_DIR", help="cache folder")
    parser.add_argument(
        "--channels",
        nargs="+",
        default=["eeg", "ecg"],
        metavar="NAME[=SPEC]",
        help=(
            "channels to keep (default: eeg ecg, the paper's C3-A2 or C4-A1 and ECG lead I); NAME=SPEC picks "
            "a derivation, e.g. eeg=C4-A1 or 'eeg=EEG C3-CLE - EEG A2-CLE'"
        ),
    )
    parser.add_argument(
        "--ecg-polarity",
        choices=["auto", "invert"],
        default=None,
        help="correct the ECG polarity (default: as recorded)",
    )
    parser.add_argument("--sfreq", type=float, default=200.0, help="target sampling rate in Hz (default 200)")
    parser.add_argument(
        "--eeg-band",
        nargs="+",
        default=["0.3", "35"],
        metavar="HZ",
        help="EEG band-pass 'LOW HIGH' in Hz, either may be 'none'; 'none' alone skips it (default 0.3 35)",
    )
    parser.add_argument(
        "--ecg-band",
        nargs="+",
        default=["0.3", "70"],
        metavar="HZ",
        help="ECG band-pass 'LOW HIGH' in Hz (default 0.3 70)",
    )
    parser.add_argument(
        "--scaling", choices=["robust", "none"], default="robust", help="per-recording scaling"
    )
    parser.add_argument(
        "--clip",
        type=float,
        default=20.0,
        help="clip scaled values beyond this many IQRs (default 20, as U-Time; 0 disables)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=min(4, os.cpu_count() or 1),
        help="worker processes (default min(4, CPUs))",
    )
    parser.add_argument("--compress", action="store_true", help="store compressed .npz (not memory-mappable)")
    parser.add_argument(
        "--verify",
        action="store_true",
        help=(
            "check the SHA-256 of every stored file of the recordings already cached, not only their sizes "
            "(reads the whole cache)"
        ),
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def run(args: argparse.Namespace) -> int:
    from kdsleep.data.cache import PreprocessedCache, RecordingFailedError, build_cache
    from kdsleep.data.preprocess import PreprocessConfig, dataset_entries

    if args.workers < 1:
        raise CLIError(f"--workers must be >= 1, got {args.workers}")
    if args.out.exists() and not args.out.is_dir():
        raise CLIError(f"--out {args.out} exists and is not a folder")
    try:
        names = [c.split("=", 1)[0].strip() for c in args.channels]
        specs = tuple(
            (c.split("=", 1)[0].strip(), c.split("=", 1)[1].strip()) for c in args.channels if "=" in c
        )
        config = PreprocessConfig(
            channels=tuple(names),
            channel_specs=specs or None,
            ecg_polarity=args.ecg_polarity,
            sfreq=args.sfreq,
            eeg_band=_band(args.eeg_band, "eeg-band"),
            ecg_band=_band(args.ecg_band, "ecg-band"),
            scaling=args.scaling,
            clip=None if args.clip == 0 else args.clip,
        )
        entries = dataset_entries(args.dataset, args.data_dir)
    except (ValueError, FileNotFoundError) as err:
        raise CLIError(str(err)) from None
    try:
        root = build_cache(
            entries,
            args.out,
            config,
            n_workers=args.workers,
            compress=args.compress,
            verify=args.verify,
            progress=show_progress(args),
        )
    except (ValueError, KeyError, FileNotFoundError, OSError, RecordingFailedError) as err:
        raise CLIError(f"{err} (finished recordings are kept; re-run to resume)") from None
    cache = PreprocessedCache(root)
    n_epochs = sum(cache.meta(k)["n_epochs"] for k in cache.keys)
    print(f"{root}: {len(cache)} recordings, {n_epochs} epochs, config {config.config_hash()}")
    return 0
