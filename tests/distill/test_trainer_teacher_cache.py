"""The training loop with stored teacher outputs: same losses as the live teacher, built once, fallback."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch

from kdsleep.data.windows import MemoryStore, WindowDataset
from kdsleep.distill import trainer as trainer_module
from kdsleep.distill.teacher_cache import TeacherCache
from kdsleep.distill.trainer import StageSpec, TrainSettings, train_stage
from kdsleep.models import UTime

SHAPE = {"sfreq": 8.0, "n_epochs": 5, "pools": [2, 2, 2, 3, 5], "filters": [2, 3, 3, 4, 4]}
SPE = 240  # 30 s at 8 Hz
META = {"channel": "ecg", "grouping": "w-l-d-r", "preprocess": {}}


def _store() -> MemoryStore:
    rng = np.random.default_rng(0)
    store = MemoryStore()
    for k in range(3):
        n = 25
        data = rng.standard_normal((n, 2, SPE)).astype(np.float32)
        stages = rng.integers(0, 5, n).astype(np.int8)
        store.add(f"r{k}", data, stages, ["eeg", "ecg"], subject=f"s{k}")
    return store


def _datasets(store: MemoryStore) -> tuple[WindowDataset, WindowDataset]:
    inputs = {"eeg": ("eeg",), "ecg": ("ecg",)}
    train = WindowDataset(store, ["r0", "r1"], inputs=inputs, window_epochs=5, stride=2, grouping="w-l-d-r")
    val = WindowDataset(store, ["r2"], inputs=inputs, window_epochs=5, grouping="w-l-d-r", evaluation=True)
    return train, val


def _model(seed: int) -> UTime:
    torch.manual_seed(seed)
    return UTime(1, 4, **SHAPE)


def _train(
    out: Path,
    kind: str,
    *,
    cache: bool,
    train_set=None,
    epochs: int = 2,
    resume: bool = False,
    on_epoch_end=None,
    teacher_modality: str = "eeg",
    **settings,
):
    store = _store()
    train, val = _datasets(store)
    spec = StageSpec(
        name=kind,
        kind=kind,
        modality="ecg",
        out_dir=out,
        epochs=epochs,
        weight_kd=0.5 if kind == "final" else 0,
        teacher_modality=teacher_modality,
    )
    result = train_stage(
        spec,
        _model(1),
        train_set=train if train_set is None else train_set,
        val_set=val,
        class_weights=torch.ones(4),
        teacher=_model(0).eval(),
        settings=TrainSettings(batch_size=4, seed=3, teacher_cache=cache, **settings),
        checkpoint_meta=META,
        device=torch.device("cpu"),
        resume=resume,
        progress=False,
        on_epoch_end=on_epoch_end,
    )
    return result


def _log(out: Path) -> list[dict[str, float]]:
    with open(out / "log.csv", encoding="utf-8") as fh:
        return [{k: float(v) for k, v in row.items()} for row in csv.DictReader(fh)]


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize(
    ("kind", "settings"),
    [
        ("at", {}),
        ("at", {"at_mode": "joshi", "max_train_windows": 6}),
        ("final", {"temperature": 2.0}),
        # the self-distillation control: the teacher is an ECG model and reads the window's ECG
        ("final", {"teacher_modality": "ecg"}),
    ],
)
def test_cached_teacher_gives_the_live_losses(tmp_path, kind, settings):
    live = tmp_path / "live"
    cached = tmp_path / "cached"
    _train(live, kind, cache=False, **settings)
    _train(cached, kind, cache=True, **settings)
    assert not (live / "teacher-cache").exists()
    folders = [p for p in (cached / "teacher-cache").iterdir() if p.is_dir()]
    assert len(folders) == 1 and (folders[0] / "meta.json").exists()
    a, b = _log(live), _log(cached)
    assert len(a) == len(b) == 2
    # logits are stored exactly: the same losses. The AT loss agrees within 1e-4 relative at equal weights
    # (test below); with updates the two runs drift apart a little, as Adam's first steps move every
    # weight by about lr whatever the size of its gradient (measured: at most 1.8e-3 relative after two
    # epochs, 12 steps)
    rtol = 1e-6 if kind == "final" else 1e-2
    for row_a, row_b in zip(a, b, strict=True):
        for column in ("train_loss", "val_loss"):
            assert row_b[column] == pytest.approx(row_a[column], rel=rtol, abs=1e-7), (column, row_a, row_b)


@pytest.mark.parametrize("settings", [{}, {"at_distance": "l2"}, {"at_mode": "joshi"}])
def test_step_losses_at_equal_weights_within_float16_tolerance(tmp_path, settings):
    # lr = 0: every step sees the same student weights, so the epoch's mean training loss compares the
    # cached and the live teacher batch by batch, within teacher_cache's stated tolerance (1e-4 relative)
    live, cached = tmp_path / "live", tmp_path / "cached"
    _train(live, "at", cache=False, epochs=1, lr=0.0, **settings)
    _train(cached, "at", cache=True, epochs=1, lr=0.0, **settings)
    assert _log(cached)[0]["train_loss"] == pytest.approx(_log(live)[0]["train_loss"], rel=1e-4)


def test_cache_is_reused_on_resume(tmp_path):
    out = tmp_path / "stage"

    class Stop(Exception):
        pass

    def stop(epoch):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        _train(out, "at", cache=True, on_epoch_end=stop)
    (folder,) = [p for p in (out / "teacher-cache").iterdir() if p.is_dir()]
    before = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}
    built = []
    original = TeacherCache.build.__func__  # type: ignore[attr-defined]

    def spy(cls, *args, **kwargs):
        cache = original(cls, *args, **kwargs)
        built.append(cache.root)
        return cache

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TeacherCache, "build", classmethod(spy))
        result = _train(out, "at", cache=True, resume=True)
    assert result.epochs_run == 2
    assert built == [folder]
    after = {p.name: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.iterdir()}
    assert after == before


def test_non_deterministic_windows_fall_back_to_the_live_teacher(tmp_path, monkeypatch):
    store = _store()
    train, _ = _datasets(store)
    train.random_windows = True  # type: ignore[attr-defined]
    lookups = []
    monkeypatch.setattr(TeacherCache, "lookup", lambda self, *a, **k: lookups.append(1))
    _train(tmp_path / "random", "at", cache=True, train_set=train, epochs=1)
    assert not (tmp_path / "random" / "teacher-cache").exists()
    assert lookups == []
    train.random_windows = False  # type: ignore[attr-defined]
    train.augment = lambda x: x  # type: ignore[attr-defined]
    _train(tmp_path / "augment", "at", cache=True, train_set=train, epochs=1)
    assert not (tmp_path / "augment" / "teacher-cache").exists()


def test_teacher_cache_setting_from_config():
    from kdsleep.distill.config import TrainConfig

    assert TrainSettings.from_config(TrainConfig()).teacher_cache is True
    assert TrainSettings.from_config(TrainConfig.from_dict({"teacher_cache": False})).teacher_cache is False
    assert trainer_module.TrainSettings().teacher_cache is True


def test_teacher_cache_in_toml(tmp_path):
    from kdsleep.distill.config import ConfigError, load_config

    path = tmp_path / "c.toml"
    path.write_text("[training]\nteacher_cache = false\n")
    assert load_config(path).training.teacher_cache is False
    path.write_text('[training]\nteacher_cache = "no"\n')
    with pytest.raises(ConfigError, match="teacher_cache"):
        load_config(path)


def test_ecg_teacher_reads_the_ecg_in_every_path(tmp_path):
    """An ECG teacher (the self-distillation control) gets each window's ECG, never its EEG: when its
    outputs are stored in the cache, in a live training step and in validation."""
    from kdsleep.distill.stage_loss import StageLoss

    train, val = _datasets(_store())
    spec = StageSpec(
        name="self",
        kind="final",
        modality="ecg",
        out_dir=tmp_path,
        epochs=1,
        weight_kd=0.5,
        teacher_modality="ecg",
    )
    eeg_windows = {train[i][0].tobytes() for i in range(len(train))} | {
        val[i][0].tobytes() for i in range(len(val))
    }
    ecg_windows = {train[i][1].tobytes() for i in range(len(train))} | {
        val[i][1].tobytes() for i in range(len(val))
    }
    assert not eeg_windows & ecg_windows
    for cache in (True, False):
        teacher = _model(0).eval()
        seen: list[np.ndarray] = []
        teacher.register_forward_pre_hook(
            lambda module, args, seen=seen: seen.extend(args[0].numpy().astype(np.float32))
        )
        loss = StageLoss.build(
            spec,
            _model(1),
            teacher=teacher,
            class_weights=torch.ones(4),
            settings=TrainSettings(batch_size=4, teacher_cache=cache, amp=False),
            device=torch.device("cpu"),
            train_set=train,
            cache_dir=tmp_path / "cache",
            progress=False,
        )
        assert (loss.cache is not None) == cache
        items = [train[i] for i in range(4)]
        batch = [torch.stack([torch.as_tensor(v) for v in column]) for column in zip(*items, strict=True)]
        if cache:
            batch.append(torch.arange(4))
        loss.train(tuple(batch), loss.model)
        val_items = [val[i] for i in range(2)]
        loss.validate(
            tuple(torch.stack([torch.as_tensor(v) for v in c]) for c in zip(*val_items, strict=True))
        )
        inputs = {window.tobytes() for window in seen}
        assert inputs and inputs <= ecg_windows, f"cache={cache}: the ECG teacher read something else"
