"""The ``fastinit`` command line: ``bench``, ``check``, ``demo`` and ``inspect``.

* :mod:`~fastinit.cli.parser`: the argument parser and the checks that run before any work
  (output paths, device);
* :mod:`~fastinit.cli.bench`, :mod:`~fastinit.cli.check`, :mod:`~fastinit.cli.demo`,
  :mod:`~fastinit.cli.inspect`: one module per command, each with its ``run(args, argv)``;
* :mod:`~fastinit.cli.timing` (devices, timers, the machine), :mod:`~fastinit.cli.rendering`
  (tables, JSON, CSV, Markdown, plots), :mod:`~fastinit.cli.models` (the Llama-shaped
  models), :mod:`~fastinit.cli.laws` (the exact laws and thresholds ``check`` and the tests
  share).

Nothing in the core package imports from here: the command line is built on the public
API (``fastinit.<fn>_``, ``materialize``) like any other user of it.
"""
from __future__ import annotations

import sys
from collections.abc import Sequence

from fastinit.cli.parser import CommandError, build_parser

__all__ = ["main", "build_parser"]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``fastinit`` command line with ``argv`` (default ``sys.argv[1:]``).

    Returns the exit status: 0 success, 1 a failed check or determinism test, 2 a usage or
    environment error (one line on stderr, before the command starts its work). Bad flags
    exit through argparse, with a usage message and status 2.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    if args.command == "bench":
        from fastinit.cli.bench import run
    elif args.command == "check":
        from fastinit.cli.check import run
    elif args.command == "inspect":
        from fastinit.cli.inspect import run
    else:
        from fastinit.cli.demo import run
    try:
        return run(args, argv)
    except CommandError as exc:
        print(f"fastinit {args.command}: error: {exc}", file=sys.stderr)
        return 2
