"""Distributions and their kernel parameters (fastinit.spec): validation, dtypes, rounding.

* Unsupported dtypes raise ``NotImplementedError``, bad parameters torch's exception types,
  before anything is written.
* The clamp bounds of a uniform fill are the dtype's values inside ``[a, b)``, of a
  truncated normal those inside ``[a, b]``; the bounds hold after rounding in every dtype.
* The truncated normal's masses are the normal CDF's at the standardized bounds; intervals
  further than ``MAX_TAIL_SIGMAS`` from the mean are refused.
* A constant is the value ``Tensor.fill_`` writes in the dtype, the sign of zero included.
* float64 truncated normals on an interval narrower than float32 variates resolve are
  refused, not collapsed onto a point.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.stats
import torch

import fastinit
from fastinit.spec import MAX_TAIL_SIGMAS, MIN_FLOAT64_TRUNC_VARIATES, InitSpec, check_dtype
from tests.common import FNS


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.uint8, torch.bool,
                                   torch.complex64], ids=str)
@pytest.mark.parametrize("fn,kw", FNS)
def test_unsupported_dtypes_raise_before_writing(fn, kw, dtype):
    t = torch.zeros(6, dtype=dtype)
    before = t.clone()
    with pytest.raises(NotImplementedError, match="floating-point"):
        fn(t, **kw, seed=1)
    assert torch.equal(t, before)


@pytest.mark.parametrize("call,exc", [
    (lambda t: fastinit.uniform_(t, 1.0, 0.0), RuntimeError),
    (lambda t: fastinit.uniform_(t, math.nan, 1.0), ValueError),
    (lambda t: fastinit.uniform_(t, 0.0, math.inf), RuntimeError),
    (lambda t: fastinit.normal_(t, 0.0, -1.0), RuntimeError),
    (lambda t: fastinit.normal_(t, math.nan, 1.0), ValueError),
    (lambda t: fastinit.normal_(t, 0.0, math.inf), ValueError),
    (lambda t: fastinit.trunc_normal_(t, 0.0, 0.0), ZeroDivisionError),
    (lambda t: fastinit.trunc_normal_(t, 0.0, -1.0), RuntimeError),
    (lambda t: fastinit.trunc_normal_(t, 0.0, 1.0, 2.0, 1.0), ValueError),
    (lambda t: fastinit.trunc_normal_(t, 0.0, 1.0, 1.0, 1.0), ValueError),
    (lambda t: fastinit.trunc_normal_(t, 0.0, 1.0, 12.0, 13.0), ValueError),
    (lambda t: fastinit.trunc_normal_(t, 0.0, 1.0, math.nan, 1.0), ValueError),
    (lambda t: fastinit.trunc_normal_(t, 0.0, 0.02, 1.0, 2.0), ValueError),
], ids=lambda x: getattr(x, "__name__", ""))
def test_bad_arguments_raise_before_writing(call, exc):
    t = torch.full((4, 4), math.nan)
    with pytest.raises(exc):
        call(t)
    assert t.isnan().all()


def test_dtype_specific_errors_before_writing():
    t = torch.full((4,), math.nan, dtype=torch.float16)
    with pytest.raises(RuntimeError, match="out of bounds for c10::Half"):
        fastinit.uniform_(t, 0.0, 1e6)
    assert t.isnan().all()
    b = torch.full((4,), math.nan, dtype=torch.bfloat16)
    with pytest.raises(ValueError, match="no bfloat16 value"):
        fastinit.uniform_(b, 1.0001, 1.001)
    assert b.isnan().all()


def test_bounds_hold_after_rounding_in_every_dtype():
    # compare in float64: torch would round the Python bound to the tensor's dtype first
    for dtype in [torch.bfloat16, torch.float16, torch.float32]:
        u = fastinit.uniform_(torch.empty(1 << 16, dtype=dtype), -0.1, 0.1, seed=2).double()
        assert (u >= -0.1).all() and (u < 0.1).all()
        tn = fastinit.trunc_normal_(torch.empty(1 << 16, dtype=dtype), 0.0, 1.0, -0.3, 0.7,
                                    seed=2).double()
        assert (tn >= -0.3).all() and (tn <= 0.7).all()


def test_float64_truncated_normal_never_collapses_to_a_point():
    t = torch.full((1000,), math.nan, dtype=torch.float64)
    state = torch.get_rng_state()
    with pytest.raises(ValueError, match="distinct values"):
        fastinit.trunc_normal_(t, 0.0, 1.0, 1.0, 1.0 + 1e-10)
    assert t.isnan().all() and torch.equal(torch.get_rng_state(), state)
    # an interval float32 variates resolve finely enough is filled, with many values
    fastinit.trunc_normal_(t, 0.0, 1.0, 5.0, 5.002)
    assert ((t >= 5.0) & (t <= 5.002)).all()
    # ~4200 float32 variates in [5, 5.002], nearly equiprobable: 1000 draws hit
    # K (1 - exp(-N / K)) ~ 885 distinct values (sd < 15); a collapse would give a handful
    assert t.unique().numel() > 800
    # float32 has one value in [1, 1 + 1e-10]: every element is it (not a refusal)
    f = fastinit.trunc_normal_(torch.empty(10), 0.0, 1.0, 1.0, 1.0 + 1e-10)
    assert (f == 1.0).all()
    assert MIN_FLOAT64_TRUNC_VARIATES >= 1024



def _all_values(dtype: torch.dtype) -> np.ndarray:
    """Every finite value of a 16-bit dtype, as float64."""
    v = torch.arange(-(1 << 15), 1 << 15, dtype=torch.int32).to(torch.int16).view(dtype)
    v = v.double().numpy()
    return v[np.isfinite(v)]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
@pytest.mark.parametrize("a,b", [(-0.1, 0.1), (0.3, 0.30078125), (0.3, 0.3015),
                                 (-1e-3, 2.5), (1.0, 2.0)])
def test_uniform_clamp_bounds_are_the_dtype_values_inside_the_interval(dtype, a, b):
    inside = _all_values(dtype)
    inside = inside[(inside >= a) & (inside < b)]
    if inside.size == 0:  # nothing of the dtype in [a, b): refused, not rounded out of it
        with pytest.raises(ValueError, match="value lies in"):
            InitSpec.uniform(a, b).kernel_params(dtype)
        return
    kp = InitSpec.uniform(a, b).kernel_params(dtype)
    assert kp.clamp and (kp.lo, kp.hi) == (inside.min(), inside.max())
    assert (kp.shift, kp.scale) == (a, b - a)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16], ids=str)
def test_trunc_normal_clamp_bounds_are_the_dtype_values_inside_the_closed_interval(dtype):
    lo, hi = -0.3, 0.7
    kp = InitSpec.trunc_normal(0.1, 0.5, lo, hi).kernel_params(dtype)
    inside = _all_values(dtype)
    inside = inside[(inside >= lo) & (inside <= hi)]
    assert kp.clamp and (kp.lo, kp.hi) == (inside.min(), inside.max())
    # an end point the dtype holds is a value of the fill
    kp = InitSpec.trunc_normal(0.0, 1.0, -0.5, 0.5).kernel_params(dtype)
    assert (kp.lo, kp.hi) == (-0.5, 0.5)


@pytest.mark.parametrize("mean,std,a,b", [(0.0, 1.0, -2.0, 2.0), (0.1, 0.5, -0.3, 0.7),
                                          (0.0, 1.0, 3.0, 9.0), (0.0, 2.0, -20.0, -1.0)])
def test_trunc_normal_masses_are_the_normal_cdf_at_the_standardized_bounds(mean, std, a, b):
    kp = InitSpec.trunc_normal(mean, std, a, b).kernel_params(torch.float32)
    alpha, beta = (a - mean) / std, (b - mean) / std
    norm = scipy.stats.norm
    assert kp.pa == pytest.approx(norm.cdf(alpha), rel=1e-12, abs=1e-300)
    assert kp.qb == pytest.approx(norm.sf(beta), rel=1e-12, abs=1e-300)
    assert kp.dd == pytest.approx(norm.cdf(beta) - norm.cdf(alpha), rel=1e-12)
    assert kp.xa == pytest.approx(math.erf(alpha / math.sqrt(2)), rel=1e-12)
    assert (kp.shift, kp.scale) == (mean, std)


def test_intervals_beyond_the_tail_limit_are_refused():
    ok = MAX_TAIL_SIGMAS - 0.5
    InitSpec.trunc_normal(0.0, 1.0, ok, ok + 1)
    InitSpec.trunc_normal(0.0, 1.0, -ok - 1, -ok)
    with pytest.raises(ValueError, match="standard deviations"):
        InitSpec.trunc_normal(0.0, 1.0, MAX_TAIL_SIGMAS + 0.5, MAX_TAIL_SIGMAS + 1)
    with pytest.raises(ValueError, match="standard deviations"):
        InitSpec.trunc_normal(1.0, 0.1, -1.0, 1.0 - 0.1 * (MAX_TAIL_SIGMAS + 0.5))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32, torch.bfloat16, torch.float16],
                         ids=str)
def test_constants_are_what_fill_writes_and_keep_the_sign_of_zero(dtype):
    for value in (0.1, 1 / 3, 65504.0, -2.5):
        expected = torch.empty(2, dtype=dtype).fill_(value)[0].item()
        assert InitSpec.constant(value).kernel_params(dtype).shift == expected
    # the kernel parameters are cached: -0.0 and 0.0 must not share an entry
    assert math.copysign(1.0, InitSpec.constant(0.0).kernel_params(dtype).shift) == 1.0
    assert math.copysign(1.0, InitSpec.constant(-0.0).kernel_params(dtype).shift) == -1.0
    assert math.copysign(1.0, InitSpec.constant(0.0).kernel_params(dtype).shift) == 1.0


@pytest.mark.parametrize("dtype", [torch.int8, torch.int64, torch.bool, torch.complex128,
                                   torch.float8_e4m3fn], ids=str)
def test_check_dtype_names_the_function_and_the_dtype(dtype):
    with pytest.raises(NotImplementedError, match=f"fastinit.normal_ .*{dtype}"):
        check_dtype(dtype, "normal_")
    for ok in (torch.float64, torch.float32, torch.bfloat16, torch.float16):
        check_dtype(ok, "normal_")


def test_fields_are_named_for_each_distribution_and_a_b_stay_as_aliases():
    u = InitSpec.uniform(-0.5, 2.0)
    n = InitSpec.normal(1.5, 0.25)
    t = InitSpec.trunc_normal(0.1, 0.02, -0.03, 0.2)
    c = InitSpec.constant(-3.0)
    assert (u.low, u.high) == (-0.5, 2.0)
    assert (n.mean, n.std) == (1.5, 0.25)
    assert (t.mean, t.std, t.low, t.high) == (0.1, 0.02, -0.03, 0.2)
    assert c.value == -3.0
    # the positional meaning the fields had before, kept for callers that use it
    assert [(s.a, s.b) for s in (u, n, t, c)] == [(-0.5, 2.0), (1.5, 0.25), (0.1, 0.02),
                                                   (-3.0, 0.0)]
