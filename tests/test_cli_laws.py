"""fastinit.cli.laws: the exact laws the checks judge by agree with scipy.stats, and a law
rounded to a dtype sums to one."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fastinit.cli import check as report
from fastinit.cli import laws


def test_reference_laws_agree_with_scipy():
    """report's own laws (used by the checks) against scipy.stats."""
    import scipy.stats as st

    for case in report.CASES:
        law = report.reference_law(case)
        ref = report._scipy_dist(case)
        lo, hi = law.support if math.isfinite(law.support[0]) else (
            case.params[0] - 6 * case.params[1], case.params[0] + 6 * case.params[1])
        grid = np.linspace(lo, hi, 501)
        np.testing.assert_allclose(law.cdf(grid), ref.cdf(grid), atol=1e-10, err_msg=case.id)
        m, v = (float(x) for x in ref.stats(moments="mv"))
        assert law.mean == pytest.approx(m, rel=1e-7, abs=1e-12), case.id
        assert law.var == pytest.approx(v, rel=1e-5), case.id
    assert float(st.kstwo.isf(laws.KS_ALPHA, 10**6)) == pytest.approx(2.69e-3, abs=1e-5)
    assert laws.ks_critical(10**6) == pytest.approx(2.69e-3, abs=1e-5)


def test_rounded_law_sums_to_one():
    law = laws.trunc_normal_law(0.0, 1.0, -2.0, 2.0)
    for dt in (torch.bfloat16, torch.float16):
        dl = laws.rounded_law(law, dt, upper_open=False)
        assert dl.support[0] == -2.0 and dl.support[-1] == 2.0
        assert dl.pmf.sum() == pytest.approx(1.0, abs=1e-12)
