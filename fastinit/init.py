"""The ``torch.nn.init``-compatible functions.

Each function validates its arguments, turns them into an :class:`~fastinit.spec.InitSpec`,
and writes the Philox stream to the tensor: nothing is written unless every check passed.
Signatures, defaults and return values follow ``torch.nn.init``; ``seed=`` (keyword-only)
is fastinit's extension that pins a call's stream.
"""
from __future__ import annotations

import torch

from fastinit.fill import fill_tensor
from fastinit.spec import InitSpec, check_dtype
from fastinit.streams import call_key

__all__ = ["uniform_", "normal_", "trunc_normal_"]


def _write(tensor: torch.Tensor, spec: InitSpec, fn: str, seed: int | None,
           generator: torch.Generator | None, stream: int = 0) -> torch.Tensor:
    check_dtype(tensor.dtype, fn)
    if tensor.device.type == "meta" or tensor.numel() == 0:
        return tensor
    params = spec.kernel_params(tensor.dtype)  # may raise: before anything is written
    fill_tensor(tensor, params, call_key(seed, generator), stream)
    return tensor


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
    return _write(tensor, InitSpec.uniform(a, b), "uniform_", seed, generator)


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
    return _write(tensor, InitSpec.normal(mean, std), "normal_", seed, generator)


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
    spec = InitSpec.trunc_normal(mean, std, a, b)
    return _write(tensor, spec, "trunc_normal_", seed, generator)
