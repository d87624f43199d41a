"""The structured and composite functions, views, dtypes and autograd.

* ``orthogonal_``: Q^T Q = gain^2 I (Q Q^T for wide matrices) for tall, wide, square and
  conv-shaped tensors in every dtype; the values are the QR (torch's sign convention) of
  the ``normal_`` draws of the same seed; the sign convention makes Q Haar-distributed.
* ``dirac_`` is the identity through conv1d/2d/3d, with groups, and equals torch's
  ``dirac_``; ``eye_``, ``constant_``, ``zeros_``, ``ones_`` equal torch's bit for bit.
* ``sparse_``: exactly ``ceil(sparsity * rows)`` zeros per column, at the positions the
  documented draw (round 1 of the call's key) gives, uniformly spread; the non-zero
  values are the ``normal_`` values of the same seed.
* ``scaled_residual_``: std / sqrt(2 num_layers) and std / sqrt(2 (layer_id + 1)), normal
  and truncated, against their laws; argument validation.
* Every function on non-contiguous views (transposed, strided slices, channels_last)
  writes by logical index and nothing outside the view; fp64/fp32/bf16/fp16;
  ``requires_grad`` parameters.

Thresholds (fixed seeds, so no statistic is random; levels as in test_init_parity.py):
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

import numpy as np
import pytest
import scipy.stats
import torch
import torch.nn.functional as F
import torch.nn.init as tinit

import fastinit
from fastinit.fill import fill_tensor
from fastinit.spec import InitSpec
from tests.common import assert_bitwise_equal

NAN = math.nan
from tests.stats_helpers import KS_ALPHA, Z_MAX  # the thresholds, defined once
DTYPES = [torch.float64, torch.float32, torch.bfloat16, torch.float16]


def _ks_crit(n: int) -> float:
    return float(scipy.stats.kstwo.isf(KS_ALPHA, n))


# --- orthogonal_ ------------------------------------------------------------------------------

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
        assert d < _ks_crit(n), (i, j, d)


def test_orthogonal_half_precision_is_the_float32_result_rounded_once():
    ref = fastinit.orthogonal_(torch.empty(24, 5, 3), 2.0, seed=8)
    for dtype in (torch.float16, torch.bfloat16):
        half = fastinit.orthogonal_(torch.empty(24, 5, 3, dtype=dtype), 2.0, seed=8)
        assert_bitwise_equal(half, ref.to(dtype))


# --- eye_, dirac_, constants: torch's values --------------------------------------------------


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


CONSTANT_VALUES = [0.0, 1.0, -2.5, 1 / 3, 0.1, 1.00390625 + 1e-9, 65504.0, 1e-8, 1e-40,
                   5e-324, 3.3895313892515355e38, math.inf, -math.inf, math.nan, True, 7,
                   2**53 + 1]


@pytest.mark.parametrize("dtype", DTYPES + [torch.int32, torch.int64, torch.bool,
                                            torch.complex64], ids=str)
def test_constant_equals_torchs_fill(dtype):
    for v in CONSTANT_VALUES:
        try:
            expected = tinit.constant_(torch.empty(9, dtype=dtype), v)
        except RuntimeError:
            with pytest.raises(RuntimeError):
                fastinit.constant_(torch.empty(9, dtype=dtype), v)
            continue
        t = torch.empty(9, dtype=dtype)
        assert fastinit.constant_(t, v) is t
        assert_bitwise_equal(t, expected)
    for fn in ("zeros_", "ones_"):
        assert_bitwise_equal(getattr(fastinit, fn)(torch.empty(5, 3, dtype=dtype)),
                             getattr(tinit, fn)(torch.empty(5, 3, dtype=dtype)))


def test_constant_takes_0_dim_tensors_and_numpy_scalars():
    assert (fastinit.constant_(torch.empty(4), torch.tensor(2.5)) == 2.5).all()
    assert (fastinit.constant_(torch.empty(4), np.float32(0.5)) == 0.5).all()
    assert (fastinit.constant_(torch.empty(4), 1.5 + 0j) == 1.5).all()


def test_constant_negative_zero():
    assert_bitwise_equal(fastinit.constant_(torch.empty(4), -0.0),
                         torch.full((4,), -0.0))


def test_constants_on_views_leave_the_rest_alone():
    base = torch.full((6, 8), NAN)
    fastinit.constant_(base[::2, 1::3], 0.25)
    mask = torch.zeros(6, 8, dtype=torch.bool)
    mask[::2, 1::3] = True
    assert (base[mask] == 0.25).all() and base[~mask].isnan().all()


# --- sparse_ ----------------------------------------------------------------------------------


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


# --- scaled_residual_ -------------------------------------------------------------------------


def _scale(seen):
    return seen[0].scale


def _recorded_params(monkeypatch, call):
    seen = []
    monkeypatch.setattr("fastinit.route.fill", lambda t, p, *a, **k: seen.append(p))
    call(torch.empty(4, 4))
    return seen[0]


def test_scaled_residual_std_formulas(monkeypatch):
    for n in range(1, 201):  # GPT-2 / Megatron: sigma / sqrt(2.0 * num_layers)
        p = _recorded_params(monkeypatch, lambda t: fastinit.scaled_residual_(t, 0.02, n))
        assert p.dist == 2 and p.shift == 0.0 and p.scale == 0.02 / math.sqrt(2.0 * n)
    for layer_id in range(128):  # torchtitan depth_init
        p = _recorded_params(
            monkeypatch, lambda t: fastinit.scaled_residual_(t, layer_id=layer_id,
                                                             truncated=True))
        assert p.dist == 3 and p.scale == 0.02 / (2 * (layer_id + 1)) ** 0.5


@pytest.mark.parametrize("form", [{"num_layers": 12}, {"layer_id": 5}])
def test_scaled_residual_normal_law(form):
    depth = form.get("num_layers", form.get("layer_id", 0) + 1)
    sigma = 0.02 / math.sqrt(2 * depth)
    x = fastinit.scaled_residual_(torch.empty(1000, 1000), 0.02, **form, seed=77)
    v = x.double().flatten().numpy()
    assert scipy.stats.kstest(v, scipy.stats.norm(0, sigma).cdf).statistic < _ks_crit(v.size)
    se = math.sqrt(2 * sigma**4 / v.size)  # SE of the sample variance of a normal
    assert abs(np.mean(v * v) - sigma**2) < Z_MAX * se


@pytest.mark.parametrize("form", [{"num_layers": 24}, {"layer_id": 0}])
def test_scaled_residual_truncated_law(form):
    depth = form.get("num_layers", form.get("layer_id", 0) + 1)
    sigma = 0.02 / math.sqrt(2 * depth)
    lo, hi = -1.5 * sigma, 2.0 * sigma  # tight bounds, so the truncation matters
    x = fastinit.scaled_residual_(torch.empty(1000, 1000), 0.02, **form, truncated=True,
                                  a=lo, b=hi, seed=78)
    v = x.double().flatten().numpy()
    assert v.min() >= lo and v.max() <= hi
    law = scipy.stats.truncnorm(-1.5, 2.0, scale=sigma)
    assert scipy.stats.kstest(v, law.cdf).statistic < _ks_crit(v.size)
    m4 = law.expect(lambda y: (y - law.mean()) ** 4)
    se = math.sqrt((m4 - law.var() ** 2) / v.size)
    assert abs(np.var(v) - law.var()) < Z_MAX * se


def test_scaled_residual_equals_the_plain_fills():
    s = 0.02 / math.sqrt(2.0 * 12)
    assert_bitwise_equal(fastinit.scaled_residual_(torch.empty(64, 48), 0.02, 12, seed=5),
                         fastinit.normal_(torch.empty(64, 48), 0.0, s, seed=5))
    s = 0.02 / math.sqrt(2.0 * 4)
    assert_bitwise_equal(
        fastinit.scaled_residual_(torch.empty(64, 48), layer_id=3, truncated=True, mean=0.1,
                                  seed=5),
        fastinit.trunc_normal_(torch.empty(64, 48), 0.1, s, -2.0, 2.0, seed=5))


@pytest.mark.parametrize("kw,exc", [
    ({}, ValueError),
    ({"num_layers": 12, "layer_id": 3}, ValueError),
    ({"num_layers": 0}, ValueError),
    ({"num_layers": -2}, ValueError),
    ({"num_layers": 1.5}, TypeError),
    ({"num_layers": True}, TypeError),
    ({"layer_id": -1}, ValueError),
    ({"layer_id": "3"}, TypeError),
    ({"num_layers": 12, "std": -0.02}, ValueError),
    ({"num_layers": 12, "std": NAN}, ValueError),
    ({"num_layers": 12, "std": math.inf}, ValueError),
    ({"num_layers": 12, "mean": NAN}, ValueError),
    ({"num_layers": 12, "a": -0.1}, ValueError),
    ({"num_layers": 12, "b": 0.1}, ValueError),
    ({"num_layers": 12, "std": 0.0, "truncated": True}, ValueError),
    ({"num_layers": 12, "truncated": True, "a": 0.1, "b": -0.1}, ValueError),
    ({"num_layers": 12, "truncated": True, "a": 1.0, "b": 2.0}, ValueError),  # 490 sigma away
    ({"num_layers": 12, "generator": 3}, TypeError),
    ({"num_layers": 12, "seed": 1.5}, TypeError),
], ids=str)
def test_scaled_residual_validation(kw, exc):
    t = torch.full((8, 8), NAN)
    with pytest.raises(exc):
        fastinit.scaled_residual_(t, **kw)
    assert t.isnan().all()


def test_scaled_residual_std_zero_gives_the_mean():
    assert (fastinit.scaled_residual_(torch.empty(5, 5), 0.0, 4, mean=0.5) == 0.5).all()


# --- views, dtypes, autograd for every function -----------------------------------------------

SEEDED = [
    ("uniform_", (-0.5, 0.5)), ("normal_", (0.0, 0.1)), ("trunc_normal_", (0.0, 1.0, -1.0, 1.0)),
    ("xavier_uniform_", ()), ("xavier_normal_", ()), ("kaiming_uniform_", ()),
    ("kaiming_normal_", ()), ("orthogonal_", ()), ("scaled_residual_", (0.02, 6)),
]


@pytest.mark.parametrize("name,args", SEEDED, ids=[c[0] for c in SEEDED])
def test_views_are_filled_by_logical_index(name, args):
    fn = getattr(fastinit, name)
    expected = fn(torch.empty(8, 6, 3, 3), *args, seed=42)
    cl = torch.full((8, 6, 3, 3), NAN).to(memory_format=torch.channels_last)
    assert not cl.is_contiguous()
    fn(cl, *args, seed=42)
    assert_bitwise_equal(cl.contiguous(), expected)
    # a strided slice of a bigger tensor: the rest stays NaN
    base = torch.full((10, 8, 3, 5), NAN)
    view = base[1:9, 1:7, :, 1:4]
    fn(view, *args, seed=42)
    assert_bitwise_equal(view.contiguous(), expected)
    mask = torch.ones_like(base, dtype=torch.bool)
    mask[1:9, 1:7, :, 1:4] = False
    assert base[mask].isnan().all()
    # a transposed 2-D view
    expected2 = fn(torch.empty(7, 5), *args, seed=43)
    tr = torch.full((5, 7), NAN).t()
    fn(tr, *args, seed=43)
    assert_bitwise_equal(tr.contiguous(), expected2)


def test_sparse_on_views():
    expected = fastinit.sparse_(torch.empty(9, 6), 0.4, seed=2)
    tr = torch.full((6, 9), NAN).t()
    fastinit.sparse_(tr, 0.4, seed=2)
    assert_bitwise_equal(tr.contiguous(), expected)
    base = torch.full((12, 10), NAN)
    fastinit.sparse_(base[1:10, 2:8], 0.4, seed=2)
    assert_bitwise_equal(base[1:10, 2:8].contiguous(), expected)
    base[1:10, 2:8] = 0
    assert base.isnan().sum() == 120 - 54


ALL = SEEDED + [("sparse_", (0.3,)), ("constant_", (0.5,)), ("zeros_", ()), ("ones_", ()),
                ("eye_", ()), ("dirac_", ())]


def _shape(name):
    return {"sparse_": (12, 8), "eye_": (12, 8), "dirac_": (6, 4, 3, 3)}.get(name, (12, 8, 3))


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name,args", ALL, ids=[c[0] for c in ALL])
def test_every_dtype(name, args, dtype):
    t = torch.full(_shape(name), NAN, dtype=dtype)
    assert getattr(fastinit, name)(t, *args) is t
    assert t.dtype == dtype and torch.isfinite(t).all()


@pytest.mark.parametrize("name,args", [("normal_", (0.0, 0.7)), ("xavier_normal_", ()),
                                       ("kaiming_normal_", ()),
                                       ("scaled_residual_", (0.02, 3))])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_half_precision_normals_are_the_float32_values_rounded(name, args, dtype):
    fn = getattr(fastinit, name)
    ref = fn(torch.empty(64, 40), *args, seed=9)
    assert_bitwise_equal(fn(torch.empty(64, 40, dtype=dtype), *args, seed=9), ref.to(dtype))


@pytest.mark.parametrize("name,args", ALL, ids=[c[0] for c in ALL])
def test_parameters_requiring_grad(name, args):
    p = torch.nn.Parameter(torch.full(_shape(name), NAN))
    with torch.enable_grad():
        out = getattr(fastinit, name)(p, *args)
    assert out is p and p.requires_grad and p.is_leaf and p.grad_fn is None
    assert not p.isnan().any()
