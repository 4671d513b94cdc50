"""Channel picking by name with aliases, bipolar re-referencing, units and ECG polarity.

Datasets spell the same derivation differently: the central EEG referenced to the opposite mastoid is
``C3-A2`` in SHHS and the paper, ``EEG C3-M2`` in HMC (AASM naming), and in MASS it is not stored at all
but computed as ``EEG C3-CLE`` minus ``EEG A2-CLE`` (both referenced to a common electrode). A *channel
spec* is a list of candidates tried in order; a candidate is either one channel name or a difference
``"A - B"`` of two channels.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = [
    "CHANNEL_ALIASES",
    "ChannelSource",
    "MissingChannelError",
    "correct_ecg_polarity",
    "is_ecg_name",
    "resolve_channel",
    "unit_scale_to_volts",
]

logger = logging.getLogger(__name__)

#: Candidates for the derivations used in this project, most specific first. Keys are canonical names;
#: lookups are case-insensitive.
CHANNEL_ALIASES: dict[str, tuple[str, ...]] = {
    "C3-A2": (
        "EEG C3-A2",
        "C3-A2",
        "C3A2",
        "EEG C3-M2",
        "C3-M2",
        "C3M2",
        "EEG C3:A2",
        "EEG(sec)",
        "EEG(SEC)",
        "EEG 2",
        "EEG2",
        "EEG C3-CLE - EEG A2-CLE",
        "C3-CLE - A2-CLE",
        "EEG C3-LER - EEG A2-LER",
    ),
    "C4-A1": (
        "EEG C4-A1",
        "C4-A1",
        "C4A1",
        "EEG C4-M1",
        "C4-M1",
        "C4M1",
        "EEG C4:A1",
        "EEG",
        "EEG C4-CLE - EEG A1-CLE",
        "C4-CLE - A1-CLE",
        "EEG C4-LER - EEG A1-LER",
    ),
    "Fpz-Cz": ("EEG Fpz-Cz", "Fpz-Cz"),
    "Pz-Oz": ("EEG Pz-Oz", "Pz-Oz"),
    # Lead I first (the paper's lead), then the single-lead spellings of PSG montages.
    "ECG": (
        "ECG I",
        "ECG ECGI",
        "ECG ECG I",
        "ECGI",
        "ECG",
        "EKG",
        "ECG1",
        "ECG 1",
        "ECG L",
        "ECG II",
        "ECG2",
        "EKG1",
    ),
}
CHANNEL_ALIASES["ECG I"] = CHANNEL_ALIASES["ECG"]
CHANNEL_ALIASES["C3-M2"] = CHANNEL_ALIASES["C3-A2"]
CHANNEL_ALIASES["C4-M1"] = CHANNEL_ALIASES["C4-A1"]
CHANNEL_ALIASES["EEG C3-A2"] = CHANNEL_ALIASES["C3-A2"]
CHANNEL_ALIASES["EEG C4-A1"] = CHANNEL_ALIASES["C4-A1"]


class MissingChannelError(KeyError):
    """None of the candidates for a requested channel is in the file."""

    def __init__(
        self, wanted: str, candidates: Sequence[str], available: Sequence[str], source: object = None
    ):
        where = f"{source}: " if source is not None else ""
        self.wanted, self.candidates, self.available = wanted, list(candidates), list(available)
        self.message = (
            f"{where}channel {wanted!r} not found (tried {list(candidates)}); "
            f"available channels: {list(available)}"
        )
        super().__init__(self.message)

    def __str__(self) -> str:  # KeyError would quote the message
        return self.message


@dataclass(frozen=True)
class ChannelSource:
    """Where a requested channel comes from: ``positive`` minus ``negative`` (``None``: no re-reference)."""

    positive: str
    negative: str | None = None

    @property
    def names(self) -> tuple[str, ...]:
        return (self.positive,) if self.negative is None else (self.positive, self.negative)

    def __str__(self) -> str:
        return self.positive if self.negative is None else f"{self.positive} - {self.negative}"


def _key(name: str) -> str:
    return re.sub(r"\s+", " ", name.strip()).lower()


def _split_difference(candidate: str) -> tuple[str, str | None]:
    # " - " with blanks separates a difference; "C3-A2" (no blanks) is one channel name.
    parts = re.split(r"\s+-\s+", candidate.strip())
    if len(parts) == 2:
        return parts[0], parts[1]
    return candidate.strip(), None


def _candidates(wanted: str | Sequence[str], aliases: Mapping[str, Sequence[str]]) -> list[str]:
    if isinstance(wanted, str):
        out = [wanted]
        lowered = {_key(k): v for k, v in aliases.items()}
        out += list(lowered.get(_key(wanted), ()))
    else:
        out = list(wanted)
    seen: set[str] = set()
    unique = []
    for c in out:
        if _key(c) not in seen:
            seen.add(_key(c))
            unique.append(c)
    return unique


def resolve_channel(
    wanted: str | Sequence[str],
    available: Sequence[str],
    aliases: Mapping[str, Sequence[str]] | None = None,
    source: object = None,
) -> ChannelSource:
    """Find the channel(s) of a file that give the requested derivation.

    Parameters
    ----------
    wanted : str or sequence of str
        A channel name (looked up in ``aliases`` for more candidates) or an explicit list of candidates;
        ``"A - B"`` asks for the difference of two channels.
    available : sequence of str
        Channel names in the file.
    aliases : mapping, optional
        Candidate lists by name; default :data:`CHANNEL_ALIASES`.
    source : object, optional
        File named in the error message.

    Raises
    ------
    MissingChannelError
        Listing the candidates tried and the channels available.
    """
    aliases = CHANNEL_ALIASES if aliases is None else aliases
    by_key: dict[str, str] = {}
    for name in available:
        by_key.setdefault(_key(name), name)
    candidates = _candidates(wanted, aliases)
    for candidate in candidates:
        positive, negative = _split_difference(candidate)
        pos = by_key.get(_key(positive))
        if pos is None:
            continue
        if negative is None:
            return ChannelSource(pos)
        neg = by_key.get(_key(negative))
        if neg is not None:
            return ChannelSource(pos, neg)
    label = wanted if isinstance(wanted, str) else " / ".join(wanted)
    raise MissingChannelError(label, candidates, list(available), source)


def is_ecg_name(name: str) -> bool:
    """Whether a channel name denotes an ECG lead."""
    return bool(re.search(r"\b(ecg|ekg)", name, flags=re.IGNORECASE))


_VOLT_PREFIXES = {"": 1.0, "m": 1e-3, "u": 1e-6, "\u00b5": 1e-6, "\u03bc": 1e-6, "n": 1e-9, "k": 1e3}


def unit_scale_to_volts(unit: str) -> float | None:
    """Factor from ``unit`` to volts, case-insensitively (``"UV"``, ``"MV"``, ``"µV"``); ``None`` if not a voltage.

    Upper-case ``"MV"`` is read as millivolts: megavolts do not occur in physiological recordings.
    """
    text = unit.strip()
    if not text or text[-1] not in "vV":
        return None
    prefix = text[:-1]
    if prefix in ("\u00b5", "\u03bc"):
        return 1e-6
    return _VOLT_PREFIXES.get(prefix.lower())


def correct_ecg_polarity(x: np.ndarray, sfreq: float, mode: str | None = "auto") -> tuple[np.ndarray, bool]:
    """Flip an ECG whose QRS complexes point down.

    Parameters
    ----------
    x : np.ndarray
        ECG samples.
    sfreq : float
        Sampling rate in Hz.
    mode : {"auto", "invert", None}
        ``"auto"`` flips when the baseline-free signal is skewed negative (R peaks dominate the skew of a
        normally oriented lead); ``"invert"`` always flips (the authors' public code inverts the MASS ECG);
        ``None`` leaves it.

    Returns
    -------
    (np.ndarray, bool)
        The corrected signal and whether it was flipped.
    """
    if mode is None:
        return x, False
    if mode == "invert":
        return -x, True
    if mode != "auto":
        raise ValueError(f"ECG polarity mode must be 'auto', 'invert' or None, got {mode!r}")
    from scipy.ndimage import median_filter

    finite = np.isfinite(x)
    if finite.sum() < sfreq:
        return x, False
    y = x[finite].astype(np.float64)
    # Decimate the baseline estimate for speed: a 0.6-s running median removes baseline wander and T waves.
    step = max(1, int(sfreq // 50))
    coarse = median_filter(y[::step], size=max(3, int(0.6 * sfreq / step)) | 1, mode="nearest")
    baseline = np.interp(np.arange(y.size), np.arange(0, y.size, step)[: coarse.size], coarse)
    r = y - baseline
    centred = r - r.mean()
    sd = centred.std()
    if sd == 0:
        return x, False
    skew = float(np.mean(centred**3) / sd**3)
    if skew < 0:
        return -x, True
    return x, False
