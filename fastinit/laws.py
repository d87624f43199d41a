"""The init math, once: from a tensor's shape and a law's arguments to what to write.

Pure functions: nothing here writes a tensor, routes a fill or validates user input.
``fastinit.init`` validates the arguments of its public functions, builds the
distribution here and writes it; the recipes' inits (``fastinit.recipes``) call the same
builders for each tensor they match; a model check can ask them what a shape's
Xavier or He standard deviation is. So every formula has one place, and the public
functions and the recipes agree to the bit (the arithmetic is torch's, in torch's order).

The builders take checked arguments (finite gains, a known mode); the checks and their
error messages belong to the callers, which know the name of the function called.

Laws:

* :func:`calculate_gain` - torch's recommended gain per nonlinearity;
* :func:`fans` - torch's fan rule (dimension 1 in, dimension 0 out, times the receptive
  field), optionally of one of several stacked row blocks (one gate of an RNN matrix);
* :func:`kaiming_std`, :func:`xavier_std`, :func:`variance_scaling_std`,
  :func:`scaled_residual_std` - the standard deviations of the named schemes;
* :func:`spread` - a standard deviation as a normal, uniform or (JAX's) truncated-normal
  distribution of that standard deviation;
* :func:`orthonormalize`, :func:`block_orthogonal` - the QR of ``orthogonal_``, with
  torch's sign convention, of a whole matrix or of each of its row blocks.
"""
from __future__ import annotations

import math

import torch

from fastinit.spec import InitSpec

__all__ = [
    "calculate_gain", "fans", "shape_fans", "kaiming_std", "xavier_std",
    "variance_scaling_std", "scaled_residual_std", "scaled_residual", "spread",
    "TRUNCATED_NORMAL_STD_AT_2", "orthonormalize", "block_orthogonal",
]

#: torch's gains of the nonlinearities without a parameter (selu's 3/4 was found
#: empirically, pytorch/pytorch#50664)
_GAINS = {**dict.fromkeys(("linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                           "conv_transpose2d", "conv_transpose3d", "sigmoid"), 1),
          "tanh": 5.0 / 3, "relu": math.sqrt(2.0), "selu": 3.0 / 4}


def calculate_gain(nonlinearity: str, param: int | float | None = None) -> float:
    r"""Return the recommended gain value for the given nonlinearity function.

    The values are as follows (identical to :func:`torch.nn.init.calculate_gain`):

    ================= ====================================================
    nonlinearity      gain
    ================= ====================================================
    Linear / Identity :math:`1`
    Conv{1,2,3}D      :math:`1`
    Sigmoid           :math:`1`
    Tanh              :math:`\frac{5}{3}`
    ReLU              :math:`\sqrt{2}`
    Leaky Relu        :math:`\sqrt{\frac{2}{1 + \text{negative\_slope}^2}}`
    SELU              :math:`\frac{3}{4}`
    ================= ====================================================

    Args:
        nonlinearity: the non-linear function (`nn.functional` name)
        param: optional parameter for the non-linear function (the negative slope of
            ``'leaky_relu'``, default 0.01)

    Raises:
        ValueError: for an unknown nonlinearity, or a ``param`` that is not an int or a
            float.

    Examples:
        >>> gain = fastinit.calculate_gain("leaky_relu", 0.2)  # negative_slope=0.2
    """
    if nonlinearity == "leaky_relu":
        if param is None:
            negative_slope = 0.01
        elif not isinstance(param, bool) and isinstance(param, int) or isinstance(param, float):
            # True/False are instances of int, hence the check above
            negative_slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + negative_slope**2))
    if isinstance(nonlinearity, str) and nonlinearity in _GAINS:
        return _GAINS[nonlinearity]
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def fans(tensor: torch.Tensor, blocks: int = 1) -> tuple[int, int]:
    """torch's ``(fan_in, fan_out)`` of ``tensor``: ``size(1)`` and ``size(0)``, each times
    the product of the remaining sizes; with ``blocks > 1``, of one of ``blocks`` equal row
    blocks (the fans of one gate of a stacked recurrent matrix: ``fan_out / blocks``).

    Raises:
        ValueError: for fewer than 2 dimensions (torch's message), or rows that do not
            split into ``blocks`` equal blocks.
    """
    if tensor.dim() < 2:
        raise ValueError(
            "Fan in and fan out can not be computed for tensor with fewer than 2 dimensions"
        )
    receptive_field_size = math.prod(tensor.shape[2:])
    fan_in = tensor.size(1) * receptive_field_size
    fan_out = tensor.size(0) * receptive_field_size
    if blocks != 1:
        if tensor.shape[0] % blocks:
            raise ValueError(f"{tensor.shape[0]} rows do not split into {blocks} equal blocks")
        fan_out //= blocks
    return fan_in, fan_out


def shape_fans(shape) -> tuple[int | None, int | None]:
    """:func:`fans` of a tensor of ``shape``, or ``(None, None)`` below two dimensions
    (where torch has none): what the reports print beside a parameter."""
    if len(shape) < 2:
        return None, None
    return fans(torch.empty(tuple(shape), device="meta"))


def kaiming_std(fan_in: int, fan_out: int, gain: float, mode: str = "fan_in") -> float:
    """He's standard deviation ``gain / sqrt(fan)`` (``mode``: ``"fan_in"`` or
    ``"fan_out"``, already lower-case)."""
    return gain / math.sqrt(fan_in if mode == "fan_in" else fan_out)


def xavier_std(fan_in: int, fan_out: int, gain: float = 1.0) -> float:
    """Glorot's standard deviation ``gain * sqrt(2 / (fan_in + fan_out))``."""
    return gain * math.sqrt(2.0 / float(fan_in + fan_out))


def variance_scaling_std(fan_in: int, fan_out: int, scale: float, mode: str) -> float:
    """JAX's variance scaling: ``sqrt(scale / n)`` with ``n`` by ``mode``: ``fan_in``,
    ``fan_out``, ``(fan_in + fan_out) / 2`` (``"fan_avg"``) or ``sqrt(fan_in * fan_out)``
    (``"fan_geo_avg"``)."""
    denominator = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2.0,
                   "fan_geo_avg": math.sqrt(fan_in * fan_out)}[mode]
    return math.sqrt(scale / denominator)


def scaled_residual_std(std: float, depth: int) -> float:
    """The residual-output standard deviation ``std / sqrt(2 * depth)`` (GPT-2 and
    Megatron: ``depth = num_layers``; torchtitan's depth init: ``depth = layer_id + 1``)."""
    return std / math.sqrt(2.0 * depth)


def scaled_residual(std: float, depth: int, *, mean: float = 0.0, truncated: bool = False,
                    a: float | None = None, b: float | None = None,
                    cutoff: float | None = None, fn: str = "scaled_residual_") -> InitSpec:
    """The residual-output distribution: N(mean, s^2) with ``s`` the
    :func:`scaled_residual_std`, or with ``truncated`` that normal truncated to
    ``[a, b]`` (absolute bounds, as ``trunc_normal_``; default ``[-2, 2]``) or, with
    ``cutoff``, to ``mean +- cutoff * s`` (bounds in scaled standard deviations, the same
    for every depth).

    Raises:
        ValueError: for cutoffs without ``truncated``, or both ``a``/``b`` and ``cutoff``.
    """
    s = scaled_residual_std(std, depth)
    if not truncated:
        if a is not None or b is not None or cutoff is not None:
            raise ValueError(f"fastinit.{fn}: the cutoffs a and b apply to the truncated "
                             "normal only: pass truncated=True")
        return InitSpec.normal(mean, s, fn)
    if cutoff is not None:
        if a is not None or b is not None:
            raise ValueError(f"fastinit.{fn}: pass the cutoffs as a and b (absolute) or as "
                             "cutoff (scaled standard deviations), not both")
        return InitSpec.trunc_normal(mean, s, mean - cutoff * s, mean + cutoff * s, fn)
    return InitSpec.trunc_normal(mean, s, -2.0 if a is None else a, 2.0 if b is None else b, fn)


def _std_normal_truncated_at_2() -> float:
    r"""The standard deviation of :math:`\mathcal{N}(0, 1)` truncated to :math:`[-2, 2]`,
    :math:`\sqrt{1 - 4\varphi(2) / (\Phi(2) - \Phi(-2))}` (JAX's ``.87962566103423978``)."""
    pdf = math.exp(-2.0) / math.sqrt(2.0 * math.pi)
    mass = math.erf(2.0 / math.sqrt(2.0))
    return math.sqrt(1.0 - 4.0 * pdf / mass)


#: JAX and Keras divide the target standard deviation by this, so that the values - drawn
#: from a normal truncated at two of *its* standard deviations - have the target variance.
TRUNCATED_NORMAL_STD_AT_2 = _std_normal_truncated_at_2()


def spread(std: float, distribution: str, fn: str = "init") -> InitSpec:
    """A zero-mean distribution of standard deviation ``std``: ``"normal"``
    N(0, std^2); ``"uniform"`` U(-sqrt(3) std, sqrt(3) std) (the bound computed from the
    standard deviation, as torch computes it); ``"truncated_normal"`` JAX's normal of
    ``std / TRUNCATED_NORMAL_STD_AT_2`` truncated at two of its standard deviations.
    ``fn`` names the caller in :class:`~fastinit.spec.InitSpec`'s errors."""
    if distribution == "normal":
        return InitSpec.normal(0.0, std, fn)
    if distribution == "uniform":
        bound = math.sqrt(3.0) * std
        return InitSpec.uniform(-bound, bound, fn)
    if distribution == "truncated_normal":
        sigma = std / TRUNCATED_NORMAL_STD_AT_2
        return InitSpec.trunc_normal(0.0, sigma, -2.0 * sigma, 2.0 * sigma, fn)
    raise ValueError(f"unknown distribution {distribution!r}")


def orthonormalize(m: torch.Tensor) -> torch.Tensor:
    """The (semi-)orthogonal factor of the 2-D matrix ``m``: the Q of its QR (of its
    transpose when it is wide), each column multiplied by the sign of R's diagonal
    (which makes Q Haar-distributed for a Gaussian ``m``). A new tensor, ``m``'s shape."""
    wide = m.shape[0] < m.shape[1]
    if wide:
        m = m.t()
    q, r = torch.linalg.qr(m)
    q *= torch.diag(r, 0).sign()  # Haar measure (Mezzadri, arXiv:math-ph/0609050)
    return q.t() if wide else q


def block_orthogonal(m: torch.Tensor, blocks: int = 1) -> torch.Tensor:
    """:func:`orthonormalize` of each of ``blocks`` equal row blocks of ``m`` (stacked
    again); ``blocks=1`` is :func:`orthonormalize` of the whole matrix."""
    if blocks == 1:
        return orthonormalize(m)
    step = m.shape[0] // blocks
    return torch.cat([orthonormalize(m[i:i + step]) for i in range(0, m.shape[0], step)])
