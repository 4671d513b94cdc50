"""The preprocessed cache: atomic, resumable builds; memory-mapped reads; the paired-window Dataset."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kdsleep.data import Hypnogram, Recording, Signal, SleepStage
from kdsleep.data.cache import (
    PairedWindowDataset,
    PreprocessedCache,
    build_cache,
    cache_root,
)
from kdsleep.data.preprocess import PreprocessConfig, preprocess_recording

S = SleepStage


class FakeEntry:
    """An in-memory dataset entry with the adapters' ``key`` / ``load`` interface."""

    def __init__(self, key: str, n_epochs: int = 40, seed: int = 0, fail: bool = False) -> None:
        self.key = key
        self.n_epochs = n_epochs
        self.seed = seed
        self.fail = fail
        self.loads = 0

    def load(self, channels, *, ecg_polarity=None, mask_bad=True) -> tuple[Recording, Hypnogram]:
        self.loads += 1
        if self.fail:
            raise OSError(f"{self.key}: truncated file")
        rng = np.random.default_rng(self.seed)
        sfreq = 128.0
        n = int((self.n_epochs * 30 + 3) * sfreq)
        t = np.arange(n) / sfreq
        eeg = np.sin(2 * np.pi * (5 + self.seed) * t) + 0.3 * rng.standard_normal(n)
        ecg = np.sin(2 * np.pi * 1.2 * t) ** 15 + 0.05 * rng.standard_normal(n)
        recording = Recording(self.key.split("/")[0], {"eeg": Signal(eeg, sfreq), "ecg": Signal(ecg, sfreq)})
        stages = rng.choice([S.W, S.N1, S.N2, S.N3, S.R], size=self.n_epochs).astype(np.int8)
        stages[:3] = S.UNSCORED
        return recording, Hypnogram(stages, 30.0, onset=1.0)


def _entries(n: int = 4, **kwargs) -> list[FakeEntry]:
    return [FakeEntry(f"sub{i:02d}", seed=i, **kwargs) for i in range(n)]


def _snapshot(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted((root / "recordings").rglob("*"))
        if p.is_file() and p.suffix == ".npy"
    }


CONFIG = PreprocessConfig(sfreq=100.0, ecg_band=(0.5, 40.0))


def test_build_and_read_back(tmp_path: Path) -> None:
    entries = _entries(3)
    root = build_cache(entries, tmp_path, CONFIG, progress=False)
    assert root == cache_root(tmp_path, CONFIG) == tmp_path / CONFIG.config_hash()
    cache = PreprocessedCache(tmp_path, CONFIG)
    assert cache.keys == ["sub00", "sub01", "sub02"]
    assert cache.config == CONFIG
    data = cache.epochs("sub01")
    assert isinstance(data, np.memmap)
    assert data.shape == (40, 2, 3000) and data.dtype == np.float32
    expected = preprocess_recording(*FakeEntry("sub01", seed=1).load(None), CONFIG)
    np.testing.assert_array_equal(np.asarray(data), expected.data)
    np.testing.assert_array_equal(cache.stages("sub01"), expected.stages)
    meta = cache.meta("sub01")
    assert meta["n_epochs"] == 40 and meta["channels"] == ["eeg", "ecg"]
    assert sum(meta["stage_counts"].values()) == 40 and meta["stage_counts"]["UNSCORED"] >= 3
    assert (cache.labels("sub01", "w-n-r")[:3] == -1).all()
    with pytest.raises(KeyError, match="no recording 'sub09'"):
        cache.meta("sub09")
    with pytest.raises(KeyError, match="no channel 'emg'"):
        cache.channel_index("sub01", "emg")


def test_interrupted_build_resumes_to_the_same_cache(tmp_path: Path) -> None:
    """Kill the build after k recordings (an exception from the progress hook), resume, compare."""
    reference = build_cache(_entries(), tmp_path / "reference", CONFIG, progress=False)

    class Interrupt(Exception):
        pass

    done: list[str] = []

    def stop_after_two(key: str) -> None:
        done.append(key)
        if len(done) == 2:
            raise Interrupt

    entries = _entries()
    with pytest.raises(Interrupt):
        build_cache(entries, tmp_path / "resumed", CONFIG, progress=False, on_recording_done=stop_after_two)
    root = cache_root(tmp_path / "resumed", CONFIG)
    manifest = json.loads((root / "manifest.json").read_text())
    assert sorted(manifest["recordings"]) == ["sub00", "sub01"]
    assert sorted(p.name for p in (root / "recordings").iterdir()) == ["sub00", "sub01"]
    # a crash in the middle of writing a third recording leaves only a hidden temporary folder
    (root / "recordings" / ".tmp-sub02.123.abcd").mkdir()
    (root / "recordings" / ".tmp-sub02.123.abcd" / "data.npy").write_bytes(b"\x93NUMPY partial")

    resumed = _entries()
    build_cache(resumed, tmp_path / "resumed", CONFIG, progress=False)
    assert [e.loads for e in resumed] == [0, 0, 1, 1]  # only the missing recordings were processed
    assert not any(p.name.startswith(".tmp") for p in (root / "recordings").iterdir())
    assert _snapshot(root) == _snapshot(reference)
    resumed_manifest = json.loads((root / "manifest.json").read_text())
    reference_manifest = json.loads((reference / "manifest.json").read_text())
    assert resumed_manifest == reference_manifest


def test_finished_recording_missing_from_manifest_is_adopted(tmp_path: Path) -> None:
    root = build_cache(_entries(2), tmp_path, CONFIG, progress=False)
    manifest = json.loads((root / "manifest.json").read_text())
    del manifest["recordings"]["sub01"]  # as if interrupted between the rename and the manifest write
    (root / "manifest.json").write_text(json.dumps(manifest))
    (root / "recordings" / "junk").mkdir()  # a folder without meta.json is not an entry
    entries = _entries(2)
    build_cache(entries, tmp_path, CONFIG, progress=False)
    assert [e.loads for e in entries] == [0, 0]
    assert PreprocessedCache(root).keys == ["sub00", "sub01"]
    assert not (root / "recordings" / "junk").exists()


def test_failing_recording_leaves_no_partial_entry(tmp_path: Path) -> None:
    entries = _entries(3)
    entries[1].fail = True
    with pytest.raises(OSError, match="sub01: truncated"):
        build_cache(entries, tmp_path, CONFIG, progress=False)
    root = cache_root(tmp_path, CONFIG)
    assert sorted(p.name for p in (root / "recordings").iterdir()) == ["sub00"]
    assert PreprocessedCache(root).keys == ["sub00"]


def test_bad_keys_and_config_mismatch(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="twice"):
        build_cache([FakeEntry("a"), FakeEntry("a")], tmp_path, CONFIG, progress=False)
    with pytest.raises(ValueError, match="safe folder name"):
        build_cache([FakeEntry("../evil")], tmp_path, CONFIG, progress=False)
    with pytest.raises(ValueError, match="n_workers"):
        build_cache([FakeEntry("a")], tmp_path, CONFIG, n_workers=0, progress=False)
    with pytest.raises(FileNotFoundError, match="kdsleep preprocess"):
        PreprocessedCache(tmp_path / "nothing")


def test_session_keys_and_compressed_storage(tmp_path: Path) -> None:
    entries = [FakeEntry("sub00/night1", seed=0), FakeEntry("sub00/night2", seed=1)]
    root = build_cache(entries, tmp_path, CONFIG, compress=True, progress=False)
    assert sorted(p.name for p in (root / "recordings").iterdir()) == ["sub00__night1", "sub00__night2"]
    assert (root / "recordings" / "sub00__night1" / "epochs.npz").exists()
    cache = PreprocessedCache(root)
    assert cache.keys == ["sub00/night1", "sub00/night2"]
    plain = build_cache(entries[:1], tmp_path / "plain", CONFIG, progress=False)
    np.testing.assert_array_equal(
        cache.epochs("sub00/night1"), PreprocessedCache(plain).epochs("sub00/night1")
    )


def test_paired_window_dataset(tmp_path: Path) -> None:
    root = build_cache(_entries(2), tmp_path, CONFIG, progress=False)
    cache = PreprocessedCache(root)
    ds = PairedWindowDataset(cache, window_epochs=10, stride=5, grouping="w-l-d-r")
    assert isinstance(ds, torch.utils.data.Dataset)
    assert len(ds) == 2 * 7  # starts 0, 5, ..., 30 in 40 epochs
    eeg, ecg, labels = ds[1]
    assert eeg.shape == ecg.shape == (1, 10 * 3000)
    assert eeg.dtype == torch.float32 and labels.dtype == torch.int64 and labels.shape == (10,)
    key, start = ds.window_key(1)
    assert (key, start) == ("sub00", 5)
    data = cache.epochs(key)
    np.testing.assert_array_equal(eeg.numpy()[0], np.asarray(data[5:15, 0]).reshape(-1))
    np.testing.assert_array_equal(ecg.numpy()[0], np.asarray(data[5:15, 1]).reshape(-1))
    np.testing.assert_array_equal(labels.numpy(), cache.labels(key, "w-l-d-r")[5:15])
    assert ds[0][2][:3].tolist() == [-1, -1, -1]  # unscored start
    # a 3-class view of the same cache; windows batch in a DataLoader
    ds3 = PairedWindowDataset(root, keys=["sub01"], window_epochs=35, grouping="w-n-r")
    assert len(ds3) == 1 and int(ds3[0][2].max()) <= 2
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch[0].shape == (4, 1, 30000) and batch[2].shape == (4, 10)


def test_window_longer_than_recording(tmp_path: Path) -> None:
    root = build_cache(
        [FakeEntry("short", n_epochs=12), FakeEntry("long", seed=1)], tmp_path, CONFIG, progress=False
    )
    with pytest.raises(ValueError, match="short: recording has 12 epochs, shorter than one window of 35"):
        PairedWindowDataset(root)
    ds = PairedWindowDataset(root, skip_short=True)
    assert len(ds) == 1 and ds.window_key(0) == ("long", 0)


def test_open_memory_maps_are_bounded(tmp_path: Path) -> None:
    root = build_cache(_entries(3), tmp_path, CONFIG, progress=False)
    cache = PreprocessedCache(root, max_open=2)
    first = np.asarray(cache.epochs("sub00")).copy()
    for key in cache.keys:
        cache.epochs(key)
    assert len(cache._opened) == 2 and "sub00" not in cache._opened
    np.testing.assert_array_equal(cache.epochs("sub00"), first)  # reopened on demand


def test_truncated_entry_is_reported(tmp_path: Path) -> None:
    root = build_cache(_entries(1), tmp_path, CONFIG, progress=False)
    np.save(root / "recordings" / "sub00" / "data.npy", np.zeros((3, 2, 3000), np.float32))
    with pytest.raises(ValueError, match="sub00.*manifest says"):
        PreprocessedCache(root).epochs("sub00")
