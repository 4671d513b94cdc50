"""The ``kdsleep`` command line.

Every sub-command lives in its own module in this package and exposes two functions::

    def add_parser(subparsers) -> argparse.ArgumentParser   # registers the sub-command
    def run(args: argparse.Namespace) -> int                 # runs it, returns the exit code

Modules are discovered automatically, so adding a sub-command never touches this file.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import pkgutil
import sys

from kdsleep import __version__


class CLIError(Exception):
    """A user-facing error: printed as one line, exit code 2, no traceback."""


def show_progress(args: argparse.Namespace) -> bool:
    """Progress bars for a command: unless ``--no-progress`` was given, and only when stderr is a terminal
    (a log file or a pipe gets the log lines, not bar redraws)."""
    return not getattr(args, "no_progress", False) and sys.stderr.isatty()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kdsleep",
        description="EEG-to-ECG knowledge distillation for sleep staging.",
    )
    parser.add_argument("--version", action="version", version=f"kdsleep {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        if hasattr(module, "add_parser") and hasattr(module, "run"):
            sub = module.add_parser(subparsers)
            sub.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except CLIError as err:
        print(f"kdsleep {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"kdsleep {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
