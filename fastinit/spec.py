"""What to draw: distributions, their validation, and their kernel parameters.

An :class:`InitSpec` is a validated description of one distribution. Backends do not
see it: :meth:`InitSpec.kernel_params` turns it, for one output dtype, into the flat
:class:`KernelParams` every backend consumes (``y = clamp(round(shift + scale * v))``
with ``v`` the standard variate of the distribution).
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch

from fastinit.kernels import contract as C

#: Output dtypes every backend writes.
SUPPORTED_DTYPES = (torch.float32, torch.float64, torch.float16, torch.bfloat16)

#: Truncation intervals further than this many standard deviations from the mean are
#: refused: their probability is below 2e-28 and the inverse CDF would leave float32's
#: normal range.
MAX_TAIL_SIGMAS = 11.0

#: A float64 truncated-normal fill computes its standard variate in float32 (the value
#: contract); an interval holding fewer float32 variates than this would come out as a
#: handful of points instead of a float64 distribution, and is refused.
MIN_FLOAT64_TRUNC_VARIATES = 1024

_NAMES = {C.CONSTANT: "constant", C.UNIFORM: "uniform", C.NORMAL: "normal",
          C.TRUNC_NORMAL: "trunc_normal"}


class KernelParams(NamedTuple):
    """Flat per-call parameters shared by all backends (float64 values)."""

    dist: int
    shift: float
    scale: float
    pa: float = 0.0  # trunc_normal: Phi(alpha)
    qb: float = 0.0  # trunc_normal: Phi(-beta)
    dd: float = 0.0  # trunc_normal: Phi(beta) - Phi(alpha)
    xa: float = 0.0  # trunc_normal: 2 Phi(alpha) - 1 = erf(alpha / sqrt(2))
    lo: float = -math.inf  # clamp bounds, values of the output dtype
    hi: float = math.inf
    clamp: bool = False


def check_dtype(dtype: torch.dtype, fn: str) -> None:
    """Raise ``NotImplementedError`` unless fastinit can write ``dtype``."""
    if dtype not in SUPPORTED_DTYPES:
        raise NotImplementedError(
            f"fastinit.{fn} fills floating-point tensors (float32, float64, float16, "
            f"bfloat16); got a tensor of dtype {dtype}"
        )


def _finite(value: float, name: str, fn: str) -> float:
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"fastinit.{fn}: {name} must be finite, got {value}")
    return value


@dataclass(frozen=True)
class InitSpec:
    """A validated distribution. Build it with the class methods, not the constructor.

    Each distribution uses the fields named for its parameters: ``value`` (constant),
    ``low`` / ``high`` (uniform's bounds; a truncated normal's), ``mean`` / ``std`` (normal,
    truncated normal)."""

    dist: int
    mean: float = 0.0
    std: float = 1.0
    low: float = -math.inf
    high: float = math.inf
    value: float = 0.0

    @property
    def name(self) -> str:
        return _NAMES[self.dist]

    @property
    def a(self) -> float:
        """Deprecated: ``value`` (constant), ``low`` (uniform) or ``mean`` (the normals)."""
        return (self.value if self.dist == C.CONSTANT else self.low if self.dist == C.UNIFORM
                else self.mean)

    @property
    def b(self) -> float:
        """Deprecated: ``high`` (uniform), ``std`` (the normals), 0 (constant)."""
        return 0.0 if self.dist == C.CONSTANT else self.high if self.dist == C.UNIFORM else self.std

    @classmethod
    def constant(cls, value: float) -> InitSpec:
        return cls(C.CONSTANT, value=float(value))

    @classmethod
    def uniform(cls, a: float = 0.0, b: float = 1.0, fn: str = "uniform_") -> InitSpec:
        a, b = float(a), float(b)
        if math.isnan(a) or math.isnan(b):
            raise ValueError(f"fastinit.{fn}: bounds must not be NaN, got a={a}, b={b}")
        if a > b:
            raise RuntimeError(
                f"uniform_ expects to return a [from, to) range, but found from={a:g} > to={b:g}"
            )
        return cls(C.UNIFORM, low=a, high=b)

    @classmethod
    def normal(cls, mean: float = 0.0, std: float = 1.0, fn: str = "normal_") -> InitSpec:
        mean = _finite(mean, "mean", fn)
        std = float(std)
        if std < 0:
            raise RuntimeError(f"normal expects std >= 0.0, but found std {std:g}")
        _finite(std, "std", fn)
        return cls(C.NORMAL, mean, std)

    @classmethod
    def trunc_normal(cls, mean: float = 0.0, std: float = 1.0, a: float = -2.0,
                     b: float = 2.0, fn: str = "trunc_normal_") -> InitSpec:
        mean = _finite(mean, "mean", fn)
        std = _finite(std, "std", fn)
        a, b = float(a), float(b)
        if std == 0:
            raise ZeroDivisionError("float division by zero")
        if std < 0:
            raise RuntimeError(f"normal expects std >= 0.0, but found std {std:g}")
        if math.isnan(a) or math.isnan(b):
            raise ValueError(f"fastinit.{fn}: bounds must not be NaN, got a={a}, b={b}")
        if not a < b:
            raise ValueError(f"fastinit.{fn}: expected a < b, got a={a:g}, b={b:g}")
        alpha = (a - mean) / std
        beta = (b - mean) / std
        gap = alpha if alpha > 0 else (-beta if beta < 0 else 0.0)
        if gap > MAX_TAIL_SIGMAS:
            raise ValueError(
                f"fastinit.{fn}: the interval [a, b] = [{a:g}, {b:g}] lies {gap:.3g} standard "
                f"deviations from the mean {mean:g} (std={std:g}); intervals further than "
                f"{MAX_TAIL_SIGMAS:g} standard deviations carry less than 2e-28 of the "
                "probability and are not supported"
            )
        return cls(C.TRUNC_NORMAL, mean, std, a, b)

    def kernel_params(self, dtype: torch.dtype) -> KernelParams:
        """The backend parameters of this distribution for output ``dtype``."""
        # the sign of a zero parameter is part of the key: -0.0 == 0.0 would share an entry
        return _kernel_params(self, dtype, math.copysign(1.0, self.a))


@functools.lru_cache(maxsize=4096)
def _kernel_params(spec: InitSpec, dtype: torch.dtype, _sign: float) -> KernelParams:
    if spec.dist == C.CONSTANT:
        # the value as Tensor.fill_ rounds it to the dtype (and its range errors: fill_
        # checks them for tensors of 2 elements or more), so that the kernels' constant path
        # and torch's fill_ write the same bits
        return KernelParams(C.CONSTANT, torch.empty(2, dtype=dtype, device="cpu").fill_(spec.value)[0].item(), 0.0)
    if spec.dist == C.NORMAL:
        return KernelParams(C.NORMAL, spec.mean, spec.std)
    if spec.dist == C.UNIFORM:
        a, b = spec.low, spec.high
        big = torch.finfo(dtype).max
        for bound, x in (("from", a), ("to", b)):
            if abs(x) > big:
                raise RuntimeError(f"{bound} is out of bounds for {_CPP_NAMES[dtype]}")
        if b - a > big:
            raise RuntimeError(
                f"uniform_ expects to-from <= std::numeric_limits<{_SCALAR_NAMES[dtype]}>::max(), "
                f"but found to={b:g} and from={a:g} which result in to-from to exceed the limit"
            )
        if a == b:
            lo = hi = _round(a, dtype)
        else:
            lo = _round_up(a, dtype)
            hi = _round_down(b, dtype)
            if hi >= b:
                hi = _step(hi, dtype, -1)
            if lo > hi:
                raise ValueError(
                    f"fastinit.uniform_: no {_dtype_name(dtype)} value lies in [{a!r}, {b!r})"
                )
        return KernelParams(C.UNIFORM, a, b - a, lo=lo, hi=hi, clamp=True)
    # truncated normal
    mean, std = spec.mean, spec.std
    alpha = (spec.low - mean) / std
    beta = (spec.high - mean) / std
    pa, qb, dd = _trunc_masses(alpha, beta)
    xa = math.erf(alpha / math.sqrt(2.0))
    lo = _round_up(spec.low, dtype)
    hi = _round_down(spec.high, dtype)
    if lo > hi:
        raise ValueError(
            f"fastinit.trunc_normal_: no {_dtype_name(dtype)} value lies in "
            f"[{spec.low!r}, {spec.high!r}]"
        )
    if dtype == torch.float64:
        count = _float32_count(alpha, beta)
        if count < MIN_FLOAT64_TRUNC_VARIATES:
            raise ValueError(
                f"fastinit.trunc_normal_: the interval [{spec.low!r}, {spec.high!r}] is "
                f"{beta - alpha:.3g} standard deviations wide, which fastinit's float32 "
                f"standard variates resolve into only {count} distinct values (at least "
                f"{MIN_FLOAT64_TRUNC_VARIATES} are needed for a float64 fill): widen the "
                "interval, or fill a uniform_ over it if that is what is meant")
    return KernelParams(C.TRUNC_NORMAL, mean, std, pa, qb, dd, xa, lo, hi, True)


def _float32_count(lo: float, hi: float) -> int:
    """How many float32 values lie in [lo, hi] (finite, lo <= hi)."""

    def ordinal(x: float, up: bool) -> int:
        f = np.float32(x)
        if up and float(f) < x:
            f = np.nextafter(f, np.float32(np.inf))
        elif not up and float(f) > x:
            f = np.nextafter(f, np.float32(-np.inf))
        b = int(np.array(f, dtype=np.float32).view(np.int32))
        return b if b >= 0 else -(b & 0x7FFFFFFF)

    return max(0, ordinal(hi, False) - ordinal(lo, True) + 1)


def _phi(x: float) -> float:
    """Standard normal CDF, accurate in both tails."""
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _trunc_masses(alpha: float, beta: float) -> tuple[float, float, float]:
    """(Phi(alpha), Phi(-beta), Phi(beta) - Phi(alpha)) without cancellation."""
    pa = _phi(alpha)
    qb = _phi(-beta)
    if beta <= 0:  # left tail: both CDF values small
        dd = _phi(beta) - pa
    elif alpha >= 0:  # right tail: both survival values small
        dd = _phi(-alpha) - qb
    else:  # straddles the mean: erf keeps narrow intervals precise
        dd = 0.5 * (math.erf(beta / math.sqrt(2.0)) - math.erf(alpha / math.sqrt(2.0)))
    return pa, qb, dd


# --- representable values of the output dtype ------------------------------------------

_CPP_NAMES = {torch.float64: "double", torch.float32: "float", torch.float16: "c10::Half",
              torch.bfloat16: "c10::BFloat16"}
_SCALAR_NAMES = {torch.float64: "Double", torch.float32: "Float", torch.float16: "Half",
                 torch.bfloat16: "BFloat16"}
_INT_VIEW = {torch.float64: torch.int64, torch.float32: torch.int32,
             torch.float16: torch.int16, torch.bfloat16: torch.int16}


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def _round(x: float, dtype: torch.dtype) -> float:
    """Round-to-nearest-even of ``x`` in ``dtype``, as a Python float."""
    return float(torch.tensor(x, dtype=torch.float64, device="cpu").to(dtype).item())


def _step(x: float, dtype: torch.dtype, direction: int) -> float:
    """The neighbour of ``x`` (a finite value of ``dtype``) towards +inf (1) or -inf (-1)."""
    if x == 0:  # the smallest subnormal (bit pattern 1), signed by the direction
        v = float(torch.tensor(1, dtype=_INT_VIEW[dtype], device="cpu").view(dtype).item())
        return v if direction > 0 else -v
    t = torch.tensor(x, dtype=dtype, device="cpu").view(_INT_VIEW[dtype])
    # For positive floats the bit pattern grows with the value; for negative ones it shrinks.
    delta = direction if x > 0 else -direction
    return float((t + delta).view(dtype).item())


def _round_down(x: float, dtype: torch.dtype) -> float:
    """The largest value of ``dtype`` that is <= x (-inf if there is none)."""
    if math.isinf(x):
        return x
    big = torch.finfo(dtype).max
    if x >= big:
        return big
    if x < -big:
        return -math.inf
    r = _round(x, dtype)
    return _step(r, dtype, -1) if r > x else r


def _round_up(x: float, dtype: torch.dtype) -> float:
    """The smallest value of ``dtype`` that is >= x (+inf if there is none)."""
    return -_round_down(-x, dtype)


def float64_bits(x: float) -> int:
    """The IEEE-754 bit pattern of ``x`` as a signed 64-bit integer."""
    return int(np.array(x, dtype=np.float64).view(np.int64))
