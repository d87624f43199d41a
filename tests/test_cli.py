"""The ``fastinit`` command line as a whole (fastinit.cli.main, ``python -m fastinit``): no
command prints the help, and the real process ends a bad output path in one line.

Each command's own tests are in ``tests/test_cli_<module>.py``.
"""
from __future__ import annotations

import subprocess
import sys

from fastinit.cli import main
from tests.cli_helpers import QUICK_BENCH


def test_no_command_prints_help(capsys):
    assert main([]) == 2
    assert "bench" in capsys.readouterr().err


def test_python_dash_m_help():
    res = subprocess.run([sys.executable, "-m", "fastinit", "--help"], capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    for cmd in ("bench", "check", "demo"):
        assert cmd in res.stdout


def test_bad_output_path_from_the_console_script(tmp_path):
    """The real process: exit status 2, one line, no traceback, nothing measured."""
    res = subprocess.run([sys.executable, "-m", "fastinit", *QUICK_BENCH, "--plot",
                          str(tmp_path / "nodir" / "x.png")], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 2, res.stderr
    assert res.stderr.count("\n") == 1 and "--plot" in res.stderr, res.stderr
    assert res.stdout == ""
