from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from kdsleep.checkpoint import (
    CheckpointError,
    load_checkpoint,
    read_checkpoint_payload,
    save_checkpoint,
)
from kdsleep.distill.experiment import Pipeline, RunFolderError
from kdsleep.distill.variants import get_variant


class Interrupt(Exception):
    """Stands for a run stopped from outside (Ctrl-C, a killed job) after an epoch."""


def interrupt_after_two(epoch):
    if epoch == 2:
        raise Interrupt


def state_dicts_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_distilled_variant_end_to_end(tiny_config, tmp_path, monkeypatch):
    import kdsleep.ops

    seen_weights = []
    original = kdsleep.ops.distillation_loss

    def spy(*args, **kwargs):
        seen_weights.append(kwargs["class_weights"])
        return original(*args, **kwargs)

    monkeypatch.setattr(kdsleep.ops, "distillation_loss", spy)
    run_dir = tmp_path / "run"
    pipeline = Pipeline(tiny_config(), run_dir, progress=False, command=["test"])
    teacher_outcome = pipeline.run_variant("eeg_baseline")
    teacher = pipeline.teacher("w-l-d-r")
    frozen = {k: v.clone() for k, v in teacher.state_dict().items()}
    outcome = pipeline.run_variant("at_sd_cl")

    # the class weights of the training split reach every WCE evaluation
    expected = pipeline.class_weights("w-l-d-r")
    assert seen_weights and all(torch.equal(w.cpu(), expected) for w in seen_weights)
    assert not torch.allclose(expected, torch.ones(4))
    # the teacher stays frozen, in eval mode, without gradients
    assert not teacher.training and not any(p.requires_grad for p in teacher.parameters())
    assert state_dicts_equal(frozen, teacher.state_dict())
    # files of the run folder
    config = json.loads((run_dir / "config.json").read_text())
    assert (
        config["config"]["training"]["epochs"] == 2 and config["kdsleep_version"] and "git_commit" in config
    )
    split = json.loads((run_dir / "split.json").read_text())
    assert len(split["subjects"]["test"]) == 1
    for folder in (run_dir / "w-l-d-r" / "at_step" / "at", run_dir / "w-l-d-r" / "at_sd_cl" / "final"):
        assert (folder / "best.pt").exists() and (folder / "done.json").exists()
        log = (folder / "log.csv").read_text().splitlines()
        assert log[0].startswith("epoch,train_loss,val_loss,val_weighted_f1")
    assert len((run_dir / "w-l-d-r" / "at_sd_cl" / "final" / "log.csv").read_text().splitlines()) == 3
    checkpoint = load_checkpoint(outcome.checkpoint)
    assert checkpoint.modality == "ecg" and checkpoint.variant["weight_kd"] == 0.5
    assert checkpoint.metrics["test"]["weighted_f1"] == pytest.approx(outcome.metrics.weighted_f1)
    assert 0 <= outcome.metrics.weighted_f1 <= 1 and outcome.metrics.n_epochs > 0
    assert teacher_outcome.per_subject and set(outcome.per_subject) == set(split["subjects"]["test"])
    # every scored epoch of every test night counts once, the tail after the last whole window included
    test_keys = pipeline.split.keys("test")
    scored = sum(int((pipeline.cache.labels(k, "w-l-d-r") >= 0).sum()) for k in test_keys)
    assert outcome.metrics.n_epochs == teacher_outcome.metrics.n_epochs == scored
    with np.load(run_dir / "w-l-d-r" / "at_sd_cl" / "predictions.npz") as saved:
        assert int((saved["labels"] >= 0).sum()) == scored and (saved["predictions"] >= 0).all()
    # attention-transfer step 1 is one training, shared by at_cl and at_sd_cl
    at_cl = pipeline.run_variant("at_cl")
    assert at_cl.stages["at"] == outcome.stages["at"]
    assert not (run_dir / "w-l-d-r" / "at_cl" / "at").exists()
    assert not (run_dir / "w-l-d-r" / "at_sd_cl" / "at").exists()
    # the report lists both, with a paired comparison only when the ECG baseline is there
    markdown, _ = pipeline.write_report([teacher_outcome, outcome])
    assert "AT+SD+CL" in markdown.read_text() and "EEG baseline" in markdown.read_text()


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_resume_reproduces_an_uninterrupted_run_bit_for_bit(tiny_config, tmp_path, schedule):
    config = tiny_config(epochs=3, lr_schedule=schedule)
    whole = Pipeline(config, tmp_path / "whole", progress=False).run_variant("ecg_baseline")

    with pytest.raises(Interrupt):
        Pipeline(config, tmp_path / "cut", progress=False).run_variant(
            "ecg_baseline", on_epoch_end=interrupt_after_two
        )
    stage = tmp_path / "cut" / "w-l-d-r" / "ecg_baseline" / "final"
    assert (stage / "state.pt").exists() and not (stage / "done.json").exists()
    with pytest.raises(FileExistsError, match="interrupted run.*resume it"):
        Pipeline(config, tmp_path / "cut", progress=False).run_variant("ecg_baseline")
    resumed = Pipeline(config, tmp_path / "cut", resume=True, progress=False).run_variant("ecg_baseline")

    a, b = (read_checkpoint_payload(o.checkpoint)["state_dict"] for o in (whole, resumed))
    assert state_dicts_equal(a, b)
    states = [
        torch.load(p / "w-l-d-r" / "ecg_baseline" / "final" / "state.pt", weights_only=False)
        for p in (tmp_path / "whole", tmp_path / "cut")
    ]
    assert states[0]["epoch"] == states[1]["epoch"] == 3
    assert states[0]["best_epoch"] == states[1]["best_epoch"]
    assert state_dicts_equal(states[0]["model"], states[1]["model"])
    opt = [s["optimizer"]["state"] for s in states]
    assert all(torch.equal(opt[0][i]["exp_avg_sq"], opt[1][i]["exp_avg_sq"]) for i in opt[0])
    assert whole.metrics.weighted_f1 == resumed.metrics.weighted_f1


def test_cosine_schedule_and_teacher_epochs(tiny_config, tmp_path):
    """The teacher trains its own number of epochs; a cosine stage lowers the rate every epoch as documented."""
    import csv
    import math

    from kdsleep.distill.trainer import epoch_lr

    config = tiny_config(epochs=3, teacher_epochs=2, lr_schedule="cosine", lr=0.004)
    pipeline = Pipeline(config, tmp_path / "run", progress=False)
    pipeline.run_variant("eeg_baseline")
    pipeline.run_variant("ecg_baseline")

    def logged(variant):
        with open(tmp_path / "run" / "w-l-d-r" / variant / "final" / "log.csv") as fh:
            return [float(row["lr"]) for row in csv.DictReader(fh)]

    teacher_lr, student_lr = logged("eeg_baseline"), logged("ecg_baseline")
    assert len(teacher_lr) == 2 and len(student_lr) == 3
    expected = [0.004 * (1 + math.cos(math.pi * e / 3)) / 2 for e in range(3)]
    assert (
        student_lr == pytest.approx(expected) and student_lr[0] == 0.004 > student_lr[1] > student_lr[2] > 0
    )
    assert teacher_lr == pytest.approx([0.004, 0.002])
    assert [epoch_lr(0.004, "constant", e, 3) for e in (1, 2, 3)] == [0.004] * 3
    with pytest.raises(ValueError, match="unknown learning-rate schedule 'step'"):
        epoch_lr(0.004, "step", 1, 3)


def test_bad_input_errors(tiny_config, tmp_path):
    pipeline = Pipeline(tiny_config(), tmp_path / "run", progress=False)
    teacher = pipeline.new_model("w-l-d-r")
    meta = {
        "channel": "C3-A2",
        "preprocess": pipeline.preprocess.to_dict(),
        "variant": "eeg_baseline",
        "metrics": {},
    }
    path = save_checkpoint(tmp_path / "t4.pt", teacher, modality="eeg", grouping="w-l-d-r", **meta)
    # a teacher trained for another class set
    three = Pipeline(
        tiny_config(grouping="w-n-r"), tmp_path / "run3", teacher_checkpoint=path, progress=False
    )
    with pytest.raises(CheckpointError, match="4-class grouping 'w-l-d-r'.*3-class 'w-n-r'"):
        three.teacher("w-n-r")
    # a teacher whose window does not match the student's
    other = Pipeline(tiny_config(window_epochs=4), tmp_path / "run4", teacher_checkpoint=path, progress=False)
    with pytest.raises(CheckpointError, match="does not match the student's"):
        other.teacher("w-l-d-r")
    # an ECG model is no teacher
    ecg = save_checkpoint(tmp_path / "ecg.pt", teacher, modality="ecg", grouping="w-l-d-r", **meta)
    with pytest.raises(CheckpointError, match="ECG model"):
        Pipeline(tiny_config(), tmp_path / "run5", teacher_checkpoint=ecg, progress=False).teacher("w-l-d-r")
    # a recording without the requested channel
    with pytest.raises(ValueError, match="ECG V5"):
        Pipeline(tiny_config(ecg_channel="ECG V5"), tmp_path / "run6", progress=False)
    # a run folder reused with another configuration
    with pytest.raises(ValueError, match="another configuration: epochs"):
        Pipeline(tiny_config(epochs=5), tmp_path / "run", progress=False)
    # a folder made before a key existed is reused with that key at its default, refused with another value
    saved = json.loads((tmp_path / "run" / "config.json").read_text())
    del saved["config"]["training"]["lr_schedule"]
    (tmp_path / "run" / "config.json").write_text(json.dumps(saved))
    Pipeline(tiny_config(), tmp_path / "run", progress=False)
    with pytest.raises(ValueError, match="another configuration: lr_schedule"):
        Pipeline(tiny_config(lr_schedule="cosine"), tmp_path / "run", progress=False)


def test_empty_split_from_too_few_subjects(tiny_config, tiny_data, tmp_path):
    from kdsleep.distill.split import EmptySplitError

    small = tmp_path / "two"
    small.mkdir()
    for path in sorted(tiny_data.glob("01-03-000[12]*.edf")):
        (small / path.name).symlink_to(path)
    with pytest.raises(EmptySplitError, match="2 subject"):
        Pipeline(tiny_config(dataset="mass", data_dir=str(small)), tmp_path / "run", progress=False)


@pytest.mark.parametrize("ecg_input", ["ihr", "both"])
def test_heart_rate_student(tiny_config, tmp_path, ecg_input):
    pipeline = Pipeline(tiny_config(ecg_input=ecg_input), tmp_path / "run", progress=False, command=["test"])
    assert pipeline.preprocess.channels == ("eeg", "ecg", "ihr")
    eeg, ecg, labels = pipeline.dataset("train", "w-l-d-r")[0]
    n_inputs = 1 if ecg_input == "ihr" else 2
    assert eeg.shape[0] == 1 and ecg.shape == (n_inputs, eeg.shape[1])
    heart_rate = ecg[-1]
    # heart rate: robust-scaled, slow (no beat-to-beat waveform), and not a copy of the raw ECG
    assert heart_rate.std() > 0.1 and np.abs(np.diff(heart_rate)).max() < 1.0
    if ecg_input == "both":
        assert not np.allclose(ecg[0], heart_rate)
    outcome = pipeline.run_variant("at_cl")  # attention transfer needs equal teacher / student lengths
    checkpoint = load_checkpoint(outcome.checkpoint)
    assert checkpoint.model.n_chans == n_inputs
    assert checkpoint.inputs == (["ihr"] if ecg_input == "ihr" else ["ecg", "ihr"])
    assert 0 <= outcome.metrics.weighted_f1 <= 1


def test_unknown_ecg_input_is_rejected(tiny_config):
    from kdsleep.distill.config import ConfigError

    with pytest.raises(ConfigError, match="ecg_input = 'hr', expected one of"):
        tiny_config(ecg_input="hr")


def test_fig2_disagreement_figures(tiny_config, tmp_path):
    """Fig. 2 of Joshi et al. from three models: plot and distances per distilled student, none without one."""
    from types import SimpleNamespace

    from kdsleep.cli.evaluate import fig2

    pipeline = Pipeline(tiny_config(split_fractions=[0.4, 0.2, 0.4]), tmp_path / "run", progress=False)
    models = {}
    for seed, (name, modality) in enumerate(
        [("eeg_baseline", "eeg"), ("ecg_baseline", "ecg"), ("at_cl", "ecg")]
    ):
        model = pipeline.new_model("w-l-d-r", modality)
        torch.manual_seed(seed)
        model.reset_parameters()
        models[name] = SimpleNamespace(model=model)
    assert fig2(pipeline, pipeline.run_dir, "w-l-d-r", {"eeg_baseline": models["eeg_baseline"]}) is None
    summary = fig2(pipeline, pipeline.run_dir, "w-l-d-r", models)
    assert summary is not None and list(summary["variants"]) == ["at_cl"]
    row = summary["variants"]["at_cl"]
    assert (pipeline.run_dir / "w-l-d-r" / row["plot"]).stat().st_size > 0
    assert row["epochs_kd_right_baseline_wrong"] + row["epochs_kd_wrong_baseline_right"] > 0
    assert row["mean_distance_baseline_to_teacher"] > 0
    assert json.loads((pipeline.run_dir / "w-l-d-r" / "fig2.json").read_text()) == summary


def test_predict_without_channel_on_a_student_trained_on_the_default_channels(
    tiny_config, tiny_data, tmp_path
):
    """The checkpoint names a channel that prediction resolves, not the stringified candidate list."""
    from kdsleep.cli import main

    pipeline = Pipeline(tiny_config(), tmp_path / "run", progress=False, command=["test"])
    assert pipeline.config.data.ecg_channel is None  # the dataset's default candidates
    outcome = pipeline.run_variant("ecg_baseline")
    checkpoint = load_checkpoint(outcome.checkpoint)
    assert checkpoint.channel == "ecg" and "(" not in checkpoint.channel
    night = sorted(tiny_data.glob("*PSG.edf"))[0]
    assert (
        main(
            [
                "predict",
                "--model",
                str(outcome.checkpoint),
                str(night),
                "--out",
                str(tmp_path / "out"),
                "--no-plot",
            ]
        )
        == 0
    )
    assert (tmp_path / "out" / f"{night.stem}_hypnogram.csv").stat().st_size > 0


def test_test_metrics_cover_the_tail_of_every_night(tiny_config, tmp_path):
    """Nights whose length is not a multiple of the window: the epochs after the last whole window count."""
    pipeline = Pipeline(tiny_config(window_epochs=7, epochs=1), tmp_path / "run", progress=False)
    test_keys = pipeline.split.keys("test")
    assert all(pipeline.cache.meta(k)["n_epochs"] % 7 for k in test_keys)
    outcome = pipeline.run_variant("ecg_baseline")
    for key in test_keys:
        labels = pipeline.cache.labels(key, "w-l-d-r")
        assert outcome.labels[key].tolist() == labels.tolist()
        assert (outcome.predictions[key] >= 0).all()  # every epoch predicted, the last ones too
    scored = sum(int((pipeline.cache.labels(k, "w-l-d-r") >= 0).sum()) for k in test_keys)
    assert outcome.metrics.n_epochs == scored


def test_rate_stretch_reaches_the_student_and_not_the_teacher(tiny_config, tmp_path, monkeypatch):
    import kdsleep.distill.stage_loss as stage_loss

    calls = []
    original = stage_loss.rate_stretch

    def spy(x, max_stretch, samples_per_epoch, **kwargs):
        calls.append((tuple(x.shape), max_stretch, samples_per_epoch))
        return original(x, max_stretch, samples_per_epoch, **kwargs)

    monkeypatch.setattr(stage_loss, "rate_stretch", spy)
    pipeline = Pipeline(tiny_config(ecg_rate_stretch=0.1), tmp_path / "run", progress=False)
    pipeline.run_variant("eeg_baseline")
    assert not calls  # the EEG teacher trains on its input as recorded
    pipeline.run_variant("at_cl")
    spe = pipeline.teacher("w-l-d-r").samples_per_epoch
    assert calls and all(c[1] == 0.1 and c[2] == spe and c[0][1] == 1 for c in calls)
    # the teacher's inputs are unchanged, so its outputs are still read from the cache
    assert any((tmp_path / "run" / "w-l-d-r" / "teacher-cache").iterdir())


def test_weight_averaging_returns_the_mean_of_the_last_epochs_and_resumes(tiny_config, tmp_path):
    """average_epochs = 2 of 3: the stage returns the mean of epochs 2 and 3 (BatchNorm statistics too), its
    validation figures beside the best epoch's; an interrupted stage resumes its running sum exactly."""
    config = tiny_config(epochs=3, average_epochs=2)
    stage = tmp_path / "whole" / "w-l-d-r" / "ecg_baseline" / "final"
    after_epoch = {}

    def keep_weights(epoch):
        after_epoch[epoch] = torch.load(stage / "state.pt", weights_only=False)["model"]

    whole = Pipeline(config, tmp_path / "whole", progress=False).run_variant(
        "ecg_baseline", on_epoch_end=keep_weights
    )
    returned = read_checkpoint_payload(whole.checkpoint)["state_dict"]
    averaged = read_checkpoint_payload(stage / "averaged.pt")["state_dict"]
    assert state_dicts_equal(returned, averaged)
    for name, value in returned.items():
        if value.is_floating_point():
            expected = (after_epoch[2][name].double() + after_epoch[3][name].double()) / 2
            torch.testing.assert_close(value, expected.to(value.dtype))
        else:  # BatchNorm's batch counter: the last epoch's
            assert torch.equal(value, after_epoch[3][name])
    moved = [
        n
        for n, v in after_epoch[2].items()
        if v.is_floating_point() and not torch.equal(v, after_epoch[3][n])
    ]
    assert any("running_mean" in n for n in moved) and any("weight" in n for n in moved)
    done = json.loads((stage / "done.json").read_text())
    assert done["averaged"]["epochs"] == [2, 3] and -1 <= done["averaged"]["val_kappa"] <= 1
    assert set(done["averaged"]) >= {"val_weighted_f1", "val_kappa", "val_macro_f1", "val_loss"}
    assert whole.stages["final"]["averaged_epochs"] == [2, 3]
    assert whole.stages["final"]["val_weighted_f1"] == done["averaged"]["val_weighted_f1"]
    assert whole.stages["final"]["best_epoch_val_weighted_f1"] == done["best_score"]
    with open(stage / "log.csv") as fh:
        assert {"val_kappa", "val_macro_f1"} <= set(fh.readline().strip().split(","))

    with pytest.raises(Interrupt):
        Pipeline(config, tmp_path / "cut", progress=False).run_variant(
            "ecg_baseline", on_epoch_end=interrupt_after_two
        )
    resumed = Pipeline(config, tmp_path / "cut", resume=True, progress=False).run_variant("ecg_baseline")
    assert state_dicts_equal(returned, read_checkpoint_payload(resumed.checkpoint)["state_dict"])
    assert resumed.metrics.cohen_kappa == whole.metrics.cohen_kappa
    # a finished stage is reused with its averaged weights
    model, _ = (
        Pipeline(config, tmp_path / "whole", progress=False)
        .runner("w-l-d-r")
        .train(get_variant("ecg_baseline"))
    )
    assert state_dicts_equal(returned, {k: v.cpu() for k, v in model.state_dict().items()})


def test_weight_averaging_errors(tiny_config, tmp_path):
    from kdsleep.distill.config import ConfigError
    from kdsleep.distill.trainer import WeightAverage

    with pytest.raises(
        ConfigError, match=r"\[training\] average_epochs = 2, expected none while patience is set"
    ):
        tiny_config(average_epochs=2, patience=3)
    with pytest.raises(ConfigError, match=r"average_epochs = 0, expected a positive integer or none"):
        tiny_config(average_epochs=0)
    with pytest.raises(ValueError, match="positive number of epochs"):
        WeightAverage(5, 0)
    average = WeightAverage(5, 9)  # more than the stage has: every epoch
    assert average.covers(1) and average.first_epoch == 1
    with pytest.raises(ValueError, match="no epoch has been averaged"):
        average.mean()
    # an interrupted stage that did not average cannot be resumed with averaging
    config = tiny_config(epochs=3)

    def stop(epoch):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Pipeline(config, tmp_path / "run", progress=False).run_variant("ecg_baseline", on_epoch_end=stop)
    config_json = tmp_path / "run" / "config.json"
    saved = json.loads(config_json.read_text())
    saved["config"]["training"]["average_epochs"] = 2
    config_json.write_text(json.dumps(saved))
    with pytest.raises(FileExistsError, match="did not average weights"):
        Pipeline(
            tiny_config(epochs=3, average_epochs=2), tmp_path / "run", resume=True, progress=False
        ).run_variant("ecg_baseline")


@pytest.mark.parametrize("metric", ["kappa", "macro_f1"])
def test_checkpoint_metric_picks_the_best_epoch_by_that_figure(tiny_config, tmp_path, metric):
    """checkpoint_metric chooses a classification stage's best epoch by that validation figure, and a
    finished stage is not reused under another metric."""
    config = tiny_config(epochs=4, checkpoint_metric=metric)
    outcome = Pipeline(config, tmp_path / "run", progress=False).run_variant("ecg_baseline")
    stage = tmp_path / "run" / "w-l-d-r" / "ecg_baseline" / "final"
    done = json.loads((stage / "done.json").read_text())
    column = [row[f"val_{metric}"] for row in done["history"]]
    assert done["score"] == f"val_{metric}"
    assert done["best_epoch"] == 1 + column.index(max(column)) and done["best_score"] == max(column)
    assert outcome.stages["final"][f"val_{metric}"] == max(column)
    saved = read_checkpoint_payload(stage / "best.pt")
    assert saved["metrics"]["epoch"] == done["best_epoch"]
    with pytest.raises(RunFolderError, match=f"checkpoint_metric \\('{metric}' there, 'weighted_f1' now\\)"):
        Pipeline(tiny_config(epochs=4), tmp_path / "run", progress=False).run_variant("ecg_baseline")


def test_checkpoint_metric_must_be_known(tiny_config):
    from kdsleep.distill.config import ConfigError

    with pytest.raises(ConfigError, match=r"checkpoint_metric"):
        tiny_config(checkpoint_metric="accuracy")
