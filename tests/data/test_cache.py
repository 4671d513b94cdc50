"""The preprocessed cache: atomic, resumable builds; memory-mapped reads; the paired-window Dataset."""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from kdsleep.data import Hypnogram, Recording, Signal, SleepStage
from kdsleep.data.cache import DamagedCacheError, PreprocessedCache, build_cache, cache_root
from kdsleep.data.preprocess import PreprocessConfig, preprocess_recording
from kdsleep.data.windows import WindowDataset

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


def test_windows_over_the_cache(tmp_path: Path) -> None:
    """The cache is a window store: WindowDataset serves its EEG / ECG windows and class labels."""
    root = build_cache(_entries(2), tmp_path, CONFIG, progress=False)
    cache = PreprocessedCache(root)
    ds = WindowDataset(cache, window_epochs=10, stride=5, grouping="w-l-d-r")
    assert len(ds) == 2 * 7  # starts 0, 5, ..., 30 in 40 epochs
    eeg, ecg, labels = ds[1]
    assert eeg.shape == ecg.shape == (1, 10 * 3000)
    assert eeg.dtype == np.float32 and labels.dtype == np.int64 and labels.shape == (10,)
    key, start = ds.window_key(1)
    assert (key, start) == ("sub00", 5)
    data = cache.epochs(key)
    np.testing.assert_array_equal(eeg[0], np.asarray(data[5:15, 0]).reshape(-1))
    np.testing.assert_array_equal(ecg[0], np.asarray(data[5:15, 1]).reshape(-1))
    np.testing.assert_array_equal(labels, cache.labels(key, "w-l-d-r")[5:15])
    # a 3-class view of the same cache; windows batch in a DataLoader
    ds3 = WindowDataset(cache, keys=["sub01"], window_epochs=35, grouping="w-n-r")
    assert int(ds3[0][2].max()) <= 2
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch[0].shape == (4, 1, 30000) and batch[2].shape == (4, 10)


def test_window_longer_than_recording(tmp_path: Path) -> None:
    root = build_cache(
        [FakeEntry("short", n_epochs=12), FakeEntry("long", seed=1)], tmp_path, CONFIG, progress=False
    )
    ds = WindowDataset(PreprocessedCache(root))
    assert [ds.window_key(i) for i in range(len(ds))] == [("long", 0), ("long", 5)]  # "short" is left out


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
    with pytest.raises(DamagedCacheError, match=r"sub00/data\.npy: 72128 bytes, the entry recorded 960128"):
        PreprocessedCache(root).epochs("sub00")


class FileEntry(FakeEntry):
    """An entry read from a file on disk: its content (a number) seeds the recording."""

    def __init__(self, key: str, path: Path) -> None:
        super().__init__(key)
        self.signal_path = path
        self.hypnogram_path = None

    def load(self, channels, *, ecg_polarity=None, mask_bad=True) -> tuple[Recording, Hypnogram]:
        self.seed = int(self.signal_path.read_text())
        return super().load(channels, ecg_polarity=ecg_polarity, mask_bad=mask_bad)


def _file_entries(folder: Path, seeds: dict[str, int] | None = None) -> list[FileEntry]:
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for key, seed in (seeds or {}).items():
        (folder / f"{key}.txt").write_text(str(seed))
    for path in sorted(folder.glob("*.txt")):
        entries.append(FileEntry(path.stem, path))
    return entries


def test_changed_source_is_processed_again(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    data = tmp_path / "data"
    root = build_cache(_file_entries(data, {"a": 1, "b": 2}), tmp_path / "cache", CONFIG, progress=False)
    meta = PreprocessedCache(root).meta("a")
    (source,) = meta["sources"]
    assert source["path"] == str((data / "a.txt").absolute()) and source["size"] == 1
    # same size, same modification time, other content: the sampled hash sees it
    stat = (data / "a.txt").stat()
    (data / "a.txt").write_text("3")
    os.utime(data / "a.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns))
    entries = _file_entries(data)
    with caplog.at_level(logging.INFO, logger="kdsleep.data.cache"):
        build_cache(entries, tmp_path / "cache", CONFIG, progress=False)
    assert [e.loads for e in entries] == [1, 0]
    assert "re-processing a: source changed" in caplog.text and "a.txt: content changed" in caplog.text
    expected = preprocess_recording(*FakeEntry("a", seed=3).load(None), CONFIG)
    np.testing.assert_array_equal(PreprocessedCache(root).epochs("a"), expected.data)
    # another size
    (data / "b.txt").write_text("22")
    caplog.clear()
    entries = _file_entries(data)
    with caplog.at_level(logging.INFO, logger="kdsleep.data.cache"):
        build_cache(entries, tmp_path / "cache", CONFIG, progress=False)
    assert [e.loads for e in entries] == [0, 1]
    assert "b.txt: 2 bytes, the cached entry was made from 1 bytes" in caplog.text
    # touched only (new modification time, same content): reused, the new time recorded
    os.utime(data / "a.txt", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    entries = _file_entries(data)
    build_cache(entries, tmp_path / "cache", CONFIG, progress=False)
    assert [e.loads for e in entries] == [0, 0]
    assert PreprocessedCache(root).meta("a")["sources"][0]["mtime_ns"] == stat.st_mtime_ns + 10**9


def test_cache_built_from_another_folder(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    first = _file_entries(tmp_path / "first", {"a": 1, "b": 2, "c": 4})
    root = build_cache(first, tmp_path / "cache", CONFIG, progress=False)
    # a copy of one recording, another recording under the same name, and one recording less
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(tmp_path / "first" / "a.txt", other / "a.txt")
    (other / "b.txt").write_text("5")
    entries = _file_entries(other)
    with caplog.at_level(logging.INFO, logger="kdsleep.data.cache"):
        build_cache(entries, tmp_path / "cache", CONFIG, progress=False)
    assert "this cache was built from recordings in" in caplog.text and str(tmp_path / "first") in caplog.text
    assert [e.loads for e in entries] == [0, 1]  # the copy is reused, the other recording is not
    assert "re-processing c: no longer among the recordings given" in caplog.text
    cache = PreprocessedCache(root)
    assert cache.keys == ["a", "b"]
    assert cache.meta("a")["sources"][0]["path"] == str((other / "a.txt").absolute())
    assert cache.meta("b")["sources"][0]["path"] == str((other / "b.txt").absolute())
    expected = preprocess_recording(*FakeEntry("b", seed=5).load(None), CONFIG)
    np.testing.assert_array_equal(cache.epochs("b"), expected.data)


@pytest.mark.parametrize("damage", ["truncate", "delete-meta", "delete-stages", "flip-byte"])
def test_damaged_entry_is_rebuilt(tmp_path: Path, damage: str, caplog: pytest.LogCaptureFixture) -> None:
    root = build_cache(_entries(2), tmp_path, CONFIG, progress=False)
    reference = _snapshot(root)
    folder = root / "recordings" / "sub01"
    if damage == "truncate":
        with open(folder / "data.npy", "r+b") as fh:
            fh.truncate(5000)
        named = "sub01/data.npy: 5000 bytes"
    elif damage == "delete-meta":
        (folder / "meta.json").unlink()
        named = "sub01/meta.json is missing"
    elif damage == "delete-stages":
        (folder / "stages.npy").unlink()
        named = "sub01/stages.npy is missing"
    else:
        raw = bytearray((folder / "data.npy").read_bytes())
        raw[-7] ^= 0xFF
        (folder / "data.npy").write_bytes(bytes(raw))
        named = "sub01/data.npy: SHA-256 differs"
    if damage != "flip-byte":
        # reading it names the file instead of failing inside numpy
        with pytest.raises(DamagedCacheError, match=named.split(":")[0].replace(".", r"\.")):
            PreprocessedCache(root).epochs("sub01")
    entries = _entries(2)
    with caplog.at_level(logging.INFO, logger="kdsleep.data.cache"):
        build_cache(entries, tmp_path, CONFIG, progress=False, verify=damage == "flip-byte")
    assert named in caplog.text and "re-processing sub01: damaged entry" in caplog.text
    assert [e.loads for e in entries] == [0, 1]
    assert _snapshot(root) == reference


def test_unreadable_or_old_manifest(tmp_path: Path) -> None:
    root = build_cache(_entries(2), tmp_path, CONFIG, progress=False)
    (root / "manifest.json").write_text("{not json")
    with pytest.raises(DamagedCacheError, match=r"manifest\.json: unreadable cache manifest"):
        PreprocessedCache(root)
    entries = _entries(2)
    build_cache(entries, tmp_path, CONFIG, progress=False)
    assert [e.loads for e in entries] == [0, 0]  # the entries are adopted again from their meta.json
    assert PreprocessedCache(root).keys == ["sub00", "sub01"]
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["format_version"] = 1
    (root / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="format version 2"):
        PreprocessedCache(root)
    entries = _entries(2)
    build_cache(entries, tmp_path, CONFIG, progress=False)
    assert [e.loads for e in entries] == [1, 1]


_ORPHAN_SCRIPT = """
import os, sys, time
from pathlib import Path
import numpy as np
from kdsleep.data import Hypnogram, Recording, Signal
from kdsleep.data.cache import build_cache
from kdsleep.data.preprocess import PreprocessConfig

class SlowEntry:
    def __init__(self, key, folder):
        self.key, self.folder = key, folder

    def load(self, channels, *, ecg_polarity=None, mask_bad=True):
        Path(self.folder, f"{os.getpid()}.pid").write_text(self.key)
        time.sleep(120)
        raise RuntimeError("not reached")

if __name__ == "__main__":
    folder = sys.argv[1]
    entries = [SlowEntry(f"r{i}", folder) for i in range(4)]
    build_cache(entries, Path(folder) / "cache", PreprocessConfig(), n_workers=2, progress=False)
"""


def _children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        text = (task / "children").read_text().split()
        found.update(int(p) for p in text)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_workers_die_with_the_parent(tmp_path: Path) -> None:
    script = tmp_path / "build.py"
    script.write_text(_ORPHAN_SCRIPT)
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[2]), OMP_NUM_THREADS="1")
    parent = subprocess.Popen([sys.executable, str(script), str(tmp_path)], env=env)
    try:
        deadline = time.monotonic() + 120
        while len(list(tmp_path.glob("*.pid"))) < 2:
            assert parent.poll() is None, "the build ended early"
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.2)
        children = _children(parent.pid)
        workers = {int(p.stem) for p in tmp_path.glob("*.pid")}
        assert workers <= children and len(children) >= 3  # two workers and the resource tracker
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 20
        while any(_alive(pid) for pid in children) and time.monotonic() < deadline:
            time.sleep(0.2)
        survivors = [pid for pid in children if _alive(pid)]
        assert not survivors, f"processes outlived their parent: {survivors}"
    finally:
        if parent.poll() is None:
            parent.kill()
            parent.wait()


def test_recordings_added_in_a_subfolder_are_not_another_folder(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    first = _file_entries(tmp_path / "data" / "SS1", {"a": 1})
    build_cache(first, tmp_path / "cache", CONFIG, progress=False)
    more = _file_entries(tmp_path / "data" / "SS1") + _file_entries(tmp_path / "data" / "SS3", {"b": 2})
    with caplog.at_level(logging.INFO, logger="kdsleep.data.cache"):
        build_cache(more, tmp_path / "cache", CONFIG, progress=False)
    assert "built from recordings in" not in caplog.text
    assert [e.loads for e in more] == [0, 1]


def test_malformed_manifest_entry_and_garbage_meta(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    root = build_cache(_entries(3), tmp_path, CONFIG, progress=False)
    manifest = json.loads((root / "manifest.json").read_text())
    manifest["recordings"]["sub00"]["folder"] = ""  # must not make the build touch other folders
    (root / "manifest.json").write_text(json.dumps(manifest))
    (root / "recordings" / "sub01" / "meta.json").write_text("garbage")
    entries = _entries(3)
    with caplog.at_level(logging.INFO, logger="kdsleep.data.cache"):
        build_cache(entries, tmp_path, CONFIG, progress=False)
    assert "entry 'sub00' is malformed" in caplog.text
    assert "sub01/meta.json differs from the manifest" in caplog.text
    assert [e.loads for e in entries] == [0, 1, 0]  # sub00 adopted again from its own meta.json
    assert PreprocessedCache(root).keys == ["sub00", "sub01", "sub02"]
