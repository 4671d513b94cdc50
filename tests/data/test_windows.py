"""Window starts, the merge rule and the window dataset."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from kdsleep.data.stages import SleepStage
from kdsleep.data.windows import (
    MemoryStore,
    WindowDataset,
    WindowStore,
    covering_starts,
    merge_windows,
    n_windows,
    owned_positions,
    window_starts,
)


def test_whole_window_starts() -> None:
    assert window_starts(100).tolist() == [0, 35]
    assert window_starts(100, 35, stride=10).tolist() == [0, 10, 20, 30, 40, 50, 60]
    assert n_windows(35) == 1
    assert window_starts(5, 1).tolist() == [0, 1, 2, 3, 4]


def test_recording_shorter_than_one_window() -> None:
    with pytest.raises(ValueError, match="night3: recording has 20 epochs, shorter than one window of 35"):
        window_starts(20, source="night3")
    with pytest.raises(ValueError, match="night3: recording has 3 epochs"):
        covering_starts(3, 5, source="night3")
    with pytest.raises(ValueError, match="stride"):
        window_starts(100, 35, stride=0)
    with pytest.raises(ValueError, match="window_epochs"):
        covering_starts(100, 0)


@pytest.mark.parametrize("n_epochs", [35, 36, 69, 70, 71, 100, 1000])
@pytest.mark.parametrize("stride", [None, 3, 35])
def test_covering_starts_cover_every_epoch(n_epochs: int, stride: int | None) -> None:
    starts = covering_starts(n_epochs, 35, stride)
    covered = np.zeros(n_epochs, dtype=int)
    for s in starts:
        assert 0 <= s <= n_epochs - 35
        covered[s : s + 35] += 1
    assert covered.min() >= 1
    assert starts[-1] == n_epochs - 35
    assert np.all(np.diff(starts) > 0)


def test_covering_starts_add_one_end_window() -> None:
    assert covering_starts(23, 5).tolist() == [0, 5, 10, 15, 18]
    assert covering_starts(20, 5).tolist() == [0, 5, 10, 15]


def test_owned_positions_partition_the_epochs_by_centrality() -> None:
    starts = covering_starts(23, 5)
    owned = owned_positions(starts, 5)
    counts = np.zeros(23, dtype=int)
    for s, mask in zip(starts, owned, strict=True):
        counts[s + np.flatnonzero(mask)] += 1
    assert counts.tolist() == [1] * 23
    # epochs 18, 19 lie at positions 3, 4 of window 15 and 0, 1 of window 18: centrality 1 vs 0 and 0 vs 1
    assert owned[3].tolist() == [True, True, True, True, False]
    assert owned[4].tolist() == [False, True, True, True, True]


def test_merge_takes_the_most_central_window() -> None:
    starts = np.array([0, 2])
    outputs = np.array([[10, 11, 12, 13, 14], [20, 21, 22, 23, 24]])
    # epoch 2: position 2 of window 0 (centrality 2) vs position 0 of window 1 (0) -> window 0
    # epoch 3: position 3 (1) vs 1 (1) -> tie, the earlier window; epoch 4: position 4 (0) vs 2 (2) -> window 1
    assert merge_windows(7, starts, outputs).tolist() == [10, 11, 12, 13, 22, 23, 24]
    rows = np.arange(20, dtype=np.float32).reshape(2, 5, 2)  # e.g. probability rows
    merged = merge_windows(8, starts, rows, np.nan)
    assert merged.shape == (8, 2) and merged[4].tolist() == rows[1, 2].tolist() and np.isnan(merged[7]).all()
    assert merge_windows(9, [0], outputs[:1]).tolist() == [10, 11, 12, 13, 14, -1, -1, -1, -1]
    with pytest.raises(ValueError, match="runs past"):
        merge_windows(5, [2], outputs[:1])


def _store(lengths=(23, 12, 3), spe: int = 4) -> MemoryStore:
    store = MemoryStore()
    for k, n in enumerate(lengths):
        # every sample carries its epoch number (channel 0) and minus it (channel 1)
        epoch = np.repeat(np.arange(n, dtype=np.float32)[:, None], spe, axis=1)
        data = np.stack([epoch, -epoch], axis=1)
        stages = np.array([i % 5 for i in range(n)], dtype=np.int8)
        stages[0] = SleepStage.UNSCORED
        store.add(f"r{k}", data, stages, ["eeg", "ihr"], subject=f"s{k}")
    return store


def test_memory_store_is_a_window_store() -> None:
    store = _store()
    assert isinstance(store, WindowStore)
    assert store.keys == ["r0", "r1", "r2"]
    assert store.meta("r1")["subject"] == "s1"
    with pytest.raises(KeyError, match="no channel 'ecg'"):
        store.channel_index("r0", "ecg")
    with pytest.raises(ValueError, match="one name per channel"):
        store.add("bad", np.zeros((3, 2, 4)), np.zeros(3), ["eeg"])


def test_training_windows_align_samples_and_labels() -> None:
    store = _store()
    ds = WindowDataset(
        store, inputs={"eeg": ("eeg",), "ecg": ("ihr",)}, window_epochs=5, stride=2, grouping="aasm-5"
    )
    assert {ds.window_key(i)[0] for i in range(len(ds))} == {"r0", "r1"}  # r2 is shorter than a window
    assert ds.starts("r0").tolist() == [0, 2, 4, 6, 8, 10, 12, 14, 16, 18]
    for i in range(len(ds)):
        eeg, ecg, labels = ds[i]
        key, start = ds.window_key(i)
        assert eeg.shape == ecg.shape == (1, 20) and eeg.dtype == np.float32 and labels.dtype == np.int64
        assert np.all(eeg[0].reshape(5, 4) == np.arange(start, start + 5)[:, None])
        assert np.all(ecg == -eeg)
        assert labels.tolist() == store.labels(key, "aasm-5")[start : start + 5].tolist()
    eeg, ecg, labels = next(iter(DataLoader(ds, batch_size=3)))
    assert isinstance(eeg, torch.Tensor) and eeg.shape == (3, 1, 20) and labels.dtype == torch.int64


def test_evaluation_windows_score_every_epoch_once() -> None:
    """Nights whose length is not a multiple of the window: the tail is scored, overlaps only once."""
    store = _store(lengths=(23, 12))
    ds = WindowDataset(
        store, inputs={"eeg": ("eeg",), "ecg": ("ihr",)}, window_epochs=5, grouping="w-n-r", evaluation=True
    )
    assert ds.starts("r0").tolist() == [0, 5, 10, 15, 18]
    assert ds.starts("r1").tolist() == [0, 5, 7]
    for key in ("r0", "r1"):
        scored = np.zeros(store.meta(key)["n_epochs"], dtype=int)
        for i in range(len(ds)):
            k, start = ds.window_key(i)
            if k != key:
                continue
            labels = ds[i][2]
            for j in np.flatnonzero(labels >= 0):
                scored[start + j] += 1
        expected = (store.labels(key, "w-n-r") >= 0).astype(int)
        assert scored.tolist() == expected.tolist()
    # per-window predictions (here: the epoch number) merge back into one value per epoch
    outputs = np.stack([np.arange(s, s + 5) for s in (ds.window_key(i)[1] for i in range(len(ds)))])
    merged = ds.merge(outputs)
    assert merged["r0"].tolist() == list(range(23))
    assert merged["r1"].tolist() == list(range(12))
    assert ds.epoch_labels("r0").tolist() == store.labels("r0", "w-n-r").tolist()


def test_a_modality_without_channels_reads_zeros() -> None:
    ds = WindowDataset(_store(), inputs={"ecg": ("ihr",)}, window_epochs=5, grouping="w-n-r")
    eeg, ecg, _ = ds[0]
    assert not eeg.any() and ecg.shape == (1, 20)
