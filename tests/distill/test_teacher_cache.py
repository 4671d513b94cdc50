"""Stored teacher outputs against the live teacher: equality within tolerance, keys, damage, resumption."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kdsleep import ops
from kdsleep.distill.teacher_cache import (
    DamagedTeacherCacheError,
    TeacherCache,
    TeacherCacheKey,
    WithIndex,
    attention_transfer_from_maps,
    teacher_fingerprint,
    teacher_inputs_are_fixed,
    window_identities,
)
from kdsleep.models import FeatureTaps, UTime

SMALL = {"sfreq": 50.0, "n_epochs": 5, "pools": [5, 5, 3, 2, 2], "filters": [8, 16, 16, 32, 32]}


def _models(seed: int = 0, **shape):
    torch.manual_seed(seed)
    shape = shape or SMALL
    return UTime(1, 4, **shape).eval(), UTime(1, 4, **shape).train()


def _windows(n: int, n_times: int, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    return [
        (torch.randn(1, n_times, generator=g), torch.randn(1, n_times, generator=g), torch.zeros(5).long())
        for _ in range(n)
    ]


class _Keyed(list):
    """A list of windows that names them like WindowDataset."""

    window_epochs = 5
    eeg_channel = "eeg"

    def window_key(self, i):
        return (f"night{i // 4}", 5 * (i % 4))


def _live(teacher, student, windows, idx):
    eeg = torch.stack([windows[i][0] for i in idx])
    ecg = torch.stack([windows[i][1] for i in idx])
    with torch.no_grad():
        logits, maps = teacher.features(eeg, detach=True)
    with FeatureTaps(student, student.tap_names) as taps:
        student(ecg)
    return logits, maps, taps.features


def _grads(loss, feats):
    return torch.autograd.grad(loss, feats, retain_graph=True)


def _rel(a, b):
    return max(float((x - y).norm() / x.norm().clamp_min(1e-30)) for x, y in zip(a, b, strict=True))


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def setup(tmp_path):
    teacher, student = _models()
    windows = _Keyed(_windows(10, teacher.n_times))
    return teacher, student, windows, tmp_path


@pytest.mark.parametrize("dtype", ["float16", "float32"])
@pytest.mark.parametrize("backend", ["fused", "torch"])
@pytest.mark.parametrize(
    "mode, distance",
    [("canonical", "squared"), ("canonical", "l2"), ("canonical", "squared_l2"), ("joshi", "squared")],
)
def test_cached_equals_live(setup, dtype, backend, mode, distance):
    teacher, student, windows, folder = setup
    cache = TeacherCache.build(teacher, windows, folder, batch_size=4, dtype=dtype)
    idx = [7, 2, 9]
    live_logits, live_maps, feats = _live(teacher, student, windows, idx)
    maps, logits = cache.lookup(idx, mode=mode)
    assert torch.equal(logits, live_logits)  # float32, as the teacher computes them

    weights = student.joshi_tap_weights() if mode == "joshi" else None
    if distance == "squared_l2":
        live = ops.attention_transfer_loss(
            feats, live_maps, distance="squared", weights=[s.shape[2] for s in feats]
        )
    elif mode == "joshi":
        live = ops.attention_transfer_loss(feats, live_maps, mode="joshi", weights=weights)
    else:
        live = ops.attention_transfer_loss(feats, live_maps, distance=distance)
    cached = attention_transfer_from_maps(
        feats, maps, distance=distance, mode=mode, weights=weights, backend=backend
    )
    loss_tol, grad_tol = (1e-4, 2e-3) if dtype == "float16" else (1e-5, 1e-4)
    if mode == "joshi" and dtype == "float16":
        # the L1 gradient is sign(q_s - q_t): it flips where student and teacher agree within float16 rounding
        grad_tol = 5e-2
    assert float(cached.detach()) == pytest.approx(float(live.detach()), rel=loss_tol)
    assert _rel(_grads(live, feats), _grads(cached, feats)) < grad_tol


def test_maps_equal_normalised_teacher_maps(setup):
    teacher, student, windows, folder = setup
    cache = TeacherCache.build(teacher, windows, folder, batch_size=3)
    maps, _ = cache.lookup([0, 5])
    _, live_maps, _ = _live(teacher, student, windows, [0, 5])
    for m, f in zip(maps, live_maps, strict=True):
        q = torch.nn.functional.normalize(ops.reference.attention_map(f), dim=1)
        assert m.shape == q.shape
        torch.testing.assert_close(m, q, rtol=2**-10, atol=1e-7)


def test_paper_size_tolerance(tmp_path):
    """Full U-Time, 35 windows at 200 Hz: the float16 cache is within the documented tolerance."""
    torch.manual_seed(0)
    teacher, student = UTime(1, 4).eval(), UTime(1, 4).train()
    windows = _windows(2, teacher.n_times)
    cache = TeacherCache.build(teacher, windows, tmp_path, window_ids=["a", "b"], batch_size=2)
    live_logits, live_maps, feats = _live(teacher, student, windows, [0, 1])
    maps, logits = cache.lookup([0, 1])
    assert torch.equal(logits, live_logits)
    live = ops.attention_transfer_loss(feats, live_maps, distance="squared")
    cached = attention_transfer_from_maps(feats, maps, distance="squared")
    assert float(cached.detach()) == pytest.approx(float(live.detach()), rel=1e-4)
    assert _rel(_grads(live, feats), _grads(cached, feats)) < 2e-3
    # the ops' own name of the same distance is accepted too
    alias = attention_transfer_from_maps(feats, maps, distance="squared_mean")
    assert float(alias.detach()) == float(cached.detach())


def test_second_build_opens_without_teacher_forward(setup, monkeypatch):
    teacher, _, windows, folder = setup
    first = TeacherCache.build(teacher, windows, folder, batch_size=4)
    monkeypatch.setattr(teacher, "features", lambda *a, **k: pytest.fail("teacher ran again"))
    second = TeacherCache.build(teacher, windows, folder, batch_size=4)
    assert second.root == first.root


def test_key_changes_with_teacher_data_and_settings(setup):
    teacher, _, windows, _ = setup
    base = TeacherCacheKey.for_run(teacher, windows)
    other_teacher, _ = _models(seed=1)
    assert TeacherCacheKey.for_run(other_teacher, windows).digest != base.digest
    # one weight, or one batch-norm statistic, changed
    changed, _ = _models()
    with torch.no_grad():
        next(changed.parameters()).view(-1)[0] += 1e-6
    assert teacher_fingerprint(changed) != teacher_fingerprint(teacher)
    changed, _ = _models()
    running = next(b for n, b in changed.named_buffers() if n.endswith("running_mean"))
    running[0] += 1e-6
    assert teacher_fingerprint(changed) != teacher_fingerprint(teacher)
    assert teacher_fingerprint(_models()[0]) == teacher_fingerprint(teacher)
    # other windows, other order, other window settings, other p / dtype
    ids = window_identities(windows)
    assert TeacherCacheKey.for_run(teacher, windows, window_ids=ids[::-1]).digest != base.digest
    assert TeacherCacheKey.for_run(teacher, windows, window_ids=ids).digest == base.digest
    shorter = _Keyed(windows)
    shorter.window_epochs = 3
    assert TeacherCacheKey.for_run(teacher, shorter).digest != base.digest
    assert TeacherCacheKey.for_run(teacher, windows, settings={"eeg_channel": "c4"}).digest != base.digest
    assert TeacherCacheKey.for_run(teacher, windows, p=3.0).digest != base.digest
    assert TeacherCacheKey.for_run(teacher, windows, dtype="float32").digest != base.digest


def test_changed_teacher_is_not_served_from_cache(setup):
    teacher, student, windows, folder = setup
    TeacherCache.build(teacher, windows, folder, batch_size=4)
    with torch.no_grad():
        teacher.classifier.bias.add_(1.0)
    cache = TeacherCache.build(teacher, windows, folder, batch_size=4)
    live_logits, _, _ = _live(teacher, student, windows, [3])
    assert torch.equal(cache.lookup([3])[1], live_logits)
    assert len([p for p in folder.iterdir() if p.is_dir()]) == 2


def test_window_identities_needed(setup):
    teacher, _, windows, folder = setup
    with pytest.raises(TypeError, match="window_ids"):
        TeacherCache.build(teacher, list(windows), folder)
    with pytest.raises(ValueError, match="window_ids"):
        TeacherCache.build(teacher, list(windows), folder, window_ids=["a"])


@pytest.mark.parametrize("damage", ["flip", "truncate", "meta"])
def test_damaged_cache_is_detected_and_rebuilt(setup, damage):
    teacher, _, windows, folder = setup
    cache = TeacherCache.build(teacher, windows, folder, batch_size=4)
    expected = cache.lookup([1, 8])
    key, root = cache.key, cache.root
    del cache
    target = root / "map_10.npy"
    if damage == "flip":
        data = bytearray(target.read_bytes())
        data[-7] ^= 0x40
        target.write_bytes(bytes(data))
    elif damage == "truncate":
        target.write_bytes(target.read_bytes()[:-100])
    else:
        meta = json.loads((root / "meta.json").read_text())
        meta["key"]["n_windows"] = 3
        (root / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(DamagedTeacherCacheError, match="map_10|another key"):
        TeacherCache.open(folder, key)
    rebuilt = TeacherCache.build(teacher, windows, folder, batch_size=4)
    maps, logits = rebuilt.lookup([1, 8])
    assert torch.equal(logits, expected[1])
    assert all(torch.equal(a, b) for a, b in zip(maps, expected[0], strict=True))


def test_interrupted_build_resumes(setup):
    teacher, _, windows, folder = setup
    reference = TeacherCache.build(teacher, windows, folder / "ref", batch_size=3)

    class Stop(Exception):
        pass

    def interrupt(chunk):
        if chunk == 1:
            raise Stop

    with pytest.raises(Stop):
        TeacherCache.build(teacher, windows, folder, batch_size=3, on_chunk=interrupt)
    key = TeacherCacheKey.for_run(teacher, windows)
    with pytest.raises(FileNotFoundError):
        TeacherCache.open(folder, key)  # no meta.json: never read half a cache
    calls = []
    original = teacher.features

    def counting(x, **kwargs):
        calls.append(len(x))
        return original(x, **kwargs)

    teacher.features = counting
    resumed = TeacherCache.build(teacher, windows, folder, batch_size=3)
    assert sum(calls) == 10 - 6  # chunks 0 and 1 (windows 0-5) were not recomputed
    assert not (resumed.root / ".partial").exists()
    for a, b in zip(resumed.lookup(range(10))[0], reference.lookup(range(10))[0], strict=True):
        assert torch.equal(a, b)


def test_lookup_order_device_and_bounds(setup):
    teacher, _, windows, folder = setup
    cache = TeacherCache.build(teacher, windows, folder, batch_size=4)
    maps, logits = cache.lookup(torch.tensor([4, 0, 4]))
    single = [cache.lookup([i]) for i in (4, 0, 4)]
    assert torch.equal(logits, torch.cat([s[1] for s in single]))
    for j, m in enumerate(maps):
        assert torch.equal(m, torch.cat([s[0][j] for s in single]))
    only_logits = cache.lookup([4, 0], maps=False)
    assert only_logits[0] == [] and torch.equal(only_logits[1], logits[:2])
    with pytest.raises(IndexError, match="out of range"):
        cache.lookup([10])
    with pytest.raises(ValueError, match="mode"):
        cache.lookup([0], mode="other")


def test_cache_pickles_for_workers(setup):
    import pickle

    teacher, _, windows, folder = setup
    cache = TeacherCache.build(teacher, windows, folder, batch_size=4)
    clone = pickle.loads(pickle.dumps(cache))
    assert torch.equal(clone.lookup([2])[1], cache.lookup([2])[1])


def test_fallback_predicate(setup):
    teacher, _, windows, _ = setup
    assert teacher_inputs_are_fixed(windows, teacher=teacher)
    assert not teacher_inputs_are_fixed(windows, augment=lambda x: x)
    augmented = _Keyed(windows)
    augmented.transform = lambda x: x
    assert not teacher_inputs_are_fixed(augmented)
    random_offsets = _Keyed(windows)
    random_offsets.random_windows = True
    assert not teacher_inputs_are_fixed(random_offsets)
    assert not teacher_inputs_are_fixed(windows, teacher=teacher.train())


def test_with_index():
    data = WithIndex([("a", 1), ("b", 2)])
    assert len(data) == 2
    assert data[1] == ("b", 2, 1)


def test_bad_input(setup):
    teacher, student, windows, folder = setup
    _, _, feats = _live(teacher, student, windows, [0])
    with pytest.raises(ValueError, match="distance"):
        attention_transfer_from_maps(feats, [f[:, 0] for f in feats], distance="cosine")
    with pytest.raises(ValueError, match="layer 0"):
        attention_transfer_from_maps(feats, [f[:, 0, :-1] for f in feats], distance="squared")
    with pytest.raises(ValueError, match="dtype"):
        TeacherCache.build(teacher, windows, folder, dtype="int8")


def test_window_dataset_identities(tmp_path):
    """Windows over the on-disk cache are named by recording and first epoch, and its settings enter the key."""

    class Fake:
        class store:  # noqa: N801 - mimics PreprocessedCache
            class config:  # noqa: N801
                @staticmethod
                def config_hash():
                    return "abc"

            @staticmethod
            def meta(key):
                return {"n_epochs": 70}

        keys = ["r1"]
        inputs = {"eeg": ("eeg",), "ecg": ("ecg",)}
        window_epochs = 35

        def __len__(self):
            return 2

        def window_key(self, i):
            return ("r1", 35 * i)

    assert window_identities(Fake()) == ["r1@0", "r1@35"]
    teacher, _ = _models()
    key = TeacherCacheKey.for_run(teacher, Fake())
    assert key.settings["preprocess"] == "abc" and key.settings["recordings"] == {"r1": {"n_epochs": 70}}
    assert np.isfinite(key.n_windows)


def test_window_dataset_over_memory_store_keys_its_content():
    """Windows over recordings in memory: the key follows the stored data, the channels and the windows."""
    from kdsleep.data.windows import MemoryStore, WindowDataset

    def dataset(scale=1.0, inputs=None, stride=2):
        store = MemoryStore()
        data = np.arange(12 * 2 * 4, dtype=np.float32).reshape(12, 2, 4) * scale
        store.add("r0", data, np.zeros(12, np.int8), ["eeg", "ecg"])
        return WindowDataset(
            store, inputs=inputs or {"eeg": ("eeg",)}, window_epochs=5, stride=stride, grouping="w-l-d-r"
        )

    teacher, _ = _models()
    base = TeacherCacheKey.for_run(teacher, dataset()).digest
    assert TeacherCacheKey.for_run(teacher, dataset()).digest == base
    assert TeacherCacheKey.for_run(teacher, dataset(scale=2.0)).digest != base
    assert TeacherCacheKey.for_run(teacher, dataset(inputs={"eeg": ("ecg",)})).digest != base
    assert TeacherCacheKey.for_run(teacher, dataset(stride=3)).digest != base
