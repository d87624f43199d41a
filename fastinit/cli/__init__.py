"""The ``fastinit`` command line (``bench``, ``check``, ``demo``) and its engines.

Nothing in the core package imports from here: the command line is built on the public
API (``fastinit.<fn>_``, ``materialize``) like any other user of it.
"""
from fastinit.cli.main import build_parser, main

__all__ = ["main", "build_parser"]
