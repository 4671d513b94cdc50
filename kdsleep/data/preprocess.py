"""From a recording and its hypnogram to scaled, resampled, epoched arrays.

One :class:`PreprocessConfig` says everything that determines the stored arrays (channels, target rate,
filter bands, scaling, epoch length); its :meth:`~PreprocessConfig.config_hash` keys the on-disk cache
(:mod:`kdsleep.data.cache`), so a changed setting never reads stale arrays. The stage grouping is applied
when windows are served, so one cache serves the 5-, 4- and 3-class tasks.

Per channel, in order: bad-signal masking on the raw samples (NaN / flat stretches, via
:func:`kdsleep.data.readers.quality.mask_bad_epochs`), bridging of those stretches by a straight line between
the good samples on either side (so neither the resampler nor the filter sees a step at their edges),
resampling to ``sfreq`` (:func:`kdsleep.data.resample`), zero-phase band-pass, robust scaling with
statistics from the good samples only, epoching aligned to the hypnogram. A masked stretch therefore leaves
the other epochs' values as they would be without it (up to the change in median and inter-quartile range
that the missing good signal itself makes).

Derived channels (:data:`DERIVED_CHANNELS`) are computed from another stored channel instead of being read:
``ihr``, the instantaneous heart rate of the ``ecg`` channel (R peaks detected on the raw ECG by
:func:`kdsleep.data.detect_heartbeats`, RR intervals with physiological outlier rejection, the rate held on
the model's time base and robust-scaled by :func:`kdsleep.data.heart_rate.heart_rate_channel`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import warnings
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np

from kdsleep.data.datasets import find_recordings
from kdsleep.data.epoching import Epochs, epoch_signals
from kdsleep.data.filters import bandpass_filter
from kdsleep.data.heart_rate import heart_rate_channel
from kdsleep.data.heartbeats import MIN_SFREQ, detect_heartbeats
from kdsleep.data.readers.channels import is_ecg_name
from kdsleep.data.readers.quality import bad_sample_mask, mask_bad_epochs
from kdsleep.data.recording import Hypnogram, Recording
from kdsleep.data.resample import resample
from kdsleep.data.scaling import robust_scale
from kdsleep.data.stages import get_grouping

__all__ = [
    "DERIVED_CHANNELS",
    "MODALITIES",
    "PreprocessConfig",
    "bridge_bad_samples",
    "channel_request",
    "dataset_entries",
    "default_modality",
    "derive_heart_rate",
    "preprocess_recording",
]

logger = logging.getLogger(__name__)

#: Bumped whenever the stored layout or the processing changes in a way the config does not capture.
PREPROCESS_VERSION = 1

Band = tuple[float | None, float | None] | None

#: Channels computed from another channel of the recording (name -> the channel they are derived from).
DERIVED_CHANNELS: dict[str, str] = {"ihr": "ecg"}

#: What a stored channel measures; it decides the band-pass (``eeg_band``, ``ecg_band``, none for ``hr``).
MODALITIES = ("eeg", "ecg", "hr")


def default_modality(name: str) -> str:
    """The modality of a stored channel that :attr:`PreprocessConfig.modalities` does not name.

    Derived heart-rate channels are ``hr``; a name that denotes an ECG lead (``ecg``, ``ECG I``, ``EKG``) is
    ``ecg``; any other channel is ``eeg``.
    """
    if name in DERIVED_CHANNELS:
        return "hr"
    return "ecg" if is_ecg_name(name) else "eeg"


def _check_band(name: str, band: object, sfreq: float) -> Band:
    if band is None:
        return None
    if not isinstance(band, (tuple, list)) or len(band) != 2:
        raise ValueError(f"PreprocessConfig.{name} must be (l_freq, h_freq) in Hz or None, got {band!r}")
    lo, hi = (None if v is None else float(v) for v in band)
    if lo is None and hi is None:
        return None
    if hi is not None and hi >= sfreq / 2:
        raise ValueError(
            f"PreprocessConfig.{name}: h_freq {hi:g} Hz must be below the Nyquist frequency {sfreq / 2:g} Hz "
            f"of the target rate"
        )
    if (lo is not None and lo <= 0) or (lo is not None and hi is not None and lo >= hi):
        raise ValueError(f"PreprocessConfig.{name}: expected 0 < l_freq < h_freq, got {band!r}")
    return (lo, hi)


@dataclass(frozen=True)
class PreprocessConfig:
    """Settings of the preprocessing pipeline.

    Parameters
    ----------
    channels : tuple of str, default ("eeg", "ecg")
        Names of the stored channels, in order. ``eeg`` and ``ecg`` are read with the dataset adapter's
        default candidates: the paper's EEG C3-A2 (else C4-A1) and ECG lead I. Other names are resolved
        through the readers' aliases (``"C4-A1"``, ``"ECG II"``, ...).
    channel_specs : tuple of (name, spec) pairs, optional
        Explicit channel spec for some names, e.g. ``(("eeg", "C4-A1"),)`` or ``(("eeg", "EEG C3-CLE - EEG
        A2-CLE"),)``.
    modalities : tuple of (name, modality) pairs, optional
        What each stored channel measures (:data:`MODALITIES`: ``eeg``, ``ecg``, ``hr``), which decides its
        band-pass (``eeg_band``, ``ecg_band``, none). Channels not named take :func:`default_modality`; names
        that are not among ``channels`` are dropped (so a configuration narrowed to fewer channels keeps
        the modalities of the rest); after construction every channel is listed, in the order of
        ``channels``.
    ecg_polarity : {None, "auto", "invert"}, default None
        ECG polarity correction by the reader (the authors' code inverts the ECG sign).
    sfreq : float, default 200.0
        Target sampling frequency in Hz (200 Hz in the paper).
    eeg_band : (float or None, float or None) or None, default (0.3, 35.0)
        Zero-phase band-pass of EEG channels in Hz (the AASM's recommended EEG filter); ``None`` skips it.
    ecg_band : (float or None, float or None) or None, default (0.3, 70.0)
        Band-pass of ECG channels (the AASM's recommended ECG filter).
    filter_order : int, default 4
        Butterworth order of the one-way filter.
    scaling : {"robust", "none"}, default "robust"
        Per-recording median / IQR scaling as in U-Time, or none.
    clip : float or None, default 20.0
        Clip scaled values beyond this many IQRs (U-Time uses 20); ``None`` keeps them.
    epoch_length : float, default 30.0
        Epoch length in seconds; shorter scorings are widened by the dataset adapter (MASS 20 s -> 30 s).
    flat_seconds : float, default 5.0
        Shortest run of identical raw samples treated as a disconnected electrode.
    stage_grouping : str, default "w-l-d-r"
        Default grouping of stages into classes when windows are served (not part of the cache key).
    dtype : {"float32", "float64"}, default "float32"
        Stored sample type.
    """

    channels: tuple[str, ...] = ("eeg", "ecg")
    channel_specs: tuple[tuple[str, str], ...] | None = None
    modalities: tuple[tuple[str, str], ...] | None = None
    ecg_polarity: str | None = None
    sfreq: float = 200.0
    eeg_band: Band = (0.3, 35.0)
    ecg_band: Band = (0.3, 70.0)
    filter_order: int = 4
    scaling: str = "robust"
    clip: float | None = 20.0
    epoch_length: float = 30.0
    flat_seconds: float = 5.0
    stage_grouping: str = field(default="w-l-d-r", compare=False)
    dtype: str = "float32"

    def __post_init__(self) -> None:
        channels = (self.channels,) if isinstance(self.channels, str) else tuple(self.channels)
        if not channels or not all(isinstance(c, str) and c for c in channels):
            raise ValueError(
                f"PreprocessConfig.channels must be non-empty channel names, got {self.channels!r}"
            )
        if len(set(channels)) != len(channels):
            raise ValueError(f"PreprocessConfig.channels has duplicates: {channels}")
        object.__setattr__(self, "channels", channels)
        for name in channels:
            source = DERIVED_CHANNELS.get(name)
            if source is not None and source not in channels:
                raise ValueError(
                    f"PreprocessConfig.channels: {name!r} is derived from {source!r}, which must be among the "
                    f"channels too, got {channels}"
                )
        if self.channel_specs is not None:
            specs = self.channel_specs.items() if isinstance(self.channel_specs, dict) else self.channel_specs
            try:
                specs = tuple((str(k), str(v)) for k, v in specs)
            except (TypeError, ValueError):
                raise ValueError(
                    f"PreprocessConfig.channel_specs must be (name, spec) pairs, got {self.channel_specs!r}"
                ) from None
            unknown = sorted({k for k, _ in specs} - set(channels))
            if unknown:
                raise ValueError(
                    f"PreprocessConfig.channel_specs names {unknown} that are not in channels {channels}"
                )
            object.__setattr__(self, "channel_specs", tuple(sorted(specs)))
        given = dict(self.modalities.items() if isinstance(self.modalities, dict) else self.modalities or ())
        bad = {k: v for k, v in given.items() if v not in MODALITIES}
        if bad:
            raise ValueError(f"PreprocessConfig.modalities: {bad} -- expected one of {list(MODALITIES)}")
        object.__setattr__(
            self,
            "modalities",
            tuple((name, str(given.get(name, default_modality(name)))) for name in channels),
        )
        if self.ecg_polarity not in (None, "auto", "invert"):
            raise ValueError(
                f"PreprocessConfig.ecg_polarity must be None, 'auto' or 'invert', got {self.ecg_polarity!r}"
            )
        if not (isinstance(self.sfreq, (int, float)) and math.isfinite(self.sfreq) and self.sfreq > 0):
            raise ValueError(f"PreprocessConfig.sfreq must be a positive number of Hz, got {self.sfreq!r}")
        object.__setattr__(self, "sfreq", float(self.sfreq))
        object.__setattr__(self, "eeg_band", _check_band("eeg_band", self.eeg_band, self.sfreq))
        object.__setattr__(self, "ecg_band", _check_band("ecg_band", self.ecg_band, self.sfreq))
        if self.scaling not in ("robust", "none"):
            raise ValueError(f"PreprocessConfig.scaling must be 'robust' or 'none', got {self.scaling!r}")
        if self.clip is not None and not (self.clip > 0):
            raise ValueError(f"PreprocessConfig.clip must be > 0 or None, got {self.clip!r}")
        if self.dtype not in ("float32", "float64"):
            raise ValueError(f"PreprocessConfig.dtype must be 'float32' or 'float64', got {self.dtype!r}")
        spe = self.epoch_length * self.sfreq
        if not (self.epoch_length > 0 and abs(spe - round(spe)) < 1e-6):
            raise ValueError(
                f"PreprocessConfig.epoch_length {self.epoch_length!r} s must be a positive whole number of "
                f"samples at {self.sfreq:g} Hz"
            )
        if not self.flat_seconds > 0:
            raise ValueError(f"PreprocessConfig.flat_seconds must be > 0, got {self.flat_seconds!r}")
        get_grouping(self.stage_grouping)  # unknown names fail here, with the known ones listed

    def modality_of(self, name: str) -> str:
        """The modality of stored channel ``name``."""
        return dict(self.modalities or ())[name]

    @property
    def samples_per_epoch(self) -> int:
        """Samples in one epoch at the target rate (6000 at 200 Hz)."""
        return int(round(self.epoch_length * self.sfreq))

    def to_dict(self) -> dict:
        """Plain-JSON form of every field."""
        out = asdict(self)
        out["channels"] = list(self.channels)
        out["channel_specs"] = None if self.channel_specs is None else [list(p) for p in self.channel_specs]
        out["modalities"] = [list(p) for p in self.modalities or ()]
        for key in ("eeg_band", "ecg_band"):
            out[key] = None if out[key] is None else list(out[key])
        return out

    @classmethod
    def from_dict(cls, values: dict) -> PreprocessConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ValueError(f"PreprocessConfig: unknown keys {unknown}; expected some of {sorted(known)}")
        values = dict(values)
        for key in ("eeg_band", "ecg_band"):
            if values.get(key) is not None:
                values[key] = tuple(values[key])
        if "channels" in values:
            values["channels"] = tuple(values["channels"])
        if values.get("channel_specs") is not None:
            values["channel_specs"] = tuple(tuple(p) for p in values["channel_specs"])
        if values.get("modalities") is not None:
            values["modalities"] = tuple(tuple(p) for p in values["modalities"])
        return cls(**values)

    def config_hash(self) -> str:
        """Short SHA-256 of the fields that determine the stored arrays (not ``stage_grouping``)."""
        keyed = self.to_dict()
        keyed.pop("stage_grouping")
        keyed["version"] = PREPROCESS_VERSION
        blob = json.dumps(keyed, sort_keys=True, separators=(",", ":")).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def preprocess_recording(
    recording: Recording, hypnogram: Hypnogram, config: PreprocessConfig | None = None
) -> Epochs:
    """Run the pipeline on one recording.

    Parameters
    ----------
    recording : Recording
        Holds at least ``config.channels``, at any sampling rates.
    hypnogram : Hypnogram
        Scoring aligned to the recording start, with ``epoch_length == config.epoch_length`` (widen shorter
        scorings first).
    config : PreprocessConfig, optional
        Default settings when omitted.

    Returns
    -------
    Epochs
        ``data`` of shape (n_epochs, n_channels, samples_per_epoch) in ``config.dtype``; epochs touched by
        NaN or flat raw signal are ``ARTEFACT`` in ``stages`` (label -1).
    """
    config = config or PreprocessConfig()
    where = str(recording.source or recording.subject)
    if abs(hypnogram.epoch_length - config.epoch_length) > 1e-9:
        raise ValueError(
            f"{hypnogram.source or where}: hypnogram epochs last {hypnogram.epoch_length:g} s but the "
            f"preprocessing expects {config.epoch_length:g} s; widen the scoring first"
        )
    missing = [c for c in config.channels if c not in recording.signals and c not in DERIVED_CHANNELS]
    if missing:
        raise KeyError(f"{where}: channels {missing} missing; available channels: {recording.channel_names}")
    read = [c for c in config.channels if c not in DERIVED_CHANNELS]
    hypnogram = mask_bad_epochs(recording, hypnogram, read, flat_seconds=config.flat_seconds)
    rows = []
    for name in config.channels:
        if name in DERIVED_CHANNELS:
            rows.append(np.zeros(0))  # filled below, once the length of the read channels is known
            continue
        signal = recording[name]
        x = np.asarray(signal.data, dtype=np.float64)
        # the affected epochs are already masked; bridging keeps NaN and steps out of the filters
        bad = bad_sample_mask(x, signal.sfreq, config.flat_seconds)
        if bad.all():
            raise ValueError(f"{where}: channel {name!r}: no usable sample (all NaN or flat)")
        x = bridge_bad_samples(x, bad)
        x = resample(x, signal.sfreq, config.sfreq)
        good = None if not bad.any() else ~_resample_mask(bad, signal.sfreq, config.sfreq, x.size)
        band = {"eeg": config.eeg_band, "ecg": config.ecg_band, "hr": None}[config.modality_of(name)]
        if band is not None:
            x = bandpass_filter(x, config.sfreq, band[0], band[1], order=config.filter_order)
        if config.scaling == "robust":
            try:
                x = robust_scale(x, clip=config.clip, valid=good)
            except ValueError as err:
                raise ValueError(f"{where}: channel {name!r}: {err}") from None
        rows.append(x.astype(config.dtype))
    # channels of different rates may differ by a sample after resampling
    n = min(r.size for r, name in zip(rows, config.channels, strict=True) if name not in DERIVED_CHANNELS)
    for i, name in enumerate(config.channels):
        if name in DERIVED_CHANNELS:
            signal = recording[DERIVED_CHANNELS[name]]
            rows[i] = derive_heart_rate(signal.data, signal.sfreq, config.sfreq, n, source=where)
    data = np.stack([r[:n] for r in rows])
    with warnings.catch_warnings():
        # the raw-signal masking above has already warned about these epochs
        warnings.simplefilter("ignore")
        epochs = epoch_signals(
            data,
            config.sfreq,
            hypnogram.stages,
            onset=hypnogram.onset,
            epoch_length=hypnogram.epoch_length,
            epoch_step=hypnogram.epoch_step,
            channel_names=list(config.channels),
            source=where,
        )
    return epochs


def bridge_bad_samples(x: np.ndarray, bad: np.ndarray) -> np.ndarray:
    """``x`` with the samples where ``bad`` replaced by a straight line between the good samples on either
    side (held flat before the first and after the last good sample)."""
    if not bad.any():
        return x
    good = np.flatnonzero(~bad)
    out = x.copy()
    out[bad] = np.interp(np.flatnonzero(bad), good, x[good])
    return out


def _resample_mask(bad: np.ndarray, sfreq: float, target_sfreq: float, n_out: int) -> np.ndarray:
    """``bad`` (at ``sfreq``) on the ``target_sfreq`` time base: a target sample is bad when the source
    samples around it (one source sample either side) include a bad one."""
    t = np.arange(n_out) / target_sfreq * sfreq
    lo = np.clip(np.floor(t).astype(np.int64) - 1, 0, bad.size)
    hi = np.clip(np.ceil(t).astype(np.int64) + 2, 0, bad.size)
    csum = np.concatenate(([0], np.cumsum(bad)))
    return (csum[hi] - csum[lo]) > 0


def derive_heart_rate(
    ecg: np.ndarray, ecg_sfreq: float, sfreq: float, n_times: int, source: str = "recording"
) -> np.ndarray:
    """The ``ihr`` channel: heart rate of a raw ECG on the model's time base, scaled for model input.

    R peaks are detected on the raw signal (upsampled to 128 Hz first when it is slower than the detector's
    100 Hz: the R-peak times then keep the original sampling's precision, a few milliseconds, which is far
    below what the heart rate resolves); flat, missing or noise-only stretches hold no beats and their heart
    rate is filled with the recording's median.

    Parameters
    ----------
    ecg : np.ndarray
        Raw single-lead ECG (NaN marks missing samples).
    ecg_sfreq : float
        Its sampling rate in Hz.
    sfreq : float
        Model sampling rate in Hz.
    n_times : int
        Output length in samples at ``sfreq``.
    source : str
        Named in errors.

    Returns
    -------
    np.ndarray
        float32, shape ``(n_times,)``.
    """
    x = np.asarray(ecg, dtype=np.float64)
    detect_sfreq = float(ecg_sfreq)
    if detect_sfreq < MIN_SFREQ:
        finite = np.isfinite(x)
        x = resample(np.where(finite, x, 0.0), detect_sfreq, 128.0)
        if not finite.all():
            # keep missing stretches missing: the detector masks them instead of reading zeros
            missing = resample(np.where(finite, 0.0, 1.0), detect_sfreq, 128.0) > 0.5
            x[missing] = np.nan
        detect_sfreq = 128.0
    beats = detect_heartbeats(x, detect_sfreq)
    values, _ = heart_rate_channel(beats / detect_sfreq, sfreq, n_times, source=f"{source}: channel 'ihr'")
    return values


# --------------------------------------------------------------------------------------------------
# Datasets
# --------------------------------------------------------------------------------------------------


def dataset_entries(dataset: str, data_dir: str | Path) -> list:
    """The recordings of ``dataset`` under ``data_dir``, as :class:`kdsleep.data.datasets.RecordingEntry`.

    Parameters
    ----------
    dataset : str
        An adapter name (``mass``, ``hmc``, ``sleep-edf``, ``slpdb``, ``nsrr``/``shhs``, ``generic``),
        ``"synthetic"`` (the generator writes the MASS layout) or ``"auto"`` (detected from file names).
    data_dir : path-like
        Dataset folder.

    Raises
    ------
    FileNotFoundError
        When the folder is missing or holds no recording with signals.
    """
    name = "mass" if dataset.strip().lower() == "synthetic" else dataset
    entries = find_recordings(data_dir, name)
    if not entries:
        raise FileNotFoundError(f"{data_dir}: no {dataset} recordings with signal files found")
    return entries


def channel_request(config: PreprocessConfig, entry: Any = None) -> dict[str, Any]:
    """Channel request for a dataset entry's ``load``: ``config.channel_specs`` where given, else the
    adapter's default candidates for that name (``eeg``, ``ecg``), else the name itself (resolved through
    the readers' aliases)."""
    overrides = dict(config.channel_specs or ())
    adapter = getattr(entry, "adapter", None)
    defaults = dict(getattr(adapter, "default_channels", None) or {})
    return {
        name: overrides.get(name, defaults.get(name, name))
        for name in config.channels
        if name not in DERIVED_CHANNELS
    }
