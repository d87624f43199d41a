"""Reference laws and test statistics for ``tests/test_statistics.py``.

Nothing here imports fastinit's own numerics (``fastinit.spec`` computes the clamp bounds
and the truncation masses the kernels use): the reference laws, their moments, the
representable values of a dtype and the laws of the rounded values are all rebuilt from
scipy, numpy and torch's dtype conversions, so that a bug in fastinit cannot hide in the
reference.

Thresholds (see the module docstring of ``test_statistics.py`` for the reasoning):

* ``N`` samples per case, ``KS_ALPHA`` the Kolmogorov-Smirnov level, ``D_CRIT`` the
  critical value of the KS distance at that level for ``N`` samples;
* ``Z_MAX`` standard errors for means, variances and bound counts.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import scipy.stats
import torch
from scipy import special

N = 10**6
KS_ALPHA = 1e-6
#: KS critical distance for N samples at level KS_ALPHA, from the exact finite-n law of D
#: (scipy.stats.kstwo): 2.69e-3, equal to the asymptotic sqrt(ln(2/alpha) / (2N)) to 3 digits.
D_CRIT = float(scipy.stats.kstwo.isf(KS_ALPHA, N))
Z_MAX = 5.0


# --- continuous reference laws ------------------------------------------------------------


@dataclass(frozen=True)
class Law:
    """A continuous law on the absolute scale: vectorized CDF and exact moments.

    ``mu4`` is the 4th central moment (for the standard error of the sample variance).
    ``support`` is the closed interval carrying the mass (used by the discretization).
    """

    name: str
    cdf: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    mean: float
    var: float
    mu4: float
    support: tuple[float, float] = (-math.inf, math.inf)


def uniform_law(a: float, b: float) -> Law:
    w = b - a
    return Law(f"U({a:g}, {b:g})",
               lambda x: np.clip((np.asarray(x, dtype=np.float64) - a) / w, 0.0, 1.0),
               (a + b) / 2, w * w / 12, w**4 / 80, (a, b))


def normal_law(mean: float, std: float) -> Law:
    return Law(f"N({mean:g}, {std:g}^2)",
               lambda x: special.ndtr((np.asarray(x, dtype=np.float64) - mean) / std),
               mean, std * std, 3 * std**4)


def _gauss_legendre_moments(lo: float, hi: float) -> tuple[float, float, float]:
    """(mean, variance, 4th central moment) of N(0, 1) restricted to [lo, hi].

    Composite 40-point Gauss-Legendre on panels of width <= 1/8 (the integrand is a smooth
    Gaussian piece: every panel is integrated to machine precision). The density is scaled
    by exp(c^2 / 2), c the point of [lo, hi] nearest 0, so deep tails do not underflow,
    and moments are taken about the mean (second pass), so narrow far intervals such as
    [6, 6.001] keep full relative precision - scipy.stats.truncnorm's kurtosis does not
    there (it returns a negative 4th cumulant).
    """
    lo, hi = max(lo, -40.0), min(hi, 40.0)  # beyond 40 sigma the mass is < 1e-348
    c = min(max(0.0, lo), hi)
    panels = max(1, math.ceil((hi - lo) * 8))
    x, wts = np.polynomial.legendre.leggauss(40)
    edges = np.linspace(lo, hi, panels + 1)
    half = np.diff(edges)[:, None] / 2
    z = (edges[:-1, None] + half + half * x[None, :]).ravel()
    w = (half * wts[None, :]).ravel() * np.exp(-0.5 * (z - c) * (z + c))
    mass = w.sum()
    d = z - c
    mean = c + (w * d).sum() / mass
    d = z - mean
    return float(mean), float((w * d**2).sum() / mass), float((w * d**4).sum() / mass)


def truncnorm_standard(mean: float, std: float, a: float, b: float) -> tuple[float, float]:
    return (a - mean) / std, (b - mean) / std


def trunc_normal_law(mean: float, std: float, a: float, b: float) -> Law:
    """N(mean, std^2) restricted to [a, b] (std is the untruncated normal's)."""
    alpha, beta = truncnorm_standard(mean, std, a, b)
    if alpha >= 0:  # right tail: work with survival functions (no 1 - tiny cancellation)
        qa, qb = special.ndtr(-alpha), special.ndtr(-beta)

        def cdf(x):
            z = (np.asarray(x, dtype=np.float64) - mean) / std
            return np.clip((qa - special.ndtr(-z)) / (qa - qb), 0.0, 1.0)
    else:
        pa, pb = special.ndtr(alpha), special.ndtr(beta)

        def cdf(x):
            z = (np.asarray(x, dtype=np.float64) - mean) / std
            return np.clip((special.ndtr(z) - pa) / (pb - pa), 0.0, 1.0)

    m, v, m4 = _gauss_legendre_moments(alpha, beta)
    return Law(f"TN({mean:g}, {std:g}^2; [{a:g}, {b:g}])", cdf, mean + std * m, std**2 * v,
               std**4 * m4, (a, b))


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


def representable(dtype: torch.dtype) -> np.ndarray:
    """All finite values of a 16-bit float dtype, sorted, as float64 (+0 and -0 merged)."""
    t = torch.arange(65536, dtype=torch.int32).to(torch.int16).view(dtype)
    v = t.to(torch.float64).numpy()
    return np.unique(v[np.isfinite(v)])


@dataclass(frozen=True)
class DiscreteLaw:
    support: np.ndarray  # sorted float64 values of the dtype
    pmf: np.ndarray

    @property
    def cdf(self) -> np.ndarray:
        return np.cumsum(self.pmf)

    def moments(self) -> tuple[float, float, float]:
        m = float((self.pmf * self.support).sum())
        d = self.support - m
        return m, float((self.pmf * d**2).sum()), float((self.pmf * d**4).sum())


def rounded_law(law: Law, dtype: torch.dtype, a: float, b: float,
                upper_open: bool) -> DiscreteLaw:
    """The law of clamp(round_to_nearest_even_dtype(X)) for X ~ ``law``.

    The support is every value of ``dtype`` in [a, b] (``upper_open``: [a, b)). A value x
    rounds to the support point s_k when it lies between the midpoints of s_k and its
    neighbours (ties have probability zero); x that round to a value of the dtype outside
    the support are clamped to the nearest support point, so the first point collects
    everything below its upper midpoint and the last everything above its lower one.
    """
    v = representable(dtype)
    keep = (v >= a) & ((v < b) if upper_open else (v <= b))
    s = v[keep]
    if s.size == 0:
        raise ValueError("empty support")
    mids = (s[:-1] + s[1:]) / 2  # exact in float64 for 16-bit floats
    c = np.concatenate(([0.0], law.cdf(mids), [1.0]))
    pmf = np.diff(c)
    assert (pmf >= -1e-15).all()
    return DiscreteLaw(s, np.clip(pmf, 0.0, None))


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
