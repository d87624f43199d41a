"""The ``fastinit`` command line: ``bench``, ``check``, ``demo`` and ``inspect``.

* :mod:`~fastinit.cli.parser`: what the commands' arguments share (argument types, the help
  formatter, the device flags) and the checks that run before any work (output paths,
  device);
* :mod:`~fastinit.cli.bench`, :mod:`~fastinit.cli.check`, :mod:`~fastinit.cli.demo`,
  :mod:`~fastinit.cli.inspect`: one module per command, each with its arguments
  (``add_<command>_parser``) and its ``run(args, argv)``; :func:`build_parser` here puts
  them together (the command modules import only downward, to ``parser`` and the helpers);
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

import argparse

import fastinit
from fastinit.cli import bench, check, demo, inspect
from fastinit.cli.parser import DISTRIBUTION_NAME, CommandError

__all__ = ["main", "build_parser"]


#: the commands, by name: each module has its ``add_parser(sub)`` and ``run(args, argv)``
_COMMANDS = {"bench": bench, "check": check, "demo": demo, "inspect": inspect}


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``fastinit`` command."""
    parser = argparse.ArgumentParser(
        prog="fastinit",
        description="fastinit: neural-network weight initialization with a counter-based "
                    "Philox stream, identical on the CPU and on any GPU.",
        epilog="Run 'fastinit COMMAND --help' for the flags of a command.")
    parser.add_argument("--version", action="version",
                        version=f"fastinit {fastinit.__version__} ({DISTRIBUTION_NAME})")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in _COMMANDS.values():
        command.add_parser(sub)
    return parser


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
    run = _COMMANDS[args.command].run
    try:
        return run(args, argv)
    except CommandError as exc:
        print(f"fastinit {args.command}: error: {exc}", file=sys.stderr)
        return 2
