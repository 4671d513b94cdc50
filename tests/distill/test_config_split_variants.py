from __future__ import annotations

import json

import pytest
import torch

from kdsleep.distill.config import (
    SYNTHETIC_QUICKSTART,
    ConfigError,
    TrainConfig,
    load_config,
    load_config_file,
)
from kdsleep.distill.losses import FinalLoss, class_weights
from kdsleep.distill.split import EmptySplitError, load_split, split_subjects
from kdsleep.distill.variants import VARIANTS, get_variant, paper_alpha_to_weight_kd
from kdsleep.ops import reference


def test_toml_sections_and_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[training]\nepochs = 7\nlr = 0.01\n[data]\ngrouping = "w-n-r"\n')
    config = load_config(path, {"epochs": 3, "seed": None})
    assert (
        config.training.epochs == 3
        and config.training.lr == 0.01
        and config.data.grouping == "w-n-r"
        and config.training.seed == 0
    )


def test_yaml_config(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("model:\n  window_epochs: 5\nat_mode: joshi\n")
    assert load_config_file(path) == {"window_epochs": 5, "at_mode": "joshi"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[training]\nlearning_rate = 0.1\n", r"run.toml: unknown key 'learning_rate' in \[training\]"),
        (
            "[training]\nsfreq = 100\n",
            r"run.toml: unknown key 'sfreq' in \[training\] \(it belongs in \[data\]\)",
        ),
        ("epohcs = 3\n", r"run.toml: unknown key 'epohcs'"),
        ("[training]\nepochs = 0\n", r"run.toml: \[training\] epochs = 0, expected a positive integer"),
        ('[distillation]\nat_mode = "fancy"\n', r"at_mode = 'fancy'"),
        (
            '[training]\nlr_schedule = "step"\n',
            r"run.toml: \[training\] lr_schedule = 'step', expected one of 'constant', 'cosine'",
        ),
        (
            "[training]\nteacher_epochs = 0\n",
            r"\[training\] teacher_epochs = 0, expected a positive integer or none",
        ),
    ],
)
def test_bad_config_names_key_and_file(tmp_path, text, message):
    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(path)


def test_paper_config_file_is_the_paper_protocol():
    from pathlib import Path

    config = load_config(Path(__file__).resolve().parents[2] / "configs" / "paper.toml")
    assert (config.training.epochs, config.training.lr, config.data.sfreq, config.model.window_epochs) == (
        150,
        1e-3,
        200.0,
        35,
    )
    assert config.data.split_fractions == [0.8, 0.1, 0.1] and config.distillation.temperature == 1.0
    TrainConfig.from_dict(SYNTHETIC_QUICKSTART)  # the quick preset is valid


def test_split_is_subject_wise_seeded_and_reloadable(tmp_path):
    recordings = {f"s{i:02d}-n{n}": f"s{i:02d}" for i in range(20) for n in (1, 2)}
    split = split_subjects(recordings, seed=3)
    assert [len(split.subjects[p]) for p in ("train", "val", "test")] == [16, 2, 2]
    parts = [set(split.subjects[p]) for p in ("train", "val", "test")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    # both nights of a subject stay together
    assert (
        all(k.split("-")[0] in split.subjects["test"] for k in split.keys("test"))
        and len(split.keys("test")) == 4
    )
    assert split_subjects(recordings, seed=3).subjects == split.subjects
    assert split_subjects(recordings, seed=4).subjects != split.subjects
    loaded = load_split(split.save(tmp_path / "split.json"))
    assert loaded.subjects == split.subjects and loaded.keys("train") == split.keys("train")


def test_empty_split_is_an_error(tmp_path):
    with pytest.raises(EmptySplitError, match="2 subject.*at least 3 subjects"):
        split_subjects({"a": "a", "b": "b"})
    path = tmp_path / "split.json"
    path.write_text(
        json.dumps({"format": "kdsleep-split", "subjects": {"train": ["a"], "val": [], "test": ["b"]}})
    )
    with pytest.raises(EmptySplitError, match="'val' part"):
        load_split(path)


def test_variants_are_configurations_of_one_loop():
    assert [v.stages for v in VARIANTS.values()] == [
        ["final"],
        ["final"],
        ["at"],
        ["at", "final"],
        ["final"],
        ["at", "final"],
        ["final"],
        ["final"],
    ]
    assert {n: v.weight_kd for n, v in VARIANTS.items() if v.final_step} == {
        "eeg_baseline": 0.0,
        "ecg_baseline": 0.0,
        "at_cl": 0.0,
        "sd_cl": 0.5,
        "at_sd_cl": 0.5,
        "ecg_ls": 0.0,
        "ecg_self": 0.5,
    }
    assert not VARIANTS["ecg_baseline"].needs_teacher and VARIANTS["sd_cl"].needs_teacher
    # the controls: label smoothing over a validation grid; self-distillation from the ECG baseline, which
    # needs no EEG teacher
    assert VARIANTS["ecg_ls"].label_smoothing_grid == (0.05, 0.1, 0.2)
    assert VARIANTS["ecg_self"].uses_teacher and not VARIANTS["ecg_self"].needs_teacher
    assert VARIANTS["ecg_self"].teacher_modality == "ecg"
    assert VARIANTS["ecg_self"].weight_kd == VARIANTS["sd_cl"].weight_kd
    assert get_variant("AT+SD+CL").name == "at_sd_cl"
    assert paper_alpha_to_weight_kd(0.5) == 0.5
    with pytest.raises(ValueError, match="unknown variant 'kd'"):
        get_variant("kd")


def test_class_weights_formula_and_use():
    weights = class_weights([600, 200, 100, 100])
    torch.testing.assert_close(weights, torch.tensor([1000 / 2400, 1000 / 800, 1000 / 400, 1000 / 400]))
    with pytest.raises(ValueError, match=r"classes \[2\] have no scored epoch"):
        class_weights([5, 5, 0])
    torch.manual_seed(0)
    logits = torch.randn(3, 4, 6)
    labels = torch.randint(0, 4, (3, 6))
    labels[0, 0] = -1
    loss = FinalLoss(weights)(logits, labels)
    rows, targets = logits.permute(0, 2, 1).reshape(-1, 4), labels.reshape(-1)
    expected = torch.nn.functional.cross_entropy(rows, targets, weight=weights, ignore_index=-1)
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    unweighted = torch.nn.functional.cross_entropy(rows, targets, ignore_index=-1)
    assert abs(float(loss) - float(unweighted)) > 1e-3
    # with a teacher, the fused loss equals the reference loss
    teacher = torch.randn(3, 4, 6)
    torch.testing.assert_close(
        FinalLoss(weights, weight_kd=0.5)(logits, labels, teacher),
        reference.distillation_loss(logits, teacher, labels, class_weights=weights, weight_kd=0.5),
        rtol=1e-5,
        atol=1e-6,
    )


def test_quick_config_file_matches_the_built_in_preset():
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "configs" / "synthetic_quick.toml"
    preset = {k: v for k, v in SYNTHETIC_QUICKSTART.items() if v is not None}
    assert load_config_file(path) == preset


@pytest.mark.parametrize("suffix", [".toml", ".yaml"])
def test_config_file_that_is_not_utf8_is_named(tmp_path, suffix) -> None:
    from kdsleep.distill.config import ConfigError, load_config_file

    path = tmp_path / f"c{suffix}"
    path.write_bytes(
        b"# caf\xe9\n[training]\nepochs = 1\n" if suffix == ".toml" else b"# caf\xe9\nepochs: 1\n"
    )
    with pytest.raises(ConfigError, match=r"c\.(toml|yaml): not UTF-8 text .*saved as UTF-8"):
        load_config_file(path)


def test_config_file_error_is_reported_even_when_a_flag_overrides_it(tmp_path) -> None:
    from kdsleep.distill.config import ConfigError, load_config

    path = tmp_path / "c.toml"
    path.write_text('[training]\nepochs = "two"\n')
    with pytest.raises(ConfigError, match=r"c\.toml.*epochs"):
        load_config(path, {"epochs": 1})


def test_configuration_is_four_typed_sections(tmp_path) -> None:
    from kdsleep.distill.config import (
        SECTIONS,
        DataConfig,
        DistillationConfig,
        ModelConfig,
        TrainingConfig,
    )

    path = tmp_path / "run.toml"
    path.write_text('[data]\ngrouping = "w-n-r"\nsfreq = 64\n[distillation]\ntemperature = 4.0\n')
    config = load_config(path, {"epochs": 5})
    assert isinstance(config.data, DataConfig) and isinstance(config.model, ModelConfig)
    assert isinstance(config.training, TrainingConfig) and isinstance(config.distillation, DistillationConfig)
    assert (config.data.sfreq, config.training.epochs, config.distillation.temperature) == (64, 5, 4.0)
    assert config.data.stage_grouping.n_classes == 3 and config.data.ecg_channels == ("ecg",)
    # the dictionary form is the file's layout and reads back to the same configuration
    nested = config.to_dict()
    assert set(nested) == set(SECTIONS) and nested["training"]["epochs"] == 5
    assert TrainConfig.from_dict(nested) == config
    # every key lives in exactly one section, so flat key names (presets, flags) place themselves
    keys = [k for section in SECTIONS.values() for k in section]
    assert len(keys) == len(set(keys)) == len(config.flat())
    assert config.replace(lr=0.5).training.lr == 0.5 and config.training.lr == 1e-3


def test_stage_settings_come_from_the_training_and_distillation_sections() -> None:
    from kdsleep.distill.trainer import TrainSettings

    config = TrainConfig.from_dict(
        {"training": {"lr": 0.02, "patience": 3}, "distillation": {"kl_reduction": "element"}}
    )
    settings = TrainSettings.from_config(config)
    assert (settings.lr, settings.patience, settings.kl_reduction) == (0.02, 3, "element")


def test_run_folder_made_with_a_flat_configuration_is_still_checked(tmp_path) -> None:
    """Run folders written before the sections existed hold a flat ``config``; they are compared key by key."""
    from kdsleep.distill.config import flatten_config_dict

    flat = TrainConfig().flat()
    assert flatten_config_dict(flat) == flatten_config_dict(TrainConfig().to_dict()) == flat
    with pytest.raises(
        ConfigError, match=r"old\.json: unknown key 'sfreq' in \[model\] \(it belongs in \[data\]\)"
    ):
        flatten_config_dict({"model": {"sfreq": 1}}, source="old.json")
