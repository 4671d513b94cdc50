"""ONNX and TorchScript export: outputs match PyTorch within 1e-4, dynamic batch, metadata in the file."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from kdsleep.checkpoint import load_checkpoint, save_checkpoint
from kdsleep.data.preprocess import PreprocessConfig
from kdsleep.export import (
    ExportError,
    export_metadata,
    export_model,
    format_from_path,
    read_export_metadata,
    run_exported,
)
from kdsleep.models import UTime

TOLERANCE = 1e-4


def _needs(fmt: str) -> None:
    if fmt == "onnx":
        pytest.importorskip("onnx", reason="ONNX export needs the 'onnx' package (pip install onnx)")
        pytest.importorskip(
            "onnxruntime", reason="checking an ONNX export needs 'onnxruntime' (pip install onnxruntime)"
        )


@pytest.fixture(scope="module")
def checkpoint_path(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    model = UTime(1, 3, sfreq=50.0, n_epochs=2, pools=[5, 5, 3], filters=[4, 8, 8])
    model.train()
    with torch.no_grad():  # running statistics away from 0 / 1, so eval-mode batch norm is exercised
        model(torch.randn(4, 1, model.n_times) * 3.0 + 1.0)
    config = PreprocessConfig(sfreq=50.0, eeg_band=(0.3, 20.0), ecg_band=(0.3, 20.0))
    folder = tmp_path_factory.mktemp("export")
    return save_checkpoint(
        folder / "student.pt",
        model.eval(),
        modality="ecg",
        channel="ECG I",
        grouping="w-n-r",
        preprocess=config,
        variant="at_sd_cl",
        metrics={"test_weighted_f1": 0.5},
    )


@pytest.mark.parametrize(("fmt", "name"), [("onnx", "student.onnx"), ("torchscript", "student.pt")])
def test_export_matches_pytorch_on_random_input(tmp_path, checkpoint_path, fmt, name) -> None:
    _needs(fmt)
    checkpoint = load_checkpoint(checkpoint_path)
    path = export_model(checkpoint, tmp_path / name, fmt)
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]  # no staging file left behind
    generator = torch.Generator().manual_seed(42)
    for batch in (1, 5):  # the export example had batch 2: these need the dynamic batch dimension
        x = torch.randn(batch, 1, checkpoint.model.n_times, generator=generator) * 2.0
        with torch.no_grad():
            expected = checkpoint.model(x).numpy()
        got = run_exported(path, x.numpy())
        assert got.shape == (batch, 3, 2)
        np.testing.assert_allclose(got, expected, atol=TOLERANCE, rtol=0)
        assert np.abs(expected).max() > 1e-3  # the comparison is not between two zero tensors


def test_onnx_runs_directly_on_onnxruntime_with_its_metadata(tmp_path, checkpoint_path) -> None:
    _needs("onnx")
    import onnx
    import onnxruntime

    path = export_model(checkpoint_path, tmp_path / "student.onnx", "onnx")
    proto = onnx.load(str(path))
    props = {p.key: json.loads(p.value) for p in proto.metadata_props}
    assert props["class_names"] == ["W", "N", "R"]
    assert props["input"]["channel"] == "ECG I"
    assert props["input"]["sfreq"] == 50.0
    assert props["input"]["n_epochs"] == 2
    assert props["input"]["n_times"] == 3000
    assert props["preprocess"]["sfreq"] == 50.0
    assert props["modality"] == "ecg"
    batch_dim = proto.graph.input[0].type.tensor_type.shape.dim[0]
    assert batch_dim.dim_param == "batch"  # symbolic, not a fixed size
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["signal"]
    (logits,) = session.run(None, {"signal": np.zeros((4, 1, 3000), np.float32)})
    assert logits.shape == (4, 3, 2)


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_torchscript_carries_metadata_as_extra_file(tmp_path, checkpoint_path) -> None:
    path = export_model(checkpoint_path, tmp_path / "student.pt", "torchscript")
    extra = {"kdsleep.json": ""}
    torch.jit.load(str(path), _extra_files=extra)
    metadata = json.loads(extra["kdsleep.json"])
    assert metadata["class_names"] == ["W", "N", "R"]
    assert metadata["input"] == {
        "name": "signal",
        "layout": "(batch, n_chans, n_times)",
        "channel": "ECG I",
        "n_chans": 1,
        "channels": ["ecg"],
        "sfreq": 50.0,
        "n_epochs": 2,
        "epoch_seconds": 30.0,
        "n_times": 3000,
    }
    assert read_export_metadata(path) == metadata
    # the model can be rebuilt from the stored configuration
    assert UTime(**metadata["model_config"]).n_times == 3000


def test_metadata_describes_the_checkpoint(checkpoint_path) -> None:
    checkpoint = load_checkpoint(checkpoint_path)
    metadata = export_metadata(checkpoint)
    assert metadata["grouping"] == "w-n-r"
    assert metadata["variant"] == {"name": "at_sd_cl"}
    assert metadata["kdsleep_version"] == checkpoint.kdsleep_version
    json.dumps(metadata)  # plain JSON throughout


def test_unknown_format_is_rejected(tmp_path, checkpoint_path) -> None:
    with pytest.raises(
        ExportError, match=r"unknown export format 'tflite'; expected one of onnx, torchscript"
    ):
        export_model(checkpoint_path, tmp_path / "student.tflite", "tflite")
    assert not (tmp_path / "student.tflite").exists()


def test_failed_check_keeps_no_file(tmp_path, checkpoint_path, monkeypatch) -> None:
    import kdsleep.export as export

    target = tmp_path / "student.pt"
    target.write_bytes(b"previous export")
    monkeypatch.setattr(export, "verify_export", lambda *args, **kwargs: 0.5)
    with pytest.raises(
        ExportError, match=r"student\.pt: exported torchscript model differs from PyTorch by 0\.5"
    ):
        export_model(checkpoint_path, target, "torchscript")
    assert target.read_bytes() == b"previous export"  # the good file is not replaced
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.pt"]


@pytest.mark.filterwarnings("ignore:`torch.jit:DeprecationWarning")
def test_file_without_kdsleep_metadata(tmp_path) -> None:
    path = tmp_path / "plain.pt"
    with torch.no_grad():
        torch.jit.save(torch.jit.script(torch.nn.Identity()), str(path))
    with pytest.raises(ExportError, match=r"plain\.pt: no kdsleep metadata"):
        read_export_metadata(path)


@pytest.mark.parametrize(
    ("name", "fmt"), [("a.onnx", "onnx"), ("a.pt", "torchscript"), ("a.ts", "torchscript"), ("a.bin", None)]
)
def test_format_from_suffix(name, fmt) -> None:
    assert format_from_path(name) == fmt
