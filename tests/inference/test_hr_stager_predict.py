"""The shipped heart-rate stagers: registry entries, checksum at load, and `kdsleep predict --beats` by default."""

from __future__ import annotations

import csv
import shutil

import numpy as np
import pytest

import kdsleep.models.pretrained as pretrained
from kdsleep._io import sha256_file
from kdsleep.beats_inference import predict_beats
from kdsleep.cli import main
from kdsleep.hr_bundle import HRStagerBundle
from kdsleep.inference import InferenceError
from kdsleep.models.pretrained import (
    PretrainedModelError,
    load_pretrained,
    registry_entry,
    resolve_model,
)

SHIPPED = {"hr-slpdb-3class": ("W", "N", "R"), "hr-slpdb-4class": ("W", "L", "D", "R")}


pytestmark = pytest.mark.usefixtures("one_thread")


def _error_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_model_loads_by_name(name) -> None:
    entry = pretrained.model_info(name)
    assert entry.kind == "hr-stager" and entry.inputs == ("beats",) and entry.classes == SHIPPED[name]
    assert sha256_file(pretrained.weights_path(name)) == entry.sha256
    root = pretrained.WEIGHTS_DIR.parents[2]
    assert entry.card and (not (root / "docs").is_dir() or (root / entry.card).is_file())
    stager = load_pretrained(name)
    assert isinstance(stager, HRStagerBundle) and stager.class_names == SHIPPED[name]
    assert stager.sfreq == 2.0 and stager.model.n_features == 28 and stager.model.n_times == 60
    assert len(stager.training["records"]) == 15 and stager.training["epochs_run"] == 12
    # the registry entry computed from the file is the shipped one
    computed = registry_entry(name, pretrained.weights_path(name), entry.description, entry.card)
    assert computed == entry
    assert pretrained.DEFAULT_MODEL == "hr-slpdb-3class"


def test_damaged_shipped_file_is_refused(tmp_path) -> None:
    copy = shutil.copy(pretrained.weights_path("hr-slpdb-3class"), tmp_path / "hr-slpdb-3class.pt")
    with open(copy, "r+b") as fh:
        fh.seek(2000)
        byte = fh.read(1)
        fh.seek(2000)
        fh.write(bytes([byte[0] ^ 0xFF]))
    with pytest.raises(PretrainedModelError, match=r"hr-slpdb-3class\.pt: checksum mismatch"):
        load_pretrained("hr-slpdb-3class", weights_dir=tmp_path)


def test_stager_file_path_resolves() -> None:
    stager = resolve_model(str(pretrained.weights_path("hr-slpdb-4class")))
    assert isinstance(stager, HRStagerBundle) and stager.class_names == ("W", "L", "D", "R")
    assert resolve_model(stager) is stager


def test_default_predict_from_beats(shared_data, tmp_path, capsys) -> None:
    beats = shared_data / "slpdb" / "slp01a.ecg"
    assert main(["predict", "--beats", str(beats), "--out", str(tmp_path), "--no-plot"]) == 0
    out = capsys.readouterr().out
    assert "model hr-slpdb-3class (default): heart-rate stager" in out
    assert "240 epochs (2.00 h)" in out and "summary:" in out
    rows = list(csv.DictReader((tmp_path / "slp01a_hypnogram.csv").open()))
    assert len(rows) == 240 and {r["stage"] for r in rows} <= {"W", "N", "R"}
    probabilities = np.array([[float(r[c]) for c in r if c.startswith("p_")] for r in rows])
    assert probabilities.shape == (240, 3) and np.allclose(probabilities.sum(1), 1, atol=1e-3)


def test_four_class_model_by_name(shared_data, tmp_path, capsys) -> None:
    beats = shared_data / "slpdb" / "slp01a.ecg"
    args = [
        "predict",
        "--beats",
        str(beats),
        "--model",
        "hr-slpdb-4class",
        "--out",
        str(tmp_path),
        "--no-plot",
    ]
    assert main(args) == 0
    assert "model hr-slpdb-4class: heart-rate stager" in capsys.readouterr().out


def test_stager_needs_beats_not_a_recording(shared_data, capsys) -> None:
    assert main(["predict", str(shared_data / "slpdb" / "slp01a.ecg")]) == 2
    assert "stages from heartbeat times: pass --beats" in _error_line(capsys)


def test_too_short_night(tmp_path) -> None:
    path = tmp_path / "peaks.csv"
    path.write_text("\n".join(f"{t:.3f}" for t in np.arange(0.5, 300.0, 0.9)))
    with pytest.raises(InferenceError, match=r"peaks\.csv: .* shorter than the 20 epochs"):
        predict_beats("hr-slpdb-3class", path, progress=False)
