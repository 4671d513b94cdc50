"""``kdsleep ecg12``: 12-lead ECG arrhythmia classification on PhysioNet/CinC 2020 data.

Each action is a sub-command in a module of its own in this package (``score``, ``pretrain``,
``finetune``, ``cv``, ``predict``), registered in :data:`ACTIONS` by its ``add_parser`` and ``run``.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

from kdsleep.cli.ecg12 import cv, finetune, predict, pretrain, score

AddParser = Callable[[argparse._SubParsersAction], argparse.ArgumentParser]
Run = Callable[[argparse.Namespace], int]

#: Sub-commands of ``kdsleep ecg12``: name -> (add its parser, run it).
ACTIONS: dict[str, tuple[AddParser, Run]] = {
    module.__name__.rsplit(".", 1)[1]: (module.add_parser, module.run)
    for module in (score, pretrain, finetune, cv, predict)
}


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "ecg12",
        help="12-lead ECG arrhythmia classification (PhysioNet/CinC 2020)",
        description="12-lead ECG arrhythmia classification on PhysioNet/CinC 2020 data.",
    )
    actions = parser.add_subparsers(dest="ecg12_command", metavar="ACTION")
    for add, run_action in ACTIONS.values():
        sub = add(actions)
        sub.set_defaults(_ecg12_run=run_action)
    parser.set_defaults(_ecg12_parser=parser)
    return parser


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "_ecg12_run", None)
    if action is None:
        args._ecg12_parser.print_help()
        return 2
    return int(action(args) or 0)


__all__ = ["ACTIONS", "add_parser", "run"]
