"""Command line: ``python -m swinjax <command> ...``.

Commands:

* ``macs --config configs/<name>.py[:arg] [--height H --width W] [--json]``: parameters and MACs of
  the whole codec and of each part, from XLA's cost analysis (:mod:`swinjax.costs`).

User mistakes (missing files, bad arguments, invalid configs) print one line to stderr and exit
with status 2; they never print a traceback.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence


class UserError(Exception):
    """An error caused by the user's input: reported as one line, exit status 2."""


def _cmd_macs(args: argparse.Namespace) -> int:
    from swinjax.config_utils import load_config
    from swinjax.costs import cost_report, format_report

    try:
        config = load_config(args.config)
    except (FileNotFoundError, ValueError, ImportError, SyntaxError) as e:
        raise UserError(f"cannot load config {args.config!r}: {e}") from e
    try:
        report = cost_report(config, args.height, args.width)
    except ValueError as e:
        raise UserError(str(e)) from e
    print(format_report(report))
    if args.json:
        print(json.dumps(report, sort_keys=True))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``python -m swinjax``."""
    parser = argparse.ArgumentParser(prog="python -m swinjax", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("macs", help="parameters and MACs per part (XLA cost analysis)")
    p.add_argument("--config", required=True, help="config file, e.g. configs/swincoder.py[:tiny]")
    p.add_argument("--height", type=int, default=512, help="image height (default 512)")
    p.add_argument("--width", type=int, default=768, help="image width (default 768)")
    p.add_argument("--json", action="store_true", help="also print one JSON object (last line)")
    p.set_defaults(func=_cmd_macs)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
