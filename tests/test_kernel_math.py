"""The kernels' cheaper forms of the contract's operations are the same operations.

The GPU kernels compute some steps of the contract differently from its text (the CPU
backend's vector loops share the first two): a uniform from exponent bits instead of an integer
-> float conversion and a multiply, the Box-Muller quarter turn and remainder on integers,
log(4 p q) as log(p q) with 2 added to the exponent, and no clamp where the launcher
proves it cannot change a value. Each is exact, so the values are the same bits; these
tests check the identities exhaustively (all 2**23 uniform grid points) in float32 NumPy,
and the launcher's clamp decision against the extreme values a fill can draw.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fastinit.backends import cpu
from fastinit.backends import triton as triton_backend
from fastinit.kernels import contract as C
from fastinit.spec import InitSpec

F = np.float32
M = np.arange(1 << 23, dtype=np.uint32)  # w >> 9 for every word
ODD = M * np.uint32(2) + np.uint32(1)
U = ODD.astype(np.float32) * F(C.UNIFORM_SCALE)  # the contract's uniform


def test_uniform_from_exponent_bits():
    x = (M | np.uint32(0x3F800000)).view(np.float32)  # 1 + m 2**-23, exactly
    u = x - F(1.0 - C.UNIFORM_SCALE)
    assert np.array_equal(u.view(np.uint32), U.view(np.uint32))


def test_box_muller_reduction_on_integers():
    v = U * F(4.0)
    n_float = np.floor(v + F(0.5))
    r_float = (v - n_float) * F(0.25)
    odd = ODD.astype(np.int64)
    n_int = (odd + (1 << 21)) >> 22
    r_int = (odd - (n_int << 22)).astype(np.float32) * F(C.UNIFORM_SCALE)
    assert np.array_equal(n_float.astype(np.int64), n_int)
    assert np.array_equal(r_float.view(np.uint32), r_int.view(np.uint32))
    # the quadrant signs: cos negated for n & 3 in {1, 2} (bit 1 of n + 1), sin for {2, 3}
    q = n_int & 3
    assert np.array_equal(((n_int + 1) >> 1) & 1, ((q == 1) | (q == 2)).astype(np.int64))
    assert np.array_equal((n_int >> 1) & 1, (q >= 2).astype(np.int64))


def test_times_four_is_an_exponent_add():
    """(p * q) * 4 == bits(p * q) + 2 << 23 for the products the inversion forms
    (normal float32: p, q >= Phi(-11) 2**-24 within 11 standard deviations)."""
    rng = np.random.default_rng(0)
    pq = np.exp(rng.uniform(math.log(1e-30), math.log(0.25), 1 << 20)).astype(np.float32)
    pq = pq[pq >= np.finfo(np.float32).tiny]
    a = (pq * F(4.0)).view(np.uint32)
    b = pq.view(np.uint32) + np.uint32(2 << 23)
    assert np.array_equal(a, b)


_TRUNC = [(0.0, 1.0, -2.0, 2.0), (0.0, 0.02, -2.0, 2.0), (0.0, 1.0, -6.0, 6.0),
          (0.0, 1.0, 4.0, 5.0), (1.0, 2.0, -20.0, -4.0), (0.0, 1.0, -0.01, 0.01),
          (0.5, 0.1, 0.0, 1.0), (0.0, 1.0, 2.5, 11.0), (0.0, 0.02, -0.04, 0.04)]
_UNIFORM = [(-0.1, 0.1), (-1.0, 1.0), (0.0, 1.0), (1.0, 1.0 + 2**-10), (-3.0, 1e-8),
            (-1 / 64, 1 / 64), (0.3, 0.7)]
_DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]


def _extremes(params, dtype) -> tuple[float, float]:
    """Unclamped extreme outputs of a fill: the variates of the extreme words (0 and
    2**32 - 1: u = 2**-24 and 1 - 2**-24) and of 4096 words around the centre, through
    the contract's fma and rounding (the CPU backend's own functions)."""
    words = np.concatenate([np.array([0, 0xFFFFFFFF], dtype=np.uint32),
                            np.arange(2**31 - 2048, 2**31 + 2048, dtype=np.uint32)])
    if params.dist == C.UNIFORM:
        v = np.array([cpu.uniform_open(np.uint32(w)) for w in words], dtype=np.float32)
    else:
        regions = cpu.trunc_regions(F(params.pa), F(params.qb), F(params.dd))
        v = np.array([cpu.trunc_normal_standard(np.uint32(w), F(params.pa), F(params.qb),
                                                F(params.dd), F(params.xa), regions)
                      for w in words], dtype=np.float32)
    if dtype == torch.float64:
        y = torch.from_numpy(v.astype(np.float64)) * params.scale + params.shift  # exact enough
    else:
        y = torch.from_numpy(v).double() * float(F(params.scale)) + float(F(params.shift))
        y = y.to(dtype).double()  # the rounding to the output dtype, round to nearest even
    return float(y.min()), float(y.max())


@pytest.mark.parametrize("dtype", _DTYPES, ids=str)
def test_skipped_clamps_change_nothing(dtype):
    """Where the launcher skips the clamp, the extreme values a fill can write already lie
    in [lo, hi]; and the clamp is kept in the cases known to need it."""
    kept = 0
    specs = [InitSpec.trunc_normal(*args) for args in _TRUNC]
    specs += [InitSpec.uniform(*args) for args in _UNIFORM]
    for args, spec in zip([*_TRUNC, *_UNIFORM], specs):
        params = spec.kernel_params(dtype)
        if triton_backend.needs_clamp(params, dtype):
            kept += 1
            continue
        lo, hi = _extremes(params, dtype)
        assert params.lo <= lo and hi <= params.hi, (args, lo, hi, params.lo, params.hi)
    # +-2 sigma and a far tail reach their bounds; bfloat16 uniforms round onto b
    assert triton_backend.needs_clamp(InitSpec.trunc_normal(0, 1, -2, 2).kernel_params(dtype),
                                      dtype)
    assert triton_backend.needs_clamp(InitSpec.trunc_normal(0, 1, 4, 5).kernel_params(dtype),
                                      dtype)
    assert kept >= 2


def test_bfloat16_uniform_needs_its_clamp():
    """Without the clamp, a bfloat16 uniform(-0.1, 0.1) would write b's rounding (> b)."""
    params = InitSpec.uniform(-0.1, 0.1).kernel_params(torch.bfloat16)
    assert triton_backend.needs_clamp(params, torch.bfloat16)
    _, hi = _extremes(params, torch.bfloat16)
    assert hi > params.hi


@pytest.mark.parametrize("args", _TRUNC)
def test_trunc_regions_bound_the_cpu_backend(args):
    """The launcher's region count is never below the CPU backend's (which bounds every
    element's region by computing w at the extreme uniforms in float32)."""
    params = InitSpec.trunc_normal(*args).kernel_params(torch.float32)
    ref = cpu.trunc_regions(F(params.pa), F(params.qb), F(params.dd))
    assert triton_backend.trunc_regions(params) >= ref


@pytest.mark.skipif(torch.cuda.is_available(), reason="CPU tensors through the interpreter; "
                    "tests/test_gpu.py checks the split on a device")
def test_rows_past_one_launch_are_split(monkeypatch):
    """Segments with more rows than a launch's grid axis holds take several launches,
    each at its rows' offsets (the limit lowered to 2 rows here, under the interpreter)."""
    import math as _m

    from fastinit.layout import Segment
    from tests.common import assert_bitwise_equal

    monkeypatch.setattr(triton_backend, "MAX_GRID_ROWS", 2)
    seg = [Segment(1, 9, 2**32 + 3, 13, 5, 7)]
    params = InitSpec.trunc_normal(0.0, 1.0, -2.0, 2.0).kernel_params(torch.float32)
    got = torch.full((70,), _m.nan)
    triton_backend.fill(got, seg, params, 3, 4, block=64)
    ref = torch.full((70,), _m.nan)
    cpu.fill(ref, seg, params, 3, 4)
    assert_bitwise_equal(got, ref)
