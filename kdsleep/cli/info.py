"""``kdsleep info``: versions and compiled backends."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    return subparsers.add_parser("info", help="print versions and which kernels were compiled")


def run(args: argparse.Namespace) -> int:
    from kdsleep.info import main

    return main()
