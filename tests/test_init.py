"""The first public functions: uniform_, normal_, trunc_normal_ on CPU tensors."""
from __future__ import annotations

import math

import pytest
import torch

import fastinit
from tests.common import assert_bitwise_equal

FNS = [
    (fastinit.uniform_, {}),
    (fastinit.normal_, {}),
    (fastinit.trunc_normal_, {}),
]


@pytest.mark.parametrize("fn,kw", FNS)
def test_returns_the_tensor_and_fills_every_element(fn, kw):
    t = torch.full((17, 5), math.nan)
    assert fn(t, **kw, seed=1) is t
    assert not t.isnan().any()


@pytest.mark.parametrize("fn,kw", FNS)
def test_seed_pins_values_and_draws_differ(fn, kw):
    a = fn(torch.empty(64), seed=3)
    b = fn(torch.empty(64), seed=3)
    assert torch.equal(a, b)
    c = fn(torch.empty(64))
    d = fn(torch.empty(64))
    assert not torch.equal(c, d)


def test_manual_seed_makes_a_sequence_reproducible():
    def run():
        torch.manual_seed(1234)
        return [fastinit.normal_(torch.empty(8)), fastinit.uniform_(torch.empty(8)),
                fastinit.trunc_normal_(torch.empty(8))]

    for x, y in zip(run(), run()):
        assert torch.equal(x, y)


def test_generator_equals_global_generator_with_same_seed():
    g = torch.Generator().manual_seed(99)
    a = fastinit.normal_(torch.empty(32), generator=g)
    torch.manual_seed(99)
    b = fastinit.normal_(torch.empty(32))
    assert torch.equal(a, b)


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


def test_meta_and_empty_tensors():
    m = torch.empty(3, 4, device="meta")
    assert fastinit.normal_(m) is m
    e = torch.empty(0, 4)
    assert fastinit.trunc_normal_(e) is e


def test_bounds_hold_after_rounding_in_every_dtype():
    # compare in float64: torch would round the Python bound to the tensor's dtype first
    for dtype in [torch.bfloat16, torch.float16, torch.float32]:
        u = fastinit.uniform_(torch.empty(1 << 16, dtype=dtype), -0.1, 0.1, seed=2).double()
        assert (u >= -0.1).all() and (u < 0.1).all()
        tn = fastinit.trunc_normal_(torch.empty(1 << 16, dtype=dtype), 0.0, 1.0, -0.3, 0.7,
                                    seed=2).double()
        assert (tn >= -0.3).all() and (tn <= 0.7).all()


def test_uniform_equal_bounds_is_a_constant_like_torch():
    t = fastinit.uniform_(torch.empty(5), 0.25, 0.25)
    assert (t == 0.25).all()


def test_non_contiguous_views_are_filled_by_logical_index():
    base = torch.full((6, 10), math.nan)
    view = base.t()  # strided innermost dimension
    fastinit.normal_(view, seed=8)
    expected = fastinit.normal_(torch.empty(10, 6), seed=8)
    assert_bitwise_equal(view.contiguous(), expected)
    sl = torch.full((6, 10), math.nan)
    fastinit.uniform_(sl[1:5, 2:7], seed=8)
    assert_bitwise_equal(sl[1:5, 2:7].contiguous(), fastinit.uniform_(torch.empty(4, 5), seed=8))
    outside = torch.ones(6, 10, dtype=torch.bool)
    outside[1:5, 2:7] = False
    assert sl[outside].isnan().all()


def test_parameters_requiring_grad_are_filled_without_autograd():
    p = torch.nn.Parameter(torch.empty(3, 3))
    out = fastinit.normal_(p, seed=1)
    assert out is p and p.grad_fn is None and p.requires_grad


def test_seed_values():
    a = fastinit.normal_(torch.empty(8), seed=-1)
    b = fastinit.normal_(torch.empty(8), seed=2**64 - 1)
    assert torch.equal(a, b)  # negative seeds wrap as in torch.manual_seed
    with pytest.raises(TypeError):
        fastinit.normal_(torch.empty(8), seed=1.5)
    with pytest.raises(ValueError):
        fastinit.normal_(torch.empty(8), seed=2**64)
