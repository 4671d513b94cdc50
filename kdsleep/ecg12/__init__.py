"""12-lead ECG arrhythmia classification on PhysioNet/CinC Challenge 2020 data (Phan et al., arXiv 2210.06297).

Modules
-------
reader
    Challenge records (WFDB ``.hea`` + ``.mat``) in millivolts, diagnoses, all-zero leads, patient tables.
inventory
    A collection of records checked before cross-validation: all-zero leads, suspect gains, duplicates.
scoring
    The challenge's scoring tables (``--scoring-dir``), its metric and the other official figures, and its
    output files.
spectrogram
    Per-lead magnitude STFT of 2.5-s windows at 100 Hz (12 x 13 x 21), in torch on any device.
folds
    10-fold iterative multi-label stratification (Sechidis et al., 2011).

The submodules are imported on demand, so ``import kdsleep.ecg12`` stays cheap.
"""

from __future__ import annotations
