"""New token embeddings from the old ones: :func:`mean_resize_embeddings_`.

The rows added to a resized embedding are drawn from the law transformers'
``resize_token_embeddings(mean_resizing=True)`` uses (the mean and a scaled covariance of
the old rows), with the normal values of the call's Philox stream at the new rows' indices,
so the result is reproducible on any device. The old rows are read when the write is
performed (a :func:`fastinit.route.torch_write`). Re-exported by :mod:`fastinit.init`.
"""
from __future__ import annotations

import functools
import itertools

import torch

from fastinit import route
from fastinit.arguments import ArgumentError, _check_tensor, _index
from fastinit.distributed import is_dtensor
from fastinit.fill import fill_target
from fastinit.spec import InitSpec, check_dtype
from fastinit.streams import check_rng

__all__ = ["mean_resize_embeddings_", "MEAN_RESIZE_EPSILON"]


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
            # one product for the whole row of blocks j >= i: fewer, larger GEMMs
            cov[i:i + _COV_BLOCK, i:].addmm_(c[:, i:i + _COV_BLOCK].T, c[:, i:])
    for i, j in itertools.combinations(starts, 2):  # mirror the upper blocks: exactly symmetric
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
    # transformers' test (torch.distributions.constraints.positive_definite): a Cholesky
    # of eps * cov that succeeds
    factor, info = torch.linalg.cholesky_ex(MEAN_RESIZE_EPSILON * _covariance(old32, mean))
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
    # a DTensor's full tensor is a collective: every rank needs every old row
    full = weight.full_tensor() if is_dtensor(weight) else weight
    full[num_old_rows:] = _mean_resize_rows(full[:num_old_rows], rows - num_old_rows, key,
                                            stream, num_old_rows * d, weight.dtype)
    if full is not weight:
        from fastinit.distributed import copy_from_full_

        copy_from_full_(weight, full)


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
    num_old_rows = _index(num_old_rows, "num_old_rows", fn)
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

