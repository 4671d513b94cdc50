"""Tests of the five-level U-Time shared by the EEG teacher and the ECG student."""

from __future__ import annotations

import math
import re
import warnings

import pytest
import torch

from kdsleep.models import FeatureTaps, UTime, group_tap_weights

# A small window (3 epochs at 20 Hz, 600 samples per epoch) keeps the forward passes fast.
SMALL = {"sfreq": 20.0, "n_epochs": 3, "pools": [2, 2, 2, 3, 5]}


def _small(n_chans: int = 1, n_outputs: int = 4) -> UTime:
    return UTime(n_chans, n_outputs, **SMALL)


def _conv(c_in: int, c_out: int, k: int) -> int:
    return c_in * c_out * k + c_out


def _conv_bn(c_in: int, c_out: int, k: int = 5) -> int:
    return _conv(c_in, c_out, k) + 2 * c_out  # batch norm: weight and bias


def _expected_parameters(n_chans: int, n_classes: int, filters=(16, 32, 64, 128, 256)) -> int:
    total = 0
    c_in = n_chans
    for f in filters:  # encoder: two conv + BN per level
        total += _conv_bn(c_in, f) + _conv_bn(f, f)
        c_in = f
    bottleneck = 2 * filters[-1]
    total += _conv_bn(filters[-1], bottleneck) + _conv_bn(bottleneck, bottleneck)
    c_in = bottleneck
    for f in reversed(filters):  # decoder: up-conv, conv on the concatenation, conv
        total += _conv_bn(c_in, f) + _conv_bn(2 * f, f) + _conv_bn(f, f)
        c_in = f
    total += _conv(filters[0], n_classes, 1)  # tanh dense map
    total += _conv(n_classes, n_classes, 1)  # per-epoch classifier
    return total


def _n_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize(("n_classes", "pinned"), [(3, 4_813_215), (4, 4_813_240), (5, 4_813_267)])
def test_parameter_count_matches_hand_computed_figure(n_classes: int, pinned: int) -> None:
    model = UTime.joshi_single_epoch(1, n_classes)
    assert _expected_parameters(1, n_classes) == pinned
    assert _n_parameters(model) == pinned
    # The pools only change lengths, never weights.
    assert _n_parameters(_small(1, n_classes)) == pinned


def test_parameter_count_other_channels_and_filters() -> None:
    model = UTime(2, 5, **SMALL, filters=[8, 8, 16, 16, 32])
    assert _n_parameters(model) == _expected_parameters(2, 5, filters=(8, 8, 16, 16, 32))


def test_default_multi_epoch_configuration_shapes() -> None:
    model = UTime(1, 4).eval()
    assert model.pools == [10, 5, 5, 4, 3]
    assert model.n_epochs == 35 and model.n_times == 35 * 6000
    with torch.no_grad():
        logits, maps = model.features(torch.randn(1, 1, model.n_times))
    assert logits.shape == (1, 4, 35)
    assert len(maps) == 12
    for name, feature_map in zip(model.tap_names, maps, strict=True):
        assert tuple(feature_map.shape[1:]) == model.tap_shapes[name], name
    assert model.tap_shapes["bottleneck"] == (512, 70)
    assert model.tap_shapes["dense"] == (4, 210_000)


def test_single_epoch_configuration_shapes() -> None:
    model = UTime.joshi_single_epoch(n_chans=2, n_outputs=3).eval()
    assert model.pools == [3, 2, 2, 2, 2] and model.n_times == 6000
    with torch.no_grad():
        logits, maps = model.features(torch.randn(3, 2, 6000))
    assert logits.shape == (3, 3, 1)
    lengths = [feature_map.shape[-1] for feature_map in maps]
    assert lengths == [2000, 1000, 500, 250, 125, 125, 250, 500, 1000, 2000, 6000, 6000]
    channels = [feature_map.shape[1] for feature_map in maps]
    assert channels == [16, 32, 64, 128, 256, 512, 256, 128, 64, 32, 16, 3]


def test_logits_are_not_softmaxed() -> None:
    model = _small().eval()
    with torch.no_grad():
        logits = model(torch.randn(2, 1, model.n_times))
    assert not torch.allclose(logits.sum(dim=1), torch.ones(2, 3))


@pytest.mark.parametrize(
    ("kwargs", "fragments"),
    [
        ({"sfreq": 128.0}, ["[10, 5, 5, 4, 3]", "3000", "3840"]),
        ({"pools": [7, 2, 2, 2, 2]}, ["112", "6000"]),
        ({"pools": [3, 2, 2, 2]}, ["4 pools", "5 filters"]),
        ({"pools": [3, 2, 0, 2, 2]}, ["positive integers"]),
        ({"sfreq": 33.33}, ["whole number of samples", "999.9"]),
        ({"kernel_size": 4}, ["kernel_size", "odd"]),
        ({"n_outputs": 1}, ["n_outputs", ">= 2"]),
        ({"n_epochs": 0}, ["n_epochs", ">= 1"]),
    ],
)
def test_invalid_configurations_raise_with_numbers(kwargs: dict, fragments: list[str]) -> None:
    arguments = {"n_chans": 1, "n_outputs": 4, **kwargs}
    with pytest.raises(ValueError) as info:
        UTime(**arguments)
    for fragment in fragments:
        assert fragment in str(info.value)


@pytest.mark.parametrize("shape", [(2, 1, 1799), (2, 1, 1801), (2, 2, 1800), (1, 1800), (1, 1, 1, 1800)])
def test_wrong_input_shape_raises_instead_of_cropping(shape: tuple[int, ...]) -> None:
    model = _small()
    with pytest.raises(ValueError, match=r"n_chans=1, n_times=1800.*got " + re.escape(str(shape))):
        model(torch.randn(*shape))


def test_teacher_and_student_maps_have_identical_shapes() -> None:
    torch.manual_seed(0)
    teacher, student = _small(n_chans=2).eval(), _small(n_chans=1).eval()
    assert teacher.tap_names == student.tap_names
    with torch.no_grad():
        _, maps_teacher = teacher.features(torch.randn(2, 2, 1800))
        _, maps_student = student.features(torch.randn(2, 1, 1800))
    assert [m.shape for m in maps_teacher] == [m.shape for m in maps_student]


def test_joshi_tap_weights_reproduce_group_means() -> None:
    model = _small()
    weights = model.joshi_tap_weights()
    assert len(weights) == len(model.tap_names) == 12
    assert math.isclose(sum(weights), 1.0)
    assert weights[model.tap_names.index("decoder.4")] == pytest.approx(6 / 25)
    assert weights[model.tap_names.index("bottleneck")] == pytest.approx(1 / 5)
    losses = dict(zip(model.tap_names, torch.rand(12).tolist(), strict=True))
    groups = model.tap_groups
    assert list(groups) == ["encoder", "bottleneck", "decoder", "decoder_output", "dense"]
    expected = sum(sum(losses[n] for n in g) / len(g) for g in groups.values()) / len(groups)
    weighted = sum(w * losses[n] for w, n in zip(weights, model.tap_names, strict=True))
    assert weighted == pytest.approx(expected)


def test_group_tap_weights_rejects_unknown_names() -> None:
    with pytest.raises(ValueError, match="'c' is not a tap name"):
        group_tap_weights(["a", "b"], [["a"], ["c"]])


def test_gradients_reach_every_parameter() -> None:
    torch.manual_seed(0)
    model = _small()
    logits, maps = model.features(torch.randn(2, 1, model.n_times))
    loss = torch.nn.functional.cross_entropy(logits, torch.randint(0, 4, (2, 3))) + sum(
        m.pow(2).mean() for m in maps
    )
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
        assert parameter.grad.abs().sum() > 0, name


def test_feature_taps_are_removed_and_can_detach() -> None:
    model = _small()
    x = torch.randn(1, 1, model.n_times)
    _, maps = model.features(x, detach=True)
    assert all(not m.requires_grad for m in maps)
    assert all(not module._forward_hooks for module in model.modules())
    with FeatureTaps(model, ["bottleneck", "dense"]) as taps:
        model(x)
    assert [m.shape[1] for m in taps.features] == [512, 4]
    assert all(not module._forward_hooks for module in model.modules())
    with pytest.raises(ValueError, match="no such sub-module"):
        FeatureTaps(model, ["encoder.9.pool"])
    with FeatureTaps(model, ["dense"]) as taps, pytest.raises(RuntimeError, match="run a forward pass"):
        taps.features  # noqa: B018 - the property raises


def test_torchscript_trace_and_script_match_eager() -> None:
    model = _small().eval()
    x = torch.randn(2, 1, model.n_times)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=FutureWarning)
        traced = torch.jit.trace(model, x)
        scripted = torch.jit.script(model)
    other_batch = torch.randn(3, 1, model.n_times)
    with torch.no_grad():
        expected = model(other_batch)
        torch.testing.assert_close(traced(other_batch), expected)
        torch.testing.assert_close(scripted(other_batch), expected)


def test_initialisation_is_deterministic_under_a_seed() -> None:
    torch.manual_seed(123)
    first = _small().state_dict()
    torch.manual_seed(123)
    second = _small().state_dict()
    torch.manual_seed(124)
    third = _small().state_dict()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert not torch.equal(first["encoder.0.convs.0.0.weight"], third["encoder.0.convs.0.0.weight"])
    # Biases start at zero, as in U-Time.
    assert torch.count_nonzero(first["classifier.bias"]) == 0


def test_config_round_trip() -> None:
    model = UTime.joshi_single_epoch(1, 3)
    clone = UTime(**model.get_config())
    assert clone.get_config() == model.get_config()
    clone.load_state_dict(model.state_dict())


def test_torch_export_with_dynamic_batch_matches_eager() -> None:
    model = _small().eval()
    batch = torch.export.Dim("batch")
    exported = torch.export.export(
        model, (torch.randn(2, 1, model.n_times),), dynamic_shapes={"x": {0: batch}}
    )
    x = torch.randn(3, 1, model.n_times)
    with torch.no_grad():
        torch.testing.assert_close(exported.module()(x), model(x))


def test_onnx_export_matches_eager(tmp_path) -> None:
    pytest.importorskip("onnx")
    onnxruntime = pytest.importorskip("onnxruntime")
    model = _small().eval()
    path = tmp_path / "utime.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        torch.onnx.export(
            model,
            (torch.randn(2, 1, model.n_times),),
            str(path),
            dynamo=False,  # the torch.export-based exporter needs onnxscript in addition
            input_names=["x"],
            output_names=["logits"],
            dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}},
        )
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    x = torch.randn(3, 1, model.n_times)
    (logits,) = session.run(None, {"x": x.numpy()})
    with torch.no_grad():
        torch.testing.assert_close(torch.from_numpy(logits), model(x), atol=1e-4, rtol=1e-4)
