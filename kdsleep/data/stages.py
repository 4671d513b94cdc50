"""Sleep stages, the label formats that encode them, and the named stage groupings used for training.

Every reader turns the labels of its format into :class:`SleepStage` values; the models never see those
values directly but class indices of a :class:`StageGrouping` (5-class AASM, 4-class W-L-D-R, 3-class
W-N-R). Epochs that carry no sleep stage (movement time, artefact, unscored, indeterminate) are kept as
their own :class:`SleepStage` members so their cause stays visible, and all of them map to
:data:`IGNORE_INDEX` in every grouping: they are ignored by the losses and metrics, never guessed.

Rechtschaffen & Kales stages 3 and 4 are both deep sleep and become :attr:`SleepStage.N3`, as the AASM
manual and Joshi et al. (arXiv 2112.07252) do.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from enum import IntEnum

import numpy as np

__all__ = [
    "IGNORE_INDEX",
    "LABEL_MAPPINGS",
    "STAGE_GROUPINGS",
    "SleepStage",
    "StageGrouping",
    "UnknownStageLabelError",
    "AASM_5",
    "W_L_D_R",
    "W_N_R",
    "get_grouping",
    "get_label_mapping",
    "parse_stage_label",
    "parse_stage_labels",
    "stages_to_classes",
]

#: Class index given to epochs without a sleep stage; the ``ignore_index`` of the losses.
IGNORE_INDEX = -1


class SleepStage(IntEnum):
    """A sleep stage (AASM names) or the reason an epoch has none.

    The five scored stages have values 0-4 in AASM order; the unscored kinds follow. Stored as ``int8`` in
    hypnogram arrays.
    """

    W = 0
    N1 = 1
    N2 = 2
    N3 = 3
    R = 4
    MOVEMENT = 5
    ARTEFACT = 6
    UNSCORED = 7

    @property
    def is_scored(self) -> bool:
        """Whether the epoch carries one of the five sleep stages."""
        return self <= SleepStage.R


#: The members that carry a sleep stage, in AASM order.
SCORED_STAGES: tuple[SleepStage, ...] = (
    SleepStage.W,
    SleepStage.N1,
    SleepStage.N2,
    SleepStage.N3,
    SleepStage.R,
)
_N_STAGE_VALUES = len(SleepStage)


@dataclass(frozen=True)
class StageGrouping:
    """A set of training classes, each a union of sleep stages.

    Parameters
    ----------
    name : str
        Short identifier, e.g. ``"w-l-d-r"``.
    class_names : tuple of str
        Name of each class, in class-index order.
    classes : mapping of SleepStage to int
        Class index of every scored stage; stages absent here (and all unscored kinds) map to
        :data:`IGNORE_INDEX`.
    """

    name: str
    class_names: tuple[str, ...]
    classes: Mapping[SleepStage, int]
    _lookup: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n_classes = len(self.class_names)
        lookup = np.full(_N_STAGE_VALUES, IGNORE_INDEX, dtype=np.int64)
        for stage, index in self.classes.items():
            stage = SleepStage(stage)
            if not stage.is_scored:
                raise ValueError(
                    f"grouping {self.name!r}: {stage.name} has no sleep stage and cannot be a class"
                )
            if not 0 <= index < n_classes:
                raise ValueError(
                    f"grouping {self.name!r}: class index {index} of {stage.name} is outside 0..{n_classes - 1}"
                )
            lookup[stage] = index
        missing = set(range(n_classes)) - set(int(i) for i in self.classes.values())
        if missing:
            raise ValueError(f"grouping {self.name!r}: classes {sorted(missing)} have no stage")
        lookup.setflags(write=False)
        object.__setattr__(self, "_lookup", lookup)

    @property
    def n_classes(self) -> int:
        """Number of classes."""
        return len(self.class_names)

    def __call__(self, stages: np.ndarray | Iterable[int]) -> np.ndarray:
        """Class indices of ``stages``; see :func:`stages_to_classes`."""
        return stages_to_classes(stages, self)


#: The five AASM stages (W, N1, N2, N3, R).
AASM_5 = StageGrouping(
    "aasm-5",
    ("W", "N1", "N2", "N3", "R"),
    {SleepStage.W: 0, SleepStage.N1: 1, SleepStage.N2: 2, SleepStage.N3: 3, SleepStage.R: 4},
)
#: Wake, light (N1+N2), deep (N3), REM: the 4-class task of Joshi et al. (Tables I-II).
W_L_D_R = StageGrouping(
    "w-l-d-r",
    ("W", "L", "D", "R"),
    {SleepStage.W: 0, SleepStage.N1: 1, SleepStage.N2: 1, SleepStage.N3: 2, SleepStage.R: 3},
)
#: Wake, NREM (N1+N2+N3), REM: the 3-class task of Joshi et al. (Tables I-II).
W_N_R = StageGrouping(
    "w-n-r",
    ("W", "N", "R"),
    {SleepStage.W: 0, SleepStage.N1: 1, SleepStage.N2: 1, SleepStage.N3: 1, SleepStage.R: 2},
)

#: Groupings by name.
STAGE_GROUPINGS: dict[str, StageGrouping] = {g.name: g for g in (AASM_5, W_L_D_R, W_N_R)}
_GROUPING_ALIASES = {
    "aasm": "aasm-5",
    "aasm5": "aasm-5",
    "5": "aasm-5",
    "5-class": "aasm-5",
    "wn1n2n3r": "aasm-5",
    "wldr": "w-l-d-r",
    "4": "w-l-d-r",
    "4-class": "w-l-d-r",
    "wnr": "w-n-r",
    "3": "w-n-r",
    "3-class": "w-n-r",
}


def get_grouping(grouping: str | int | StageGrouping) -> StageGrouping:
    """Look up a stage grouping by name (``"aasm-5"``, ``"w-l-d-r"``, ``"w-n-r"``, aliases) or class count.

    Raises
    ------
    ValueError
        For an unknown name, listing the known ones.
    """
    if isinstance(grouping, StageGrouping):
        return grouping
    key = str(grouping).strip().lower().replace("_", "-")
    key = _GROUPING_ALIASES.get(key, _GROUPING_ALIASES.get(key.replace("-", ""), key))
    try:
        return STAGE_GROUPINGS[key]
    except KeyError:
        raise ValueError(
            f"unknown stage grouping {grouping!r}; expected one of {sorted(STAGE_GROUPINGS)} "
            f"(or 5, 4, 3 classes)"
        ) from None


def stages_to_classes(stages: np.ndarray | Iterable[int], grouping: str | int | StageGrouping) -> np.ndarray:
    """Map an array of :class:`SleepStage` values to class indices of ``grouping``.

    Parameters
    ----------
    stages : array of int
        Sleep-stage values (any shape).
    grouping : StageGrouping or str or int
        The grouping, or its name / number of classes.

    Returns
    -------
    np.ndarray of int64
        Same shape as ``stages``; movement, artefact and unscored epochs are :data:`IGNORE_INDEX` (-1).
    """
    grouping = get_grouping(grouping)
    arr = np.asarray(stages)
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"stages must be an integer array of SleepStage values, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    bad = (arr < 0) | (arr >= _N_STAGE_VALUES)
    if bad.any():
        raise ValueError(
            f"stage values {sorted(set(arr[bad].tolist()))[:10]} are not SleepStage values "
            f"(0..{_N_STAGE_VALUES - 1}: {', '.join(f'{s.value} {s.name}' for s in SleepStage)})"
        )
    return grouping._lookup[arr]


# --------------------------------------------------------------------------------------------------
# Label formats
# --------------------------------------------------------------------------------------------------


class UnknownStageLabelError(ValueError):
    """A hypnogram label that the label mapping in force does not know."""

    def __init__(self, label: str, mapping_name: str, known: Iterable[str], source: object | None = None):
        self.label = label
        self.mapping_name = mapping_name
        where = f"{source}: " if source is not None else ""
        known_list = ", ".join(repr(k) for k in sorted(set(known)))
        super().__init__(
            f"{where}unknown sleep-stage label {label!r} for label mapping {mapping_name!r} "
            f"(known labels: {known_list}); pass another label mapping or extend this one"
        )


def _normalise(label: object) -> str:
    # Labels arrive with NUL terminators (slpdb aux notes), padding, mixed case and mne's "@@channel" suffix.
    text = str(label).replace("\x00", "").strip()
    text = text.split("@@", 1)[0]
    return re.sub(r"\s+", " ", text).lower()


_S = SleepStage
# EDF+ annotation texts of MASS, HMC and Sleep-EDF (AASM and R&K variants). R&K 3 and 4 -> N3.
_EDF_ANNOTATIONS: dict[str, SleepStage] = {
    "sleep stage w": _S.W,
    "sleep stage wake": _S.W,
    "sleep stage 1": _S.N1,
    "sleep stage n1": _S.N1,
    "sleep stage s1": _S.N1,
    "sleep stage 2": _S.N2,
    "sleep stage n2": _S.N2,
    "sleep stage s2": _S.N2,
    "sleep stage 3": _S.N3,
    "sleep stage n3": _S.N3,
    "sleep stage s3": _S.N3,
    "sleep stage 4": _S.N3,
    "sleep stage n4": _S.N3,
    "sleep stage s4": _S.N3,
    "sleep stage r": _S.R,
    "sleep stage rem": _S.R,
    "sleep stage ?": _S.UNSCORED,
    "sleep stage unscored": _S.UNSCORED,
    "movement time": _S.MOVEMENT,
    "sleep stage movement": _S.MOVEMENT,
    "sleep stage mt": _S.MOVEMENT,
}
# Short R&K / AASM codes as in the slpdb aux notes ("W 1 2 3 4 R MT", some records "M").
_SHORT_CODES: dict[str, SleepStage] = {
    "w": _S.W,
    "wake": _S.W,
    "1": _S.N1,
    "2": _S.N2,
    "3": _S.N3,
    "4": _S.N3,
    "s1": _S.N1,
    "s2": _S.N2,
    "s3": _S.N3,
    "s4": _S.N3,
    "n1": _S.N1,
    "n2": _S.N2,
    "n3": _S.N3,
    "n4": _S.N3,
    "r": _S.R,
    "rem": _S.R,
    "mt": _S.MOVEMENT,
    "m": _S.MOVEMENT,
    "?": _S.UNSCORED,
    "u": _S.UNSCORED,
    "unscored": _S.UNSCORED,
}
# UCDDB: 0 W, 1 REM, 2 S1, 3 S2, 4 S3, 5 S4, 6 artefact, 7 indeterminate; 8 occurs undocumented (unscored).
_UCDDB: dict[str, SleepStage] = {
    "0": _S.W,
    "1": _S.R,
    "2": _S.N1,
    "3": _S.N2,
    "4": _S.N3,
    "5": _S.N3,
    "6": _S.ARTEFACT,
    "7": _S.UNSCORED,
    "8": _S.UNSCORED,
}
# NSRR Profusion XML <SleepStage> codes: 0 W, 1-4 R&K (4 -> N3), 5 REM, 6 movement, 9 unscored.
_PROFUSION: dict[str, SleepStage] = {
    "0": _S.W,
    "1": _S.N1,
    "2": _S.N2,
    "3": _S.N3,
    "4": _S.N3,
    "5": _S.R,
    "6": _S.MOVEMENT,
    "7": _S.UNSCORED,
    "9": _S.UNSCORED,
}
# NSRR XML-events <EventConcept> texts ("Stage 2 sleep|2").
_NSRR_EVENTS: dict[str, SleepStage] = {
    "wake|0": _S.W,
    "stage 1 sleep|1": _S.N1,
    "stage 2 sleep|2": _S.N2,
    "stage 3 sleep|3": _S.N3,
    "stage 4 sleep|4": _S.N3,
    "rem sleep|5": _S.R,
    "movement|6": _S.MOVEMENT,
    "unscored|9": _S.UNSCORED,
    "wake": _S.W,
    "stage 1 sleep": _S.N1,
    "stage 2 sleep": _S.N2,
    "stage 3 sleep": _S.N3,
    "stage 4 sleep": _S.N3,
    "rem sleep": _S.R,
    "movement": _S.MOVEMENT,
    "unscored": _S.UNSCORED,
}
_NAMES: dict[str, SleepStage] = {s.name.lower(): s for s in SleepStage}

#: Label mappings by name. Bare digit codes differ between formats (``"1"`` is REM for UCDDB, S1 for
#: slpdb) so ``"auto"`` only holds unambiguous spellings; digit formats need their mapping named.
LABEL_MAPPINGS: dict[str, dict[str, SleepStage]] = {
    "edf": _EDF_ANNOTATIONS,
    "rk": _SHORT_CODES,
    "slpdb": _SHORT_CODES,
    "ucddb": _UCDDB,
    "profusion": _PROFUSION,
    "nsrr-events": _NSRR_EVENTS,
    "auto": {
        **{k: v for k, v in _SHORT_CODES.items() if not k.isdigit()},
        **_NAMES,
        **_NSRR_EVENTS,
        **_EDF_ANNOTATIONS,
    },
}


def get_label_mapping(mapping: str | Mapping[str, SleepStage | int]) -> tuple[str, dict[str, SleepStage]]:
    """Resolve a label mapping given by name or as a dict; returns ``(name, normalised dict)``."""
    if isinstance(mapping, str):
        try:
            return mapping, LABEL_MAPPINGS[mapping]
        except KeyError:
            raise ValueError(
                f"unknown label mapping {mapping!r}; expected one of {sorted(LABEL_MAPPINGS)}"
            ) from None
    return "custom", {_normalise(k): SleepStage(v) for k, v in mapping.items()}


def parse_stage_label(
    label: object, mapping: str | Mapping[str, SleepStage | int] = "auto", source: object | None = None
) -> SleepStage:
    """Turn one hypnogram label into a :class:`SleepStage`.

    Parameters
    ----------
    label : str or int
        The label as written in the file (case, surrounding blanks, NUL terminators and mne's ``@@channel``
        suffix are ignored). For slpdb aux notes only the first word is the stage (apnea codes follow).
    mapping : str or dict
        Name in :data:`LABEL_MAPPINGS` (``"auto"``, ``"edf"``, ``"rk"``/``"slpdb"``, ``"ucddb"``,
        ``"profusion"``, ``"nsrr-events"``) or a dict from label to stage.
    source : object, optional
        File or record named in the error message.

    Raises
    ------
    UnknownStageLabelError
        When the label is not in the mapping.
    """
    name, table = get_label_mapping(mapping)
    key = _normalise(label)
    stage = table.get(key)
    if stage is None:
        raise UnknownStageLabelError(str(label), name, table.keys(), source)
    return stage


def parse_stage_labels(
    labels: Iterable[object],
    mapping: str | Mapping[str, SleepStage | int] = "auto",
    source: object | None = None,
) -> np.ndarray:
    """Vector form of :func:`parse_stage_label`; returns an ``int8`` array of :class:`SleepStage` values."""
    name, table = get_label_mapping(mapping)
    cache: dict[object, SleepStage] = {}
    out = []
    for label in labels:
        stage = cache.get(label)
        if stage is None:
            key = _normalise(label)
            stage = table.get(key)
            if stage is None:
                raise UnknownStageLabelError(str(label), name, table.keys(), source)
            cache[label] = stage
        out.append(int(stage))
    return np.asarray(out, dtype=np.int8)
