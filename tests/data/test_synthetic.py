"""The synthetic PSG generator: fitted hypnogram model, stage signatures of EEG and ECG, MASS files."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.signal import welch

from kdsleep.cli import main
from kdsleep.data.datasets import detect_dataset, find_recordings
from kdsleep.data.readers.wfdb_io import read_wfdb_beats
from kdsleep.data.stages import SleepStage
from kdsleep.data.synthetic import (
    MASS_CHANNELS,
    SubjectProfile,
    generate_from_slpdb,
    generate_synthetic_psg,
    simulate_beat_times,
    simulate_ecg,
    simulate_eeg,
    synthesize_from_slpdb,
    synthesize_night,
)
from kdsleep.data.synthetic.hypnogram_model import (
    FITTED_HYPNOGRAM_MODEL,
    HypnogramModel,
    ReferenceNight,
    count_transitions,
    fit_hypnogram_model,
    read_reference_hypnograms,
)

W, N1, N2, N3, R = (int(s) for s in (SleepStage.W, SleepStage.N1, SleepStage.N2, SleepStage.N3, SleepStage.R))


# ------------------------------------------------------------------ hypnogram model


def test_fitted_constants_match_a_refit_on_the_real_hypnograms(shared_data):
    model, counts = fit_hypnogram_model(shared_data)
    nights = read_reference_hypnograms(shared_data)
    # 25 UCDDB nights + 15 slpdb records + 1 HMC night; 29 498 pairs of scored epochs, of which 1 528 before
    # sleep onset feed the onset row and 18 (after an unscored epoch) cannot tell bout entry from
    # continuation.
    assert len(nights) == 41
    _, _, onset_counts = count_transitions(nights)
    assert onset_counts.sum() == 1528
    assert counts.sum() + onset_counts.sum() == 29498 - 18
    np.testing.assert_allclose(FITTED_HYPNOGRAM_MODEL.transitions, model.transitions, atol=2e-4)
    np.testing.assert_allclose(FITTED_HYPNOGRAM_MODEL.entry, model.entry, atol=2e-4)
    np.testing.assert_allclose(FITTED_HYPNOGRAM_MODEL.initial, model.initial, atol=2e-4)
    np.testing.assert_allclose(FITTED_HYPNOGRAM_MODEL.onset, model.onset, atol=2e-4)
    assert FITTED_HYPNOGRAM_MODEL.bin_starts_hours == model.bin_starts_hours


def test_reference_hypnograms_map_rk_and_skip_unscored(shared_data):
    nights = {n.name: n for n in read_reference_hypnograms(shared_data)}
    # slp01a: R&K S3 47 + S4 66 -> 113 N3; its one MT epoch is unscored (PROVENANCE.md counts).
    slp01a = nights["slp01a"].stages
    assert np.count_nonzero(slp01a == N3) == 113
    assert np.count_nonzero(slp01a > R) == 1
    # slp14 starts scoring at sample 45000 (epoch 6): the first six epochs are unscored.
    assert (nights["slp14"].stages[:6] == SleepStage.UNSCORED).all()
    # Part b of a night continues part a (slp01a starts 23:07, slp01b 02:14).
    assert nights["slp01b"].first_epoch == 374 and not nights["slp01b"].starts_night
    # HMC SN001: 854 epochs W 151, N1 109, N2 430, N3 23, R 141 (REFERENCE_FACTS.md).
    hmc = nights["SN001_sleepscoring.edf"].stages
    assert np.bincount(hmc[hmc <= R], minlength=5).tolist() == [151, 109, 430, 23, 141]


def test_transitions_are_not_counted_across_unscored_epochs():
    u, mt = int(SleepStage.UNSCORED), int(SleepStage.MOVEMENT)
    night = ReferenceNight("toy", np.array([W, W, W, u, W, N1, N1, N2, mt, N2, N2, W], dtype=np.int8))
    assert night.onset_epoch() == 5
    counts, initial, onset = count_transitions([night])
    # Before onset: W -> W twice, W -> N1 once (the pair around the unscored epoch is skipped).
    assert onset.tolist() == [2, 1, 0, 0, 0]
    # After onset, entering a bout: N1 -> N1 (sleep starts), N2 -> N2 is skipped (the pairs around the
    # movement epoch, and the pair after it, whose bout status is unknown). Continuing: N1 -> N2, N2 -> W.
    entering, continuing = counts[0, 0], counts[0, 1]
    assert entering.sum() == 1 and entering[N1, N1] == 1
    assert continuing.sum() == 2 and continuing[N1, N2] == 1 and continuing[N2, W] == 1
    assert initial.tolist() == [1, 0, 0, 0, 0]


def test_model_rejects_bad_matrices():
    onset, ok = np.array([0.9, 0.1, 0, 0, 0]), np.full((7, 5, 5), 0.2)
    with pytest.raises(ValueError, match="shape"):
        HypnogramModel(np.full(5, 0.2), np.full((2, 5, 5), 0.2), ok, onset)
    with pytest.raises(ValueError, match="entry must be non-negative with rows summing to 1"):
        HypnogramModel(np.full(5, 0.2), ok, np.full((7, 5, 5), 0.5), onset)
    with pytest.raises(ValueError, match="onset"):
        HypnogramModel(np.full(5, 0.2), ok, ok, np.array([1.0, 0, 0, 0, 0]))


def test_sampled_nights_have_a_realistic_structure():
    rng = np.random.default_rng(0)
    n_epochs = 8 * 120
    nights = np.stack(
        [FITTED_HYPNOGRAM_MODEL.sample(n_epochs, rng, subject_concentration=300) for _ in range(60)]
    )
    assert np.mean(nights[:, 0] == W) > 0.75  # nights start awake
    # Sleep latency: median 5-40 min (the real nights: 17 min to the first N1).
    latency = [np.flatnonzero(night != W)[0] / 2 for night in nights if (night != W).any()]
    assert 5 <= np.median(latency) <= 40
    first, last = nights[:, : 3 * 120], nights[:, -3 * 120 :]
    assert np.mean(first == N3) > 1.5 * np.mean(last == N3)  # deep sleep early
    assert np.mean(last == R) > 1.5 * np.mean(first == R)  # REM late
    # Bouts: about half of the wake bouts after sleep onset are single-epoch awakenings (real: 52 %), and
    # N3 bouts last several minutes on average (real: 6.6 min).
    bouts: dict[int, list[int]] = {s: [] for s in range(5)}
    for night in nights:
        sleep = night[np.flatnonzero(night != W)[0] :] if (night != W).any() else night[:0]
        for run in np.split(sleep, np.flatnonzero(np.diff(sleep)) + 1):
            if run.size:
                bouts[int(run[0])].append(run.size)
    assert 0.35 < np.mean(np.array(bouts[W]) == 1) < 0.7
    assert 4.0 < np.mean(bouts[N3]) / 2 < 10.0
    # Every stage occurs, with N2 the most common sleep stage.
    fractions = np.bincount(nights.ravel(), minlength=5) / nights.size
    assert fractions.min() > 0.05
    assert fractions[N2] == fractions[1:].max()


# ------------------------------------------------------------------ signals


def _band_power(x: np.ndarray, sfreq: float, lo: float, hi: float) -> float:
    freqs, psd = welch(x, fs=sfreq, nperseg=int(4 * sfreq))
    return float(psd[(freqs >= lo) & (freqs < hi)].sum())


def test_eeg_carries_the_stage_signatures():
    sfreq = 128.0
    n_per_stage = 12
    stages = np.repeat(np.array([W, N1, N2, N3, R]), n_per_stage)
    eeg = simulate_eeg(stages, sfreq, np.random.default_rng(3), SubjectProfile())
    seg = int(30 * sfreq) * n_per_stage
    parts = {s: eeg[i * seg : (i + 1) * seg] for i, s in enumerate((W, N1, N2, N3, R))}
    power = {
        s: {
            b: _band_power(x, sfreq, *r)
            for b, r in {
                "delta": (0.5, 2),
                "theta": (4, 8),
                "alpha": (8, 12),
                "sigma": (11, 16),
                "total": (0.5, 30),
            }.items()
        }
        for s, x in parts.items()
    }
    rel = {s: {b: p / power[s]["total"] for b, p in bands.items()} for s, bands in power.items()}
    assert rel[W]["alpha"] == max(rel[s]["alpha"] for s in rel)  # alpha in wake
    assert rel[N1]["theta"] > 2 * rel[W]["theta"]  # theta in N1
    assert power[N2]["sigma"] > 2 * max(power[N1]["sigma"], power[R]["sigma"])  # spindles in N2
    assert power[N3]["delta"] > 4 * power[N2]["delta"]  # slow waves in N3
    # N3 delta waves exceed the AASM 75 µV peak-to-peak; R is low-amplitude.
    epoch = int(30 * sfreq)
    assert np.median([np.ptp(parts[N3][i : i + epoch]) for i in range(0, seg, epoch)]) > 150
    assert parts[R].std() < 0.5 * parts[N3].std()
    assert 5 < parts[R].std() < 40  # µV


def test_heart_rate_is_lower_and_steadier_in_n3_than_in_rem_and_wake():
    profile = SubjectProfile()
    rr = {}
    for stage in (W, N3, R):
        beats, _ = simulate_beat_times(np.full(60, stage), 1800.0, np.random.default_rng(7), profile)
        rr[stage] = np.diff(beats)
    assert rr[N3].mean() > rr[W].mean() and rr[N3].mean() > rr[R].mean()
    # Low-frequency variability (SD of 30-s mean RR) is smallest in N3.
    lf = {s: x[: len(x) // 30 * 30].reshape(-1, 30).mean(1).std() for s, x in rr.items()}
    assert lf[N3] < lf[W] and lf[N3] < lf[R]
    assert all(0.6 < x.mean() < 1.4 for x in rr.values())  # 43-100 bpm


def test_ecg_has_pqrst_complexes_at_the_beats():
    sfreq = 256.0
    beats = np.arange(0.5, 60.0, 0.9)
    ecg = simulate_ecg(
        beats, int(61 * sfreq), sfreq, np.random.default_rng(0), SubjectProfile(r_amplitude=1.0)
    )
    peaks = np.rint(beats * sfreq).astype(int)
    assert np.allclose(ecg[peaks], 1.0, atol=0.25)  # R ~ 1 mV
    # Average beat: P before R, S negative right after it, T positive ~0.27 s later.
    t = np.arange(-int(0.3 * sfreq), int(0.5 * sfreq))
    beat = np.mean([ecg[p + t] for p in peaks[1:-1]], axis=0)
    beat -= np.median(beat)
    at = lambda s: beat[np.argmin(np.abs(t / sfreq - s))]  # noqa: E731
    assert at(0.0) > 0.8
    assert at(0.035) < at(0.1) - 0.1  # S wave
    assert 0.06 < at(-0.2 * np.sqrt(0.9) ** 0.5) < 0.3  # P wave
    assert 0.15 < at(0.27 * np.sqrt(0.9)) < at(0.0)  # T wave


# ------------------------------------------------------------------ nights and files


def test_nights_are_deterministic_and_subjects_differ():
    a = synthesize_night(1, hours=0.25, seed=5, sfreq=128.0)
    b = synthesize_night(1, hours=0.25, seed=5, sfreq=128.0)
    c = synthesize_night(2, hours=0.25, seed=5, sfreq=128.0)
    d = synthesize_night(1, hours=0.25, seed=6, sfreq=128.0)
    assert (
        np.array_equal(a.eeg, b.eeg) and np.array_equal(a.ecg, b.ecg) and np.array_equal(a.stages, b.stages)
    )
    assert a.profile != c.profile and not np.array_equal(a.ecg, d.ecg)
    assert a.stages.shape == (30,)
    assert a.eeg.shape == a.ecg.shape == a.eeg_reference.shape
    # The scoring covers the signal: onset + 30 epochs <= duration, and whole seconds of signal.
    assert a.epoch_onset + 30 * 30.0 <= a.n_samples / a.sfreq
    assert a.n_samples % 128 == 0


def test_bad_arguments_raise_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="hours"):
        synthesize_night(0, hours=0)
    with pytest.raises(ValueError, match="sfreq"):
        synthesize_night(0, hours=1, sfreq=50)
    with pytest.raises(ValueError, match="n_subjects"):
        generate_synthetic_psg(tmp_path, n_subjects=0)
    with pytest.raises(FileNotFoundError, match="nothere"):
        synthesize_from_slpdb(tmp_path / "nothere")


def test_mass_files_are_read_by_mne_and_the_mass_adapter(tmp_path):
    import mne

    paths = generate_synthetic_psg(tmp_path, n_subjects=2, hours=0.25, seed=3, progress=False)
    assert [p.name for p in paths] == [
        "01-03-0001 PSG.edf",
        "01-03-0001 Base.edf",
        "01-03-0002 PSG.edf",
        "01-03-0002 Base.edf",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        p.name for p in paths
    )  # no temporary files left
    raw = mne.io.read_raw_edf(paths[0], verbose="error")
    assert raw.ch_names == list(MASS_CHANNELS) and raw.info["sfreq"] == 256.0
    annotations = mne.read_annotations(paths[1])
    assert set(annotations.description) <= {f"Sleep stage {s}" for s in "W123R?"}
    assert np.allclose(annotations.duration, 30.0)

    assert detect_dataset(tmp_path) == "mass"
    entries = find_recordings(tmp_path, "mass")
    assert [e.subject for e in entries] == ["01-03-0001", "01-03-0002"]
    for index, entry in enumerate(entries):
        night = synthesize_night(index, hours=0.25, seed=3)
        recording, hypnogram = entry.load()
        assert np.array_equal(hypnogram.stages, night.stages)
        assert hypnogram.onset == pytest.approx(night.epoch_onset, abs=1e-6)
        assert hypnogram.epoch_length == 30.0
        # C3-A2 re-referenced by the reader (C3-CLE - A2-CLE) equals the synthetic derivation (volts).
        np.testing.assert_allclose(recording["eeg"].data * 1e6, night.eeg, atol=0.05)
        np.testing.assert_allclose(recording["ecg"].data * 1e3, night.ecg, atol=1e-3)
        assert recording["eeg"].sfreq == 256.0


def test_same_seed_gives_identical_files_whatever_the_number_of_subjects(tmp_path):
    one = generate_synthetic_psg(
        tmp_path / "one", n_subjects=1, hours=0.1, seed=9, sfreq=128.0, progress=False
    )
    two = generate_synthetic_psg(
        tmp_path / "two", n_subjects=2, hours=0.1, seed=9, sfreq=128.0, progress=False
    )
    assert one[0].read_bytes() == two[0].read_bytes()
    assert one[1].read_bytes() == two[1].read_bytes()


def test_slpdb_driven_night_keeps_real_stages_and_beats(shared_data, tmp_path):
    record = shared_data / "slpdb" / "slp01a"
    paths = generate_from_slpdb(record, tmp_path, sfreq=256.0, seed=0)
    assert [p.name for p in paths] == ["01-03-1001 PSG.edf", "01-03-1001 Base.edf"]
    (entry,) = find_recordings(tmp_path, "mass")
    recording, hypnogram = entry.load()
    # slp01a: 240 epochs, W 7, S1 1, S2 105, S3+S4 113, R 13, one MT (unscored).
    assert hypnogram.n_epochs == 240
    assert np.bincount(hypnogram.stages, minlength=8)[:5].tolist() == [7, 1, 105, 113, 13]

    # The synthetic ECG has its R peaks at the real annotated beats.
    beats = read_wfdb_beats(record).samples / 250.0
    assert beats.shape[0] == 7806
    ecg = recording["ecg"].data
    sfreq = recording["ecg"].sfreq
    idx = np.rint(beats * sfreq).astype(int)
    idx = idx[(idx > 2) & (idx < ecg.shape[0] - 3)]
    windows = np.stack([ecg[idx + k] for k in range(-3, 4)])
    # The maximum of the ECG within +-3 samples of each annotated beat lies within one sample of it (noise
    # and the 250 -> 256 Hz grid move it by a sample at most).
    assert np.mean(np.abs(np.argmax(windows, axis=0) - 3) <= 1) > 0.99


def test_synth_command_writes_the_dataset_and_rejects_bad_arguments(tmp_path, capsys):
    out = tmp_path / "synthetic"
    assert main(["synth", "--out", str(out), "--subjects", "2", "--hours", "0.1", "--seed", "4"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "01-03-0001 Base.edf",
        "01-03-0001 PSG.edf",
        "01-03-0002 Base.edf",
        "01-03-0002 PSG.edf",
    ]
    assert "wrote 4 files (2 nights)" in capsys.readouterr().out
    assert main(["synth", "--out", str(out), "--subjects", "0"]) == 2
    assert "--subjects must be >= 1" in capsys.readouterr().err
    assert main(["synth", "--out", str(out), "--slpdb", str(tmp_path / "slp99")]) == 2
    assert "missing" in capsys.readouterr().err
    assert main(["synth", "--out", str(tmp_path / "new"), "--subjects", "2", "--check"]) == 2
    assert "--check needs --subjects >= 3" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()  # rejected before anything is written
