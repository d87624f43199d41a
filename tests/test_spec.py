"""Distributions and their kernel parameters (fastinit.spec): validation, dtypes, rounding.

* Unsupported dtypes raise ``NotImplementedError``, bad parameters torch's exception types,
  before anything is written.
* The bounds hold after rounding in every dtype.
* float64 truncated normals on an interval narrower than float32 variates resolve are
  refused, not collapsed onto a point.
"""
from __future__ import annotations

import math

import pytest
import torch

import fastinit
from fastinit.spec import MIN_FLOAT64_TRUNC_VARIATES
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
