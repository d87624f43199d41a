"""Argument checking of the init functions, and the checked write they end in.

Every public function of :mod:`fastinit.init` (and of :mod:`fastinit.structured`,
:mod:`fastinit.embeddings`, and the inits of :mod:`fastinit.recipes`) checks all of its
arguments with these helpers before anything is written: the numbers (real, finite), the
fan rule and the gains (the formulas themselves: :mod:`fastinit.laws`), and the tensor
against the :class:`~fastinit.spec.InitSpec` it is to receive (dtype, the distribution's
parameters for that dtype, the generator or seed). The drawing functions then end in one
checked write: those last checks, then one routed fill (:mod:`fastinit.route`), so a
failed check leaves the tensor untouched and does not advance the generator.
:func:`fill_spec_` is that write for a given InitSpec (recipes, caught tensor methods),
:func:`check_spec` its checks alone.

Every value check raises :class:`ArgumentError` (a ``ValueError`` and a ``RuntimeError``);
a non-numeric argument raises ``TypeError``, and torch's own checks raise what torch raises.
"""
from __future__ import annotations

import functools
import math
import numbers
import operator
import warnings

import torch

from fastinit import laws, route
from fastinit.distributed import is_dtensor
from fastinit.fill import fill_target
from fastinit.kernels import contract as C
from fastinit.laws import calculate_gain
from fastinit.spec import SUPPORTED_DTYPES, InitSpec, check_dtype
from fastinit.streams import check_rng

__all__ = ["ArgumentError", "check_spec", "fill_spec_"]


class ArgumentError(ValueError, RuntimeError):
    """A bad argument value (every value check of fastinit's init functions raises it).

    A ``ValueError``; also a ``RuntimeError`` because ``torch.nn.init`` reports many of
    the same inputs (``a > b``, ``std < 0``, NaN bounds, NaN gains, bounds out of the
    dtype's range) as ``RuntimeError``: code written against either keeps working.
    """


# --- validation helpers ---------------------------------------------------------------------


def _check_tensor(tensor: object, fn: str) -> None:
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"fastinit.{fn}(): expected a torch.Tensor, got {type(tensor).__name__}")


def _real(x: object, name: str, fn: str) -> float:
    """``x`` as a float if it is a real number (or a 0-dim real tensor), else TypeError."""
    t = type(x)
    if t is float or t is int:
        return float(x)
    if isinstance(x, torch.Tensor):
        if x.dim() == 0 and not x.is_complex():
            return float(x)
    elif isinstance(x, numbers.Real):
        return float(x)
    raise TypeError(
        f"fastinit.{fn}(): argument '{name}' must be a real number, not {t.__name__}")


def _index(x: object, name: str, fn: str) -> int:
    """``x`` as an int if it is an integer other than bool, else TypeError."""
    if isinstance(x, bool):
        raise TypeError(f"fastinit.{fn}(): {name} must be an int, not bool")
    try:
        return operator.index(x)
    except TypeError:
        raise TypeError(f"fastinit.{fn}(): {name} must be an int, not "
                        f"{type(x).__name__}") from None


def _finite(x: float, name: str, fn: str) -> float:
    if not math.isfinite(x):
        raise ArgumentError(f"fastinit.{fn}: {name} must be finite, got {x}")
    return x


def _spec(factory, *args) -> InitSpec:
    """``factory(*args)``; its ValueErrors and RuntimeErrors become :class:`ArgumentError`."""
    try:
        return factory(*args)
    except (ValueError, RuntimeError) as exc:
        raise ArgumentError(*exc.args) from None


def _params(spec: InitSpec, dtype: torch.dtype):
    """The backend parameters of ``spec`` for ``dtype`` (same error conversion)."""
    return _spec(spec.kernel_params, dtype)


# --- the checked write: every check, then one routed fill ---------------------------------


def _write(tensor: torch.Tensor, spec: InitSpec | None, fn: str, seed: int | None,
           generator: torch.Generator | None) -> torch.Tensor:
    """Validate ``tensor`` for ``spec``, then fill it through the routing decision (which
    draws the call's key only if the call is to be made). A spec of None (a fan-based law
    on a zero-element tensor) writes nothing: only ``seed`` and ``generator`` are checked."""
    if spec is None:
        check_rng(seed, generator)
        return tensor
    check_dtype(tensor.dtype, fn)
    params = _params(spec, tensor.dtype)  # may raise: before anything is written
    check_rng(seed, generator)
    target = fill_target(tensor, fn)
    if target is not None:
        route.fill(target, params, seed, generator)
    return tensor


def check_spec(tensor: torch.Tensor, spec: InitSpec, fn: str) -> None:
    """Raise what :func:`fill_spec_` raises for ``tensor`` and ``spec`` before it writes
    (the dtype, and the distribution's parameters for that dtype), writing nothing."""
    if spec.dist == C.CONSTANT:
        if tensor.dtype in SUPPORTED_DTYPES:
            _params(spec, tensor.dtype)  # the value must fit the dtype, as for fill_
        elif not tensor.is_nested and tensor.layout == torch.strided:
            torch.empty(2, dtype=tensor.dtype, device="cpu").fill_(spec.value)  # fill_'s errors
        return
    check_dtype(tensor.dtype, fn)
    _params(spec, tensor.dtype)


@route.entry
def fill_spec_(tensor: torch.Tensor, spec: InitSpec, fn: str, seed: int | None = None,
               generator: torch.Generator | None = None) -> torch.Tensor:
    """Fill ``tensor`` with ``spec`` as the public functions do (recipes, caught tensor
    methods): the checks of :func:`check_spec`, then the routed fill. Constants need no
    key."""
    if spec.dist == C.CONSTANT:
        check_spec(tensor, spec, fn)
        _fill_constant(tensor, spec.value)
        return tensor
    return _write(tensor, spec, fn, seed, generator)


def _fill_constant(tensor: torch.Tensor, value: float, *, zero: bool = False) -> None:
    """Write ``value`` (already checked to fit the dtype) to every element."""
    if tensor.is_nested or tensor.layout != torch.strided:  # torch's own behaviour there
        with torch.no_grad():
            tensor.zero_() if zero else tensor.fill_(value)
        return
    if tensor.is_meta or tensor.numel() == 0:  # nothing to write
        return
    if tensor.dtype in SUPPORTED_DTYPES and (
            is_dtensor(tensor) or torch._debug_has_internal_overlap(tensor) != 1):
        route.constant(tensor, InitSpec.constant(value).kernel_params(tensor.dtype))
    else:  # integer, bool, complex, float8, or overlapping elements: torch's fill_
        torch.empty(2, dtype=tensor.dtype, device="cpu").fill_(value)  # its errors now
        route.torch_write(tensor, functools.partial(tensor.fill_, value))


# --- the fan rule and the gains' checks (the formulas: fastinit.laws) --------------------------


def _no_fans_for_nested(tensor: torch.Tensor) -> None:
    if tensor.is_nested:
        raise NotImplementedError("fastinit: a nested tensor has no fan-in and fan-out (its "
                                  "sizes are irregular); fill it with uniform_ or normal_")


def _check_mode(mode: str) -> str:
    mode = mode.lower()
    valid_modes = ["fan_in", "fan_out"]
    if mode not in valid_modes:
        raise ValueError(f"Mode {mode} not supported, please use one of {valid_modes}")
    return mode


def _kaiming_gain(a: float, nonlinearity: str, fn: str) -> float:
    gain = calculate_gain(nonlinearity, a)
    if nonlinearity == "leaky_relu" and a is not None and not math.isfinite(a):
        raise ArgumentError(f"fastinit.{fn}: the negative slope a must be finite, got {a}")
    return gain


def _kaiming_spec(tensor: torch.Tensor, a: float, mode: str, nonlinearity: str,
                  distribution: str, fn: str) -> InitSpec | None:
    """torch's kaiming law as ``distribution`` (``"normal"`` or ``"uniform"``), or None
    (after torch's warning) for zero-element tensors."""
    mode = _check_mode(mode)
    gain = _kaiming_gain(a, nonlinearity, fn)
    _no_fans_for_nested(tensor)
    if 0 in tensor.shape:  # the warning names the public function's caller (past route.entry)
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=5)
        return None
    std = laws.kaiming_std(*laws.fans(tensor), gain, mode)
    return _spec(laws.spread, std, distribution, fn)


def _xavier_spec(tensor: torch.Tensor, gain: float, distribution: str, fn: str) -> InitSpec:
    """torch's xavier law as ``distribution`` (``"normal"`` or ``"uniform"``)."""
    _no_fans_for_nested(tensor)
    fan_in, fan_out = laws.fans(tensor)
    gain = _finite(_real(gain, "gain", fn), "gain", fn)
    if gain < 0:
        raise ArgumentError(f"fastinit.{fn}: gain must be >= 0, got {gain:g}")
    return _spec(laws.spread, laws.xavier_std(fan_in, fan_out, gain), distribution, fn)


# --- variance scaling's law (JAX / Flax / Keras) ----------------------------------------------

_VS_MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
_VS_DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")

def _variance_scaling_spec(tensor: torch.Tensor, scale: float, mode: str, distribution: str,
                           fn: str) -> InitSpec | None:
    """The distribution of ``variance_scaling_``, or None for a zero-element tensor (after
    the warning torch's ``kaiming_*`` give). Checks every argument first."""
    scale = _finite(_real(scale, "scale", fn), "scale", fn)
    if scale <= 0:
        raise ArgumentError(f"fastinit.{fn}: scale must be > 0, got {scale:g}")
    if not isinstance(mode, str) or mode.lower() not in _VS_MODES:
        raise ValueError(f"Mode {mode} not supported, please use one of {list(_VS_MODES)}")
    if not isinstance(distribution, str) or distribution.lower() not in _VS_DISTRIBUTIONS:
        raise ValueError(f"Distribution {distribution} not supported, please use one of "
                         f"{list(_VS_DISTRIBUTIONS)}")
    mode, distribution = mode.lower(), distribution.lower()
    _no_fans_for_nested(tensor)
    fan_in, fan_out = laws.fans(tensor)  # torch's ValueError for < 2 dimensions
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=5)
        return None
    std = laws.variance_scaling_std(fan_in, fan_out, scale, mode)
    return _spec(laws.spread, std, distribution, fn)

