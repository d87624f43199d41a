"""``fastinit check`` (fastinit.cli.check), in-process at 20000 samples: every case passes,
the figures and the report are written (``figures_run``, once for the module), a wrong
distribution or sampler fails, a missing scipy says how to install it."""
from __future__ import annotations

import re
import sys

import pytest

from fastinit.cli import check as report
from fastinit.cli import main
from tests.cli_helpers import assert_png


def test_check_all_distributions_and_dtypes_pass(tmp_path, capsys):
    out = tmp_path / "all"
    rc = main(["check", "--out", str(out), "--samples", "20000", "--no-figures", "--quiet"])
    text = capsys.readouterr().out
    n = len(report.CASES) * len(report.DTYPES)
    assert rc == 0, text
    assert f"{n} of {n} checks passed" in text
    md = (out / "report.md").read_text()
    assert md.count("| PASS |") == n and "FAIL" not in md
    for dt in ("float32", "bfloat16", "float16", "float64"):
        assert f"| {dt} |" in md
    assert len([c for c in report.CASES if c.dist == "trunc_normal"]) >= 10


@pytest.fixture(scope="module")
def figures_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("check")
    rc = main(["check", "--out", str(out), "--samples", "20000", "--dtypes", "fp32,bf16",
               "--dists", "normal", "--quiet"])
    return rc, out


def test_check_writes_figures_and_report(figures_run):
    rc, out = figures_run
    assert rc == 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert len(pngs) == 3 * 2, pngs
    for name in pngs:
        assert_png(out / name)
    md = (out / "report.md").read_text()
    html = (out / "report.html").read_text()
    for name in pngs:  # every figure is linked from both pages
        assert f"({name})" in md and f"src='{name}'" in html
    assert "KS D" in md and "mean (SE)" in md
    assert len({report._slug(c.id) for c in report.CASES}) == len(report.CASES)


def test_check_fails_on_a_wrong_distribution(tmp_path, capsys):
    rc = main(["check", "--out", str(tmp_path), "--samples", "20000", "--dtypes", "fp32,bf16",
               "--perturb-std", "1.1", "--no-figures", "--quiet"])
    text = capsys.readouterr().out
    assert rc == 1
    assert "FAIL" in text and "Deliberately perturbed" in (tmp_path / "report.md").read_text()
    # A 10 % wider spread is caught for every uniform and normal case in both dtypes.
    for case in report.CASES:
        if case.dist != "trunc_normal":
            for dt in ("float32", "bfloat16"):
                assert re.search(rf"{re.escape(case.id)}\s+{dt}\s.*FAIL$", text, re.M), \
                    (case.id, dt)


def test_check_fails_when_sampler_is_wrong(tmp_path, monkeypatch, capsys):
    """The report judges whatever ``report.sample`` returns: a normal sampler shifted by
    0.05 sigma (7 standard errors at n = 20000) is caught."""
    good = report.sample

    def shifted(case, dtype, n, *args, **kwargs):
        t = good(case, dtype, n, *args, **kwargs)
        if case.dist == "normal":
            t += 0.05 * case.params[1]
        return t

    monkeypatch.setattr(report, "sample", shifted)
    rc = main(["check", "--out", str(tmp_path), "--samples", "20000", "--dtypes", "fp32",
               "--dists", "normal", "--no-figures", "--quiet"])
    assert rc == 1
    assert "mean" in capsys.readouterr().out


def test_check_without_scipy_says_how_to_install(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "scipy", None)  # import scipy -> ImportError
    rc = main(["check", "--out", str(tmp_path), "--quiet"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pip install 'torch-fastinit[test]'" in err, err
