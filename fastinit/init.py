"""The ``torch.nn.init``-compatible functions, plus :func:`scaled_residual_`.

Each function validates all of its arguments, turns them into an
:class:`~fastinit.spec.InitSpec`, and writes the Philox stream to the tensor through
:mod:`fastinit.route` (one routing decision per fill): nothing is written unless every
check passed, and a failed call does not advance the generator. Signatures, defaults, return values, fan
rules, warnings and the exception types torch raises follow ``torch.nn.init``;
``seed=`` (keyword-only, on the functions that draw random numbers) is fastinit's
extension that pins a call's stream.

Where fastinit differs from ``torch.nn.init`` on purpose:

* Arguments torch accepts although they make no sense raise :class:`ArgumentError` (a
  ``ValueError``): NaN or infinite means, standard deviations, gains and bounds
  (``constant_`` still accepts NaN and infinities: they are legitimate fill values);
  ``a >= b`` in ``trunc_normal_`` (torch raises for ``a > b`` only by accident and returns
  values outside ``[a, b]``); a negative ``std`` in ``trunc_normal_``; truncation
  intervals more than 11 standard deviations from the mean; ``sparsity`` outside
  ``[0, 1]``; ``groups < 1`` in ``dirac_``; an infinite ``a`` (negative slope) for
  ``leaky_relu`` in ``kaiming_*``. Non-numeric arguments raise ``TypeError`` (as torch).
* Every value check raises :class:`ArgumentError`, which is both a ``ValueError`` and a
  ``RuntimeError``: torch raises ``RuntimeError`` for many of the same inputs (``a > b``,
  ``std < 0``, NaN bounds, NaN gains), and code catching either keeps working.
  Where torch raises a ``ValueError``, ``TypeError``, ``ZeroDivisionError``,
  ``AttributeError`` or ``NotImplementedError`` by design, fastinit raises the same type
  (with torch's message where torch states one).
* Arguments are validated on meta and zero-element tensors too (torch skips some checks
  there: ``uniform_(meta, 1, 0)``, ``sparse_(meta, nan)``); ``kaiming_*`` check ``mode``,
  ``nonlinearity`` and ``a`` even on zero-element tensors (torch warns and returns first).
* ``orthogonal_`` works on float16 and bfloat16 tensors (torch raises: LAPACK has no
  half-precision QR): the QR runs in float32 and the result is rounded once.
* ``sparse_`` takes its zero positions from the Philox stream (torch's uses the global
  generator whatever ``generator`` says), and ``trunc_normal_`` samples exactly, so it
  does not emit torch's "mean is more than 2 std from [a, b]" warning.
* The random functions fill float32, float64, float16 and bfloat16 tensors
  (``NotImplementedError`` for others; torch also fills complex tensors). The
  deterministic ones (``constant_``, ``zeros_``, ``ones_``, ``eye_``, ``dirac_``) fill
  every dtype torch fills: floating-point tensors through the Philox backends' constant
  path, others with torch's own ops.
* ``generator`` only supplies the call's 64-bit key, so a generator of any device may
  be passed for a tensor on any device (torch requires the tensor's device).
* The functions do not dispatch ``__torch_function__`` overrides of ``torch.nn.init``.
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
from fastinit.fill import fill_target, fill_tensor
from fastinit.kernels import contract as C
from fastinit.laws import TRUNCATED_NORMAL_STD_AT_2, calculate_gain
from fastinit.spec import _CPP_NAMES, SUPPORTED_DTYPES, InitSpec, check_dtype
from fastinit.streams import check_rng

__all__ = [
    "calculate_gain",
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
    "sparse_",
    "scaled_residual_",
    "variance_scaling_",
    "lecun_normal_",
    "lecun_uniform_",
    "class_prior_bias_",
    "mean_resize_embeddings_",
    # deprecated aliases, as in torch.nn.init
    "uniform",
    "normal",
    "constant",
    "eye",
    "dirac",
    "xavier_uniform",
    "xavier_normal",
    "kaiming_uniform",
    "kaiming_normal",
    "orthogonal",
    "sparse",
]


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
    try:
        return spec.kernel_params(dtype)
    except (ValueError, RuntimeError) as exc:
        raise ArgumentError(*exc.args) from None


def _skip(tensor: torch.Tensor) -> bool:
    """Whether there is nothing to write (meta or zero-element tensor)."""
    return tensor.is_meta or tensor.numel() == 0


def _write(tensor: torch.Tensor, spec: InitSpec, fn: str, seed: int | None,
           generator: torch.Generator | None) -> torch.Tensor:
    """Validate ``tensor`` for ``spec``, then fill it through the routing decision (which
    draws the call's key only if the call is to be made)."""
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
            torch.empty(2, dtype=tensor.dtype, device="cpu").fill_(spec.a)  # fill_'s errors
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
        _fill_constant(tensor, spec.a)
        return tensor
    return _write(tensor, spec, fn, seed, generator)


def _fill_constant(tensor: torch.Tensor, value: float, *, zero: bool = False) -> None:
    """Write ``value`` (already checked to fit the dtype) to every element."""
    if tensor.is_nested or tensor.layout != torch.strided:  # torch's own behaviour there
        with torch.no_grad():
            tensor.zero_() if zero else tensor.fill_(value)
        return
    if _skip(tensor):
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


def _calculate_fan_in_and_fan_out(tensor: torch.Tensor) -> tuple[int, int]:
    """torch's fan rule (:func:`fastinit.laws.fans`), refusing nested tensors."""
    _no_fans_for_nested(tensor)
    return laws.fans(tensor)


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


def _kaiming_std(tensor: torch.Tensor, a: float, mode: str, nonlinearity: str,
                 fn: str) -> float | None:
    """torch's kaiming std, or None (after torch's warning) for zero-element tensors."""
    mode = _check_mode(mode)
    gain = _kaiming_gain(a, nonlinearity, fn)
    _no_fans_for_nested(tensor)
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=4)  # past route.entry
        return None
    return laws.kaiming_std(*_calculate_fan_in_and_fan_out(tensor), gain, mode)


def _xavier_std(tensor: torch.Tensor, gain: float, fn: str) -> float:
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    gain = _finite(_real(gain, "gain", fn), "gain", fn)
    if gain < 0:
        raise ArgumentError(f"fastinit.{fn}: gain must be >= 0, got {gain:g}")
    return laws.xavier_std(fan_in, fan_out, gain)


# --- the basic distributions ---------------------------------------------------------------


@route.entry
def uniform_(tensor: torch.Tensor, a: float = 0.0, b: float = 1.0,
             generator: torch.Generator | None = None, *, seed: int | None = None) -> torch.Tensor:
    r"""Fill the input Tensor with values drawn from the uniform distribution :math:`\mathcal{U}(a, b)`.

    Every value, after rounding to the tensor's dtype, lies in :math:`[a, b)`.

    Args:
        tensor: an n-dimensional `torch.Tensor`
        a: the lower bound of the uniform distribution
        b: the upper bound of the uniform distribution
        generator: the torch Generator to draw the call's seed from (default: torch's
            default CPU generator, for tensors on any device)
        seed: (fastinit) use this 64-bit seed instead of drawing one

    Examples:
        >>> w = torch.empty(3, 5)
        >>> fastinit.uniform_(w)
    """
    _check_tensor(tensor, "uniform_")
    spec = _spec(InitSpec.uniform, _real(a, "a", "uniform_"), _real(b, "b", "uniform_"))
    return _write(tensor, spec, "uniform_", seed, generator)


@route.entry
def normal_(tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0,
            generator: torch.Generator | None = None, *, seed: int | None = None) -> torch.Tensor:
    r"""Fill the input Tensor with values drawn from the normal distribution :math:`\mathcal{N}(\text{mean}, \text{std}^2)`.

    Args:
        tensor: an n-dimensional `torch.Tensor`
        mean: the mean of the normal distribution
        std: the standard deviation of the normal distribution
        generator: the torch Generator to draw the call's seed from
        seed: (fastinit) use this 64-bit seed instead of drawing one

    Examples:
        >>> w = torch.empty(3, 5)
        >>> fastinit.normal_(w)
    """
    _check_tensor(tensor, "normal_")
    spec = _spec(InitSpec.normal, _real(mean, "mean", "normal_"), _real(std, "std", "normal_"))
    return _write(tensor, spec, "normal_", seed, generator)


@route.entry
def trunc_normal_(tensor: torch.Tensor, mean: float = 0.0, std: float = 1.0, a: float = -2.0,
                  b: float = 2.0, generator: torch.Generator | None = None, *,
                  seed: int | None = None) -> torch.Tensor:
    r"""Fill the input Tensor with values drawn from a truncated normal distribution.

    The values are effectively drawn from the normal distribution
    :math:`\mathcal{N}(\text{mean}, \text{std}^2)` restricted to :math:`[a, b]`
    (``a`` and ``b`` are absolute bounds; ``std`` is that of the untruncated normal).
    Sampling is exact (inversion of the CDF in the smaller tail), so values never pile up
    on a bound; every value, after rounding to the tensor's dtype, lies in :math:`[a, b]`.

    Args:
        tensor: an n-dimensional `torch.Tensor`
        mean: the mean of the normal distribution
        std: the standard deviation of the normal distribution
        a: the minimum cutoff value
        b: the maximum cutoff value
        generator: the torch Generator to draw the call's seed from
        seed: (fastinit) use this 64-bit seed instead of drawing one

    Raises:
        ValueError: if ``a >= b``, or if ``[a, b]`` lies more than 11 standard deviations
            from the mean (torch accepts both and returns values outside ``[a, b]``).

    Examples:
        >>> w = torch.empty(3, 5)
        >>> fastinit.trunc_normal_(w)
    """
    fn = "trunc_normal_"
    _check_tensor(tensor, fn)
    spec = _spec(InitSpec.trunc_normal, _real(mean, "mean", fn), _real(std, "std", fn),
                 _real(a, "a", fn), _real(b, "b", fn))
    return _write(tensor, spec, fn, seed, generator)


# --- constants and structured matrices -------------------------------------------------------


@route.entry
def constant_(tensor: torch.Tensor, val: float) -> torch.Tensor:
    r"""Fill the input Tensor with the value :math:`\text{val}`.

    The value is rounded to the tensor's dtype as ``Tensor.fill_`` rounds it; NaN and
    infinities are allowed.

    Args:
        tensor: an n-dimensional `torch.Tensor`
        val: the value to fill the tensor with (a number or a 0-dim tensor)

    Raises:
        RuntimeError: if ``val`` is finite but outside the range of the tensor's dtype, or
            a tensor with more than 0 dimensions (as ``Tensor.fill_``).

    Examples:
        >>> w = torch.empty(3, 5)
        >>> fastinit.constant_(w, 0.3)
    """
    _check_tensor(tensor, "constant_")
    if isinstance(val, torch.Tensor):
        if val.dim() != 0:
            raise RuntimeError("fill_ only supports 0-dimension value tensor but got tensor "
                               f"with {val.dim()} dimensions.")
        if val.device.type != "cpu":  # reading it would synchronize: let torch copy it
            with torch.no_grad():
                return tensor.fill_(val)
        val = val.item()
    elif not isinstance(val, numbers.Number):
        raise TypeError(f"fastinit.constant_(): argument 'val' must be a number or a 0-dim "
                        f"tensor, not {type(val).__name__}")
    if tensor.dtype not in SUPPORTED_DTYPES:
        _fill_constant(tensor, val)  # torch's own fill_, with torch's own checks
        return tensor
    if isinstance(val, complex) or not isinstance(val, numbers.Real):
        val = complex(val)
        if val.imag != 0:
            raise RuntimeError(
                f"value cannot be converted to type {_CPP_NAMES[tensor.dtype]} without overflow")
        val = val.real
    value = float(val)
    if math.isfinite(value) and abs(value) > torch.finfo(tensor.dtype).max:
        raise RuntimeError(
            f"value cannot be converted to type {_CPP_NAMES[tensor.dtype]} without overflow")
    _fill_constant(tensor, value)
    return tensor


@route.entry
def ones_(tensor: torch.Tensor) -> torch.Tensor:
    r"""Fill the input Tensor with the scalar value `1`.

    Args:
        tensor: an n-dimensional `torch.Tensor`

    Examples:
        >>> w = torch.empty(3, 5)
        >>> fastinit.ones_(w)
    """
    _check_tensor(tensor, "ones_")
    _fill_constant(tensor, 1.0)
    return tensor


@route.entry
def zeros_(tensor: torch.Tensor) -> torch.Tensor:
    r"""Fill the input Tensor with the scalar value `0`.

    Args:
        tensor: an n-dimensional `torch.Tensor`

    Examples:
        >>> w = torch.empty(3, 5)
        >>> fastinit.zeros_(w)
    """
    _check_tensor(tensor, "zeros_")
    _fill_constant(tensor, 0.0, zero=True)
    return tensor


@route.entry
def eye_(tensor: torch.Tensor) -> torch.Tensor:
    r"""Fill the 2-dimensional input `Tensor` with the identity matrix.

    Preserves the identity of the inputs in `Linear` layers, where as
    many inputs are preserved as possible.

    Args:
        tensor: a 2-dimensional `torch.Tensor`

    Raises:
        ValueError: if the tensor does not have 2 dimensions.

    Examples:
        >>> w = torch.empty(3, 5)
        >>> fastinit.eye_(w)
    """
    _check_tensor(tensor, "eye_")
    if tensor.ndimension() != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    if fill_target(tensor, "eye_", elementwise=False, overlap_ok=True) is None:
        return tensor
    if is_dtensor(tensor):  # the diagonal's global positions held by this rank
        d = torch.arange(min(tensor.shape), device="cpu")
        route.torch_write(tensor, functools.partial(_put_ones, tensor, (d, d)))
    else:
        route.torch_write(tensor, functools.partial(
            torch.eye, *tensor.shape, out=tensor, requires_grad=tensor.requires_grad))
    return tensor


def _put_ones(tensor: torch.Tensor, indices: tuple[torch.Tensor, ...]) -> None:
    """Zero ``tensor``, then write ones at ``indices`` (global positions for a DTensor)."""
    if is_dtensor(tensor):
        from fastinit.distributed import index_put_global_, local_tensor

        local_tensor(tensor).zero_()
        index_put_global_(tensor, indices, 1.0)
        return
    tensor.zero_()
    tensor.index_put_(indices, torch.ones((), dtype=tensor.dtype, device=tensor.device))


@route.entry
def dirac_(tensor: torch.Tensor, groups: int = 1) -> torch.Tensor:
    r"""Fill the {3, 4, 5}-dimensional input `Tensor` with the Dirac delta function.

    Preserves the identity of the inputs in `Convolutional`
    layers, where as many input channels are preserved as possible. In case
    of groups>1, each group of channels preserves identity.

    Args:
        tensor: a {3, 4, 5}-dimensional `torch.Tensor`
        groups (int, optional): number of groups in the conv layer (default: 1)

    Raises:
        ValueError: if the tensor does not have 3, 4 or 5 dimensions, if ``groups < 1``
            (torch: ``ZeroDivisionError`` for 0, silently all zeros for negative values) or
            if ``groups`` does not divide dim 0.
        TypeError: if ``groups`` is not an integer.

    Examples:
        >>> w = torch.empty(3, 16, 5, 5)
        >>> fastinit.dirac_(w)
        >>> w = torch.empty(3, 24, 5, 5)
        >>> fastinit.dirac_(w, 3)
    """
    _check_tensor(tensor, "dirac_")
    dimensions = tensor.ndimension()
    if dimensions not in [3, 4, 5]:
        raise ValueError("Only tensors with 3, 4, or 5 dimensions are supported")
    try:
        groups = operator.index(groups)
    except TypeError:
        raise TypeError(f"fastinit.dirac_(): groups must be an integer, not "
                        f"{type(groups).__name__}") from None
    if groups < 1:
        raise ArgumentError(f"fastinit.dirac_: groups must be >= 1, got {groups}")
    target = fill_target(tensor, "dirac_", elementwise=False, overlap_ok=True)
    sizes = tensor.size()
    if sizes[0] % groups != 0:
        raise ValueError("dim 0 must be divisible by groups")
    if target is None:
        return tensor
    out_chans_per_grp = sizes[0] // groups
    min_dim = min(out_chans_per_grp, sizes[1])
    dev = tensor.device
    d = torch.arange(min_dim, device=dev)
    out_idx = (torch.arange(groups, device=dev)[:, None] * out_chans_per_grp + d).reshape(-1)
    in_idx = d.repeat(groups)
    centre = tuple(torch.full_like(out_idx, s // 2) for s in sizes[2:])
    route.torch_write(tensor, functools.partial(_put_ones, tensor, (out_idx, in_idx) + centre))
    return tensor


# --- Xavier and Kaiming --------------------------------------------------------------------------


@route.entry
def xavier_uniform_(tensor: torch.Tensor, gain: float = 1.0,
                    generator: torch.Generator | None = None, *,
                    seed: int | None = None) -> torch.Tensor:
    r"""Fill the input `Tensor` with values using a Xavier uniform distribution.

    The method is described in `Understanding the difficulty of training
    deep feedforward neural networks` - Glorot, X. & Bengio, Y. (2010).
    The resulting tensor will have values sampled from
    :math:`\mathcal{U}(-a, a)` where

    .. math::
        a = \text{gain} \times \sqrt{\frac{6}{\text{fan\_in} + \text{fan\_out}}}

    computed exactly as torch computes it. Also known as Glorot initialization.

    Args:
        tensor: an n-dimensional `torch.Tensor`
        gain: an optional scaling factor (finite, >= 0)
        generator: the torch Generator to draw the call's seed from
        seed: (fastinit) use this 64-bit seed instead of drawing one

    Examples:
        >>> w = torch.empty(3, 5)
        >>> fastinit.xavier_uniform_(w, gain=fastinit.calculate_gain("relu"))
    """
    fn = "xavier_uniform_"
    _check_tensor(tensor, fn)
    std = _xavier_std(tensor, gain, fn)
    return _write(tensor, _spec(laws.spread, std, "uniform", fn), fn, seed, generator)


@route.entry
def xavier_normal_(tensor: torch.Tensor, gain: float = 1.0,
                   generator: torch.Generator | None = None, *,
                   seed: int | None = None) -> torch.Tensor:
    r"""Fill the input `Tensor` with values using a Xavier normal distribution.

    The method is described in `Understanding the difficulty of training deep feedforward
    neural networks` - Glorot, X. & Bengio, Y. (2010). The resulting tensor
    will have values sampled from :math:`\mathcal{N}(0, \text{std}^2)` where

    .. math::
        \text{std} = \text{gain} \times \sqrt{\frac{2}{\text{fan\_in} + \text{fan\_out}}}

    Also known as Glorot initialization.

    Args:
        tensor: an n-dimensional `torch.Tensor`
        gain: an optional scaling factor (finite, >= 0)
        generator: the torch Generator to draw the call's seed from
        seed: (fastinit) use this 64-bit seed instead of drawing one

    Examples:
        >>> w = torch.empty(3, 5)
        >>> fastinit.xavier_normal_(w)
    """
    fn = "xavier_normal_"
    _check_tensor(tensor, fn)
    std = _xavier_std(tensor, gain, fn)
    return _write(tensor, _spec(laws.spread, std, "normal", fn), fn, seed, generator)


@route.entry
def kaiming_uniform_(tensor: torch.Tensor, a: float = 0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu",
                     generator: torch.Generator | None = None, *,
                     seed: int | None = None) -> torch.Tensor:
    r"""Fill the input `Tensor` with values using a Kaiming uniform distribution.

    The method is described in `Delving deep into rectifiers: Surpassing
    human-level performance on ImageNet classification` - He, K. et al. (2015).
    The resulting tensor will have values sampled from
    :math:`\mathcal{U}(-\text{bound}, \text{bound})` where

    .. math::
        \text{bound} = \text{gain} \times \sqrt{\frac{3}{\text{fan\_mode}}}

    computed exactly as torch computes it. Also known as He initialization.

    Args:
        tensor: an n-dimensional `torch.Tensor`
        a: the negative slope of the rectifier used after this layer (only
            used with ``'leaky_relu'``)
        mode: either ``'fan_in'`` (default) or ``'fan_out'``. Choosing ``'fan_in'``
            preserves the magnitude of the variance of the weights in the
            forward pass. Choosing ``'fan_out'`` preserves the magnitudes in the
            backwards pass.
        nonlinearity: the non-linear function (`nn.functional` name),
            recommended to use only with ``'relu'`` or ``'leaky_relu'`` (default).
        generator: the torch Generator to draw the call's seed from
        seed: (fastinit) use this 64-bit seed instead of drawing one

    Warns:
        UserWarning: "Initializing zero-element tensors is a no-op", as torch.

    Examples:
        >>> w = torch.empty(3, 5)
        >>> fastinit.kaiming_uniform_(w, mode="fan_in", nonlinearity="relu")

    Note:
        ``fan_in`` and ``fan_out`` assume the weight is used transposed (``x @ w.T``
        in ``Linear``, where ``w.shape = [fan_out, fan_in]``); for ``x @ w`` pass
        ``w.T``.
    """
    fn = "kaiming_uniform_"
    _check_tensor(tensor, fn)
    std = _kaiming_std(tensor, a, mode, nonlinearity, fn)
    if std is None:
        check_rng(seed, generator)
        return tensor
    return _write(tensor, _spec(laws.spread, std, "uniform", fn), fn, seed, generator)


@route.entry
def kaiming_normal_(tensor: torch.Tensor, a: float = 0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu",
                    generator: torch.Generator | None = None, *,
                    seed: int | None = None) -> torch.Tensor:
    r"""Fill the input `Tensor` with values using a Kaiming normal distribution.

    The method is described in `Delving deep into rectifiers: Surpassing
    human-level performance on ImageNet classification` - He, K. et al. (2015).
    The resulting tensor will have values sampled from
    :math:`\mathcal{N}(0, \text{std}^2)` where

    .. math::
        \text{std} = \frac{\text{gain}}{\sqrt{\text{fan\_mode}}}

    Also known as He initialization.

    Args:
        tensor: an n-dimensional `torch.Tensor`
        a: the negative slope of the rectifier used after this layer (only
            used with ``'leaky_relu'``)
        mode: either ``'fan_in'`` (default) or ``'fan_out'``. Choosing ``'fan_in'``
            preserves the magnitude of the variance of the weights in the
            forward pass. Choosing ``'fan_out'`` preserves the magnitudes in the
            backwards pass.
        nonlinearity: the non-linear function (`nn.functional` name),
            recommended to use only with ``'relu'`` or ``'leaky_relu'`` (default).
        generator: the torch Generator to draw the call's seed from
        seed: (fastinit) use this 64-bit seed instead of drawing one

    Warns:
        UserWarning: "Initializing zero-element tensors is a no-op", as torch.

    Examples:
        >>> w = torch.empty(3, 5)
        >>> fastinit.kaiming_normal_(w, mode="fan_out", nonlinearity="relu")
    """
    fn = "kaiming_normal_"
    _check_tensor(tensor, fn)
    std = _kaiming_std(tensor, a, mode, nonlinearity, fn)
    if std is None:
        check_rng(seed, generator)
        return tensor
    return _write(tensor, _spec(laws.spread, std, "normal", fn), fn, seed, generator)


# --- orthogonal and sparse -----------------------------------------------------------------------


@route.entry
def orthogonal_(tensor: torch.Tensor, gain: float = 1,
                generator: torch.Generator | None = None, *,
                seed: int | None = None) -> torch.Tensor:
    r"""Fill the input `Tensor` with a (semi) orthogonal matrix.

    Described in `Exact solutions to the nonlinear dynamics of learning in deep
    linear neural networks` - Saxe, A. et al. (2013). The input tensor must have
    at least 2 dimensions, and for tensors with more than 2 dimensions the
    trailing dimensions are flattened: the tensor is viewed, in its logical order, as a
    ``(rows, cols)`` matrix with ``rows = tensor.size(0)``.

    The ``(rows, cols)`` matrix is filled with :math:`\mathcal{N}(0, 1)` values from the
    call's Philox stream (the values ``normal_`` gives a contiguous ``(rows, cols)`` tensor
    with the same seed), then orthogonalized on the tensor's device by a QR factorization
    with torch's sign convention (columns of Q multiplied by the signs of R's diagonal,
    which makes Q Haar-distributed), and multiplied by ``gain``. float16 and bfloat16
    tensors are computed in float32 (torch raises for them); float64 in float64.

    Args:
        tensor: an n-dimensional `torch.Tensor`, where :math:`n \geq 2`
        gain: optional scaling factor (finite)
        generator: the torch Generator to draw the call's seed from
        seed: (fastinit) use this 64-bit seed instead of drawing one

    Examples:
        >>> w = torch.empty(3, 5)
        >>> fastinit.orthogonal_(w)
    """
    fn = "orthogonal_"
    _check_tensor(tensor, fn)
    if tensor.ndimension() < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    gain = _finite(_real(gain, "gain", fn), "gain", fn)
    check_dtype(tensor.dtype, fn)
    check_rng(seed, generator)
    if fill_target(tensor, fn, elementwise=False) is None:
        return tensor
    decided = route.keyed(tensor, seed, generator)
    if decided is None:
        return tensor
    key, stream = decided
    rows = tensor.size(0)
    cols = tensor.numel() // rows
    work = torch.float64 if tensor.dtype == torch.float64 else torch.float32
    flattened = torch.empty((rows, cols), dtype=work, device=tensor.device)
    fill_tensor(flattened, InitSpec.normal(0.0, 1.0).kernel_params(work), key, stream)
    q = laws.orthonormalize(flattened)
    q.mul_(gain)
    q = q.reshape(tensor.shape)
    if is_dtensor(tensor):  # every rank computed the whole matrix: keep its own part
        from fastinit.distributed import copy_from_full_

        route.torch_write(tensor, functools.partial(copy_from_full_, tensor, q), routed=False)
    else:
        route.torch_write(tensor, functools.partial(tensor.copy_, q), routed=False)
    return tensor


@route.entry
def sparse_(tensor: torch.Tensor, sparsity: float, std: float = 0.01,
            generator: torch.Generator | None = None, *,
            seed: int | None = None) -> torch.Tensor:
    r"""Fill the 2D input `Tensor` as a sparse matrix.

    The non-zero elements will be drawn from the normal distribution
    :math:`\mathcal{N}(0, \text{std}^2)`, as described in `Deep learning via
    Hessian-free optimization` - Martens, J. (2010). In every column,
    ``ceil(sparsity * rows)`` elements are set to zero.

    Both the values and the zero positions come from the call's Philox stream: the
    values are those ``normal_(tensor, 0, std)`` writes with the same seed; the positions
    are the rows of the ``ceil(sparsity * rows)`` smallest values of each column of a
    ``(rows, cols)`` float32 uniform matrix drawn from the same key in draw round 1
    (ties broken by row index), i.e. a uniformly random subset of each column,
    independent of the values and identical on every device. (torch draws the positions
    from the global generator whatever ``generator`` is.)

    Args:
        tensor: an n-dimensional `torch.Tensor`
        sparsity: The fraction of elements in each column to be set to zero, in
            :math:`[0, 1]`
        std: the standard deviation of the normal distribution used to generate
            the non-zero values
        generator: the torch Generator to draw the call's seed from
        seed: (fastinit) use this 64-bit seed instead of drawing one

    Raises:
        ValueError: if ``sparsity`` is NaN or outside :math:`[0, 1]` (torch zeroes the
            whole column for ``sparsity > 1`` and all but ``-ceil(sparsity * rows)`` rows
            for negative values).

    Examples:
        >>> w = torch.empty(3, 5)
        >>> fastinit.sparse_(w, sparsity=0.1)
    """
    fn = "sparse_"
    _check_tensor(tensor, fn)
    if tensor.ndimension() != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    sparsity = _real(sparsity, "sparsity", fn)
    if not 0.0 <= sparsity <= 1.0:
        raise ArgumentError(f"fastinit.{fn}: sparsity must be a fraction in [0, 1], "
                            f"got {sparsity}")
    spec = _spec(InitSpec.normal, 0.0, _real(std, "std", fn), fn)
    check_dtype(tensor.dtype, fn)
    params = _params(spec, tensor.dtype)
    check_rng(seed, generator)
    if fill_target(tensor, fn, elementwise=False) is None:
        return tensor
    rows, cols = tensor.shape
    num_zeros = math.ceil(sparsity * rows)
    decided = route.keyed(tensor, seed, generator)
    if decided is None:
        return tensor
    key, stream = decided
    route.fill_keyed(tensor, params, key, stream)
    if num_zeros:
        u = torch.empty((rows, cols), dtype=torch.float32, device=tensor.device)
        fill_tensor(u, InitSpec.uniform(0.0, 1.0).kernel_params(torch.float32), key, stream,
                    draw_round=1)
        zero_rows = torch.argsort(u, dim=0, stable=True)[:num_zeros]
        route.torch_write(tensor, functools.partial(_zero_rows, tensor, zero_rows),
                          routed=False, whole=False)
    return tensor


def _zero_rows(tensor: torch.Tensor, zero_rows: torch.Tensor) -> None:
    """Zero ``tensor[zero_rows[k, j], j]`` for every k, j (global positions for a DTensor)."""
    if is_dtensor(tensor):
        from fastinit.distributed import index_put_global_

        num_zeros, cols = zero_rows.shape
        cols_idx = torch.arange(cols, device=zero_rows.device).expand(num_zeros, cols)
        index_put_global_(tensor, (zero_rows.reshape(-1), cols_idx.reshape(-1)), 0.0)
        return
    tensor.scatter_(0, zero_rows, 0.0)


# --- scaled residual-output init ------------------------------------------------------------------


def _count(x: object, name: str, lowest: int) -> int:
    if isinstance(x, bool):
        raise TypeError(f"fastinit.scaled_residual_(): {name} must be an int, not bool")
    try:
        x = operator.index(x)
    except TypeError:
        raise TypeError(f"fastinit.scaled_residual_(): {name} must be an int, not "
                        f"{type(x).__name__}") from None
    if x < lowest:
        raise ArgumentError(f"fastinit.scaled_residual_: {name} must be >= {lowest}, got {x}")
    return x


@route.entry
def scaled_residual_(tensor: torch.Tensor, std: float = 0.02, num_layers: int | None = None,
                     *, layer_id: int | None = None, mean: float = 0.0,
                     truncated: bool = False, a: float | None = None, b: float | None = None,
                     generator: torch.Generator | None = None,
                     seed: int | None = None) -> torch.Tensor:
    r"""Fill the input Tensor with the scaled init of residual-output projections.

    GPT-2 and Megatron-LM initialize the layers that write into the residual stream
    (attention output and MLP down projections) with a standard deviation scaled by
    the depth of the network,

    .. math::
        \text{std}_\text{out} = \frac{\text{std}}{\sqrt{2 \cdot \text{num\_layers}}}

    (GPT-2's ``initializer_range / sqrt(2 * n_layer)``, Megatron's
    ``scaled_init_method_normal``). With ``layer_id`` instead of ``num_layers``, the
    per-layer depth form of torchtitan's ``depth_init`` is used,

    .. math::
        \text{std}_\text{out} = \frac{\text{std}}{\sqrt{2 \cdot (\text{layer\_id} + 1)}}

    Values are drawn from :math:`\mathcal{N}(\text{mean}, \text{std}_\text{out}^2)`, or,
    with ``truncated=True``, from that normal truncated to :math:`[a, b]` exactly as
    :func:`trunc_normal_` draws it (torchtitan uses ``trunc_normal_`` with its default
    bounds :math:`[-2, 2]`). Pass exactly one of ``num_layers`` and ``layer_id``.

    Args:
        tensor: an n-dimensional `torch.Tensor`
        std: the base standard deviation (the model's ``initializer_range``, default
            0.02), before scaling; finite and >= 0 (> 0 when truncated)
        num_layers: the number of transformer layers (>= 1), for
            ``std / sqrt(2 * num_layers)``
        layer_id: the 0-based index of this layer (>= 0), for
            ``std / sqrt(2 * (layer_id + 1))``; keyword-only
        mean: the mean of the normal distribution
        truncated: draw from the truncated normal instead of the normal
        a: the minimum cutoff value (absolute, as in :func:`trunc_normal_`; default -2.0);
            only with ``truncated=True``
        b: the maximum cutoff value (absolute; default 2.0); only with ``truncated=True``
        generator: the torch Generator to draw the call's seed from
        seed: (fastinit) use this 64-bit seed instead of drawing one

    Raises:
        ValueError: if neither or both of ``num_layers`` and ``layer_id`` are given, if
            they are out of range, if ``a`` or ``b`` is given without ``truncated=True``,
            or for the conditions of :func:`normal_` and :func:`trunc_normal_`.
        TypeError: if ``num_layers`` or ``layer_id`` is not an int.

    Examples:
        >>> w = torch.empty(768, 3072)  # GPT-2 small c_proj of the MLP
        >>> fastinit.scaled_residual_(w, 0.02, num_layers=12)
        >>> w = torch.empty(4096, 4096)  # torchtitan attention.wo with depth_init
        >>> fastinit.scaled_residual_(w, 0.02, layer_id=3, truncated=True)
    """
    fn = "scaled_residual_"
    _check_tensor(tensor, fn)
    if (num_layers is None) == (layer_id is None):
        raise ArgumentError(
            f"fastinit.{fn}: pass exactly one of num_layers (std / sqrt(2 * num_layers)) and "
            f"layer_id (std / sqrt(2 * (layer_id + 1))), got num_layers={num_layers!r}, "
            f"layer_id={layer_id!r}")
    depth = (_count(num_layers, "num_layers", 1) if layer_id is None
             else _count(layer_id, "layer_id", 0) + 1)
    std = _finite(_real(std, "std", fn), "std", fn)
    if std < 0 or (truncated and std == 0):
        raise ArgumentError(
            f"fastinit.{fn}: std must be {'> 0' if truncated else '>= 0'}, got {std:g}")
    mean = _real(mean, "mean", fn)
    a = None if a is None else _real(a, "a", fn)
    b = None if b is None else _real(b, "b", fn)
    spec = _spec(functools.partial(laws.scaled_residual, mean=mean, truncated=truncated,
                                   a=a, b=b, fn=fn), std, depth)
    return _write(tensor, spec, fn, seed, generator)


# --- variance scaling (JAX / Flax / Keras), LeCun ---------------------------------------------

_VS_MODES = ("fan_in", "fan_out", "fan_avg", "fan_geo_avg")
_VS_DISTRIBUTIONS = ("truncated_normal", "normal", "uniform")


def _variance_scaled(tensor: torch.Tensor, scale: float, mode: str, distribution: str,
                     fn: str, seed: int | None, generator: torch.Generator | None
                     ) -> torch.Tensor:
    """``variance_scaling_`` and its named cases: checks, then the routed write."""
    _check_tensor(tensor, fn)
    spec = _variance_scaling_spec(tensor, scale, mode, distribution, fn)
    if spec is None:
        check_rng(seed, generator)
        return tensor
    return _write(tensor, spec, fn, seed, generator)


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
    if tensor.dim() < 2:
        _calculate_fan_in_and_fan_out(tensor)  # torch's ValueError for < 2 dimensions
    if 0 in tensor.shape:
        warnings.warn("Initializing zero-element tensors is a no-op", stacklevel=5)
        return None
    std = laws.variance_scaling_std(*_calculate_fan_in_and_fan_out(tensor), scale, mode)
    return _spec(laws.spread, std, distribution, fn)


@route.entry
def variance_scaling_(tensor: torch.Tensor, scale: float = 1.0, mode: str = "fan_in",
                      distribution: str = "truncated_normal",
                      generator: torch.Generator | None = None, *,
                      seed: int | None = None) -> torch.Tensor:
    r"""Fill the input Tensor with JAX's / Keras' variance-scaling initializer.

    The values have variance :math:`\text{scale} / n` where :math:`n` is, by ``mode``,
    ``fan_in``, ``fan_out``, ``(fan_in + fan_out) / 2`` (``"fan_avg"``) or
    ``sqrt(fan_in * fan_out)`` (``"fan_geo_avg"``), drawn from (``distribution``):

    * ``"truncated_normal"``: :math:`\mathcal{N}(0, \sigma^2)` truncated to
      :math:`[-2\sigma, 2\sigma]` with :math:`\sigma = \sqrt{\text{scale}/n} / 0.8796\ldots`,
      the standard deviation of a standard normal truncated at :math:`\pm 2`: the
      *truncated* law has the target variance, as in ``jax.nn.initializers`` and Keras;
    * ``"normal"``: :math:`\mathcal{N}(0, \text{scale}/n)`;
    * ``"uniform"``: :math:`\mathcal{U}(-\sqrt{3\,\text{scale}/n}, \sqrt{3\,\text{scale}/n})`.

    Layout: JAX and Keras kernels are ``[..., in, out]`` (Dense ``(in, out)``, Conv
    ``(*kernel, in, out)``); torch's weights are ``[out, in, *kernel]``. The fans here are
    torch's (``fan_in = size(1) * receptive field``, ``fan_out = size(0) * receptive
    field``, as in :func:`kaiming_normal_`), so a torch layer gets the same law as the
    same layer in JAX; do not pass a JAX-laid-out array. For a DTensor the fans come from
    the global shape.

    Args:
        tensor: an n-dimensional `torch.Tensor`, :math:`n \geq 2`
        scale: the scaling factor (finite, > 0)
        mode: ``"fan_in"`` (default), ``"fan_out"``, ``"fan_avg"`` or ``"fan_geo_avg"``
        distribution: ``"truncated_normal"`` (default), ``"normal"`` or ``"uniform"``
        generator: the torch Generator to draw the call's seed from
        seed: (fastinit) use this 64-bit seed instead of drawing one

    Raises:
        ValueError: for an unknown ``mode`` or ``distribution``, a ``scale`` that is not
            finite and positive, or a tensor with fewer than 2 dimensions.

    Warns:
        UserWarning: "Initializing zero-element tensors is a no-op", as ``kaiming_*``.

    Examples:
        >>> w = torch.empty(256, 128)  # nn.Linear(128, 256).weight
        >>> fastinit.variance_scaling_(w, 2.0, "fan_in", "truncated_normal")  # He, JAX-style
    """
    return _variance_scaled(tensor, scale, mode, distribution, "variance_scaling_", seed, generator)


@route.entry
def lecun_normal_(tensor: torch.Tensor, generator: torch.Generator | None = None, *,
                  seed: int | None = None) -> torch.Tensor:
    r"""Fill the input Tensor with LeCun normal values (JAX / Flax ``lecun_normal``).

    ``variance_scaling_(tensor, 1.0, "fan_in", "truncated_normal")``: a normal truncated at
    two of its standard deviations, with variance :math:`1 / \text{fan\_in}` after
    truncation. Flax's default kernel init for ``Dense`` and ``Conv``; with SELU, the
    init of self-normalizing networks (Klambauer et al., 2017). Fans follow torch's
    ``[out, in, *kernel]`` layout (see :func:`variance_scaling_`).

    Args:
        tensor: an n-dimensional `torch.Tensor`, :math:`n \geq 2`
        generator: the torch Generator to draw the call's seed from
        seed: (fastinit) use this 64-bit seed instead of drawing one

    Examples:
        >>> w = torch.empty(3, 5)
        >>> fastinit.lecun_normal_(w)
    """
    return _variance_scaled(tensor, 1.0, "fan_in", "truncated_normal", "lecun_normal_", seed, generator)


@route.entry
def lecun_uniform_(tensor: torch.Tensor, generator: torch.Generator | None = None, *,
                   seed: int | None = None) -> torch.Tensor:
    r"""Fill the input Tensor with LeCun uniform values (JAX / Keras ``lecun_uniform``).

    ``variance_scaling_(tensor, 1.0, "fan_in", "uniform")``:
    :math:`\mathcal{U}(-\sqrt{3 / \text{fan\_in}}, \sqrt{3 / \text{fan\_in}})`. Fans follow
    torch's ``[out, in, *kernel]`` layout (see :func:`variance_scaling_`).

    Args:
        tensor: an n-dimensional `torch.Tensor`, :math:`n \geq 2`
        generator: the torch Generator to draw the call's seed from
        seed: (fastinit) use this 64-bit seed instead of drawing one

    Examples:
        >>> w = torch.empty(3, 5)
        >>> fastinit.lecun_uniform_(w)
    """
    return _variance_scaled(tensor, 1.0, "fan_in", "uniform", "lecun_uniform_", seed, generator)


# --- classifier bias at the class prior ---------------------------------------------------------

_ACTIVATIONS = ("sigmoid", "softmax")
#: How far the priors of a softmax output may sum from 1.
PRIOR_SUM_TOLERANCE = 1e-6


def _prior_values(prior: object, n: int, activation: str, fn: str) -> torch.Tensor:
    """``prior`` as a float64 vector of length ``n``, checked: each in (0, 1), summing to 1
    (within :data:`PRIOR_SUM_TOLERANCE`) for softmax."""
    if isinstance(prior, torch.Tensor):
        if prior.is_complex() or prior.dtype == torch.bool:
            raise TypeError(f"fastinit.{fn}(): prior must be real, got a tensor of dtype "
                            f"{prior.dtype}")
        p = prior.detach().to(device="cpu", dtype=torch.float64)
        if p.dim() > 1:
            raise ValueError(f"fastinit.{fn}: prior must be a number or a 1-D sequence, got a "
                             f"tensor of shape {tuple(prior.shape)}")
        p = p.reshape(-1) if p.dim() == 1 else p.expand(n)
    elif isinstance(prior, (str, bytes)) or not hasattr(prior, "__len__"):
        p = torch.full((n,), _real(prior, "prior", fn), dtype=torch.float64, device="cpu")
    else:
        p = torch.tensor([_real(x, "prior", fn) for x in prior], dtype=torch.float64,
                         device="cpu")
    if p.numel() != n:
        raise ValueError(f"fastinit.{fn}: prior has {p.numel()} values for a bias of "
                         f"{n} elements; give one per class (or a single number)")
    bad = ~((p > 0) & (p < 1))  # also catches NaN
    if bad.any():
        k = int(bad.nonzero()[0])
        raise ArgumentError(f"fastinit.{fn}: every prior must lie in (0, 1); prior[{k}] = "
                            f"{float(p[k])!r}")
    if activation == "softmax":
        total = float(p.sum())
        if abs(total - 1.0) > PRIOR_SUM_TOLERANCE:
            raise ArgumentError(f"fastinit.{fn}: the priors of a softmax output must sum to 1 "
                                f"(within {PRIOR_SUM_TOLERANCE:g}); they sum to {total!r}")
    return p


@route.entry
def class_prior_bias_(bias: torch.Tensor, prior: float | object,
                      activation: str = "sigmoid") -> torch.Tensor:
    r"""Fill a classifier's bias so that its initial outputs are the class prior.

    With ``activation="sigmoid"`` (one binary output per class, as in RetinaNet's focal
    loss head, Lin et al. 2017) each bias is :math:`\log(p_k / (1 - p_k))`, so that
    :math:`\sigma(b_k) = p_k`; with ``"softmax"`` it is :math:`\log p_k` minus the mean of
    the :math:`\log p_j` (centred: softmax ignores a common shift), so that
    :math:`\operatorname{softmax}(b) = p`. Karpathy's "init well" rule: the first loss is
    the prior's entropy, not a hockey stick. Values are computed in float64 and rounded
    once to the bias's dtype.

    Args:
        bias: a 1-D floating-point `torch.Tensor` (one element per class)
        prior: a number in (0, 1) - the same prior for every element (one sigmoid output,
            or a multi-label head with one base rate) - or a sequence / 1-D tensor of the
            bias's length, each in (0, 1); for softmax they must sum to 1 (within 1e-6)
        activation: ``"sigmoid"`` (default) or ``"softmax"``

    Raises:
        ValueError: for a prior outside (0, 1), softmax priors not summing to 1, a length
            mismatch, an unknown activation, or a bias that is not 1-D. Nothing is written.

    Examples:
        >>> head = torch.nn.Linear(256, 80)
        >>> fastinit.class_prior_bias_(head.bias, 0.01)  # RetinaNet: sigmoid(b) = 0.01
        >>> fastinit.class_prior_bias_(clf.bias, [0.7, 0.2, 0.1], activation="softmax")
    """
    fn = "class_prior_bias_"
    _check_tensor(bias, fn)
    if not isinstance(activation, str) or activation.lower() not in _ACTIVATIONS:
        raise ValueError(f"fastinit.{fn}: activation must be one of {list(_ACTIVATIONS)}, "
                         f"got {activation!r}")
    activation = activation.lower()
    if bias.dim() != 1:
        raise ValueError(f"fastinit.{fn}: bias must be 1-D (one element per class), got "
                         f"shape {tuple(bias.shape)}")
    check_dtype(bias.dtype, fn)
    p = _prior_values(prior, bias.shape[0], activation, fn)
    if activation == "sigmoid":
        values = torch.log(p) - torch.log1p(-p)
    else:
        logp = torch.log(p)
        values = logp - logp.mean()
    target = fill_target(bias, fn, elementwise=False)
    if target is None:
        return bias
    values = values.to(dtype=bias.dtype)
    if is_dtensor(bias):
        from fastinit.distributed import copy_from_full_

        route.torch_write(bias, functools.partial(copy_from_full_, bias, values))
    else:
        route.torch_write(bias, functools.partial(_copy_to, bias, values))
    return bias


def _copy_to(tensor: torch.Tensor, values: torch.Tensor) -> None:
    tensor.copy_(values.to(device=tensor.device))


# --- new token embeddings from the old ones ---------------------------------------------------------

#: transformers' ``resize_token_embeddings(mean_resizing=True)`` samples new rows from
#: N(mean, MEAN_RESIZE_EPSILON * covariance) of the old rows.
MEAN_RESIZE_EPSILON = 1e-9
#: Columns per block of the covariance product (only blocks on and above the diagonal are
#: computed) and rows per pass over the old embeddings (bounds the centred temporary).
_COV_BLOCK = 512
_COV_ROWS = 16384


def _covariance(old: torch.Tensor, mean: torch.Tensor) -> torch.Tensor:
    """``(old - mean).T @ (old - mean) / n`` in float32, as transformers computes it, at
    about half the cost: the matrix is symmetric, so only column blocks ``i <= j`` are
    multiplied (and mirrored), and the centred rows are formed a slice at a time."""
    n, d = old.shape
    cov = torch.zeros((d, d), dtype=torch.float32, device=old.device)
    starts = list(range(0, d, _COV_BLOCK))
    for r0 in range(0, n, _COV_ROWS):
        c = old[r0:r0 + _COV_ROWS].to(torch.float32) - mean
        for i in starts:
            ci = c[:, i:i + _COV_BLOCK]
            # one product for the whole row of blocks j >= i: fewer, larger GEMMs
            cov[i:i + _COV_BLOCK, i:].addmm_(ci.T, c[:, i:])
    for i in starts:  # mirror the upper blocks: the result is exactly symmetric
        for j in starts:
            if j > i:
                cov[j:j + _COV_BLOCK, i:i + _COV_BLOCK] = cov[i:i + _COV_BLOCK, j:j + _COV_BLOCK].T
    return cov.div_(n)


def _mean_resize_rows(old: torch.Tensor, added: int, key: int, stream: int, offset: int,
                      dtype: torch.dtype) -> torch.Tensor:
    """The ``added`` new rows (``dtype``) from the ``old`` rows: the float32 mean plus
    ``z @ L.T`` with ``L`` the Cholesky factor of ``eps * cov`` and ``z`` the N(0, 1) values
    of (``key``, ``stream``) at global indices ``offset...`` (the new rows' own)."""
    from fastinit import backends
    from fastinit.layout import Segment

    old32 = old.to(torch.float32)
    mean = _mean_chunked(old32)
    d = old.shape[1]
    cov = _covariance(old32, mean)
    # transformers' test (torch.distributions.constraints.positive_definite): a Cholesky
    # of eps * cov that succeeds
    factor, info = torch.linalg.cholesky_ex(MEAN_RESIZE_EPSILON * cov)
    if int(info) != 0:
        return mean.expand(added, d).to(dtype)
    z = torch.empty((added, d), dtype=torch.float32, device=old.device)
    params = InitSpec.normal(0.0, 1.0).kernel_params(torch.float32)
    backends.fill(z, [Segment(0, 0, offset, 0, added * d, 1)], params, key, stream)
    return torch.addmm(mean, z, factor.T).to(dtype)


def _mean_chunked(old32: torch.Tensor) -> torch.Tensor:
    """The column means of a float32 matrix, accumulated in float64 a slice at a time (no
    float64 copy of the whole matrix): the float32 rounding of the exact mean."""
    acc = torch.zeros(old32.shape[1], dtype=torch.float64, device=old32.device)
    for r0 in range(0, old32.shape[0], _COV_ROWS):
        acc += old32[r0:r0 + _COV_ROWS].to(torch.float64).sum(dim=0)
    return (acc / old32.shape[0]).to(torch.float32)


def _write_mean_resized(weight: torch.Tensor, num_old_rows: int, key: int, stream: int) -> None:
    """Compute and write the new rows of ``weight`` from its old rows (run when the write
    is performed: the old rows then hold their final values)."""
    rows, d = weight.shape
    added = rows - num_old_rows
    if is_dtensor(weight):
        from fastinit.distributed import copy_from_full_

        full = weight.full_tensor()  # a collective: every rank needs every old row
        full[num_old_rows:] = _mean_resize_rows(full[:num_old_rows], added, key, stream,
                                                num_old_rows * d, weight.dtype)
        copy_from_full_(weight, full)
        return
    weight[num_old_rows:] = _mean_resize_rows(weight[:num_old_rows], added, key, stream,
                                              num_old_rows * d, weight.dtype)


@route.entry
def mean_resize_embeddings_(weight: torch.Tensor, num_old_rows: int,
                            generator: torch.Generator | None = None, *,
                            seed: int | None = None) -> torch.Tensor:
    r"""Initialize the rows of a grown embedding from the statistics of its old rows.

    Rows ``num_old_rows`` and up are drawn from the law transformers'
    ``resize_token_embeddings(..., mean_resizing=True)`` uses (Hewitt, "Initializing new
    word embeddings for pretrained language models", 2021): the multivariate normal with
    the mean :math:`\mu` of the old rows and covariance :math:`10^{-9}\,\Sigma`, where
    :math:`\Sigma = (E - \mu)^T (E - \mu) / n` is the (biased) covariance of the ``n`` old
    rows :math:`E`, both computed in float32 (the mean accumulated in float64, so it is
    the float32 rounding of the exact mean). When :math:`10^{-9}\,\Sigma` is not positive
    definite in float32 (its Cholesky factorization fails - e.g. fewer old rows than
    columns), every new row is the mean, as in transformers.

    A new row is :math:`\mu + L z` with :math:`L` the Cholesky factor of
    :math:`10^{-9}\,\Sigma` and :math:`z` the :math:`\mathcal{N}(0, 1)` values that
    ``normal_`` would give those rows (the call's key and stream at the rows' indices), so
    the result is reproducible on any device. :math:`\Sigma` is computed blockwise (its
    upper half only) without a centred copy of the whole matrix: about half the work and
    memory of transformers' method. The old rows are read when the write is performed,
    so inside ``materialize`` / ``patch(deferred=True)`` they hold their final values.

    Args:
        weight: the resized embedding matrix ``(rows, dim)``, old rows first (an
            ``nn.Embedding`` weight, or an ``lm_head`` weight)
        num_old_rows: how many leading rows are old, in ``[1, rows]``; ``rows`` is a no-op
        generator: the torch Generator to draw the call's seed from
        seed: (fastinit) use this 64-bit seed instead of drawing one

    Raises:
        ValueError: if ``weight`` is not 2-D or ``num_old_rows`` is outside ``[1, rows]``.
        TypeError: if ``num_old_rows`` is not an int.

    Examples:
        >>> old = model.get_input_embeddings().weight.shape[0]
        >>> model.resize_token_embeddings(old + 8, mean_resizing=False)
        >>> fastinit.mean_resize_embeddings_(model.get_input_embeddings().weight, old)
    """
    fn = "mean_resize_embeddings_"
    _check_tensor(weight, fn)
    if weight.dim() != 2:
        raise ValueError(f"fastinit.{fn}: weight must be 2-D (rows, dim), got shape "
                         f"{tuple(weight.shape)}")
    if isinstance(num_old_rows, bool):
        raise TypeError(f"fastinit.{fn}(): num_old_rows must be an int, not bool")
    try:
        num_old_rows = operator.index(num_old_rows)
    except TypeError:
        raise TypeError(f"fastinit.{fn}(): num_old_rows must be an int, not "
                        f"{type(num_old_rows).__name__}") from None
    rows = weight.shape[0]
    if not 1 <= num_old_rows <= rows:
        raise ArgumentError(f"fastinit.{fn}: num_old_rows must be in [1, {rows}] (the rows of "
                            f"weight), got {num_old_rows}")
    check_dtype(weight.dtype, fn)
    check_rng(seed, generator)
    if fill_target(weight, fn, elementwise=False) is None or num_old_rows == rows:
        return weight
    decided = route.keyed(weight, seed, generator)
    if decided is None:
        return weight
    key, stream = decided
    # reads the old rows and writes the new ones: ordered after every pending write to
    # the weight (the target is all of it), without hiding them (whole=False)
    route.torch_write(weight, functools.partial(_write_mean_resized, weight, num_old_rows,
                                                key, stream), routed=False, whole=False)
    return weight


# --- deprecated aliases (as torch.nn.init keeps them) ---------------------------------------------


def _make_deprecate(meth):
    new_name = meth.__name__
    old_name = new_name[:-1]

    def deprecated_init(*args, **kwargs):
        warnings.warn(
            f"`fastinit.{old_name}` is now deprecated in favor of `fastinit.{new_name}`.",
            FutureWarning,
            stacklevel=2,
        )
        return meth(*args, **kwargs)

    deprecated_init.__doc__ = rf"""
    {old_name}(...)

    .. warning::
        This method is now deprecated in favor of :func:`fastinit.{new_name}`.

    See :func:`~fastinit.{new_name}` for details."""
    deprecated_init.__name__ = old_name
    deprecated_init.__qualname__ = old_name
    return deprecated_init


uniform = _make_deprecate(uniform_)
normal = _make_deprecate(normal_)
constant = _make_deprecate(constant_)
eye = _make_deprecate(eye_)
dirac = _make_deprecate(dirac_)
xavier_uniform = _make_deprecate(xavier_uniform_)
xavier_normal = _make_deprecate(xavier_normal_)
kaiming_uniform = _make_deprecate(kaiming_uniform_)
kaiming_normal = _make_deprecate(kaiming_normal_)
orthogonal = _make_deprecate(orthogonal_)
sparse = _make_deprecate(sparse_)
