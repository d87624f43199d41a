"""The exact laws fastinit's values are judged against, and the thresholds of the tests.

One implementation for ``fastinit check`` and the test suite (``tests/stats_helpers.py``):

* :func:`uniform_law`, :func:`normal_law`, :func:`trunc_normal_law`: vectorized CDFs on the
  absolute scale (from ``scipy.special.ndtr``, with survival functions in the right tail so
  that far intervals keep their precision), the exact mean, variance and 4th central moment
  (truncated normal: Gauss-Legendre quadrature, because ``scipy.stats.truncnorm``'s higher
  moments break down on narrow far intervals), and the support;
* :func:`rounded_law`: the exact law of a 16-bit output, clamp(round-to-nearest-even(X));
* :data:`KS_ALPHA`, :data:`Z_MAX`, :func:`ks_critical`: the significance level of the
  Kolmogorov-Smirnov checks, the number of standard errors allowed for moments and bound
  counts, and the critical KS distance for ``n`` samples.

Nothing here uses fastinit's sampling numerics (``fastinit.spec`` computes the clamp bounds
and truncation masses the kernels use), so a bug in the samplers cannot hide in the
reference; the tests check these laws against ``scipy.stats``. Needs scipy.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["KS_ALPHA", "Z_MAX", "ks_critical", "Law", "uniform_law", "normal_law",
           "trunc_normal_law", "truncated_moments", "representable", "DiscreteLaw",
           "rounded_law"]

#: Level of the Kolmogorov-Smirnov checks: a check fails when p < KS_ALPHA.
KS_ALPHA = 1e-6
#: Standard errors allowed for a mean, a variance or a count on a bound.
Z_MAX = 5.0


def ks_critical(n: int, alpha: float = KS_ALPHA) -> float:
    """The KS distance exceeded with probability ``alpha`` by ``n`` samples of the true law
    (the exact finite-n law of D, ``scipy.stats.kstwo``): 2.69e-3 for n = 10^6."""
    from scipy import stats

    return float(stats.kstwo.isf(alpha, n))


@dataclass(frozen=True)
class Law:
    """A continuous law: vectorized CDF, exact mean, variance and 4th central moment, and
    the closed interval carrying its mass."""

    name: str
    cdf: Callable[[np.ndarray], np.ndarray] = field(repr=False)
    mean: float
    var: float
    mu4: float
    support: tuple[float, float] = (-math.inf, math.inf)


def _ndtr(x):
    from scipy import special

    return special.ndtr(x)


def uniform_law(a: float, b: float) -> Law:
    """U(a, b)."""
    w = b - a
    return Law(f"U({a:g}, {b:g})",
               lambda x: np.clip((np.asarray(x, dtype=np.float64) - a) / w, 0.0, 1.0),
               (a + b) / 2, w * w / 12, w**4 / 80, (a, b))


def normal_law(mean: float, std: float) -> Law:
    """N(mean, std^2)."""
    return Law(f"N({mean:g}, {std:g}^2)",
               lambda x: _ndtr((np.asarray(x, dtype=np.float64) - mean) / std),
               mean, std * std, 3 * std**4)


def truncated_moments(lo: float, hi: float) -> tuple[float, float, float]:
    """(mean, variance, 4th central moment) of N(0, 1) restricted to [lo, hi].

    Composite 40-point Gauss-Legendre on panels of width <= 1/8 (machine precision for a
    smooth Gaussian piece), the density scaled by exp(c^2 / 2) with c the point of [lo, hi]
    nearest 0 so that deep tails do not underflow, moments taken about the mean in a second
    pass so that narrow far intervals keep full relative precision.
    """
    lo, hi = max(lo, -40.0), min(hi, 40.0)
    c = min(max(0.0, lo), hi)
    panels = max(1, math.ceil((hi - lo) * 8))
    x, wts = np.polynomial.legendre.leggauss(40)
    edges = np.linspace(lo, hi, panels + 1)
    half = np.diff(edges)[:, None] / 2
    z = (edges[:-1, None] + half + half * x[None, :]).ravel()
    w = (half * wts[None, :]).ravel() * np.exp(-0.5 * (z - c) * (z + c))
    mass = w.sum()
    mean = c + (w * (z - c)).sum() / mass
    d = z - mean
    return float(mean), float((w * d**2).sum() / mass), float((w * d**4).sum() / mass)


def trunc_normal_law(mean: float, std: float, a: float, b: float) -> Law:
    """N(mean, std^2) restricted to [a, b] (``std`` is the untruncated normal's)."""
    alpha, beta = (a - mean) / std, (b - mean) / std
    if alpha >= 0:  # right tail: survival functions, no 1 - tiny cancellation
        qa, qb = _ndtr(-alpha), _ndtr(-beta)

        def cdf(x):
            z = (np.asarray(x, dtype=np.float64) - mean) / std
            return np.clip((qa - _ndtr(-z)) / (qa - qb), 0.0, 1.0)
    else:
        pa, pb = _ndtr(alpha), _ndtr(beta)

        def cdf(x):
            z = (np.asarray(x, dtype=np.float64) - mean) / std
            return np.clip((_ndtr(z) - pa) / (pb - pa), 0.0, 1.0)

    m, v, m4 = truncated_moments(alpha, beta)
    return Law(f"TN({mean:g}, {std:g}^2; [{a:g}, {b:g}])", cdf, mean + std * m, std**2 * v,
               std**4 * m4, (a, b))


# --- 16-bit dtypes: the law of the rounded values -------------------------------------------


def representable(dtype: torch.dtype) -> np.ndarray:
    """All finite values of a 16-bit float dtype, sorted, as float64 (+0 and -0 merged)."""
    t = torch.arange(65536, dtype=torch.int32).to(torch.int16).view(dtype)
    v = t.to(torch.float64).numpy()
    return np.unique(v[np.isfinite(v)])


@dataclass(frozen=True)
class DiscreteLaw:
    """The law of a 16-bit output: support points (float64) and their probabilities."""

    support: np.ndarray
    pmf: np.ndarray

    @property
    def cdf(self) -> np.ndarray:
        """The CDF at each support point."""
        return np.cumsum(self.pmf)

    def moments(self) -> tuple[float, float, float]:
        """(mean, variance, 4th central moment)."""
        m = float((self.pmf * self.support).sum())
        d = self.support - m
        return m, float((self.pmf * d**2).sum()), float((self.pmf * d**4).sum())


def rounded_law(law: Law, dtype: torch.dtype, upper_open: bool) -> DiscreteLaw:
    """The law of clamp(round-to-nearest-even(X)) in ``dtype`` for X ~ ``law``.

    The support is every value of ``dtype`` in the law's support ([a, b) when
    ``upper_open``). A value rounds to the support point s_k between the midpoints around
    it; values rounding outside the support are clamped onto the end points.
    """
    a, b = law.support
    v = representable(dtype)
    s = v[(v >= a) & ((v < b) if upper_open else (v <= b))]
    if s.size == 0:
        raise ValueError(f"no {dtype} value in [{a}, {b}]")
    mids = (s[:-1] + s[1:]) / 2  # exact in float64 for 16-bit values
    pmf = np.diff(np.concatenate(([0.0], law.cdf(mids), [1.0])))
    return DiscreteLaw(s, np.clip(pmf, 0.0, None))
