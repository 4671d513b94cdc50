"""Training seeds: every variant trained with N seeds on one split, resumable per seed, one report over seeds.

:func:`run_seeds` (``kdsleep experiment --seeds N``) runs the pipeline of
:mod:`kdsleep.distill.experiment` once per training seed, each in ``RUN_DIR/seed-<seed>/`` on the split of
the first seed; a finished seed leaves ``outcomes.json`` and is read back instead of being re-run.
:func:`write_seeds_run_report` writes ``RUN_DIR/report.md`` / ``report.json``: kappa and macro F1 as
mean ± SD over seeds, per-class F1, paired per-subject tests with Holm correction and the claim rule
(:func:`kdsleep.evaluation.report.build_seeds_report`).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kdsleep._io import write_json_atomic
from kdsleep.data.stages import get_grouping
from kdsleep.distill.config import TrainConfig
from kdsleep.distill.experiment import Pipeline, RunFolderError, run_variants
from kdsleep.distill.runner import VariantOutcome
from kdsleep.distill.variants import CONTROL_VARIANTS, KD_VARIANTS, get_variant
from kdsleep.evaluation.metrics import StagingMetrics
from kdsleep.evaluation.report import VariantResult, write_seeds_report

__all__ = ["SEED_OUTCOMES", "run_seeds", "seed_dir", "seed_dirs", "write_seeds_run_report"]

logger = logging.getLogger(__name__)


#: Marker of a finished seed: the outcomes of its variants (their test metrics, pooled and per subject).
SEED_OUTCOMES = "outcomes.json"


def seed_dir(run_dir: str | os.PathLike[str], seed: int) -> Path:
    """The folder of one training seed in a run with several seeds: ``RUN_DIR/seed-<seed>``."""
    return Path(run_dir) / f"seed-{seed}"


def seed_dirs(run_dir: str | os.PathLike[str]) -> list[tuple[int, Path]]:
    """``(seed, folder)`` of every seed folder of ``run_dir`` (:func:`seed_dir`) that holds a run, by seed."""
    found = []
    for folder in Path(run_dir).glob("seed-*"):
        suffix = folder.name.removeprefix("seed-")
        if (
            suffix.isdigit()
            and seed_dir(run_dir, int(suffix)) == folder
            and (folder / "config.json").is_file()
        ):
            found.append((int(suffix), folder))
    return sorted(found)


def _outcome_record(outcome: VariantOutcome) -> dict[str, Any]:
    return {
        "variant": outcome.variant,
        "grouping": outcome.grouping,
        "metrics": outcome.metrics.to_dict(),
        "per_subject": {s: m.to_dict() for s, m in outcome.per_subject.items()},
        "stages": outcome.stages,
        "seconds": outcome.seconds,
    }


def _load_seed_outcomes(path: Path, wanted: set[tuple[str, str]]) -> list[VariantOutcome] | None:
    """The outcomes recorded in a finished seed's marker, or ``None`` if it lacks one of ``wanted``."""
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        outcomes = {
            (r["grouping"], r["variant"]): VariantOutcome(
                variant=r["variant"],
                grouping=r["grouping"],
                metrics=StagingMetrics.from_dict(r["metrics"]),
                per_subject={s: StagingMetrics.from_dict(m) for s, m in r["per_subject"].items()},
                labels={},
                predictions={},
                stages=r.get("stages", {}),
                seconds=float(r.get("seconds", 0.0)),
            )
            for r in data["outcomes"]
        }
    except (KeyError, TypeError, ValueError) as err:
        raise RunFolderError(
            f"{path}: not a seed's outcome file ({err}); remove it to rerun the seed"
        ) from None
    if not wanted <= set(outcomes):
        return None
    return [outcomes[key] for key in sorted(wanted, key=list(outcomes).index)]


def run_seeds(
    config: TrainConfig,
    run_dir: str | os.PathLike[str],
    variants: Sequence[str],
    groupings: Sequence[str],
    seeds: int,
    *,
    make_pipeline=None,
    **pipeline_options: Any,
) -> dict[int, list[VariantOutcome]]:
    """Run ``variants`` for every class set with ``seeds`` training seeds: ``config.training.seed``, ``config.training.seed + 1``...

    Each seed runs in its own folder ``RUN_DIR/seed-<seed>/`` (a run folder of :class:`Pipeline`, with its own
    teacher: the EEG baseline is trained once per seed unless ``teacher_checkpoint`` is given) on the same
    subject split: the split of the first seed (or ``config.data.split_file``). A seed whose variants all finished
    leaves ``outcomes.json``; a later call reads it instead of building that seed's pipeline, and an
    interrupted seed resumes from its finished stages.

    Parameters
    ----------
    config : TrainConfig
        The configuration; its ``seed`` is the first seed.
    run_dir : path-like
        The run folder of the whole experiment.
    variants, groupings : sequence of str
        What to run (the teacher first when needed) and on which class sets.
    seeds : int
        Number of training seeds (at least 1).
    make_pipeline : callable, optional
        ``make_pipeline(config, run_dir)``: a :class:`Pipeline` (default: ``Pipeline(config, run_dir,
        **pipeline_options)``).
    **pipeline_options
        Passed to :class:`Pipeline`.

    Returns
    -------
    dict of int to list of VariantOutcome
        The outcomes of each seed (those read back from ``outcomes.json`` carry metrics only).
    """
    if isinstance(seeds, bool) or not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be a positive integer, got {seeds!r}")
    build = make_pipeline or (lambda config, folder: Pipeline(config, folder, **pipeline_options))

    wanted = {(get_grouping(g).name, get_variant(v).name) for g in groupings for v in variants}
    first = config.training.seed
    results: dict[int, list[VariantOutcome]] = {}
    for seed in range(first, first + seeds):
        folder = seed_dir(run_dir, seed)
        marker = folder / SEED_OUTCOMES
        done = _load_seed_outcomes(marker, wanted)
        if done is not None:
            logger.info("seed %d: finished earlier, reading %s", seed, marker)
            results[seed] = done
            continue
        split_file = config.data.split_file
        if split_file is None and seed != first:
            split_file = str(seed_dir(run_dir, first) / "split.json")
        pipeline = build(config.replace(seed=seed, split_file=split_file), folder)
        outcomes = run_variants(pipeline, variants, groupings)
        if pipeline.rank == 0:
            pipeline.write_report(outcomes)
            write_json_atomic(marker, {"seed": seed, "outcomes": [_outcome_record(o) for o in outcomes]})
        results[seed] = outcomes
    return results


def write_seeds_run_report(
    run_dir: str | os.PathLike[str],
    outcomes_by_seed: dict[int, list[VariantOutcome]],
    *,
    name: str = "report",
    metadata: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """``report.md`` / ``report.json`` of a run with several seeds (:func:`kdsleep.evaluation.report.build_seeds_report`)."""
    return write_seeds_report(
        {
            seed: [VariantResult(o.variant, o.grouping, o.metrics, o.per_subject) for o in outcomes]
            for seed, outcomes in outcomes_by_seed.items()
        },
        run_dir,
        name=name,
        kd_variants=KD_VARIANTS,
        controls=CONTROL_VARIANTS,
        title="EEG-to-ECG knowledge distillation: test results over training seeds",
        metadata=metadata,
    )
