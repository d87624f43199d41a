"""The structured inits: identity matrices, Dirac deltas, (block) orthogonal and sparse
matrices.

``eye_``, ``dirac_``, ``orthogonal_`` and ``sparse_`` of ``torch.nn.init``, with its
signatures, defaults and errors (re-exported by :mod:`fastinit.init`, where the differences
from torch are listed). Their values are not one distribution per element: ones at
positions, a QR of the call's normal values, zero positions from the call's uniform values.
They are written through :func:`fastinit.route.torch_write` (the random ones after one
routing decision for the call's key and stream, :func:`fastinit.route.keyed`), on a DTensor
at the global positions this rank holds. :func:`_orthogonal_values` (orthogonal blocks of
the call's normal values) is shared with the recipes' ``orthogonal(blocks=...)``.
"""
from __future__ import annotations

import functools
import math
import operator

import torch

from fastinit import laws, route
from fastinit.arguments import ArgumentError, _check_tensor, _finite, _params, _real, _spec
from fastinit.distributed import is_dtensor
from fastinit.fill import fill_target, fill_tensor
from fastinit.spec import InitSpec, check_dtype
from fastinit.streams import check_rng

__all__ = ["eye_", "dirac_", "orthogonal_", "sparse_"]


# --- identity and Dirac ----------------------------------------------------------------------------


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
    if tensor.ndimension() not in [3, 4, 5]:
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
    d = torch.arange(min(out_chans_per_grp, sizes[1]), device=tensor.device)
    out_idx = (torch.arange(groups, device=d.device)[:, None] * out_chans_per_grp + d).reshape(-1)
    in_idx = d.repeat(groups)
    centre = tuple(torch.full_like(out_idx, s // 2) for s in sizes[2:])
    route.torch_write(tensor, functools.partial(_put_ones, tensor, (out_idx, in_idx) + centre))
    return tensor


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
    # every rank computes the whole matrix; a DTensor keeps its own part
    _write_values(tensor, _orthogonal_values(tensor, *decided, gain), routed=False)
    return tensor


def _orthogonal_values(tensor: torch.Tensor, key: int, stream: int, gain: float,
                       blocks: int = 1) -> torch.Tensor:
    """What ``orthogonal_`` writes to ``tensor`` (its global shape, on its device): the
    ``(rows, cols)`` matrix of N(0, 1) values of (``key``, ``stream``) in the working
    precision (float64 for float64 tensors, else float32), each of ``blocks`` equal row
    blocks orthonormalized (:func:`fastinit.laws.block_orthogonal`), times ``gain``."""
    rows = tensor.size(0)
    work = torch.float64 if tensor.dtype == torch.float64 else torch.float32
    flattened = torch.empty((rows, tensor.numel() // rows), dtype=work, device=tensor.device)
    fill_tensor(flattened, InitSpec.normal(0.0, 1.0).kernel_params(work), key, stream)
    return laws.block_orthogonal(flattened, blocks).mul_(gain).reshape(tensor.shape)


def _write_values(tensor: torch.Tensor, values: torch.Tensor, *, routed: bool = True) -> None:
    """Write ``values`` (a plain tensor of ``tensor``'s global shape, converted as
    ``Tensor.copy_`` converts) to ``tensor`` with :func:`fastinit.route.torch_write`
    (``routed=False``: the router was already asked); a DTensor keeps the part this rank
    holds. Shared with the recipes' structured inits and ``class_prior_bias_``."""
    if is_dtensor(tensor):
        from fastinit.distributed import copy_from_full_

        apply = functools.partial(copy_from_full_, tensor, values)
    else:
        apply = functools.partial(tensor.copy_, values)
    route.torch_write(tensor, apply, routed=routed)


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
    num_zeros = math.ceil(sparsity * tensor.shape[0])
    decided = route.keyed(tensor, seed, generator)
    if decided is None:
        return tensor
    key, stream = decided
    route.fill_keyed(tensor, params, key, stream)
    if num_zeros:
        u = torch.empty(tensor.shape, dtype=torch.float32, device=tensor.device)
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

