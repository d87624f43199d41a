"""Reference laws and test statistics for ``tests/test_statistics.py``.

Nothing here uses fastinit's sampling numerics (``fastinit.spec`` computes the clamp
bounds and the truncation masses the kernels use): the reference laws and the thresholds
are those of ``fastinit.cli.laws``, the one implementation that ``fastinit check`` also
uses (scipy's ``ndtr`` and numerical quadrature, cross-checked against scipy.stats by the
tests), and the representable values of a dtype come from torch's dtype conversions, so
that a bug in the samplers cannot hide in the reference.

Thresholds (see the module docstring of ``test_statistics.py`` for the reasoning):

* ``N`` samples per case, ``KS_ALPHA`` the Kolmogorov-Smirnov level, ``D_CRIT`` the
  critical value of the KS distance at that level for ``N`` samples;
* ``Z_MAX`` standard errors for means, variances and bound counts.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.stats
import torch
from scipy import special

# The exact laws (CDFs on the absolute scale, mean, variance and 4th central moment; the
# laws of rounded 16-bit values) and the thresholds, re-exported to the tests;
# test_statistics.py checks the laws against scipy.stats
# (test_reference_agrees_with_scipy_truncnorm, test_rounded_law_is_a_law).
from fastinit.cli.laws import (  # noqa: F401 - re-exported to the tests
    KS_ALPHA,
    Z_MAX,
    DiscreteLaw,
    Law,
    ks_critical,
    normal_law,
    representable,
    trunc_normal_law,
    uniform_law,
)
from fastinit.cli.laws import rounded_law as _rounded_law

N = 10**6
#: KS critical distance for N samples at level KS_ALPHA, from the exact finite-n law of D
#: (scipy.stats.kstwo): 2.69e-3, equal to the asymptotic sqrt(ln(2/alpha) / (2N)) to 3 digits.
D_CRIT = ks_critical(N)


def truncnorm_standard(mean: float, std: float, a: float, b: float) -> tuple[float, float]:
    return (a - mean) / std, (b - mean) / std


def scipy_truncnorm(mean: float, std: float, a: float, b: float):
    alpha, beta = truncnorm_standard(mean, std, a, b)
    return scipy.stats.truncnorm(alpha, beta, loc=mean, scale=std)


# --- checks on float32 / float64 samples (continuous laws) ---------------------------------


def as_float64(t: torch.Tensor) -> np.ndarray:
    return t.to(torch.float64).numpy().ravel()


def ks_check(x: np.ndarray, law: Law) -> str:
    """scipy's one-sample KS test against ``law``; returns a failure message or ''."""
    res = scipy.stats.kstest(x, law.cdf)
    if res.statistic > D_CRIT:
        return (f"KS against {law.name}: D = {res.statistic:.3e} > D_crit = {D_CRIT:.3e} "
                f"(p = {res.pvalue:.2e} < {KS_ALPHA:g})")
    return ""


def moment_check(x: np.ndarray, mean: float, var: float, mu4: float, name: str) -> list[str]:
    """Sample mean and variance within Z_MAX standard errors of the exact values."""
    n = x.size
    errs = []
    m = float(x.mean(dtype=np.float64))
    v = float(((x - m) ** 2).mean())
    se_m = math.sqrt(var / n)
    se_v = math.sqrt(max(mu4 - var * var, 0.0) / n)
    if abs(m - mean) > Z_MAX * se_m:
        errs.append(f"mean of {name}: {m!r} vs exact {mean!r}: "
                    f"{(m - mean) / se_m if se_m else math.inf:+.2f} SE (SE = {se_m:.3g})")
    if abs(v - var) > Z_MAX * se_v:
        errs.append(f"variance of {name}: {v!r} vs exact {var!r}: "
                    f"{(v - var) / se_v if se_v else math.inf:+.2f} SE (SE = {se_v:.3g})")
    return errs


# --- 16-bit outputs: the exact law of the rounded, clamped values --------------------------


def rounded_law(law: Law, dtype: torch.dtype, a: float, b: float,
                upper_open: bool) -> DiscreteLaw:
    """The law of clamp(round_to_nearest_even_dtype(X)) for X ~ ``law`` on [a, b] (or
    [a, b) when ``upper_open``): ``fastinit.cli.laws.rounded_law`` on the law's support."""
    assert (a, b) == law.support, (a, b, law.support)
    return _rounded_law(law, dtype, upper_open)


def discrete_checks(samples: torch.Tensor, dl: DiscreteLaw, name: str) -> list[str]:
    """Support, KS-style distance, moments and bound counts of 16-bit samples."""
    x = as_float64(samples)
    n = x.size
    errs = []
    s = dl.support
    idx = np.clip(np.searchsorted(s, x), 0, s.size - 1)
    off = s[idx] != x
    if off.any():
        bad = x[off]
        return [f"{name}: {off.sum()} values outside the support [{s[0]!r}, {s[-1]!r}] "
                f"(or not of the dtype), e.g. {bad[:5].tolist()}"]
    counts = np.bincount(idx, minlength=s.size)
    d = float(np.abs(np.cumsum(counts) / n - dl.cdf).max())
    if d > D_CRIT:
        k = int(np.abs(np.cumsum(counts) / n - dl.cdf).argmax())
        errs.append(f"{name}: sup |ECDF - CDF| over the support = {d:.3e} > D_crit = "
                    f"{D_CRIT:.3e} (at {s[k]!r})")
    m, v, m4 = dl.moments()
    errs += moment_check(x, m, v, m4, name + " (rounded law)")
    for label, k in (("lower", 0), ("upper", s.size - 1)):
        p = float(dl.pmf[k])
        se = math.sqrt(n * p * (1 - p))
        if abs(counts[k] - n * p) > Z_MAX * se:
            errs.append(f"{name}: {counts[k]} values on the {label} bound {s[k]!r}, exact "
                        f"mass {p:.3e} expects {n * p:.1f} +- {se:.2f}: "
                        f"{(counts[k] - n * p) / se if se else math.inf:+.1f} SE")
    return errs


# --- inverse-CDF regions ---------------------------------------------------------------------


def region_edges_z(w_edges: tuple[float, ...]) -> np.ndarray:
    """|z| at which w = -log(4 t (1 - t)), t = Phi(-|z|), crosses each of ``w_edges``."""
    e = np.exp(-np.asarray(w_edges, dtype=np.float64))
    t = e / (2 * (1 + np.sqrt(1 - e)))  # = (1 - sqrt(1 - e)) / 2 without cancellation
    return -special.ndtri(t)


def region_masses(alpha: float, beta: float, z_edges: np.ndarray) -> np.ndarray:
    """Probability of each inverse-CDF region for N(0, 1) restricted to [alpha, beta]."""
    law = trunc_normal_law(0.0, 1.0, alpha, beta)
    edges = np.concatenate(([0.0], z_edges, [np.inf]))
    masses = []
    for lo, hi in zip(edges[:-1], edges[1:]):
        # |z| in [lo, hi): z in (-hi, -lo] or [lo, hi)
        m = law.cdf(np.array([hi]))[0] - law.cdf(np.array([lo]))[0]
        m += law.cdf(np.array([-lo]))[0] - law.cdf(np.array([-hi]))[0]
        masses.append(m)
    return np.array(masses)
