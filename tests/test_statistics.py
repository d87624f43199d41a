"""Statistical battery: fastinit's CPU values against the exact laws (scipy).

Every case draws N = 10**6 values on the CPU backend with a fixed ``seed=``; fastinit's
stream is a pure function of (seed, element index, distribution, dtype), so every
statistic below is a fixed number and no test can be flaky. The thresholds are still
chosen as significance tests with a tiny level, so that a correct implementation sits
far from them (a fixed seed only makes the outcome reproducible; it would not make a
marginal threshold meaningful) while realistic bugs are far beyond them.

Checks and thresholds
---------------------
* Kolmogorov-Smirnov (scipy.stats.kstest against the exact CDF): reject when the KS
  distance D exceeds D_crit = kstwo.isf(1e-6, 10**6) = 2.69e-3 (the asymptotic
  sqrt(ln(2/alpha) / (2N)) agrees to 3 digits), i.e. p < 1e-6.
  Power: at the point where the sampled law's CDF is furthest (by delta) from the
  reference, the empirical CDF has standard deviation <= 1/(2 sqrt(N)) = 5e-4, so
  D >= delta - 5 * 5e-4 except with probability < 1e-6. Any CDF error
  delta >= D_crit + 2.5e-3 = 5.2e-3 (0.5 % of the mass misplaced anywhere) is therefore
  caught with certainty, and errors of about D_crit = 0.27 % are at the threshold.
* Mean and variance within Z_MAX = 5 standard errors of the exact values
  (two-sided normal tail 5.7e-7 per check; the laws are bounded or light-tailed, so
  the CLT is accurate at N = 10**6). SE(mean) = sigma / sqrt(N); SE(variance) =
  sqrt((mu4 - sigma^4) / N) with mu4 the exact 4th central moment (uniform:
  (b-a)^4/80; normal: 3 sigma^4; truncated normal: Gauss-Legendre quadrature of the
  truncated density about its mean, in ``stats_helpers`` - cross-checked against
  scipy.stats.truncnorm below, whose own kurtosis is wrong for [6, 6.001]).
  Power: a mean bias of 0.005 sigma is at the threshold, 0.01 sigma is certain to be
  caught; a relative variance error of 5 sqrt(mu4/sigma^4 - 1) / sqrt(N) is at the
  threshold: 0.71 % for the normal, 0.45 % for the uniform.
* bfloat16 / float16: every value is a value of the support (the dtype's values in
  [a, b) for uniform_, [a, b] for trunc_normal_). The reference is the exact law of the
  *rounded* values: P(round(X) = s_k) is the mass of X between the midpoints around s_k,
  and the mass that rounds outside the support is clamped onto the end points. The
  distance sup |ECDF - CDF| (both step functions with jumps on the support, so the sup
  over the real line is the max over support points) is compared with the same D_crit.
  This is conservative for a discrete law: writing X = F^-1(U), the discrete statistic
  is sup over t in the range of F of |G_n(t) - t| (G_n the ECDF of the uniforms), a sup
  over a subset of the t's of the continuous statistic, so P(D > D_crit) <= 1e-6 still
  holds (the true level is smaller) and the power argument above is unchanged.
  Means and variances are compared with the exact moments of the rounded law (5 SE),
  and the count on each bound with its exact mass (5 binomial SE, sqrt(N p (1 - p));
  a mass of 0 demands a count of 0): this catches values piling up on a bound, as a
  clamp of out-of-range draws would (4.6 % of the mass at +-2 sigma).
* The inverse CDF of trunc_normal_ uses four polynomial regions of
  w = -log(4 t (1 - t)) (|z| ~ 2.23, 3.30, 5.43 at the region edges); every region has
  a case whose mass lies entirely inside it, and a meta-test checks the coverage.
* A very narrow interval at the mean ([-1e-4 sigma, 1e-4 sigma]) in float16 / bfloat16
  checks the resolution of trunc_normal_ near the mean: a sampler that rounds
  p = Phi(z) next to 0.5 in float32 puts the variates on a lattice of 7.5e-8 sigma,
  which leaves float16 cells empty and overfills the bound cells.

Runtime: about 11 s on two cores (a fill of 10**6 values takes a few ms; sorting
for the KS statistic and the float64 conversions dominate).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import fastinit
from fastinit.kernels import contract as C

from tests.stats_helpers import (
    D_CRIT,
    N,
    Z_MAX,
    as_float64,
    discrete_checks,
    ks_check,
    moment_check,
    normal_law,
    region_edges_z,
    region_masses,
    rounded_law,
    scipy_truncnorm,
    trunc_normal_law,
    truncnorm_standard,
    uniform_law,
)

slow = pytest.mark.slow


def _draw(fn, dtype, *args, seed):
    t = torch.empty(N, dtype=dtype)
    fn(t, *args, seed=seed)
    return t


def _assert_no_errors(errs):
    assert not errs, "\n".join(errs)


def _continuous_checks(x, law):
    """KS against the exact CDF, then mean and variance within 5 SE of the exact ones."""
    ks = ks_check(x, law)
    return ([ks] if ks else []) + moment_check(x, law.mean, law.var, law.mu4, law.name)


# --- the cases ------------------------------------------------------------------------------
# (id, params, seed); params are (a, b) for uniform_, (mean, std) for normal_ and
# (mean, std, a, b) for trunc_normal_.

UNIFORM_CASES = [
    ("U(0,1)", (0.0, 1.0), 1001),
    ("U(-1,1)", (-1.0, 1.0), 1002),
    ("U(-0.3,0.7)_asymmetric", (-0.3, 0.7), 1003),
    ("U(-5,-2)_negative", (-5.0, -2.0), 1004),
    ("U(-0.01,0.05)_small", (-0.01, 0.05), 1005),
]

NORMAL_CASES = [
    ("N(0,1)", (0.0, 1.0), 2001),
    ("N(0,0.02)", (0.0, 0.02), 2002),
    ("N(-3,2.5)", (-3.0, 2.5), 2003),
    ("N(0.5,0.001)", (0.5, 0.001), 2004),
]

TRUNC_CASES = [
    ("pm2s_torch_default", (0.0, 1.0, -2.0, 2.0), 3001),
    ("narrow_[2s,3s]", (0.0, 1.0, 2.0, 3.0), 3002),
    ("very_narrow_[-0.01s,0.01s]", (0.0, 1.0, -0.01, 0.01), 3003),
    ("far_tail_[4s,5s]", (0.0, 1.0, 4.0, 5.0), 3004),
    ("mean_outside_mean3_[-1,1]", (3.0, 1.0, -1.0, 1.0), 3005),
    ("left_tail_[-3s,-2.5s]", (0.0, 1.0, -3.0, -2.5), 3006),
    ("std0.02_pm2_untruncated", (0.0, 0.02, -2.0, 2.0), 3007),
    ("asymmetric_[-1s,3s]", (0.0, 1.0, -1.0, 3.0), 3008),
    ("wide_[-6s,6s]", (0.0, 1.0, -6.0, 6.0), 3009),
    ("deep_tail_[8s,9s]", (0.0, 1.0, 8.0, 9.0), 3010),
    ("deep_tail_[10s,10.5s]", (0.0, 1.0, 10.0, 10.5), 3011),
    ("narrow_far_[6s,6.001s]", (0.0, 1.0, 6.0, 6.001), 3012),
    ("mean0.5_std3_[-1,4]", (0.5, 3.0, -1.0, 4.0), 3013),
    ("regions1-2_[3s,4s]", (0.0, 1.0, 3.0, 4.0), 3014),
    ("regions2-3_[5s,6s]", (0.0, 1.0, 5.0, 6.0), 3015),
    ("shifted_tail_mean-1_std0.5_[1,1.5]", (-1.0, 0.5, 1.0, 1.5), 3016),
]

HALF_DTYPES = [pytest.param(torch.bfloat16, id="bfloat16"),
               pytest.param(torch.float16, id="float16")]

HALF_UNIFORM_CASES = [UNIFORM_CASES[0], UNIFORM_CASES[2],
                      ("U(-0.05,0.05)_kaiming_like", (-0.05, 0.05), 1101)]
HALF_NORMAL_CASES = [NORMAL_CASES[0], NORMAL_CASES[1], ("N(0.5,2)", (0.5, 2.0), 2101)]
_BY_ID = {cid: (p, s) for cid, p, s in TRUNC_CASES}
HALF_TRUNC_CASES = [(cid, *_BY_ID[cid]) for cid in (
    "pm2s_torch_default", "far_tail_[4s,5s]", "std0.02_pm2_untruncated",
    "left_tail_[-3s,-2.5s]", "mean0.5_std3_[-1,4]",
    # a single value of the dtype lies in [6, 6.001]: every value must be 6
    "narrow_far_[6s,6.001s]")]


def _params(cases):
    return [pytest.param(p, s, id=cid) for cid, p, s in cases]


# --- float32: continuous laws ---------------------------------------------------------------


@slow
@pytest.mark.parametrize("ab, seed", _params(UNIFORM_CASES))
def test_uniform_float32(ab, seed):
    a, b = ab
    x = as_float64(_draw(fastinit.uniform_, torch.float32, a, b, seed=seed))
    assert ((x >= a) & (x < b)).all(), f"values outside [{a}, {b}): {x.min()!r} .. {x.max()!r}"
    law = uniform_law(a, b)
    _assert_no_errors(_continuous_checks(x, law))


@slow
@pytest.mark.parametrize("ms, seed", _params(NORMAL_CASES))
def test_normal_float32(ms, seed):
    mean, std = ms
    x = as_float64(_draw(fastinit.normal_, torch.float32, mean, std, seed=seed))
    assert np.isfinite(x).all()
    law = normal_law(mean, std)
    _assert_no_errors(_continuous_checks(x, law))


@slow
@pytest.mark.parametrize("params, seed", _params(TRUNC_CASES))
def test_trunc_normal_float32(params, seed):
    mean, std, a, b = params
    x = as_float64(_draw(fastinit.trunc_normal_, torch.float32, mean, std, a, b, seed=seed))
    assert ((x >= a) & (x <= b)).all(), f"values outside [{a}, {b}]: {x.min()!r} .. {x.max()!r}"
    law = trunc_normal_law(mean, std, a, b)
    _assert_no_errors(_continuous_checks(x, law))


# --- float64 outputs (float32 standard variates, float64 affine map) ---------------------------


@slow
@pytest.mark.parametrize("ms, seed", [pytest.param((0.25, 1.5), 4001, id="N(0.25,1.5)")])
def test_normal_float64(ms, seed):
    mean, std = ms
    x = as_float64(_draw(fastinit.normal_, torch.float64, mean, std, seed=seed))
    law = normal_law(mean, std)
    _assert_no_errors(_continuous_checks(x, law))


@slow
@slow
@pytest.mark.parametrize("params, seed", [
    pytest.param((0.0, 1.0, -2.0, 2.0), 4002, id="pm2s_torch_default"),
    pytest.param((1.0, 0.5, 3.0, 3.5), 4003, id="far_tail_mean1_std0.5_[3,3.5]"),
])
def test_trunc_normal_float64(params, seed):
    mean, std, a, b = params
    x = as_float64(_draw(fastinit.trunc_normal_, torch.float64, mean, std, a, b, seed=seed))
    assert ((x >= a) & (x <= b)).all(), f"values outside [{a}, {b}]: {x.min()!r} .. {x.max()!r}"
    law = trunc_normal_law(mean, std, a, b)
    _assert_no_errors(_continuous_checks(x, law))


# --- bfloat16 / float16: the exact law of the rounded values ----------------------------------


@slow
@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("ab, seed", _params(HALF_UNIFORM_CASES))
def test_uniform_half(ab, seed, dtype):
    a, b = ab
    t = _draw(fastinit.uniform_, dtype, a, b, seed=seed)
    dl = rounded_law(uniform_law(a, b), dtype, a, b, upper_open=True)
    _assert_no_errors(discrete_checks(t, dl, f"uniform_({a}, {b}) {dtype}"))


@slow
@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("ms, seed", _params(HALF_NORMAL_CASES))
def test_normal_half(ms, seed, dtype):
    mean, std = ms
    t = _draw(fastinit.normal_, dtype, mean, std, seed=seed)
    dl = rounded_law(normal_law(mean, std), dtype, -math.inf, math.inf, upper_open=False)
    _assert_no_errors(discrete_checks(t, dl, f"normal_({mean}, {std}) {dtype}"))


@slow
@pytest.mark.parametrize("dtype", HALF_DTYPES)
@pytest.mark.parametrize("params, seed", _params(HALF_TRUNC_CASES) + [
    pytest.param((0.0, 1.0, -1e-4, 1e-4), 3101, id="very_narrow_[-1e-4s,1e-4s]")])
def test_trunc_normal_half(params, seed, dtype):
    mean, std, a, b = params
    t = _draw(fastinit.trunc_normal_, dtype, mean, std, a, b, seed=seed)
    dl = rounded_law(trunc_normal_law(mean, std, a, b), dtype, a, b, upper_open=False)
    _assert_no_errors(discrete_checks(t, dl, f"trunc_normal_({mean}, {std}, {a}, {b}) {dtype}"))


# --- documented properties -------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_normal_max_abs_z_is_capped(dtype):
    """23-bit uniforms: u >= 2^-24, so |z| <= sqrt(-2 ln 2^-24) = 5.768 (documented 5.77)."""
    x = _draw(fastinit.normal_, dtype, 0.0, 1.0, seed=5001)
    zmax = float(x.abs().max())
    assert zmax <= 5.78, zmax


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.bfloat16, torch.float16],
                         ids=str)
def test_uniform_open_interval_no_zeros(dtype):
    x = as_float64(_draw(fastinit.uniform_, dtype, 0.0, 1.0, seed=5002))
    assert int((x == 0).sum()) == 0
    assert ((x > 0) & (x < 1)).all(), (x.min(), x.max())


@slow
@pytest.mark.parametrize("fn, args", [
    pytest.param(fastinit.uniform_, (0.0, 1.0), id="uniform"),
    pytest.param(fastinit.normal_, (0.0, 1.0), id="normal"),
    pytest.param(fastinit.trunc_normal_, (0.0, 1.0, -2.0, 2.0), id="trunc_normal"),
])
def test_serial_correlation(fn, args):
    """Neighbouring elements (same and adjacent Philox groups, both Box-Muller outputs of a
    pair) are uncorrelated: |corr| <= 5 / sqrt(N) at lags 1-8."""
    x = as_float64(_draw(fn, torch.float32, *args, seed=5003))
    x = (x - x.mean()) / x.std()
    for lag in range(1, 9):
        r = float(np.dot(x[:-lag], x[lag:]) / (x.size - lag))
        assert abs(r) <= Z_MAX / math.sqrt(x.size - lag), (lag, r)


# --- the references themselves ------------------------------------------------------------------


def test_ks_critical_value():
    assert 2.68e-3 < D_CRIT < 2.70e-3
    assert D_CRIT == pytest.approx(math.sqrt(math.log(2 / 1e-6) / (2 * N)), rel=1e-3)


@pytest.mark.parametrize("params", [pytest.param(p, id=cid) for cid, p, _ in TRUNC_CASES])
def test_reference_agrees_with_scipy_truncnorm(params):
    """Our CDF and moments (used because scipy.stats.truncnorm is slow on 10^6 points and
    its 4th moment breaks down on [6, 6.001]) agree with scipy.stats.truncnorm."""
    mean, std, a, b = params
    law = trunc_normal_law(mean, std, a, b)
    ref = scipy_truncnorm(mean, std, a, b)
    grid = np.linspace(a, b, 2001)
    np.testing.assert_allclose(law.cdf(grid), ref.cdf(grid), rtol=0, atol=1e-11)
    m, v = (float(s) for s in ref.stats(moments="mv"))
    se_m = math.sqrt(law.var / N)
    se_v = math.sqrt((law.mu4 - law.var**2) / N)
    assert abs(law.mean - m) <= 0.01 * se_m
    # scipy's variance is off by 1.7e-4 (relative) on [6, 6.001]: still < 0.5 SE
    assert abs(law.var - v) <= 0.5 * se_v
    assert law.mu4 >= law.var**2 > 0


def test_rounded_law_is_a_law():
    law = trunc_normal_law(0.0, 1.0, -2.0, 2.0)
    for dtype in (torch.bfloat16, torch.float16):
        dl = rounded_law(law, dtype, -2.0, 2.0, upper_open=False)
        assert dl.support[0] == -2.0 and dl.support[-1] == 2.0
        assert dl.pmf.sum() == pytest.approx(1.0, abs=1e-12)
        m, v, _ = dl.moments()
        assert abs(m) < 1e-12 and v == pytest.approx(law.var, rel=1e-3)


def test_trunc_cases_cover_every_inverse_cdf_region():
    """Every polynomial region of the inverse CDF has a case that lies wholly inside it,
    and the battery draws >= 10^5 values in each region."""
    z_edges = region_edges_z((C.NDTRI_W1, C.NDTRI_W2, C.NDTRI_W3))
    np.testing.assert_allclose(z_edges, [2.234, 3.300, 5.43], atol=0.01)
    expected = np.zeros(4)
    inside = set()
    for cid, (mean, std, a, b), _ in TRUNC_CASES:
        masses = region_masses(*truncnorm_standard(mean, std, a, b), z_edges)
        assert masses.sum() == pytest.approx(1.0, abs=1e-9), cid
        expected += N * masses
        inside |= {k for k in range(4) if masses[k] > 1 - 1e-9}
    assert inside == {0, 1, 2, 3}, inside
    assert (expected >= 1e5).all(), expected
