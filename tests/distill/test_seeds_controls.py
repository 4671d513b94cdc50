"""Seeds, controls and the statistics of ``kdsleep experiment --seeds N``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import torch

from kdsleep.distill.experiment import Pipeline, train_label_smoothing
from kdsleep.distill.losses import FinalLoss
from kdsleep.distill.runner import VariantOutcome
from kdsleep.distill.seeds import run_seeds, seed_dir, write_seeds_run_report
from kdsleep.distill.trainer import TrainSettings
from kdsleep.distill.variants import get_variant
from kdsleep.evaluation.compare import format_p_value, holm_correction
from kdsleep.evaluation.metrics import StagingMetrics, SubjectConfusion, metrics_from_confusion
from kdsleep.evaluation.report import VariantResult, build_seeds_report, render_seeds_markdown

CLASSES = ["W", "N", "R"]


def subject_metrics(correct: dict[str, int], n: int = 30) -> dict[str, StagingMetrics]:
    """Per-subject metrics where subject s has ``correct[s]`` of ``n`` epochs per class right."""
    accumulator = SubjectConfusion(3, CLASSES)
    for subject, right in correct.items():
        labels = np.repeat(np.arange(3), n)
        preds = labels.copy()
        for k in range(3):
            wrong = np.arange(k * n + right, (k + 1) * n)
            preds[wrong] = (k + 1) % 3
        accumulator.update([subject] * labels.size, labels, preds)
    return accumulator.compute()


def pooled(per_subject: dict[str, StagingMetrics]) -> StagingMetrics:
    return metrics_from_confusion(sum(np.asarray(m.confusion) for m in per_subject.values()), CLASSES)


def result(variant: str, correct: dict[str, int]) -> VariantResult:
    per_subject = subject_metrics(correct)
    return VariantResult(variant, "w-n-r", pooled(per_subject), per_subject)


SUBJECTS = [f"s{i:02d}" for i in range(10)]


def scores(base: int) -> dict[str, int]:
    # distinct per-subject levels so that paired differences are all of one sign
    return {s: base + i for i, s in enumerate(SUBJECTS)}


# --------------------------------------------------------------------------------------------------------
def test_label_smoothing_loss_is_torch_cross_entropy_with_weights():
    torch.manual_seed(0)
    logits = torch.randn(4, 3, 7)
    labels = torch.randint(0, 3, (4, 7))
    labels[0, :3] = -1
    weights = torch.tensor([0.5, 1.0, 2.5])
    for epsilon in (0.05, 0.2):
        expected = torch.nn.functional.cross_entropy(
            logits, labels, weight=weights, ignore_index=-1, label_smoothing=epsilon
        )
        for backend in ("reference", "fused"):
            got = FinalLoss(weights, backend=backend, label_smoothing=epsilon)(logits, labels)
            torch.testing.assert_close(got, expected)
    # epsilon changes the loss; with epsilon 0 the loss is the plain WCE
    plain = FinalLoss(weights, backend="reference")(logits, labels)
    torch.testing.assert_close(
        plain, torch.nn.functional.cross_entropy(logits, labels, weight=weights, ignore_index=-1)
    )
    assert not torch.isclose(
        plain, FinalLoss(weights, backend="reference", label_smoothing=0.2)(logits, labels)
    )
    with pytest.raises(ValueError, match="weight_kd = 0"):
        FinalLoss(weights, weight_kd=0.5, label_smoothing=0.1)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        FinalLoss(weights, label_smoothing=1.0)


@dataclass
class FakeRunner:
    """Records what the label-smoothing search trains and evaluates."""

    val: dict[float, float]
    settings: TrainSettings = field(default_factory=TrainSettings)
    trained: list = field(default_factory=list)
    evaluated: list = field(default_factory=list)

    def train(self, variant, on_epoch_end=None):
        self.trained.append(variant)
        # the macro F1 ranks the candidates the other way round from the weighted F1
        score = self.val[variant.label_smoothing]
        return f"model-{variant.label_smoothing:g}", {
            "final": {"val_weighted_f1": score, "val_macro_f1": 1 - score}
        }

    def evaluate(self, variant, model, stages):
        self.evaluated.append((variant.name, model, stages))
        per_subject = subject_metrics({"a": 20, "b": 25})
        return VariantOutcome(variant.name, "w-n-r", pooled(per_subject), per_subject, {}, {}, stages)


def test_label_smoothing_epsilon_is_chosen_on_validation_and_tested_once():
    runner = FakeRunner({0.05: 0.4, 0.1: 0.7, 0.2: 0.5})
    outcome = train_label_smoothing(runner, get_variant("ecg_ls"))
    # one training per epsilon, each in its own folder, with that epsilon
    assert [v.name for v in runner.trained] == ["ecg_ls/eps-0.05", "ecg_ls/eps-0.1", "ecg_ls/eps-0.2"]
    assert [v.label_smoothing for v in runner.trained] == [0.05, 0.1, 0.2]
    # only the best validation model reaches the test subjects, under the control's own name
    assert [(name, model) for name, model, _ in runner.evaluated] == [("ecg_ls", "model-0.1")]
    assert outcome.stages["label_smoothing"]["chosen"] == 0.1
    assert outcome.stages["label_smoothing"]["val_weighted_f1"] == {"0.05": 0.4, "0.1": 0.7, "0.2": 0.5}


def test_label_smoothing_epsilon_follows_the_checkpoint_metric():
    runner = FakeRunner({0.05: 0.4, 0.1: 0.7, 0.2: 0.5}, settings=TrainSettings(checkpoint_metric="macro_f1"))
    outcome = train_label_smoothing(runner, get_variant("ecg_ls"))
    assert [model for _, model, _ in runner.evaluated] == ["model-0.05"]
    assert outcome.stages["label_smoothing"]["chosen_on"] == "val_macro_f1"
    assert outcome.stages["label_smoothing"]["val_macro_f1"] == pytest.approx(
        {"0.05": 0.6, "0.1": 0.3, "0.2": 0.5}
    )


# --------------------------------------------------------------------------------------------------------
class FakePipeline:
    rank = 0

    def __init__(self, config, folder, log, fail=False):
        self.config, self.folder, self.log, self.fail = config, Path(folder), log, fail
        log.append((config.training.seed, config.data.split_file))

    def run_variant(self, name, grouping):
        if self.fail:
            raise RuntimeError("a finished seed was run again")
        seed = self.config.training.seed
        per_subject = subject_metrics({"a": 10 + seed, "b": 20 + 2 * seed, "c": 15})
        return VariantOutcome(name, grouping, pooled(per_subject), per_subject, {}, {})

    def write_report(self, outcomes):
        self.folder.mkdir(parents=True, exist_ok=True)


def test_seed_loop_runs_every_seed_in_its_folder_and_resumes(tmp_path):
    from kdsleep.distill.config import TrainConfig

    config = TrainConfig.from_dict({"seed": 3})
    log: list = []
    variants = ["ecg_baseline", "sd_cl"]
    results = run_seeds(
        config, tmp_path, variants, ["w-n-r"], 3, make_pipeline=lambda c, f: FakePipeline(c, f, log)
    )
    assert sorted(results) == [3, 4, 5]
    assert all([o.variant for o in results[s]] == variants for s in results)
    # seeds seed, seed + 1, ...; the later seeds reuse the first seed's split
    first_split = str(seed_dir(tmp_path, 3) / "split.json")
    assert log == [(3, None), (4, first_split), (5, first_split)]
    assert all((seed_dir(tmp_path, s) / "outcomes.json").exists() for s in (3, 4, 5))

    # a rerun reads the finished seeds back and builds no pipeline for them
    (seed_dir(tmp_path, 5) / "outcomes.json").unlink()
    again: list = []
    resumed = run_seeds(
        config,
        tmp_path,
        variants,
        ["w-n-r"],
        3,
        make_pipeline=lambda c, f: FakePipeline(c, f, again, fail=c.training.seed != 5),
    )
    assert [seed for seed, _ in again] == [5]
    for seed in (3, 4, 5):
        for old, new in zip(results[seed], resumed[seed], strict=True):
            assert (old.variant, old.grouping) == (new.variant, new.grouping)
            assert new.metrics.cohen_kappa == pytest.approx(old.metrics.cohen_kappa)
            assert set(new.per_subject) == {"a", "b", "c"}
    # asking for a variant a finished seed lacks reruns that seed (its finished stages are reused there)
    more: list = []
    run_seeds(
        config,
        tmp_path,
        [*variants, "ecg_ls"],
        ["w-n-r"],
        1,
        make_pipeline=lambda c, f: FakePipeline(c, f, more),
    )
    assert more == [(3, None)]
    with pytest.raises(ValueError, match="positive integer"):
        run_seeds(config, tmp_path, variants, ["w-n-r"], 0)

    # the report: mean ± SD over seeds of the pooled figures
    markdown, json_path = write_seeds_run_report(tmp_path, results)
    report = json.loads(json_path.read_text())
    row = next(r for r in report["summary"] if r["variant"] == "sd_cl")
    kappas = [next(o for o in results[s] if o.variant == "sd_cl").metrics.cohen_kappa for s in (3, 4, 5)]
    assert row["seeds"] == [3, 4, 5]
    assert row["cohen_kappa"]["mean"] == pytest.approx(np.mean(kappas))
    assert row["cohen_kappa"]["sd"] == pytest.approx(np.std(kappas, ddof=1))
    assert len(row["f1"]) == 3 and row["f1"][2]["sd"] is not None
    text = markdown.read_text()
    assert text.index("Cohen's κ") < text.index("weighted F1") and "± " in text
    # the paired test pairs each subject's mean over seeds
    (comparison,) = report["comparisons"]
    mean_a = np.mean(
        [
            next(o for o in results[s] if o.variant == "ecg_baseline").per_subject["b"].cohen_kappa
            for s in (3, 4, 5)
        ]
    )
    assert comparison["values_a"][comparison["subjects"].index("b")] == pytest.approx(mean_a)


# --------------------------------------------------------------------------------------------------------
def family(kd: int, ls: int, self_: int, base: int = 10) -> dict[int, list[VariantResult]]:
    return {
        seed: [
            result("ecg_baseline", scores(base)),
            result("sd_cl", scores(kd + seed % 2)),
            result("ecg_ls", scores(ls)),
            result("ecg_self", scores(self_)),
        ]
        for seed in (0, 1)
    }


def test_holm_is_applied_over_the_whole_family():
    report = build_seeds_report(family(kd=18, ls=12, self_=12))
    comparisons = report["comparisons"]
    # three variants against the baseline, the KD variant against each control
    assert [(c["variant_a"], c["variant_b"]) for c in comparisons] == [
        ("ecg_baseline", "sd_cl"),
        ("ecg_baseline", "ecg_ls"),
        ("ecg_baseline", "ecg_self"),
        ("ecg_ls", "sd_cl"),
        ("ecg_self", "sd_cl"),
    ]
    adjusted = holm_correction([c["p_value"] for c in comparisons])
    assert [c["p_adjusted"] for c in comparisons] == pytest.approx(list(adjusted))
    assert all(c["p_adjusted"] >= c["p_value"] for c in comparisons)
    text = render_seeds_markdown(report)
    assert "Holm p" in text
    for c in comparisons:
        assert f"| {format_p_value(c['p_value'])} | {format_p_value(c['p_adjusted'])} |" in text


def test_claim_only_where_a_kd_variant_beats_both_controls():
    wins = build_seeds_report(family(kd=18, ls=12, self_=12))
    assert [c["claim"] for c in wins["claims"]] == [True]
    assert "distillation helps" in render_seeds_markdown(wins)

    # label smoothing does as well: the gain over the baseline is no distillation gain
    ties = build_seeds_report(family(kd=18, ls=19, self_=12))
    assert [c["claim"] for c in ties["claims"]] == [False]
    assert ties["claims"][0]["beats"] == {"ecg_baseline": True, "ecg_ls": False, "ecg_self": True}
    text = render_seeds_markdown(ties)
    assert (
        "distillation helps" not in text and "not shown to help" in text and "ECG + label smoothing" in text
    )

    # without the controls no claim can be made
    bare = {
        s: [r for r in rs if r.variant in ("ecg_baseline", "sd_cl")] for s, rs in family(18, 12, 12).items()
    }
    alone = build_seeds_report(bare)
    assert [c["claim"] for c in alone["claims"]] == [False]
    assert "were not run" in render_seeds_markdown(alone)
    assert "distillation helps" not in render_seeds_markdown(alone)


# --------------------------------------------------------------------------------------------------------
def test_self_distillation_is_taught_by_the_ecg_baseline_checkpoint(tiny_config, tmp_path, monkeypatch):
    from kdsleep.checkpoint import load_checkpoint
    from kdsleep.distill import runner as runner_module

    seen = {}
    original = runner_module.train_stage

    def spy(spec, model, *, teacher=None, **kwargs):
        seen[spec.name] = (spec, teacher)
        return original(spec, model, teacher=teacher, **kwargs)

    monkeypatch.setattr(runner_module, "train_stage", spy)
    pipeline = Pipeline(tiny_config(epochs=1), tmp_path / "run", progress=False, command=["test"])
    outcome = pipeline.run_variant("ecg_self", "w-l-d-r")
    # the ECG baseline is trained first (no EEG teacher at all), then teaches from its saved checkpoint
    assert list(seen) == ["ecg_baseline", "ecg_self"]
    spec, teacher = seen["ecg_self"]
    assert spec.teacher_modality == "ecg" and spec.weight_kd == 0.5
    baseline = load_checkpoint(tmp_path / "run" / "w-l-d-r" / "ecg_baseline" / "model.pt").model
    for name, value in baseline.state_dict().items():
        torch.testing.assert_close(teacher.state_dict()[name], value)
    assert outcome.stages["teacher_checkpoint"].endswith("ecg_baseline/model.pt")
    assert not (tmp_path / "run" / "w-l-d-r" / "eeg_baseline").exists()


def test_experiment_cli_with_seeds(tiny_data, tiny_toml, tmp_path, capsys, monkeypatch):
    from kdsleep.cli import main
    from kdsleep.distill import seeds

    config = tiny_toml(epochs=1, split_fractions=[0.4, 0.2, 0.4])
    run_dir = tmp_path / "grid"
    argv = [
        "experiment",
        "--config",
        str(config),
        "--data-dir",
        str(tiny_data),
        "--run-dir",
        str(run_dir),
        "--classes",
        "4",
        "--variants",
        "ecg_self",
        "ecg_baseline",
        "--seeds",
        "2",
        "--no-progress",
    ]
    assert main(argv) == 0
    assert "report over 2 seeds" in capsys.readouterr().out
    for seed in (0, 1):
        assert (run_dir / f"seed-{seed}" / "w-l-d-r" / "ecg_self" / "model.pt").exists()
    # one split for every seed
    assert json.loads((run_dir / "seed-1" / "split.json").read_text()) == json.loads(
        (run_dir / "seed-0" / "split.json").read_text()
    )
    report = json.loads((run_dir / "report.json").read_text())
    assert report["seeds"] == [0, 1]
    assert [(c["variant_a"], c["variant_b"]) for c in report["comparisons"]] == [("ecg_baseline", "ecg_self")]
    assert all(c["p_adjusted"] is not None for c in report["comparisons"])

    # kdsleep evaluate on the run's folder evaluates each seed and rewrites the report over seeds
    kappas = {r["variant"]: r["cohen_kappa"]["mean"] for r in report["summary"]}
    assert main(["evaluate", str(run_dir), "--max-hypnograms", "0"]) == 0
    out = capsys.readouterr().out
    assert "seed 0 (" in out and "seed 1 (" in out and "report over 2 seeds" in out
    assert (run_dir / "seed-1" / "w-l-d-r" / "ecg_self" / "plots" / "confusion_matrix.png").exists()
    again = json.loads((run_dir / "report.json").read_text())
    assert {r["variant"]: r["cohen_kappa"]["mean"] for r in again["summary"]} == pytest.approx(kappas)

    # a rerun reuses both finished seeds and only rewrites the report
    (run_dir / "report.md").unlink()
    monkeypatch.setattr(seeds, "Pipeline", lambda *a, **k: pytest.fail("a finished seed was rebuilt"))
    assert main(argv) == 0
    assert (run_dir / "report.md").exists()


def test_label_smoothing_control_end_to_end(tiny_config, tmp_path, monkeypatch):
    from kdsleep.distill import runner as runner_module

    seen = []
    original = runner_module.train_stage

    def spy(spec, model, **kwargs):
        seen.append((spec.out_dir, spec.label_smoothing, spec.weight_kd))
        return original(spec, model, **kwargs)

    monkeypatch.setattr(runner_module, "train_stage", spy)
    pipeline = Pipeline(tiny_config(epochs=1), tmp_path / "run", progress=False, command=["test"])
    outcome = pipeline.run_variant("ecg_ls", "w-l-d-r")
    folder = tmp_path / "run" / "w-l-d-r" / "ecg_ls"
    assert seen == [(folder / f"eps-{e:g}" / "final", e, 0.0) for e in (0.05, 0.1, 0.2)]
    chosen = outcome.stages["label_smoothing"]
    # the first epsilon with the best validation score (ties keep the smaller one)
    best = max(chosen["val_weighted_f1"].values())
    assert chosen["chosen"] == next(float(e) for e, v in chosen["val_weighted_f1"].items() if v == best)
    assert (folder / "model.pt").exists() and (folder / "test.json").exists()
