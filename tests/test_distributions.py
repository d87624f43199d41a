"""Tier 1: the Triton kernels equal the CPU backend bit for bit, for every distribution
and dtype, and the device math is accurate.

Without a GPU the kernels run under the Triton interpreter on CPU tensors. The contract
is stronger than "within a few ulp": every operation is an IEEE-754 operation with one
rounding (explicit fma, no contraction), so the kernels and the CPU backend agree exactly,
for the normal and truncated normal too. These tests hold them to 0 ulp.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import ndtri

from fastinit.backends import cpu
from fastinit.backends import triton as triton_backend
from fastinit.layout import Segment
from fastinit.spec import InitSpec
from tests import reference
from tests.common import assert_bitwise_equal

DTYPES = [torch.float32, torch.bfloat16, torch.float16, torch.float64]
SPECS = {
    "uniform": InitSpec.uniform(-0.3, 0.7),
    "uniform_tiny": InitSpec.uniform(1.0, 1.0 + 2**-10),
    "normal": InitSpec.normal(0.25, 1.5),
    "normal_small_std": InitSpec.normal(0.0, 0.02),
    "trunc_2sigma": InitSpec.trunc_normal(0.0, 1.0, -2.0, 2.0),
    "trunc_3sigma": InitSpec.trunc_normal(0.0, 1.0, -3.0, 3.0),  # regions 0-1
    "trunc_wide": InitSpec.trunc_normal(0.0, 1.0, -6.0, 6.0),  # regions 0-2
    "trunc_far_tail": InitSpec.trunc_normal(0.0, 1.0, 4.0, 5.0),
    "trunc_deep_tail": InitSpec.trunc_normal(0.0, 1.0, 8.0, 9.0),  # region 3
    "trunc_left_tail": InitSpec.trunc_normal(1.0, 2.0, -20.0, -4.0),
    "trunc_narrow": InitSpec.trunc_normal(0.0, 1.0, -0.01, 0.01),
    "trunc_small_std": InitSpec.trunc_normal(0.0, 0.02, -2.0, 2.0),
    "constant": InitSpec.constant(-0.125),
}


def _fill_both(spec, dtype, n=4099, g_base=2**33 + 5, key=0x9E3779B97F4A7C15, stream=11, block=256):
    params = spec.kernel_params(dtype)
    seg = [Segment(0, 0, g_base, 0, n, 1)]
    a = torch.full((n,), math.nan, dtype=dtype)
    b = a.clone()
    triton_backend.fill(a, seg, params, key, stream, block=block)
    cpu.fill(b, seg, params, key, stream)
    return a, b


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("name", list(SPECS))
def test_kernel_equals_cpu_backend(name, dtype):
    a, b = _fill_both(SPECS[name], dtype)
    assert not a.isnan().any() and not b.isnan().any()
    assert_bitwise_equal(a, b)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
def test_uniform_equals_numpy_reference(dtype):
    """Uniforms bit for bit against the recipe of docs/contract.md (float32 arithmetic)."""
    lo_b, hi_b = -0.3, 0.7
    n, g_base, key, stream = 5000, 2**32 - 17, 123456789, 2**55 + 1
    ref = reference.uniform(key, stream, np.arange(n, dtype=np.uint64) + np.uint64(g_base), lo_b, hi_b)
    spec = InitSpec.uniform(lo_b, hi_b)
    params = spec.kernel_params(dtype)
    out = torch.empty(n, dtype=dtype)
    cpu.fill(out, [Segment(0, 0, g_base, 0, n, 1)], params, key, stream)
    if dtype == torch.float64:
        u = reference.uniform01(reference.words(key, stream, np.arange(n, dtype=np.uint64) + np.uint64(g_base)))
        expected = torch.from_numpy(np.clip(np.float64(u) * (hi_b - lo_b) + lo_b, params.lo, params.hi))
        # float64: one fma in float64; compare against exact rational arithmetic bounds
        torch.testing.assert_close(out, expected, rtol=0, atol=2**-52)
        return
    expected = torch.from_numpy(ref).to(dtype)  # round-to-nearest-even, as the contract says
    expected = expected.clamp(params.lo, params.hi)
    assert_bitwise_equal(out, expected)


@pytest.mark.parametrize("block", [16, 128, 4096])
@pytest.mark.parametrize("name", ["uniform", "normal", "trunc_wide"])
def test_values_do_not_depend_on_block_size(name, block):
    """Each block size gives the CPU backend's values (which have no block size)."""
    a, b = _fill_both(SPECS[name], torch.float32, n=601, g_base=2**40 + 3, block=block)
    assert_bitwise_equal(a, b)


@pytest.mark.parametrize("num_warps", [1, 2, 4, 8])
def test_values_do_not_depend_on_num_warps(num_warps):
    spec = SPECS["trunc_3sigma"]
    params = spec.kernel_params(torch.bfloat16)
    seg = [Segment(0, 0, 3, 0, 1000, 1)]
    a = torch.empty(1000, dtype=torch.bfloat16)
    b = torch.empty(1000, dtype=torch.bfloat16)
    triton_backend.fill(a, seg, params, 5, 6, block=128, num_warps=num_warps)
    cpu.fill(b, seg, params, 5, 6)
    assert_bitwise_equal(a, b)


# --- accuracy of the device math (CPU backend; the kernels are bit-identical) ------------

def _ulp_error(got: np.ndarray, exact: np.ndarray) -> np.ndarray:
    spacing = np.spacing(np.abs(exact).astype(np.float32)).astype(np.float64)
    return np.abs(got.astype(np.float64) - exact) / spacing


def test_normal_accuracy_against_float64_box_muller():
    """normal_ = Box-Muller on the same uniforms, computed in float64: within 4 ulp
    (measured: 1.93 ulp of the radius).

    Bound: log and sin/cos polynomials are fitted to < 1 ulp, plus the roundings of the
    polynomial evaluation, sqrt and the final products (see tools/fit_coefficients.py).
    """
    n = 1 << 16
    key, stream = 2024, 3
    out = torch.empty(n)
    cpu.fill(out, [Segment(0, 0, 0, 0, n, 1)], InitSpec.normal(0, 1).kernel_params(torch.float32), key, stream)
    w = reference.words(key, stream, np.arange(n, dtype=np.uint64)).reshape(-1, 4)
    u = reference.uniform01(w).astype(np.float64)
    r = np.sqrt(-2 * np.log(u[:, [0, 2]]))
    th = 2 * np.pi * u[:, [1, 3]]
    exact = np.stack([r[:, 0] * np.cos(th[:, 0]), r[:, 0] * np.sin(th[:, 0]),
                      r[:, 1] * np.cos(th[:, 1]), r[:, 1] * np.sin(th[:, 1])], axis=1).ravel()
    got = out.numpy()
    # measure in ulps of the radius: a product r*cos near a zero of cos has no relative accuracy
    rr = np.repeat(r, 2, axis=1).ravel()
    err = np.abs(got - exact) / np.spacing(rr.astype(np.float32))
    assert err.max() <= 4.0, err.max()


@pytest.mark.parametrize("a,b", [(-2, 2), (-6, 6), (4, 5), (8, 9), (-10.5, -10), (-0.01, 0.01)])
def test_trunc_normal_accuracy_against_scipy_ndtri(a, b):
    """trunc_normal_ = ndtri(Phi(a) + u (Phi(b) - Phi(a))) with the same uniforms, in float64.

    The error bound is 4 ulp of the result (measured: 2.05) plus the float32 rounding of
    the inputs p, q propagated through the inverse CDF's derivative (the inversion works
    on float32 p and q).
    """
    n = 1 << 15
    key, stream = 77, 4
    spec = InitSpec.trunc_normal(0.0, 1.0, a, b)
    params = spec.kernel_params(torch.float32)
    out = torch.empty(n)
    cpu.fill(out, [Segment(0, 0, 0, 0, n, 1)], params, key, stream)
    u = reference.uniform01(reference.words(key, stream, np.arange(n, dtype=np.uint64))).astype(np.float64)
    pa, qb, dd = (np.float64(np.float32(x)) for x in (params.pa, params.qb, params.dd))
    p = pa + u * dd
    q = qb + (1 - u) * dd
    exact = np.where(p < q, ndtri(p), -ndtri(q))
    t = np.minimum(p, q)
    # |d ndtri / dt| * (rounding of t in float32) in ulps of the result
    dz = np.sqrt(2 * np.pi) * np.exp(exact**2 / 2) * np.spacing(t.astype(np.float32))
    tol = 4 + dz / np.spacing(np.abs(exact).astype(np.float32) + np.float32(1e-30))
    err = _ulp_error(out.numpy(), exact)
    assert (err <= tol).all(), (err - tol).max()


def test_cpu_half_conversions_are_exact():
    """The CPU backend's float16 and bfloat16 conversions against NumPy / torch, on every
    float16 value and on float32 values around every rounding boundary."""
    from numba import njit

    @njit
    def to_f16(x, out):
        for i in range(x.size):
            out[i] = cpu.f32_to_f16_bits(x[i])

    @njit
    def from_f16(h, out):
        for i in range(h.size):
            out[i] = cpu.f16_bits_to_f32(h[i])

    @njit
    def to_bf16(x, out):
        for i in range(x.size):
            out[i] = cpu.round_bf16(x[i])

    halves = np.arange(65536, dtype=np.uint16).view(np.int16)
    finite = np.isfinite(halves.view(np.float16))
    back = np.empty(65536, np.float32)
    from_f16(halves, back)
    np.testing.assert_array_equal(back[finite], halves.view(np.float16)[finite].astype(np.float32))
    # float32 values at, just below and just above every float16 / bfloat16 midpoint
    rng = np.random.default_rng(0)
    base = np.concatenate([back[finite], rng.standard_normal(100000).astype(np.float32) * 100,
                           np.float32([65504, 65519.99, 65520, 65536, 1e-8, 2**-25, 2**-24])])
    mids = base.view(np.uint32).astype(np.int64)
    probes = np.concatenate([(mids + d).astype(np.uint32).view(np.float32)
                             for d in (-1, 0, 1, 4095, 4096, 4097, 32767, 32768, 32769)])
    probes = np.concatenate([probes, -probes])
    probes = probes[np.isfinite(probes)]
    got = np.empty(probes.size, np.int16)
    to_f16(probes, got)
    with np.errstate(over="ignore"):
        np.testing.assert_array_equal(got, probes.astype(np.float16).view(np.int16))
    got_bf = np.empty(probes.size, np.float32)
    to_bf16(probes, got_bf)
    expected = torch.from_numpy(probes).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(got_bf, expected)
