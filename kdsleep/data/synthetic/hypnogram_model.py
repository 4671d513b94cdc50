"""A time-of-night Markov model of hypnograms, fitted on real scorings.

The synthetic PSG generator (:mod:`kdsleep.data.synthetic`) draws its hypnograms from a Markov chain over
the five AASM stages with three refinements that give a night its shape:

- the wake before sleep onset is a state of its own, with its own dwell time (the sleep latency: wake
  epochs of a first-order chain would otherwise end after a few minutes) and its own exit distribution
  (mostly into N1);
- after sleep onset, the transition matrices depend on the hour since onset: most deep sleep in the first
  cycles, longer REM periods towards the morning;
- a per-stage dwell-time adjustment: the first epoch of a bout has its own transition row. Real bouts
  are more dispersed than the geometric lengths of a first-order chain (half of the wake bouts after sleep
  onset are brief single-epoch awakenings, while the others last long); with separate rows for entering
  and continuing a stage, both the share of single-epoch bouts and the mean bout length match.

All probabilities are estimated from the real hypnograms in ``../shared/data`` by
:func:`fit_hypnogram_model` and written below as constants, so the generator needs no data at run time; a
test refits them and checks that they match.

Sources (``../shared/data``):

- ``ucddb-hypnograms/ucddb*_stage.txt`` (25 nights, UCDDB codes; 6, 7 and 8 are unscored);
- ``slpdb/*.st`` through :func:`~kdsleep.data.readers.wfdb_io.read_wfdb_stages` (15 records, R&K; S3 and
  S4 -> N3; MT/M unscored). slp01b and slp02b continue the nights of slp01a and slp02a: their elapsed time
  counts from the start of part a (header clocks);
- ``hmc/SN001_sleepscoring.edf`` (EDF+ annotations, AASM).

Transitions are counted between consecutive scored epochs only; an unscored epoch breaks the chain (its
neighbours are not counted as a transition, and the epoch after it is not counted either, since whether it
starts a bout is unknown).
"""

from __future__ import annotations

import datetime as _dt
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kdsleep.data.readers.wfdb_io import read_wfdb_header, read_wfdb_stages
from kdsleep.data.stages import SleepStage, parse_stage_labels

__all__ = [
    "FITTED_HYPNOGRAM_MODEL",
    "HypnogramModel",
    "ReferenceNight",
    "count_transitions",
    "fit_hypnogram_model",
    "format_model_constants",
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
    sleep_onset: int | None = None  # night epoch of sleep onset; default the record's first scored non-W

    def onset_epoch(self) -> int | None:
        """Sleep onset in epochs from the start of the night (None when it is unknown / never reached)."""
        if self.sleep_onset is not None:
            return self.sleep_onset
        if not self.starts_night:
            return None
        stages = np.asarray(self.stages)
        asleep = np.flatnonzero((stages > int(SleepStage.W)) & (stages <= int(SleepStage.R)))
        return int(asleep[0]) + self.first_epoch if asleep.size else None


@dataclass(frozen=True)
class HypnogramModel:
    """Markov chain over W, N1, N2, N3, R: sleep-onset state, transitions by hour since onset, bout entry rows.

    Parameters
    ----------
    initial : np.ndarray, shape (5,)
        Distribution of the first epoch's stage; a night that starts in W starts in the pre-sleep wake.
    transitions : np.ndarray, shape (n_bins, 5, 5)
        ``transitions[b, i, j]`` = P(next stage j | stage i, the previous epoch also i) in time bin ``b``
        after sleep onset; rows sum to 1.
    entry : np.ndarray, shape (n_bins, 5, 5)
        The same for the first epoch of a bout (the previous epoch had another stage, or sleep just began).
    onset : np.ndarray, shape (5,)
        Transition row of the pre-sleep wake: ``onset[0]`` = P(still awake at the next epoch), the others
        the stage that sleep starts with.
    bin_starts_hours : tuple of float
        Start of each bin in hours after sleep onset; the last bin is open-ended.
    epoch_length : float
        Epoch length in seconds (30 s, AASM).
    """

    initial: np.ndarray
    transitions: np.ndarray
    entry: np.ndarray
    onset: np.ndarray
    bin_starts_hours: tuple[float, ...] = DEFAULT_BIN_STARTS_HOURS
    epoch_length: float = 30.0

    def __post_init__(self) -> None:
        initial = np.asarray(self.initial, dtype=np.float64)
        transitions = np.asarray(self.transitions, dtype=np.float64)
        entry = np.asarray(self.entry, dtype=np.float64)
        onset = np.asarray(self.onset, dtype=np.float64)
        n_bins = len(self.bin_starts_hours)
        for name, matrices in (("transitions", transitions), ("entry", entry)):
            if matrices.shape != (n_bins, N_STAGES, N_STAGES):
                raise ValueError(
                    f"hypnogram model {name} must have shape ({n_bins}, 5, 5) for {n_bins} time bins, "
                    f"got {matrices.shape}"
                )
            if (matrices < 0).any() or not np.allclose(matrices.sum(-1), 1.0, atol=1e-3):
                raise ValueError(f"hypnogram model {name} must be non-negative with rows summing to 1")
        for name, vector in (("initial", initial), ("onset", onset)):
            if vector.shape != (N_STAGES,):
                raise ValueError(f"hypnogram model {name} must have shape (5,), got {vector.shape}")
            if (vector < 0).any() or not np.isclose(vector.sum(), 1.0, atol=1e-3):
                raise ValueError(
                    f"hypnogram model {name} must be a probability vector, got {vector.tolist()}"
                )
        if onset[0] >= 1.0:
            raise ValueError("hypnogram model onset[0] (staying awake before sleep onset) must be < 1")
        if list(self.bin_starts_hours) != sorted(self.bin_starts_hours) or self.bin_starts_hours[0] != 0:
            raise ValueError(f"bin_starts_hours must increase from 0, got {self.bin_starts_hours}")
        object.__setattr__(self, "initial", initial / initial.sum())
        object.__setattr__(self, "onset", onset / onset.sum())
        object.__setattr__(self, "transitions", transitions / transitions.sum(-1, keepdims=True))
        object.__setattr__(self, "entry", entry / entry.sum(-1, keepdims=True))

    def bin_of_epoch(self, epochs: np.ndarray | int) -> np.ndarray:
        """Time-bin index of epoch number(s) ``epochs`` (counted from sleep onset)."""
        starts = np.asarray(self.bin_starts_hours) * 3600.0 / self.epoch_length
        return np.searchsorted(starts, np.asarray(epochs), side="right") - 1

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
        # rows[b, 0] = entry rows, rows[b, 1] = rows for continuing a bout.
        rows = np.stack([self.entry, self.transitions], axis=1)
        if subject_concentration is not None:
            if subject_concentration <= 0:
                raise ValueError(f"subject_concentration must be > 0, got {subject_concentration}")
            # A small floor keeps the Dirichlet parameters positive for transitions never observed.
            alpha = subject_concentration * rows + 1e-3
            rows = np.apply_along_axis(rng.dirichlet, -1, alpha)
        cumulative = np.cumsum(rows, axis=-1)
        cumulative[..., -1] = 1.0
        onset_cumulative = np.cumsum(self.onset)
        onset_cumulative[-1] = 1.0
        initial_cumulative = np.cumsum(self.initial)
        initial_cumulative[-1] = 1.0
        bins = self.bin_of_epoch(np.arange(n_epochs))
        draws = rng.random(n_epochs)
        stages = np.empty(n_epochs, dtype=np.int8)
        state = int(np.searchsorted(initial_cumulative, draws[0], side="right"))
        awake_before_onset = state == int(SleepStage.W)
        onset_epoch = 0
        continuing = 0  # 1 when the previous epoch had the same stage
        stages[0] = state
        # A Markov chain is sequential by nature; a few thousand epochs per night make this loop cheap.
        for t in range(1, n_epochs):
            if awake_before_onset:
                state = int(np.searchsorted(onset_cumulative, draws[t], side="right"))
                if state != int(SleepStage.W):
                    awake_before_onset, onset_epoch, continuing = False, t, 0
            else:
                row = cumulative[bins[t - 1 - onset_epoch], continuing, state]
                new_state = int(np.searchsorted(row, draws[t], side="right"))
                continuing = int(new_state == state)
                state = new_state
            stages[t] = state
        return stages


def count_transitions(
    nights: Iterable[ReferenceNight],
    bin_starts_hours: Sequence[float] = DEFAULT_BIN_STARTS_HOURS,
    epoch_length: float = 30.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count stage transitions before sleep onset and per hour after it, entering or continuing a bout.

    Pairs of consecutive epochs where either one is unscored are skipped, and so are pairs after sleep
    onset whose first epoch follows an unscored one (whether it starts a bout is unknown). Records whose
    sleep onset is unknown (a night that never reaches sleep) add no transitions.

    Returns
    -------
    counts : np.ndarray, shape (n_bins, 2, 5, 5)
        ``counts[b, k, i, j]``: transitions from stage i at epoch t to stage j at epoch t + 1 after sleep
        onset, binned by the time from sleep onset to epoch t; ``k`` = 0 when epoch t starts a bout (the
        epoch before it had another stage), 1 when it continues one.
    initial_counts : np.ndarray, shape (5,)
        Stage of the first scored epoch of each night that starts at lights-off.
    onset_counts : np.ndarray, shape (5,)
        Transitions out of the pre-sleep wake: W -> W, then W -> the stage that starts sleep.
    """
    starts = np.asarray(bin_starts_hours, dtype=np.float64) * 3600.0 / epoch_length
    counts = np.zeros((len(starts), 2, N_STAGES, N_STAGES), dtype=np.int64)
    initial_counts = np.zeros(N_STAGES, dtype=np.int64)
    onset_counts = np.zeros(N_STAGES, dtype=np.int64)
    for night in nights:
        stages = np.asarray(night.stages, dtype=np.int64)
        scored = stages <= int(SleepStage.R)
        if night.starts_night and scored.any():
            initial_counts[stages[np.argmax(scored)]] += 1
        onset = night.onset_epoch()
        if onset is None:
            continue
        valid = scored[:-1] & scored[1:]
        t = np.nonzero(valid)[0]
        since_onset = t + night.first_epoch - onset
        before = since_onset < 0
        np.add.at(onset_counts, stages[t[before] + 1], 1)
        after = ~before & (t >= 1)
        after[after] &= scored[t[after] - 1]
        t_after = t[after]
        kind = (stages[t_after - 1] == stages[t_after]).astype(np.int64)
        bins = np.searchsorted(starts, since_onset[after], side="right") - 1
        np.add.at(counts, (bins, kind, stages[t_after], stages[t_after + 1]), 1)
    return counts, initial_counts, onset_counts


def _read_ucddb(folder: Path) -> list[ReferenceNight]:
    nights = []
    for path in sorted(folder.glob("ucddb*_stage.txt")):
        codes = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        nights.append(ReferenceNight(path.stem, parse_stage_labels(codes, "ucddb", source=path)))
    return nights


def _read_slpdb(folder: Path) -> list[ReferenceNight]:
    records = (folder / "RECORDS").read_text().split()
    starts: dict[str, _dt.datetime] = {}
    onsets: dict[str, int | None] = {}
    nights = []
    for record in records:
        start = read_wfdb_header(folder / record).start
        if start is not None:
            starts[record] = start
        # one annotation per 30-s epoch; S3 and S4 -> N3, MT/M and epochs without one unscored
        stages = read_wfdb_stages(folder / record, "st").stages
        night = ReferenceNight(record, stages)
        # Part b of a night: time counts from the start of part a (the header clocks give the gap), and
        # sleep onset is part a's.
        part_a = record[:-1] + "a"
        if record.endswith("b") and part_a in starts and record in starts and part_a in onsets:
            gap = (starts[record] - starts[part_a]).total_seconds()
            night = ReferenceNight(record, stages, int(round(gap / 30.0)), False, onsets[part_a])
        onsets[record] = night.onset_epoch()
        nights.append(night)
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

    The initial and sleep-onset rows are maximum-likelihood estimates (relative counts). Each hourly
    matrix (entry and continuing separately) is the maximum-likelihood estimate smoothed towards the
    matrix pooled over the night:
    ``P_b[i] = (C_b[i] + shrinkage * P_pooled[i]) / (sum(C_b[i]) + shrinkage)``.

    Parameters
    ----------
    data_dir : str or Path
        The folder holding ``ucddb-hypnograms/``, ``slpdb/`` and ``hmc/`` (``../shared/data``).
    bin_starts_hours : sequence of float
        Start of each time bin in hours after sleep onset (default: one bin per hour up to 6 h, then one
        open-ended bin).
    shrinkage : float
        Pseudo-count weight of the pooled matrix (default 40).

    Returns
    -------
    model : HypnogramModel
    counts : np.ndarray, shape (n_bins, 2, 5, 5)
        The raw transition counts after sleep onset (see :func:`count_transitions`).
    """
    nights = read_reference_hypnograms(data_dir)
    counts, initial_counts, onset_counts = count_transitions(nights, bin_starts_hours)
    pooled_counts = counts.sum(0, keepdims=True).astype(np.float64)
    pooled = pooled_counts / pooled_counts.sum(-1, keepdims=True)
    matrices = (counts + shrinkage * pooled) / (counts.sum(-1, keepdims=True) + shrinkage)
    initial = initial_counts / initial_counts.sum()
    logger.info(
        "fitted hypnogram model on %d nights, %d transitions",
        len(nights),
        int(counts.sum() + onset_counts.sum()),
    )
    onset = onset_counts / onset_counts.sum()
    bins = tuple(float(b) for b in bin_starts_hours)
    return HypnogramModel(initial, matrices[:, 1], matrices[:, 0], onset, bins), counts


def format_model_constants(model: HypnogramModel, counts: np.ndarray) -> str:
    """Python source for the constants below (used to regenerate them after a refit)."""
    lines = [
        f"_FITTED_INITIAL = {np.round(model.initial, 4).tolist()}",
        f"_FITTED_ONSET = {np.round(model.onset, 4).tolist()}",
    ]
    for name, kind, matrices in (
        ("_FITTED_ENTRY", 0, model.entry),
        ("_FITTED_TRANSITIONS", 1, model.transitions),
    ):
        lines.append(f"{name} = [")
        for b, start in enumerate(model.bin_starts_hours):
            lines.append(
                f"    # from {start:g} h after sleep onset ({int(counts[b, kind].sum())} transitions)"
            )
            lines.append("    [")
            for row in matrices[b]:
                lines.append("        [" + ", ".join(f"{p:.4f}" for p in row) + "],")
            lines.append("    ],")
        lines.append("]")
    return "\n".join(lines)


# Fitted by ``fit_hypnogram_model("../shared/data")`` on ucddb-hypnograms/ucddb*_stage.txt (25 nights),
# slpdb/*.st (15 records) and hmc/SN001_sleepscoring.edf; regenerate with
#   python -c "from kdsleep.data.synthetic.hypnogram_model import *; m, c = fit_hypnogram_model('../shared/data'); \
#              print(format_model_constants(m, c))"
# Rows and columns: W, N1, N2, N3, R; _FITTED_ENTRY for the first epoch of a bout, _FITTED_TRANSITIONS for
# the others. tests/data/test_synthetic.py refits and compares.
_FITTED_INITIAL = [0.8974, 0.0256, 0.0513, 0.0256, 0.0]
_FITTED_ONSET = [0.9771, 0.0223, 0.0007, 0.0, 0.0]
_FITTED_ENTRY = [
    # from 0 h after sleep onset (854 transitions)
    [
        [0.4348, 0.4769, 0.0730, 0.0002, 0.0152],
        [0.1544, 0.7218, 0.1110, 0.0000, 0.0128],
        [0.0804, 0.1182, 0.7343, 0.0602, 0.0069],
        [0.0154, 0.0000, 0.2532, 0.7314, 0.0000],
        [0.0789, 0.0723, 0.0099, 0.0000, 0.8389],
    ],
    # from 1 h after sleep onset (727 transitions)
    [
        [0.4348, 0.3673, 0.1561, 0.0047, 0.0372],
        [0.0822, 0.6509, 0.2425, 0.0000, 0.0243],
        [0.0468, 0.1159, 0.7758, 0.0513, 0.0102],
        [0.0054, 0.0000, 0.2959, 0.6987, 0.0000],
        [0.0530, 0.0752, 0.0223, 0.0000, 0.8496],
    ],
    # from 2 h after sleep onset (539 transitions)
    [
        [0.4806, 0.3601, 0.0972, 0.0053, 0.0567],
        [0.1202, 0.7050, 0.1620, 0.0000, 0.0128],
        [0.0597, 0.0758, 0.8377, 0.0073, 0.0194],
        [0.0064, 0.0000, 0.1495, 0.8440, 0.0000],
        [0.1017, 0.0808, 0.0239, 0.0000, 0.7936],
    ],
    # from 3 h after sleep onset (487 transitions)
    [
        [0.4322, 0.3945, 0.1048, 0.0003, 0.0683],
        [0.1692, 0.6671, 0.1549, 0.0000, 0.0088],
        [0.0627, 0.0445, 0.8558, 0.0269, 0.0101],
        [0.0207, 0.0000, 0.1892, 0.7901, 0.0000],
        [0.0921, 0.0326, 0.0217, 0.0000, 0.8537],
    ],
    # from 4 h after sleep onset (576 transitions)
    [
        [0.4909, 0.4090, 0.0786, 0.0003, 0.0212],
        [0.1453, 0.6786, 0.1517, 0.0000, 0.0244],
        [0.0535, 0.1427, 0.7356, 0.0386, 0.0296],
        [0.0075, 0.0000, 0.2326, 0.7600, 0.0000],
        [0.0509, 0.0588, 0.0080, 0.0000, 0.8823],
    ],
    # from 5 h after sleep onset (522 transitions)
    [
        [0.5287, 0.3665, 0.0708, 0.0003, 0.0336],
        [0.1268, 0.6520, 0.2185, 0.0000, 0.0026],
        [0.0342, 0.1333, 0.7994, 0.0186, 0.0146],
        [0.0269, 0.0000, 0.1752, 0.7978, 0.0000],
        [0.0719, 0.0659, 0.0090, 0.0000, 0.8533],
    ],
    # from 6 h after sleep onset (263 transitions)
    [
        [0.4664, 0.4175, 0.0662, 0.0005, 0.0494],
        [0.1274, 0.7200, 0.1394, 0.0000, 0.0132],
        [0.0422, 0.0925, 0.8149, 0.0138, 0.0365],
        [0.0106, 0.0000, 0.2044, 0.7850, 0.0000],
        [0.0447, 0.0383, 0.0096, 0.0000, 0.9075],
    ],
]
_FITTED_TRANSITIONS = [
    # from 0 h after sleep onset (3800 transitions)
    [
        [0.8245, 0.1703, 0.0051, 0.0000, 0.0001],
        [0.1088, 0.7956, 0.0895, 0.0000, 0.0061],
        [0.0369, 0.0201, 0.9057, 0.0329, 0.0045],
        [0.0145, 0.0019, 0.0453, 0.9383, 0.0000],
        [0.0454, 0.0396, 0.0087, 0.0000, 0.9063],
    ],
    # from 1 h after sleep onset (3861 transitions)
    [
        [0.9018, 0.0932, 0.0049, 0.0000, 0.0001],
        [0.1280, 0.6948, 0.1710, 0.0000, 0.0062],
        [0.0528, 0.0321, 0.8756, 0.0288, 0.0106],
        [0.0133, 0.0029, 0.0359, 0.9479, 0.0000],
        [0.0308, 0.0189, 0.0028, 0.0000, 0.9475],
    ],
    # from 2 h after sleep onset (3891 transitions)
    [
        [0.8976, 0.0958, 0.0052, 0.0000, 0.0013],
        [0.1052, 0.7253, 0.1690, 0.0000, 0.0004],
        [0.0390, 0.0097, 0.9213, 0.0236, 0.0065],
        [0.0221, 0.0034, 0.0312, 0.9432, 0.0000],
        [0.0290, 0.0039, 0.0107, 0.0000, 0.9564],
    ],
    # from 3 h after sleep onset (3930 transitions)
    [
        [0.9303, 0.0624, 0.0032, 0.0000, 0.0041],
        [0.0959, 0.7428, 0.1609, 0.0000, 0.0005],
        [0.0343, 0.0059, 0.9312, 0.0190, 0.0095],
        [0.0226, 0.0041, 0.0315, 0.9399, 0.0019],
        [0.0337, 0.0039, 0.0090, 0.0000, 0.9534],
    ],
    # from 4 h after sleep onset (3686 transitions)
    [
        [0.8781, 0.1095, 0.0096, 0.0000, 0.0028],
        [0.0992, 0.7456, 0.1529, 0.0000, 0.0023],
        [0.0416, 0.0068, 0.9237, 0.0147, 0.0131],
        [0.0326, 0.0054, 0.0292, 0.9328, 0.0000],
        [0.0231, 0.0081, 0.0142, 0.0000, 0.9547],
    ],
    # from 5 h after sleep onset (3260 transitions)
    [
        [0.8579, 0.1363, 0.0056, 0.0000, 0.0001],
        [0.0826, 0.7858, 0.1265, 0.0000, 0.0052],
        [0.0415, 0.0191, 0.9161, 0.0111, 0.0122],
        [0.0232, 0.0055, 0.0456, 0.9256, 0.0001],
        [0.0255, 0.0061, 0.0103, 0.0000, 0.9582],
    ],
    # from 6 h after sleep onset (1556 transitions)
    [
        [0.9205, 0.0693, 0.0029, 0.0000, 0.0073],
        [0.1195, 0.7000, 0.1628, 0.0000, 0.0178],
        [0.0608, 0.0186, 0.8903, 0.0155, 0.0147],
        [0.0518, 0.0019, 0.1013, 0.8449, 0.0002],
        [0.0510, 0.0029, 0.0096, 0.0000, 0.9364],
    ],
]

FITTED_HYPNOGRAM_MODEL = HypnogramModel(
    np.array(_FITTED_INITIAL), np.array(_FITTED_TRANSITIONS), np.array(_FITTED_ENTRY), np.array(_FITTED_ONSET)
)
