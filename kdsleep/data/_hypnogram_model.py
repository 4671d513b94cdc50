"""A time-of-night Markov model of hypnograms, fitted on real scorings.

The synthetic PSG generator (:mod:`kdsleep.data.synthetic`) draws its hypnograms from a first-order Markov
chain over the five AASM stages whose transition matrix depends on the hour of the night: sleep onset from
wake in the first hour, most deep sleep in the first cycles, longer REM periods towards the morning. The
matrices are estimated from the real hypnograms in ``../shared/data`` by :func:`fit_hypnogram_model` and
written below as constants, so the generator needs no data at run time; a test refits them and checks that
they match.

Sources (``../shared/data``):

- ``ucddb-hypnograms/ucddb*_stage.txt`` (25 nights, UCDDB codes; 6, 7 and 8 are unscored);
- ``slpdb/*.st`` through wfdb (15 records, R&K; S3 and S4 -> N3; MT/M unscored). slp01b and slp02b continue
  the nights of slp01a and slp02a: their elapsed time counts from the start of part a (header clocks);
- ``hmc/SN001_sleepscoring.edf`` (EDF+ annotations, AASM).

Transitions are counted between consecutive scored epochs only; an unscored epoch breaks the chain (its
neighbours are not counted as a transition).
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdsleep.data.stages import SleepStage, parse_stage_labels

__all__ = [
    "FITTED_HYPNOGRAM_MODEL",
    "HypnogramModel",
    "count_transitions",
    "fit_hypnogram_model",
    "read_reference_hypnograms",
]

logger = logging.getLogger(__name__)

N_STAGES = 5  # W, N1, N2, N3, R: SleepStage values 0..4
#: Start of each time-of-night bin, in hours after the start of the recording; the last bin is open-ended.
DEFAULT_BIN_STARTS_HOURS: tuple[float, ...] = (0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
#: Pseudo-count weight pulling each hourly matrix towards the pooled one, so that rare transitions seen in
#: only one hour (N3 -> R, ...) are not given zero probability in the others.
DEFAULT_SHRINKAGE = 40.0


@dataclass(frozen=True)
class ReferenceNight:
    """One real hypnogram used for fitting: stage values per 30-s epoch and its start within the night."""

    name: str
    stages: np.ndarray
    first_epoch: int = 0  # epochs elapsed in the night before this record's first epoch
    starts_night: bool = True  # whether its first scored epoch may inform the initial distribution


@dataclass(frozen=True)
class HypnogramModel:
    """First-order Markov chain over W, N1, N2, N3, R whose transitions change with the hour of the night.

    Parameters
    ----------
    initial : np.ndarray, shape (5,)
        Distribution of the first epoch's stage.
    transitions : np.ndarray, shape (n_bins, 5, 5)
        ``transitions[b, i, j]`` = P(next stage j | stage i) in time bin ``b``; rows sum to 1.
    bin_starts_hours : tuple of float
        Start of each bin in hours after the start of the night; the last bin is open-ended.
    epoch_length : float
        Epoch length in seconds (30 s, AASM).
    """

    initial: np.ndarray
    transitions: np.ndarray
    bin_starts_hours: tuple[float, ...] = DEFAULT_BIN_STARTS_HOURS
    epoch_length: float = 30.0

    def __post_init__(self) -> None:
        initial = np.asarray(self.initial, dtype=np.float64)
        transitions = np.asarray(self.transitions, dtype=np.float64)
        n_bins = len(self.bin_starts_hours)
        if initial.shape != (N_STAGES,):
            raise ValueError(f"hypnogram model initial must have shape (5,), got {initial.shape}")
        if transitions.shape != (n_bins, N_STAGES, N_STAGES):
            raise ValueError(
                f"hypnogram model transitions must have shape ({n_bins}, 5, 5) for {n_bins} time bins, "
                f"got {transitions.shape}"
            )
        if (transitions < 0).any() or not np.allclose(transitions.sum(-1), 1.0, atol=1e-3):
            raise ValueError("hypnogram model transitions must be non-negative with rows summing to 1")
        if (initial < 0).any() or not np.isclose(initial.sum(), 1.0, atol=1e-3):
            raise ValueError("hypnogram model initial must be a probability vector")
        if list(self.bin_starts_hours) != sorted(self.bin_starts_hours) or self.bin_starts_hours[0] != 0:
            raise ValueError(f"bin_starts_hours must increase from 0, got {self.bin_starts_hours}")
        object.__setattr__(self, "initial", initial / initial.sum())
        object.__setattr__(self, "transitions", transitions / transitions.sum(-1, keepdims=True))

    def bin_of_epoch(self, epochs: np.ndarray | int) -> np.ndarray:
        """Time-bin index of epoch number(s) ``epochs`` (counted from the start of the night)."""
        starts = np.asarray(self.bin_starts_hours) * 3600.0 / self.epoch_length
        return np.searchsorted(starts, np.asarray(epochs), side="right") - 1

    def stationary(self, time_bin: int = -1) -> np.ndarray:
        """Stationary distribution of the chain of one time bin (the stage mix late in that hour)."""
        values, vectors = np.linalg.eig(self.transitions[time_bin].T)
        v = np.real(vectors[:, np.argmin(np.abs(values - 1.0))])
        return v / v.sum()

    def sample(
        self,
        n_epochs: int,
        rng: np.random.Generator,
        subject_concentration: float | None = None,
    ) -> np.ndarray:
        """Draw one hypnogram.

        Parameters
        ----------
        n_epochs : int
            Number of epochs.
        rng : numpy.random.Generator
            Source of randomness.
        subject_concentration : float, optional
            When given, each transition row is first redrawn from a Dirichlet distribution centred on the
            fitted row with this concentration, so that every subject has its own sleep architecture
            (larger = closer to the fitted model). ``None`` uses the fitted rows as they are.

        Returns
        -------
        np.ndarray of int8
            :class:`SleepStage` value (0..4) of each epoch.
        """
        if n_epochs < 1:
            raise ValueError(f"n_epochs must be >= 1, got {n_epochs}")
        transitions = self.transitions
        if subject_concentration is not None:
            if subject_concentration <= 0:
                raise ValueError(f"subject_concentration must be > 0, got {subject_concentration}")
            # A small floor keeps the Dirichlet parameters positive for transitions never observed.
            alpha = subject_concentration * transitions + 1e-3
            transitions = np.stack(
                [[rng.dirichlet(alpha[b, i]) for i in range(N_STAGES)] for b in range(len(transitions))]
            )
        cumulative = np.cumsum(transitions, axis=-1)
        cumulative[..., -1] = 1.0
        bins = self.bin_of_epoch(np.arange(n_epochs))
        draws = rng.random(n_epochs)
        stages = np.empty(n_epochs, dtype=np.int8)
        state = int(np.searchsorted(np.cumsum(self.initial), draws[0], side="right"))
        state = min(state, N_STAGES - 1)
        stages[0] = state
        # A Markov chain is sequential by nature; a few thousand epochs per night make this loop cheap.
        for t in range(1, n_epochs):
            state = int(np.searchsorted(cumulative[bins[t - 1], state], draws[t], side="right"))
            stages[t] = state
        return stages


def count_transitions(
    nights: Iterable[ReferenceNight],
    bin_starts_hours: Sequence[float] = DEFAULT_BIN_STARTS_HOURS,
    epoch_length: float = 30.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Count stage transitions per time-of-night bin.

    Returns
    -------
    counts : np.ndarray, shape (n_bins, 5, 5)
        Transitions from stage i at epoch t to stage j at epoch t + 1, binned by the elapsed time of epoch t.
        Pairs where either epoch is unscored are skipped.
    initial_counts : np.ndarray, shape (5,)
        Stage of the first scored epoch of each night that starts at lights-off.
    """
    starts = np.asarray(bin_starts_hours, dtype=np.float64) * 3600.0 / epoch_length
    counts = np.zeros((len(starts), N_STAGES, N_STAGES), dtype=np.int64)
    initial_counts = np.zeros(N_STAGES, dtype=np.int64)
    for night in nights:
        stages = np.asarray(night.stages, dtype=np.int64)
        scored = stages <= int(SleepStage.R)
        if night.starts_night and scored.any():
            initial_counts[stages[np.argmax(scored)]] += 1
        valid = scored[:-1] & scored[1:]
        t = np.nonzero(valid)[0]
        bins = np.searchsorted(starts, t + night.first_epoch, side="right") - 1
        np.add.at(counts, (bins, stages[t], stages[t + 1]), 1)
    return counts, initial_counts


def _read_ucddb(folder: Path) -> list[ReferenceNight]:
    nights = []
    for path in sorted(folder.glob("ucddb*_stage.txt")):
        codes = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        nights.append(ReferenceNight(path.stem, parse_stage_labels(codes, "ucddb", source=path)))
    return nights


def _read_slpdb(folder: Path) -> list[ReferenceNight]:
    import wfdb

    epoch_samples = 7500  # 30 s at 250 Hz; slpdb scores one annotation per epoch
    records = (folder / "RECORDS").read_text().split()
    starts: dict[str, _dt.datetime] = {}
    lengths: dict[str, int] = {}
    nights = []
    for record in records:
        header = wfdb.rdheader(str(folder / record))
        ann = wfdb.rdann(str(folder / record), "st")
        n_epochs = header.sig_len // epoch_samples
        lengths[record] = n_epochs
        if header.base_time is not None and header.base_date is not None:
            starts[record] = _dt.datetime.combine(header.base_date, header.base_time)
        # Only the first word of an aux note is the stage; apnea codes follow.
        labels = [
            note.replace("\x00", "").split()[0] if note.strip("\x00 ") else "?" for note in ann.aux_note
        ]
        values = parse_stage_labels(labels, "slpdb", source=folder / f"{record}.st")
        stages = np.full(n_epochs, int(SleepStage.UNSCORED), dtype=np.int8)
        epochs = np.asarray(ann.sample) // epoch_samples
        keep = epochs < n_epochs
        stages[epochs[keep]] = values[keep]
        first_epoch, starts_night = 0, True
        # Part b of a night: time of night counts from the start of part a (the clocks give the gap).
        if record.endswith("b") and record[:-1] + "a" in starts and record in starts:
            gap = (starts[record] - starts[record[:-1] + "a"]).total_seconds()
            first_epoch, starts_night = int(round(gap / 30.0)), False
        nights.append(ReferenceNight(record, stages, first_epoch, starts_night))
    return nights


def _read_hmc(folder: Path) -> list[ReferenceNight]:
    import mne

    nights = []
    for path in sorted(folder.glob("*_sleepscoring.edf")):
        annotations = mne.read_annotations(path)
        stage_rows = [
            (onset, duration, desc)
            for onset, duration, desc in zip(
                annotations.onset, annotations.duration, annotations.description, strict=True
            )
            if desc.lower().startswith("sleep stage")
        ]
        if not stage_rows:
            raise ValueError(f"{path}: no 'Sleep stage ...' annotations found")
        first = stage_rows[0][0]
        n_epochs = int(round((stage_rows[-1][0] + stage_rows[-1][1] - first) / 30.0))
        stages = np.full(n_epochs, int(SleepStage.UNSCORED), dtype=np.int8)
        values = parse_stage_labels([row[2] for row in stage_rows], "edf", source=path)
        for (onset, duration, _), value in zip(stage_rows, values, strict=True):
            start = int(round((onset - first) / 30.0))
            stages[start : start + max(1, int(round(duration / 30.0)))] = value
        nights.append(ReferenceNight(path.name, stages, int(round(first / 30.0))))
    return nights


def read_reference_hypnograms(data_dir: str | Path) -> list[ReferenceNight]:
    """Read the real hypnograms under ``data_dir`` (``../shared/data``) used to fit the Markov model.

    Raises
    ------
    FileNotFoundError
        When none of ``ucddb-hypnograms/``, ``slpdb/`` and ``hmc/`` is present.
    """
    data_dir = Path(data_dir)
    nights: list[ReferenceNight] = []
    if (data_dir / "ucddb-hypnograms").is_dir():
        nights += _read_ucddb(data_dir / "ucddb-hypnograms")
    if (data_dir / "slpdb" / "RECORDS").is_file():
        nights += _read_slpdb(data_dir / "slpdb")
    if (data_dir / "hmc").is_dir():
        nights += _read_hmc(data_dir / "hmc")
    if not nights:
        raise FileNotFoundError(
            f"{data_dir}: no reference hypnograms found (expected ucddb-hypnograms/, slpdb/RECORDS or hmc/)"
        )
    return nights


def fit_hypnogram_model(
    data_dir: str | Path,
    bin_starts_hours: Sequence[float] = DEFAULT_BIN_STARTS_HOURS,
    shrinkage: float = DEFAULT_SHRINKAGE,
) -> tuple[HypnogramModel, np.ndarray]:
    """Estimate the time-of-night Markov model from the real hypnograms in ``data_dir``.

    Each hourly matrix is the maximum-likelihood estimate smoothed towards the pooled matrix:
    ``P_b[i] = (C_b[i] + shrinkage * P_pooled[i]) / (sum(C_b[i]) + shrinkage)``.

    Parameters
    ----------
    data_dir : str or Path
        The folder holding ``ucddb-hypnograms/``, ``slpdb/`` and ``hmc/`` (``../shared/data``).
    bin_starts_hours : sequence of float
        Start of each time bin in hours (default: one bin per hour up to 6 h, then one open-ended bin).
    shrinkage : float
        Pseudo-count weight of the pooled matrix (default 40).

    Returns
    -------
    model : HypnogramModel
    counts : np.ndarray, shape (n_bins, 5, 5)
        The raw transition counts.
    """
    nights = read_reference_hypnograms(data_dir)
    counts, initial_counts = count_transitions(nights, bin_starts_hours)
    pooled_counts = counts.sum(0).astype(np.float64)
    pooled = pooled_counts / pooled_counts.sum(-1, keepdims=True)
    transitions = (counts + shrinkage * pooled) / (counts.sum(-1, keepdims=True) + shrinkage)
    initial = initial_counts / initial_counts.sum()
    logger.info("fitted hypnogram model on %d nights, %d transitions", len(nights), int(counts.sum()))
    return HypnogramModel(initial, transitions, tuple(float(b) for b in bin_starts_hours)), counts


def format_model_constants(model: HypnogramModel, counts: np.ndarray) -> str:
    """Python source for the constants below (used to regenerate them after a refit)."""
    lines = [f"_FITTED_INITIAL = {np.round(model.initial, 4).tolist()}", "_FITTED_TRANSITIONS = ["]
    for b, start in enumerate(model.bin_starts_hours):
        lines.append(f"    # from {start:g} h ({int(counts[b].sum())} transitions)")
        lines.append("    [")
        for row in model.transitions[b]:
            lines.append("        [" + ", ".join(f"{p:.4f}" for p in row) + "],")
        lines.append("    ],")
    lines.append("]")
    return "\n".join(lines)


# Fitted by ``fit_hypnogram_model("../shared/data")`` on ucddb-hypnograms/ucddb*_stage.txt (25 nights),
# slpdb/*.st (15 records) and hmc/SN001_sleepscoring.edf; regenerate with
#   python -c "from kdsleep.data._hypnogram_model import *; m, c = fit_hypnogram_model('../shared/data'); \
#              print(format_model_constants(m, c))"
# Rows and columns: W, N1, N2, N3, R. tests/data/test_synthetic.py refits and compares.
_FITTED_INITIAL = [0.8974, 0.0256, 0.0513, 0.0256, 0.0]
_FITTED_TRANSITIONS = [
    # from 0 h (4602 transitions)
    [
        [0.8940, 0.0973, 0.0080, 0.0000, 0.0007],
        [0.1098, 0.7789, 0.1046, 0.0000, 0.0067],
        [0.0463, 0.0398, 0.8780, 0.0315, 0.0045],
        [0.0043, 0.0027, 0.0759, 0.9171, 0.0000],
        [0.0389, 0.0576, 0.0036, 0.0000, 0.8999],
    ],
    # from 1 h (4590 transitions)
    [
        [0.7984, 0.1687, 0.0263, 0.0009, 0.0058],
        [0.1195, 0.7164, 0.1505, 0.0000, 0.0136],
        [0.0433, 0.0423, 0.8786, 0.0265, 0.0093],
        [0.0250, 0.0018, 0.0444, 0.9288, 0.0000],
        [0.0400, 0.0333, 0.0055, 0.0000, 0.9212],
    ],
    # from 2 h (4439 transitions)
    [
        [0.8391, 0.1277, 0.0222, 0.0009, 0.0101],
        [0.1220, 0.7161, 0.1583, 0.0000, 0.0036],
        [0.0463, 0.0191, 0.8885, 0.0350, 0.0111],
        [0.0136, 0.0029, 0.0637, 0.9198, 0.0000],
        [0.0363, 0.0093, 0.0126, 0.0000, 0.9418],
    ],
    # from 3 h (4472 transitions)
    [
        [0.8653, 0.1050, 0.0198, 0.0000, 0.0099],
        [0.1074, 0.7283, 0.1620, 0.0000, 0.0023],
        [0.0393, 0.0100, 0.9222, 0.0217, 0.0067],
        [0.0193, 0.0044, 0.0336, 0.9413, 0.0014],
        [0.0328, 0.0044, 0.0114, 0.0000, 0.9514],
    ],
    # from 4 h (4315 transitions)
    [
        [0.7951, 0.1748, 0.0197, 0.0000, 0.0103],
        [0.1199, 0.7131, 0.1621, 0.0000, 0.0049],
        [0.0405, 0.0159, 0.9171, 0.0153, 0.0112],
        [0.0234, 0.0027, 0.0383, 0.9356, 0.0000],
        [0.0275, 0.0092, 0.0105, 0.0000, 0.9528],
    ],
    # from 5 h (4122 transitions)
    [
        [0.7794, 0.1879, 0.0248, 0.0000, 0.0079],
        [0.0975, 0.7472, 0.1476, 0.0000, 0.0076],
        [0.0425, 0.0310, 0.8959, 0.0142, 0.0164],
        [0.0324, 0.0034, 0.0450, 0.9192, 0.0000],
        [0.0297, 0.0079, 0.0102, 0.0000, 0.9522],
    ],
    # from 6 h (2958 transitions)
    [
        [0.8424, 0.1248, 0.0174, 0.0000, 0.0154],
        [0.1064, 0.7322, 0.1500, 0.0000, 0.0114],
        [0.0493, 0.0168, 0.9062, 0.0149, 0.0127],
        [0.0418, 0.0069, 0.0800, 0.8712, 0.0001],
        [0.0395, 0.0037, 0.0096, 0.0000, 0.9472],
    ],
]

FITTED_HYPNOGRAM_MODEL = HypnogramModel(np.array(_FITTED_INITIAL), np.array(_FITTED_TRANSITIONS))
