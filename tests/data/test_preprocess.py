"""The preprocessing pipeline: config, one recording end to end, dataset lookup and the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from kdsleep.cli import main
from kdsleep.data import Hypnogram, Recording, Signal, SleepStage, resample
from kdsleep.data.filters import bandpass_filter
from kdsleep.data.preprocess import PreprocessConfig, channel_request, dataset_entries, preprocess_recording
from kdsleep.data.readers.quality import BadSignalWarning
from kdsleep.data.scaling import robust_scale

S = SleepStage


def _night(
    n_epochs: int = 12, sfreq_eeg: float = 256.0, sfreq_ecg: float = 512.0, seed: int = 0
) -> tuple[Recording, Hypnogram]:
    rng = np.random.default_rng(seed)
    duration = n_epochs * 30 + 7.0
    t_eeg = np.arange(int(duration * sfreq_eeg)) / sfreq_eeg
    t_ecg = np.arange(int(duration * sfreq_ecg)) / sfreq_ecg
    eeg = 20e-6 * np.sin(2 * np.pi * 10 * t_eeg) + 5e-6 * rng.standard_normal(t_eeg.size)
    ecg = 1e-3 * np.sin(2 * np.pi * 1.1 * t_ecg) ** 21 + 2e-5 * rng.standard_normal(t_ecg.size)
    recording = Recording("s01", {"eeg": Signal(eeg, sfreq_eeg), "ecg": Signal(ecg, sfreq_ecg)})
    stages = rng.choice([S.W, S.N1, S.N2, S.N3, S.R, S.UNSCORED], size=n_epochs).astype(np.int8)
    return recording, Hypnogram(stages, 30.0, onset=4.0)


def test_config_defaults_follow_the_paper() -> None:
    config = PreprocessConfig()
    assert config.sfreq == 200.0
    assert config.samples_per_epoch == 6000
    assert config.channels == ("eeg", "ecg")
    assert config.clip == 20.0


def test_config_hash_covers_stored_arrays_only() -> None:
    base = PreprocessConfig()
    assert base.config_hash() == PreprocessConfig().config_hash()
    assert PreprocessConfig(stage_grouping="w-n-r").config_hash() == base.config_hash()
    assert PreprocessConfig(sfreq=250.0).config_hash() != base.config_hash()
    assert PreprocessConfig(eeg_band=None).config_hash() != base.config_hash()
    assert PreprocessConfig(channel_specs=(("eeg", "C4-A1"),)).config_hash() != base.config_hash()
    round_trip = PreprocessConfig.from_dict(json.loads(json.dumps(base.to_dict())))
    assert round_trip == base and round_trip.config_hash() == base.config_hash()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"eeg_band": (0.3, 120.0)}, "Nyquist"),
        ({"ecg_band": (40.0, 10.0)}, "l_freq < h_freq"),
        ({"scaling": "zscore"}, "scaling"),
        ({"channels": ()}, "channels"),
        ({"channels": ("eeg", "eeg")}, "duplicates"),
        ({"channel_specs": (("emg", "EMG"),)}, "not in channels"),
        ({"stage_grouping": "seven"}, "unknown stage grouping"),
        ({"epoch_length": 30.001}, "whole number of samples"),
        ({"dtype": "int16"}, "dtype"),
    ],
)
def test_config_rejects_bad_values(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        PreprocessConfig(**kwargs)


def test_config_from_dict_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="unknown keys.*'sfreqq'"):
        PreprocessConfig.from_dict({"sfreqq": 100})


def test_channel_request_uses_specs_then_adapter_defaults() -> None:
    class Adapter:
        default_channels = {"eeg": ("EEG C3-A2",), "ecg": ("ECG I",)}

    class Entry:
        adapter = Adapter()

    config = PreprocessConfig(channels=("eeg", "ecg", "C4-A1"), channel_specs=(("ecg", "ECG II"),))
    assert channel_request(config, Entry()) == {"eeg": ("EEG C3-A2",), "ecg": "ECG II", "C4-A1": "C4-A1"}


def test_one_recording_end_to_end() -> None:
    recording, hypnogram = _night()
    config = PreprocessConfig()
    epochs = preprocess_recording(recording, hypnogram, config)
    # epochs start at 4 s; 12 x 30 s fit in 367 s
    assert epochs.data.shape == (12, 2, 6000)
    assert epochs.data.dtype == np.float32
    assert epochs.channel_names == ["eeg", "ecg"]
    np.testing.assert_array_equal(epochs.stages, hypnogram.stages)
    np.testing.assert_allclose(epochs.onsets, 4.0 + 30.0 * np.arange(12))
    # the same steps by hand, for the EEG channel: resample, band-pass, robust scaling, cut at 4 s
    eeg = robust_scale(
        bandpass_filter(resample(recording["eeg"].data, 256, 200), 200.0, 0.3, 35.0), clip=20.0
    )
    np.testing.assert_allclose(epochs.data[3, 0], eeg[800 + 3 * 6000 : 800 + 4 * 6000], rtol=1e-5, atol=1e-5)
    # ECG went from 512 Hz to 200 Hz through its own band
    assert np.isfinite(epochs.data).all()
    labels = epochs.labels("w-l-d-r")
    assert ((labels == -1) == (hypnogram.stages == S.UNSCORED)).all()


def test_each_channel_is_filtered_as_its_modality_says() -> None:
    """The band-pass follows the channel's modality, given explicitly or defaulted once from the name."""
    recording, hypnogram = _night()
    recording = Recording(
        "s01",
        {"lead": recording["ecg"], "ECG II": recording["ecg"], "eeg": recording["eeg"]},
    )
    bands = {"eeg_band": (0.3, 5.0), "ecg_band": (0.3, 40.0)}
    default = PreprocessConfig(channels=("lead", "ECG II", "eeg"), sfreq=100.0, **bands)
    assert default.modalities == (("lead", "eeg"), ("ECG II", "ecg"), ("eeg", "eeg"))
    explicit = PreprocessConfig(
        channels=("lead", "ECG II", "eeg"), modalities=(("lead", "ecg"),), sfreq=100.0, **bands
    )
    assert explicit.modality_of("lead") == "ecg" and explicit.config_hash() != default.config_hash()
    a = preprocess_recording(recording, hypnogram, default).data
    b = preprocess_recording(recording, hypnogram, explicit).data
    # the same samples: filtered as EEG (0.3-5 Hz) by default, as ECG (0.3-40 Hz) when the modality says so
    np.testing.assert_array_equal(b[:, 0], b[:, 1])
    assert not np.allclose(a[:, 0], a[:, 1])
    assert PreprocessConfig(channels=("ecg", "ihr")).modalities == (("ecg", "ecg"), ("ihr", "hr"))
    with pytest.raises(ValueError, match=r"modalities: \{'eeg': 'emg'\} -- expected one of"):
        PreprocessConfig(modalities=(("eeg", "emg"),))
    narrowed = PreprocessConfig.from_dict({**explicit.to_dict(), "channels": ["lead"]})
    assert narrowed.modalities == (("lead", "ecg"),)


def test_nan_and_flat_signal_masks_epochs_with_a_warning() -> None:
    recording, hypnogram = _night(seed=1)
    hypnogram = Hypnogram(np.full(12, S.N2, dtype=np.int8), 30.0, onset=4.0)
    eeg = recording["eeg"].data.copy()
    eeg[int(50 * 256) : int(51 * 256)] = np.nan  # inside epoch 1 (34-64 s)
    eeg[int(200 * 256) : int(210 * 256)] = 0.0  # 10 s flat inside epoch 6 (184-214 s)
    recording.signals["eeg"] = Signal(eeg, 256.0)
    with pytest.warns(BadSignalWarning):
        epochs = preprocess_recording(recording, hypnogram)
    assert np.isfinite(epochs.data).all()
    masked = np.flatnonzero(epochs.stages == S.ARTEFACT).tolist()
    assert masked == [1, 6]
    assert (epochs.labels("w-n-r")[[1, 6]] == -1).all()


def _relative_rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)) / np.sqrt(np.mean(b**2)))


@pytest.mark.parametrize("value", ["flat", "saturated", "nan"])
@pytest.mark.parametrize("minutes", [5, 20])
def test_masked_stretch_leaves_the_other_epochs_unchanged(value: str, minutes: int) -> None:
    """A flat, saturated or missing stretch in a 1-h night changes the untouched epochs by < 1 % (RMS)."""
    recording, _ = _night(n_epochs=120, seed=2)
    hypnogram = Hypnogram(np.full(120, S.N2, dtype=np.int8), 30.0, onset=4.0)
    clean = preprocess_recording(recording, hypnogram)
    for name in ("eeg", "ecg"):
        x = recording[name].data.copy()
        sfreq = recording[name].sfreq
        stretch = slice(int(1000.3 * sfreq), int((1000.3 + 60 * minutes) * sfreq))
        x[stretch] = {"flat": 0.0, "saturated": 3.2e-3, "nan": np.nan}[value]
        recording.signals[name] = Signal(x, sfreq)
    with pytest.warns(BadSignalWarning):
        masked = preprocess_recording(recording, hypnogram)
    hit = masked.stages == S.ARTEFACT
    assert hit.sum() == 2 * minutes + 1  # the stretch is not aligned to the epochs
    keep = ~hit
    for c in range(2):
        assert _relative_rms(masked.data[keep, c], clean.data[keep, c]) < 0.01
    # the epochs right beside the stretch see no filter transient from its edges
    first, last = np.flatnonzero(hit)[[0, -1]]
    for e in (first - 1, last + 1):
        assert _relative_rms(masked.data[e], clean.data[e]) < 0.02


def test_masking_warning_is_given_once(caplog: pytest.LogCaptureFixture) -> None:
    recording, hypnogram = _night(seed=1)
    eeg = recording["eeg"].data.copy()
    eeg[int(200 * 256) : int(210 * 256)] = 0.0
    recording.signals["eeg"] = Signal(eeg, 256.0)
    with caplog.at_level("INFO"), pytest.warns(BadSignalWarning) as record:
        preprocess_recording(recording, hypnogram)
    assert len(record) == 1 and "flat signal" in str(record[0].message)
    assert "flat signal" not in caplog.text  # not logged as well


def test_bridge_bad_samples() -> None:
    from kdsleep.data.preprocess import bridge_bad_samples

    x = np.array([1.0, np.nan, 5.0, 5.0, 5.0, 2.0, np.nan])
    bad = np.array([False, True, False, True, True, False, True])
    np.testing.assert_allclose(bridge_bad_samples(x, bad), [1, 3, 5, 4, 3, 2, 2])
    with pytest.raises(ValueError, match="no usable sample"):
        rec, hyp = _night()
        rec.signals["ecg"] = Signal(np.zeros_like(rec["ecg"].data), 512.0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            preprocess_recording(rec, hyp)


def test_errors_name_the_problem() -> None:
    recording, hypnogram = _night()
    with pytest.raises(ValueError, match="20 s.*widen"):
        preprocess_recording(recording, Hypnogram(hypnogram.stages, 20.0), PreprocessConfig())
    with pytest.raises(KeyError, match=r"\['emg'\] missing; available channels: \['eeg', 'ecg'\]"):
        preprocess_recording(recording, hypnogram, PreprocessConfig(channels=("eeg", "emg")))
    flat = Recording("s02", {"eeg": Signal(np.zeros(10_000), 100.0), "ecg": Signal(np.ones(10_000), 100.0)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BadSignalWarning)
        with pytest.raises(ValueError, match="channel 'eeg'.*flat"):
            preprocess_recording(flat, Hypnogram(np.zeros(3, np.int8)))


def test_dataset_entries_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        dataset_entries("synthetic", tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no synthetic recordings"):
        dataset_entries("synthetic", tmp_path)
    with pytest.raises(ValueError, match="unknown dataset"):
        dataset_entries("nonsense", tmp_path)


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kdsleep.data.synthetic import generate_synthetic_psg

    folder = tmp_path_factory.mktemp("synthetic-psg")
    generate_synthetic_psg(folder, n_subjects=2, hours=0.3, seed=3, progress=False)
    return folder


def test_cli_preprocess_on_the_synthetic_default(
    synthetic_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "cache"
    argv = [
        "preprocess",
        "--data-dir",
        str(synthetic_dir),
        "--out",
        str(out),
        "--workers",
        "2",
        "--no-progress",
    ]
    assert main(argv) == 0
    root = out / PreprocessConfig().config_hash()
    manifest = json.loads((root / "manifest.json").read_text())
    assert sorted(manifest["recordings"]) == ["01-03-0001", "01-03-0002"]
    assert manifest["config"]["sfreq"] == 200.0
    assert "2 recordings" in capsys.readouterr().out
    data = np.load(root / "recordings" / "01-03-0001" / "data.npy", mmap_mode="r")
    assert data.shape[1:] == (2, 6000) and data.shape[0] >= 30
    # the parallel build equals an in-process one, byte for byte
    from kdsleep.data.cache import build_cache

    sequential = build_cache(
        dataset_entries("synthetic", synthetic_dir), tmp_path / "seq", n_workers=1, progress=False
    )
    for name in ("data.npy", "stages.npy", "onsets.npy"):
        for key in ("01-03-0001", "01-03-0002"):
            assert (root / "recordings" / key / name).read_bytes() == (
                sequential / "recordings" / key / name
            ).read_bytes()
    # a second run has nothing to do and changes nothing
    before = (root / "recordings" / "01-03-0001" / "data.npy").stat().st_mtime_ns
    assert main(argv[:-3] + ["--workers", "1", "--no-progress"]) == 0
    assert (root / "recordings" / "01-03-0001" / "data.npy").stat().st_mtime_ns == before


def test_cli_reprocesses_changed_recordings_and_names_another_folder(
    synthetic_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import shutil

    data = tmp_path / "data"
    shutil.copytree(synthetic_dir, data)
    out = tmp_path / "cache"
    argv = ["preprocess", "--data-dir", str(data), "--out", str(out), "--workers", "1", "--no-progress"]
    assert main(argv) == 0
    root = out / PreprocessConfig().config_hash()
    psg = next(data.rglob("01-03-0002 PSG.edf"))
    before = (root / "recordings" / "01-03-0002" / "data.npy").read_bytes()
    # the recording is replaced by one of the same size whose signal differs in one data record
    raw = bytearray(psg.read_bytes())
    raw[len(raw) // 2 : len(raw) // 2 + 4000] = bytes(4000)
    psg.write_bytes(bytes(raw))
    caplog.clear()
    with caplog.at_level("INFO"):
        assert main(argv) == 0
    assert f"re-processing 01-03-0002: source changed: {psg.absolute()}: content" in caplog.text
    assert "01-03-0001" not in caplog.text.split("re-processing")[-1]
    assert (root / "recordings" / "01-03-0002" / "data.npy").read_bytes() != before
    # the same cache given another folder: said once; unchanged copies are reused
    other = tmp_path / "other"
    shutil.copytree(synthetic_dir, other)
    caplog.clear()
    with caplog.at_level("INFO"):
        assert main(["preprocess", "--data-dir", str(other), *argv[3:]]) == 0
    assert "this cache was built from recordings in" in caplog.text and str(data) in caplog.text
    assert "re-processing 01-03-0001" not in caplog.text  # same content: reused
    assert "re-processing 01-03-0002: source changed" in caplog.text
    assert (root / "recordings" / "01-03-0002" / "data.npy").read_bytes() == before
    manifest = json.loads((root / "manifest.json").read_text())
    assert all(str(other) in s["path"] for m in manifest["recordings"].values() for s in m["sources"])


def test_cli_errors_are_one_line(synthetic_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["preprocess", "--data-dir", str(tmp_path / "nope"), "--out", str(tmp_path / "c")]) == 2
    assert "not found" in capsys.readouterr().err
    (tmp_path / "afile").write_text("")
    assert main(["preprocess", "--data-dir", str(synthetic_dir), "--out", str(tmp_path / "afile")]) == 2
    assert "--out" in (err := capsys.readouterr().err) and "exists and is not a folder" in err
    argv = ["preprocess", "--data-dir", str(synthetic_dir), "--out", str(tmp_path / "c"), "--no-progress"]
    assert main(argv + ["--eeg-band", "0.3", "150"]) == 2
    assert "Nyquist" in capsys.readouterr().err
    assert main(argv + ["--workers", "1", "--channels", "eeg=C4-A1", "ecg"]) == 2
    err = capsys.readouterr().err
    assert "C4-A1" in err and "available channels" in err


def test_package_import_is_cheap_and_exports_resolve() -> None:
    """``import kdsleep.data`` compiles nothing and pulls in neither numba nor torch; every export resolves."""
    code = (
        "import sys\n"
        "import kdsleep.data as d\n"
        "heavy = [m for m in ('numba', 'torch', 'mne') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
        "missing = [n for n in d.__all__ if getattr(d, n, None) is None]\n"
        "assert not missing, missing\n"
        "import kdsleep.data.resample\n"
        "assert callable(d.resample) and d.resample.__module__ == 'kdsleep.data.resample'\n"
    )
    repo = Path(__file__).resolve().parents[2]
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
