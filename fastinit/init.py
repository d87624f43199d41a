"""The ``torch.nn.init``-compatible functions, plus :func:`scaled_residual_`.

Each function validates all of its arguments, turns them into an
:class:`~fastinit.spec.InitSpec`, and writes the Philox stream to the tensor through
:mod:`fastinit.route` (one routing decision per fill): nothing is written unless every
check passed, and a failed call does not advance the generator. Signatures, defaults, return values, fan
rules, warnings and the exception types torch raises follow ``torch.nn.init``;
``seed=`` (keyword-only, on the functions that draw random numbers) is fastinit's
extension that pins a call's stream.

The module is the front end's one public face; the functions are defined by job and all
re-exported here: the drawing, constant, Xavier / Kaiming, scaled-residual,
variance-scaling and class-prior functions and the deprecated aliases in this module, the
structured inits (``eye_``, ``dirac_``, ``orthogonal_``, ``sparse_``) in
:mod:`fastinit.structured`, :func:`mean_resize_embeddings_` in :mod:`fastinit.embeddings`,
and the argument checks with the checked write they share (:class:`ArgumentError`,
:func:`check_spec`, :func:`fill_spec_`) in :mod:`fastinit.arguments`.

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
import warnings

import torch

from fastinit import laws, route
from fastinit.arguments import (
    ArgumentError,
    _check_tensor,
    _fill_constant,
    _finite,
    _index,
    _kaiming_spec,
    _real,
    _spec,
    _variance_scaling_spec,
    _write,
    _xavier_spec,
    check_spec,
    fill_spec_,
)
from fastinit.fill import fill_target
from fastinit.laws import TRUNCATED_NORMAL_STD_AT_2, calculate_gain
from fastinit.spec import _CPP_NAMES, SUPPORTED_DTYPES, InitSpec, check_dtype

# The rest of the front end, defined by job and re-exported here (``fastinit.init.X``):
from fastinit.embeddings import MEAN_RESIZE_EPSILON, mean_resize_embeddings_
from fastinit.structured import _write_values, dirac_, eye_, orthogonal_, sparse_

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


# --- constants ---------------------------------------------------------------------------------


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
    value = complex(val)  # a real number, or a complex one without imaginary part
    if value.imag != 0 or (math.isfinite(value.real)
                           and abs(value.real) > torch.finfo(tensor.dtype).max):
        raise RuntimeError(
            f"value cannot be converted to type {_CPP_NAMES[tensor.dtype]} without overflow")
    _fill_constant(tensor, value.real)
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


# --- Xavier and Kaiming --------------------------------------------------------------------------


def _fan_based(tensor: torch.Tensor, fn: str, seed: int | None,
               generator: torch.Generator | None, law, *args) -> torch.Tensor:
    """The fan-based inits (Xavier, Kaiming, variance scaling): check ``tensor``, build its
    distribution ``law(tensor, *args, fn)`` (None for a zero-element tensor, after torch's
    warning), then the routed write."""
    _check_tensor(tensor, fn)
    return _write(tensor, law(tensor, *args, fn), fn, seed, generator)


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
    return _fan_based(tensor, "xavier_uniform_", seed, generator, _xavier_spec, gain, "uniform")


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
    return _fan_based(tensor, "xavier_normal_", seed, generator, _xavier_spec, gain, "normal")


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
    return _fan_based(tensor, "kaiming_uniform_", seed, generator, _kaiming_spec, a, mode,
                      nonlinearity, "uniform")


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
    return _fan_based(tensor, "kaiming_normal_", seed, generator, _kaiming_spec, a, mode,
                      nonlinearity, "normal")

# --- scaled residual-output init ------------------------------------------------------------------


def _count(x: object, name: str, lowest: int) -> int:
    x = _index(x, name, "scaled_residual_")
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
    return _fan_based(tensor, "variance_scaling_", seed, generator, _variance_scaling_spec, scale,
                      mode, distribution)


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
    return _fan_based(tensor, "lecun_normal_", seed, generator, _variance_scaling_spec, 1.0,
                      "fan_in", "truncated_normal")


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
    return _fan_based(tensor, "lecun_uniform_", seed, generator, _variance_scaling_spec, 1.0,
                      "fan_in", "uniform")


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
    if fill_target(bias, fn, elementwise=False) is None:
        return bias
    _write_values(bias, values.to(dtype=bias.dtype))
    return bias


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
