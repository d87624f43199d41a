"""fastinit.cli.parser: the argument types (bad flags exit with status 2, sizes) and the
checks before any work: a bad or conflicting output path ends in one line and exit status 2
and nothing is measured or written."""
from __future__ import annotations

import pytest
import torch

from fastinit.cli import bench as B
from fastinit.cli import check as report
from fastinit.cli import main
from fastinit.cli import parser as P
from tests.cli_helpers import QUICK_BENCH, exit_status, one_line_error


@pytest.mark.parametrize("argv, message", [
    (["bench", "--sizes", "2^x"], "bad size"),
    (["bench", "--sizes", "0"], "at least 1"),
    (["bench", "--dtypes", "int8"], "unknown dtype"),
    (["bench", "--functions", "orthogonal_"], "unknown function"),
    (["bench", "--models", "13b"], "unknown model"),
    (["bench", "--repeats", "0"], "positive integer"),
    (["bench", "--device", "cuda"] if not torch.cuda.is_available() else
     ["bench", "--device", "xla"], "device"),
    (["check", "--dists", "cauchy"], "unknown distribution"),
    (["check", "--device", "tpu"], "device"),
    (["check", "--samples", "10"], "at least 1000"),
    (["demo", "--model", "huge"], "unknown model"),
    (["demo", "--dtype", "int8"], "unknown dtype"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_flags_exit_2(argv, message, capsys):
    assert exit_status(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("text, n", [("2^20", 1 << 20), ("2**4", 16), ("1<<3", 8),
                                     ("65536", 65536), ("1_000", 1000)])
def test_parse_size(text, n):
    assert P.parse_size(text) == n


@pytest.fixture
def no_work(monkeypatch):
    """Fail the test if a command starts measuring or drawing anything."""
    def refuse(*args, **kwargs):
        raise AssertionError("the command started its work")

    for target in (B, report):
        for name in ("bench_functions", "bench_models", "run_checks"):
            if hasattr(target, name):
                monkeypatch.setattr(target, name, refuse)


@pytest.mark.parametrize("flag", ["--json", "--csv", "--markdown", "--plot"])
@pytest.mark.parametrize("case", ["missing folder", "under a file", "a folder"])
def test_bench_bad_output_path_is_one_line_before_any_work(flag, case, tmp_path, capsys,
                                                           no_work, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("x")
    (tmp_path / "adir").mkdir()
    path = {"missing folder": "nodir/out.x", "under a file": "afile/out.x",
            "a folder": "adir"}[case]
    assert main(QUICK_BENCH + [flag, path]) == 2
    line = one_line_error(capsys, "bench")
    assert f"{flag} {path}:" in line
    assert not (tmp_path / "nodir").exists()  # no folder is made for any output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adir", "afile"]
    assert list((tmp_path / "adir").iterdir()) == []


@pytest.mark.parametrize("extra, message", [
    (["--json", "-", "--csv", "-"], "cannot all write to stdout"),
    (["--plot", "-"], "cannot write to stdout"),
    (["--json", "r.txt", "--csv", "./r.txt"], "both write"),
    (["--json", ""], "empty path"),
])
def test_bench_conflicting_outputs(extra, message, tmp_path, capsys, no_work, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(QUICK_BENCH + extra) == 2
    assert message in one_line_error(capsys, "bench")


@pytest.mark.parametrize("case", ["an existing file", "missing parent"])
def test_check_bad_out_is_one_line_before_any_work(case, tmp_path, capsys, no_work):
    (tmp_path / "report.md").write_text("mine")
    out = str(tmp_path / ("report.md" if case == "an existing file" else "no/such/dir"))
    assert main(["check", "--out", out, "--quiet"]) == 2
    assert f"--out {out}:" in one_line_error(capsys, "check")
    assert (tmp_path / "report.md").read_text() == "mine"
    assert not (tmp_path / "no").exists()
