"""How well synthetic nights carry the sleep stage: per-epoch features, a logistic-regression proxy of the
teacher (EEG) / student (ECG) gap, and a figure of one epoch per stage.

A cheap check of the generator in :mod:`kdsleep.data.synthetic`: the EEG should carry the stage well, the
ECG weakly but above chance. ``kdsleep synth --check`` prints :func:`proxy_separability`;
docs/results/synthetic.md records the figures.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy.signal import butter, find_peaks, sosfiltfilt, welch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import f1_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from tqdm.auto import tqdm

from kdsleep._io import save_figure_atomic
from kdsleep.data.stages import AASM_5, W_L_D_R, SleepStage
from kdsleep.data.synthetic import EPOCH_LENGTH, SyntheticNight, synthesize_night

__all__ = ["epoch_features", "plot_stage_epochs", "proxy_separability", "separability_of_nights"]

#: EEG bands (Hz) of the proxy features.
_PROXY_BANDS = ((0.5, 2.0), (2.0, 4.0), (4.0, 8.0), (8.0, 11.0), (11.0, 16.0), (16.0, 30.0))


def epoch_features(night: SyntheticNight) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-epoch features of a night: EEG log band powers, and RR mean / SD of R peaks detected in the ECG.

    Returns
    -------
    eeg_features : np.ndarray, shape (n_epochs, 7)
        Log power in 0.5-2, 2-4, 4-8, 8-11, 11-16, 16-30 Hz, and log total power (Welch, 4-s segments).
    ecg_features : np.ndarray, shape (n_epochs, 4)
        RR mean and SD within the epoch (s) and the same two z-scored over the night.
    stages : np.ndarray
        The stage of each epoch.
    """
    sfreq = night.sfreq
    n_epochs = night.stages.shape[0]
    first = night.epoch_slice(0).start
    epoch_samples = int(round(EPOCH_LENGTH * sfreq))
    eeg = night.eeg[first : first + n_epochs * epoch_samples].reshape(n_epochs, epoch_samples)
    freqs, psd = welch(eeg, fs=sfreq, nperseg=int(4 * sfreq), axis=-1)
    bands = [psd[:, (freqs >= lo) & (freqs < hi)].sum(-1) for lo, hi in _PROXY_BANDS]
    eeg_features = np.log(np.stack(bands + [psd[:, (freqs >= 0.5) & (freqs < 30)].sum(-1)], axis=1) + 1e-12)

    # R peaks: a band-passed ECG, its square, peaks at least 0.33 s apart above a robust threshold.
    sos = butter(3, [5.0, 25.0], btype="bandpass", fs=sfreq, output="sos")
    energy = sosfiltfilt(sos, night.ecg) ** 2
    threshold = 0.3 * np.percentile(energy, 99.5)
    peaks, _ = find_peaks(energy, height=threshold, distance=int(0.33 * sfreq))
    times = peaks / sfreq
    rr = np.diff(times)
    rr_time = times[1:]
    epoch_of_rr = np.floor((rr_time - night.epoch_onset) / EPOCH_LENGTH).astype(np.int64)
    ok = (epoch_of_rr >= 0) & (epoch_of_rr < n_epochs) & (rr > 0.3) & (rr < 2.0)
    counts = np.bincount(epoch_of_rr[ok], minlength=n_epochs)
    sums = np.bincount(epoch_of_rr[ok], rr[ok], minlength=n_epochs)
    squares = np.bincount(epoch_of_rr[ok], rr[ok] ** 2, minlength=n_epochs)
    mean = np.divide(sums, counts, out=np.full(n_epochs, np.nan), where=counts > 0)
    var = np.divide(squares, counts, out=np.full(n_epochs, np.nan), where=counts > 0) - mean**2
    sd = np.sqrt(np.clip(var, 0.0, None))
    mean = np.where(np.isfinite(mean), mean, np.nanmedian(mean))
    sd = np.where(np.isfinite(sd), sd, np.nanmedian(sd))
    z = lambda v: (v - v.mean()) / (v.std() + 1e-12)  # noqa: E731
    ecg_features = np.stack([mean, sd, z(mean), z(sd)], axis=1)
    return eeg_features, ecg_features, night.stages


def proxy_separability(
    n_subjects: int = 12,
    hours: float = 8.0,
    seed: int = 0,
    sfreq: float = 128.0,
    n_test_subjects: int | None = None,
    progress: bool = False,
) -> dict[str, float]:
    """Weighted F1 of a logistic regression on per-epoch EEG and ECG features of synthetic subjects.

    A cheap stand-in for the teacher (EEG) and student (ECG) models: the EEG should carry the stage well
    (weighted F1 >= 0.8), the ECG weakly but above chance. See :func:`separability_of_nights`.

    Parameters
    ----------
    n_subjects : int
        Subjects synthesised; the last ``n_test_subjects`` (default a third) are held out.
    hours, seed, sfreq : see :func:`synthesize_night`.
    progress : bool
        Show a progress bar.
    """
    n_test = n_test_subjects if n_test_subjects is not None else max(1, n_subjects // 3)
    if not 0 < n_test < n_subjects:
        raise ValueError(f"need 0 < n_test_subjects < n_subjects, got {n_test} of {n_subjects}")
    features = []
    for index in tqdm(range(n_subjects), desc="proxy", disable=not progress):
        features.append(epoch_features(synthesize_night(index, hours=hours, seed=seed, sfreq=sfreq)))
    return separability_of_nights(features, [i >= n_subjects - n_test for i in range(n_subjects)])


def separability_of_nights(
    features: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], is_test: Sequence[bool]
) -> dict[str, float]:
    """Weighted F1 of a logistic regression on per-epoch features, trained and tested on different nights.

    Parameters
    ----------
    features : sequence of (eeg_features, ecg_features, stages)
        :func:`epoch_features` of each night; unscored epochs are left out.
    is_test : sequence of bool
        Which nights are held out (put all nights of one subject on the same side).

    Returns
    -------
    dict
        ``eeg_f1``, ``ecg_f1`` (5-class weighted F1 on the held-out nights), ``eeg_f1_wldr``, ``ecg_f1_wldr``
        (4-class W-L-D-R), per-class F1 as ``eeg_f1_N2``, ``ecg_f1_wldr_D``, ..., ``chance_f1`` and
        ``chance_f1_wldr`` (weighted F1 of guessing by the training class frequencies, in expectation),
        ``n_train_epochs``, ``n_test_epochs``.
    """
    if len(features) != len(is_test) or all(is_test) or not any(is_test):
        raise ValueError("need one is_test flag per night, with nights on both sides of the split")
    eeg_all = np.concatenate([f[0] for f in features])
    ecg_all = np.concatenate([f[1] for f in features])
    y_all = np.concatenate([f[2] for f in features]).astype(np.int64)
    test = np.concatenate([np.full(f[2].shape[0], flag) for f, flag in zip(features, is_test, strict=True)])
    scored = y_all <= int(SleepStage.R)
    eeg_all, ecg_all, y_all, test = eeg_all[scored], ecg_all[scored], y_all[scored], test[scored]
    train = ~test
    result: dict[str, float] = {"n_train_epochs": float(train.sum()), "n_test_epochs": float(test.sum())}
    for suffix, labels, class_names in (
        ("", y_all, AASM_5.class_names),
        ("_wldr", W_L_D_R(y_all), W_L_D_R.class_names),
    ):
        n_classes = len(class_names)
        freq = np.bincount(labels[train], minlength=n_classes) / train.sum()
        test_freq = np.bincount(labels[test], minlength=n_classes) / test.sum()
        # A guess drawn from the training frequencies has per-class F1 2 p q / (p + q) in expectation.
        per_class = np.divide(
            2 * freq * test_freq, freq + test_freq, out=np.zeros_like(freq), where=(freq + test_freq) > 0
        )
        result[f"chance_f1{suffix}"] = float(np.sum(test_freq * per_class))
        for name, x in (("eeg", eeg_all), ("ecg", ecg_all)):
            model = make_pipeline(
                StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced")
            )
            model.fit(x[train], labels[train])
            predicted = model.predict(x[test])
            result[f"{name}_f1{suffix}"] = float(
                f1_score(labels[test], predicted, average="weighted", zero_division=0)
            )
            per_class = f1_score(
                labels[test], predicted, average=None, labels=np.arange(n_classes), zero_division=0
            )
            for class_name, value in zip(class_names, per_class, strict=True):
                result[f"{name}_f1{suffix}_{class_name}"] = float(value)
    return result


def plot_stage_epochs(night: SyntheticNight, path: str | os.PathLike[str], zoom: float = 4.0) -> Path:
    """Save a figure with one epoch of each stage of ``night``: EEG C3-A2 above, ECG lead I below.

    For each stage the middle epoch of its longest run is shown (its most typical one), whole on the left
    and, on the right, the ``zoom`` seconds where the stage's own band is strongest (alpha in W, theta in
    N1 and R, spindles in N2, delta in N3), so that rhythms and spindles are visible.
    Written atomically as PNG.

    Parameters
    ----------
    night : SyntheticNight
    path : path-like
        Target ``.png``.
    zoom : float
        Seconds shown in the zoomed panels.
    """
    stages = [SleepStage.W, SleepStage.N1, SleepStage.N2, SleepStage.N3, SleepStage.R]
    fig = Figure(figsize=(11, 12))
    FigureCanvasAgg(fig)
    axes = fig.subplots(
        2 * len(stages),
        2,
        gridspec_kw={"height_ratios": [2, 1] * len(stages), "width_ratios": [3, 1]},
    )
    epoch_samples = int(round(EPOCH_LENGTH * night.sfreq))
    t = np.arange(epoch_samples) / night.sfreq
    signature = {
        SleepStage.W: (8, 12),
        SleepStage.N1: (4, 8),
        SleepStage.N2: (11, 16),
        SleepStage.N3: (0.5, 2),
        SleepStage.R: (4, 8),
    }
    for row, stage in enumerate(stages):
        eeg_axes, ecg_axes = axes[2 * row], axes[2 * row + 1]
        eeg_axes[0].set_ylabel(f"{stage.name}\nEEG (µV)")
        ecg_axes[0].set_ylabel("ECG (mV)")
        is_stage = (night.stages == stage).astype(np.int64)
        if not is_stage.any():
            eeg_axes[0].text(0.5, 0.5, "stage absent from this night", transform=eeg_axes[0].transAxes)
            continue
        edges = np.flatnonzero(np.diff(np.concatenate([[0], is_stage, [0]])))
        starts, stops = edges[::2], edges[1::2]
        longest = int(np.argmax(stops - starts))
        epoch = int((starts[longest] + stops[longest] - 1) // 2)
        sl = night.epoch_slice(epoch)
        eeg, ecg = night.eeg[sl], night.ecg[sl]
        lo, hi = signature[stage]
        spectrum = np.fft.rfft(eeg)
        freqs = np.fft.rfftfreq(eeg.shape[0], 1.0 / night.sfreq)
        band = np.fft.irfft(np.where((freqs >= lo) & (freqs < hi), spectrum, 0), eeg.shape[0])
        window = int(zoom * night.sfreq)
        power = np.convolve(band**2, np.ones(window), mode="valid")
        zoom_from = float(np.argmax(power[: epoch_samples - window + 1]) / night.sfreq)
        in_zoom = (t >= zoom_from) & (t < zoom_from + zoom)
        for col, keep in enumerate((np.ones_like(in_zoom), in_zoom)):
            eeg_axes[col].plot(t[keep], eeg[keep], lw=0.5 if col == 0 else 0.8, color="C0")
            ecg_axes[col].plot(t[keep], ecg[keep], lw=0.5 if col == 0 else 0.8, color="C3")
        eeg_axes[0].set_ylim(-200, 200)
        eeg_axes[1].set_ylim(-200 if stage == SleepStage.N3 else -80, 200 if stage == SleepStage.N3 else 80)
        ecg_axes[1].set_ylim(ecg_axes[0].get_ylim())
        eeg_axes[0].axvspan(zoom_from, zoom_from + zoom, color="0.9", zorder=0)
        beats = night.beat_times[
            (night.beat_times >= sl.start / night.sfreq) & (night.beat_times < sl.stop / night.sfreq)
        ]
        rr = np.diff(beats)
        if rr.size:
            ecg_axes[0].set_title(
                f"epoch {epoch}: HR {60 / rr.mean():.0f} bpm, RR SD {1000 * rr.std():.0f} ms",
                fontsize=8,
                loc="right",
            )
    axes[-1, 0].set_xlabel("time in epoch (s)")
    axes[-1, 1].set_xlabel("zoom (s)")
    fig.suptitle(f"Synthetic subject {night.subject}: one 30-s epoch per stage (EEG C3-A2, ECG lead I)")
    fig.tight_layout()
    return save_figure_atomic(fig, path, dpi=72)
