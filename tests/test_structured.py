"""The structured functions (fastinit.structured): orthogonal_, eye_, dirac_, sparse_.

* ``orthogonal_``: Q^T Q = gain^2 I (Q Q^T for wide matrices) for tall, wide, square and
  conv-shaped tensors in every dtype; the values are the QR (torch's sign convention) of
  the ``normal_`` draws of the same seed; the sign convention makes Q Haar-distributed.
* ``dirac_`` is the identity through conv1d/2d/3d, with groups, and equals torch's
  ``dirac_``; ``eye_`` equals torch's bit for bit.
* ``sparse_``: exactly ``ceil(sparsity * rows)`` zeros per column, at the positions the
  documented draw (round 1 of the call's key) gives, uniformly spread; the non-zero
  values are the ``normal_`` values of the same seed (their law: test_init.py).

Thresholds (fixed seeds, so no statistic is random; levels as in test_init.py):
KS distance below ``kstwo.isf(1e-6, n)``; variances and counts within 5 standard errors.
Orthogonality: rounding every entry of an exactly orthogonal Q to a dtype with unit
roundoff u = eps/2 changes each entry of Q^T Q by at most 2u + u^2 <= eps (Cauchy-Schwarz
over a column), and Householder QR in the work precision (float32 / float64) is
orthogonal to O(m * eps_work) (m the long side): the tolerance is
gain^2 * (eps_dtype + m * eps_work). The comparison of Q with a float64 QR of the same
draws uses the perturbation bound of the QR factors, |dQ| <= c * kappa(A) * eps_work, with
c = 10 m.
"""
from __future__ import annotations

import math

import pytest
import scipy.stats
import torch
import torch.nn.functional as F
import torch.nn.init as tinit

import fastinit
from fastinit.fill import fill_tensor
from fastinit.spec import InitSpec
from tests.common import assert_bitwise_equal
from tests.stats_helpers import Z_MAX, ks_critical


NAN = math.nan


DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]


ORTHO_SHAPES = [(64, 16), (16, 64), (32, 32), (32, 16, 3, 3), (256, 4, 3), (8, 4, 2, 2, 2),
                (1, 7), (7, 1)]


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("gain", [1, 2.5, -0.5])
@pytest.mark.parametrize("shape", ORTHO_SHAPES, ids=str)
def test_orthogonal_is_orthogonal(shape, gain, dtype):
    t = fastinit.orthogonal_(torch.full(shape, NAN, dtype=dtype), gain, seed=3)
    assert t.dtype == dtype and t.shape == shape
    rows = shape[0]
    m = t.reshape(rows, -1).double()
    cols = m.shape[1]
    gram = m.T @ m if rows >= cols else m @ m.T
    work = torch.float64 if dtype == torch.float64 else torch.float32
    tol = gain**2 * (torch.finfo(dtype).eps + max(rows, cols) * torch.finfo(work).eps)
    err = (gram - gain**2 * torch.eye(min(rows, cols), dtype=torch.float64)).abs().max()
    assert err <= tol, f"max |Q^T Q - gain^2 I| = {err:.3g} > {tol:.3g}"


@pytest.mark.parametrize("shape", [(64, 16), (16, 64), (12, 12), (32, 4, 3, 3)], ids=str)
def test_orthogonal_values_are_the_qr_of_the_normal_draws(shape):
    t = fastinit.orthogonal_(torch.empty(shape), 1.5, seed=17)
    rows = shape[0]
    cols = math.prod(shape) // rows
    a = fastinit.normal_(torch.empty(rows, cols), seed=17).double()  # the same draws
    if rows < cols:
        a = a.T
    q, r = torch.linalg.qr(a)
    q = q * torch.diag(r).sign()
    if rows < cols:
        q = q.T
    expected = 1.5 * q.reshape(shape)
    kappa = torch.linalg.cond(a).item()
    tol = 1.5 * 10 * max(rows, cols) * kappa * torch.finfo(torch.float32).eps
    assert (t.double() - expected).abs().max() <= tol


def test_orthogonal_sign_convention_makes_q_haar():
    # Entries of a Haar-random 3x3 orthogonal matrix are U(-1, 1) (Archimedes); without
    # the sign correction, LAPACK's Householder QR gives Q[0, 0] <= 0 always.
    n = 3000
    qs = torch.stack([fastinit.orthogonal_(torch.empty(3, 3), seed=i) for i in range(n)])
    law = scipy.stats.uniform(-1, 2).cdf
    for i, j in [(0, 0), (1, 2), (2, 1)]:
        d = scipy.stats.kstest(qs[:, i, j].double().numpy(), law).statistic
        assert d < ks_critical(n), (i, j, d)


def test_orthogonal_half_precision_is_the_float32_result_rounded_once():
    ref = fastinit.orthogonal_(torch.empty(24, 5, 3), 2.0, seed=8)
    for dtype in (torch.float16, torch.bfloat16):
        half = fastinit.orthogonal_(torch.empty(24, 5, 3, dtype=dtype), 2.0, seed=8)
        assert_bitwise_equal(half, ref.to(dtype))


@pytest.mark.parametrize("dtype", DTYPES + [torch.int32, torch.bool], ids=str)
@pytest.mark.parametrize("shape", [(3, 5), (5, 3), (4, 4), (0, 3), (1, 1)], ids=str)
def test_eye_equals_torch(shape, dtype):
    expected = tinit.eye_(torch.empty(shape, dtype=dtype))
    t = torch.empty(shape, dtype=dtype)
    assert fastinit.eye_(t) is t
    assert_bitwise_equal(t, expected)


def test_eye_on_views():
    base = torch.full((7, 9), NAN)
    view = base[1:6, 2:5].t()  # (3, 5), strided both ways
    fastinit.eye_(view)
    assert_bitwise_equal(view.contiguous(), torch.eye(3, 5))
    outside = torch.ones(7, 9, dtype=torch.bool)
    outside[1:6, 2:5] = False
    assert base[outside].isnan().all()


DIRAC_CASES = [((6, 4, 3), 1), ((6, 4, 3), 2), ((6, 2, 5), 3), ((4, 6, 3, 3), 1),
               ((8, 3, 3, 5), 2), ((6, 2, 3, 3, 3), 3), ((4, 4, 1, 1, 1), 4), ((2, 5, 4), 1)]


@pytest.mark.parametrize("dtype", DTYPES + [torch.int64], ids=str)
@pytest.mark.parametrize("shape,groups", DIRAC_CASES, ids=str)
def test_dirac_equals_torch(shape, groups, dtype):
    expected = tinit.dirac_(torch.empty(shape, dtype=dtype), groups)
    t = torch.full(shape, 9, dtype=dtype)
    assert fastinit.dirac_(t, groups) is t
    assert_bitwise_equal(t, expected)


@pytest.mark.parametrize("in_per,out_per,groups", [(4, 4, 1), (3, 5, 2), (5, 3, 3), (2, 2, 4)])
@pytest.mark.parametrize("conv,spatial", [(F.conv1d, (9,)), (F.conv2d, (7, 6)),
                                          (F.conv3d, (5, 4, 6))], ids=["1d", "2d", "3d"])
def test_dirac_is_the_identity_through_convolutions(conv, spatial, in_per, out_per, groups):
    k = (3, 1, 5)[: len(spatial)]
    w = fastinit.dirac_(torch.empty(groups * out_per, in_per, *k, dtype=torch.float64), groups)
    x = torch.randn(2, groups * in_per, *spatial, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(0))
    y = conv(x, w, padding=tuple(s // 2 for s in k), groups=groups)
    for g in range(groups):
        for d in range(out_per):
            out = y[:, g * out_per + d]
            if d < in_per:
                assert torch.equal(out, x[:, g * in_per + d])
            else:
                assert (out == 0).all()


def test_dirac_on_channels_last_and_parameters():
    t = torch.full((6, 4, 3, 3), NAN).to(memory_format=torch.channels_last)
    fastinit.dirac_(t, 2)
    assert_bitwise_equal(t.contiguous(), tinit.dirac_(torch.empty(6, 4, 3, 3), 2))
    p = torch.nn.Parameter(torch.empty(4, 4, 3))
    assert fastinit.dirac_(p) is p and p.is_leaf and p.grad_fn is None


@pytest.mark.parametrize("rows,cols,sparsity", [(10, 7, 0.1), (10, 7, 0.0), (10, 7, 1.0),
                                                (33, 20, 0.5), (100, 3, 0.99), (1, 4, 0.5),
                                                (17, 17, 0.3)])
def test_sparse_column_sparsity(rows, cols, sparsity):
    t = fastinit.sparse_(torch.full((rows, cols), NAN), sparsity, seed=4)
    zeros = (t == 0).sum(dim=0)
    assert (zeros == math.ceil(sparsity * rows)).all()  # torch's count
    assert not t.isnan().any()


def test_sparse_values_and_positions_come_from_the_documented_draws():
    rows, cols, seed = 40, 30, 12345
    t = fastinit.sparse_(torch.empty(rows, cols), 0.25, std=0.3, seed=seed)
    values = fastinit.normal_(torch.empty(rows, cols), 0.0, 0.3, seed=seed)
    u = torch.empty(rows, cols)
    fill_tensor(u, InitSpec.uniform(0.0, 1.0).kernel_params(torch.float32), seed, 0,
                draw_round=1)
    zero_rows = torch.argsort(u, dim=0, stable=True)[:10]
    expected = values.scatter(0, zero_rows, 0.0)
    assert_bitwise_equal(t, expected)


def test_sparse_positions_are_uniform_over_rows():
    # 5 of 20 rows zeroed in each of 5000 columns: the zero count of a row is a sum of
    # 5000 independent Bernoulli(1/4): mean 1250, SE sqrt(5000 * 3/16) = 30.6.
    rows, cols = 20, 5000
    t = fastinit.sparse_(torch.empty(rows, cols), 0.25, seed=99)
    counts = (t == 0).sum(dim=1).double()
    se = math.sqrt(cols * 0.25 * 0.75)
    assert ((counts - cols * 0.25).abs() < Z_MAX * se).all(), counts


def test_sparse_positions_follow_the_generator_not_the_global_rng():
    a = fastinit.sparse_(torch.empty(50, 40), 0.5, generator=torch.Generator().manual_seed(5))
    torch.rand(100)  # moves the global generator: torch's own sparse_ would change
    b = fastinit.sparse_(torch.empty(50, 40), 0.5, generator=torch.Generator().manual_seed(5))
    assert_bitwise_equal(a, b)
    c = fastinit.sparse_(torch.empty(50, 40), 0.5, seed=6)
    assert not torch.equal(a == 0, c == 0)
