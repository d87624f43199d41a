"""Sample-versus-law and sample-versus-sample checks for the recipe and scheme tests.

The thresholds are those of ``tests/stats_helpers.py`` (defined once there): a
Kolmogorov-Smirnov p-value above ``KS_ALPHA``, and moments within ``Z_MAX`` standard
errors. The standard errors come from the sample size (and, for a standard deviation
compared between two samples, from each sample's own fourth moment by the delta method:
``se(s) = sqrt((m4 - s^4) / n) / (2 s)``), so they hold for any sample size.
"""
from __future__ import annotations

import math

import numpy as np
import scipy.stats
import torch

from tests.stats_helpers import KS_ALPHA, Z_MAX, Law, moment_check


def values(t: torch.Tensor) -> np.ndarray:
    return t.detach().to(torch.float64).cpu().numpy().ravel()


def law_errors(t: torch.Tensor, law: Law, name: str) -> list[str]:
    """KS against ``law`` (p > KS_ALPHA), mean and variance within Z_MAX SE, support."""
    x = values(t)
    errs = []
    p = scipy.stats.kstest(x, law.cdf).pvalue
    if p <= KS_ALPHA:
        errs.append(f"{name}: KS against {law.name}: p = {p:.2e} <= {KS_ALPHA:g} (n = {x.size})")
    errs += moment_check(x, law.mean, law.var, law.mu4, name)
    lo, hi = law.support
    if x.min() < lo or x.max() > hi:
        errs.append(f"{name}: values outside [{lo!r}, {hi!r}]: [{x.min()!r}, {x.max()!r}]")
    return errs


def _std_and_se(x: np.ndarray) -> tuple[float, float]:
    c = x - x.mean()
    m2 = float((c * c).mean())
    m4 = float((c ** 4).mean())
    s = math.sqrt(m2)
    return s, math.sqrt(max(m4 - m2 * m2, 0.0) / x.size) / (2 * s) if s else 0.0


def same_law_errors(a: torch.Tensor, b: torch.Tensor, name: str) -> list[str]:
    """Two samples of one law: two-sample KS (p > KS_ALPHA) and standard deviations within
    Z_MAX combined standard errors."""
    x, y = values(a), values(b)
    errs = []
    p = scipy.stats.ks_2samp(x, y).pvalue
    if p <= KS_ALPHA:
        errs.append(f"{name}: two-sample KS p = {p:.2e} <= {KS_ALPHA:g} (n = {x.size}, {y.size})")
    sx, ex = _std_and_se(x)
    sy, ey = _std_and_se(y)
    se = math.hypot(ex, ey)
    if abs(sx - sy) > Z_MAX * se:
        errs.append(f"{name}: std {sx:.6g} vs {sy:.6g}: {(sx - sy) / se:+.1f} SE (SE = {se:.3g})")
    return errs
