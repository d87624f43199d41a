"""Uniform, normal and truncated-normal variates from Philox words (Triton device code).

Every operation here is one IEEE-754 operation with round-to-nearest-even: +, -, *,
explicit ``tl.fma``, ``tl.sqrt_rn``, integer and bit operations. Kernels are compiled
with floating-point contraction disabled, so the values are bit-identical to the CPU
backend, which performs the same operations in the same order. Transcendental functions
(log, sin/cos of 2*pi*u, the inverse normal CDF) are polynomial approximations from
``contract`` rather than the device's approximate instructions, which differ between
devices and from the CPU.
"""
from __future__ import annotations

import triton
import triton.language as tl

from . import contract as C

_U_SHIFT = tl.constexpr(C.UNIFORM_SHIFT)
_U_SCALE = tl.constexpr(C.UNIFORM_SCALE)
_SQRT_HALF_BITS = tl.constexpr(C.LOG_SQRT_HALF_BITS)
_LN2_HI = tl.constexpr(C.LN2_HI)
_LN2_LO = tl.constexpr(C.LN2_LO)

_L0, _L1, _L2, _L3, _L4, _L5, _L6, _L7, _L8, _L9 = (tl.constexpr(c) for c in C.LOG1P)
_S0, _S1, _S2, _S3, _S4 = (tl.constexpr(c) for c in C.SIN2PI)
_K0, _K1, _K2, _K3, _K4 = (tl.constexpr(c) for c in C.COS2PI)
_A0, _A1, _A2, _A3, _A4, _A5, _A6, _A7 = (tl.constexpr(c) for c in C.NDTRI0)
_B0, _B1, _B2, _B3, _B4, _B5, _B6, _B7 = (tl.constexpr(c) for c in C.NDTRI1)
_D0, _D1, _D2, _D3, _D4, _D5, _D6, _D7 = (tl.constexpr(c) for c in C.NDTRI2)
_E0, _E1, _E2, _E3, _E4, _E5, _E6, _E7, _E8 = (tl.constexpr(c) for c in C.NDTRI3)
_A_MID = tl.constexpr(C.NDTRI0_CENTRE)
_B_MID = tl.constexpr(C.NDTRI1_CENTRE)
_D_MID = tl.constexpr(C.NDTRI2_CENTRE)
_E_MID = tl.constexpr(C.NDTRI3_CENTRE)
_W1 = tl.constexpr(C.NDTRI_W1)
_W2 = tl.constexpr(C.NDTRI_W2)
_W3 = tl.constexpr(C.NDTRI_W3)


@triton.jit
def uniform_open(w):
    """float32 in (0, 1) from a uint32 word: ((w >> 9) * 2 + 1) * 2**-24, exact."""
    return (((w >> _U_SHIFT) << 1) | 1).to(tl.float32) * _U_SCALE


@triton.jit
def log_f32(x):
    """Natural log of a positive, normal float32."""
    bits = x.to(tl.int32, bitcast=True)
    k = (bits - _SQRT_HALF_BITS) >> 23
    m = (bits - (k << 23)).to(tl.float32, bitcast=True)  # in [sqrt(1/2), sqrt(2))
    f = m - 1.0
    p = tl.fma(f, _L9, _L8)
    p = tl.fma(p, f, _L7)
    p = tl.fma(p, f, _L6)
    p = tl.fma(p, f, _L5)
    p = tl.fma(p, f, _L4)
    p = tl.fma(p, f, _L3)
    p = tl.fma(p, f, _L2)
    p = tl.fma(p, f, _L1)
    p = tl.fma(p, f, _L0)
    kf = k.to(tl.float32)
    return tl.fma(kf, _LN2_HI, tl.fma(kf, _LN2_LO, f * p))


@triton.jit
def cossin_2pi(u):
    """(cos(2 pi u), sin(2 pi u)) for u on the uniform grid; the reduction is exact."""
    v = u * 4.0
    n = tl.floor(v + 0.5)
    r = (v - n) * 0.25  # in [-1/8, 1/8]
    r2 = r * r
    s = tl.fma(r2, _S4, _S3)
    s = tl.fma(s, r2, _S2)
    s = tl.fma(s, r2, _S1)
    s = tl.fma(s, r2, _S0)
    s = r * s
    c = tl.fma(r2, _K4, _K3)
    c = tl.fma(c, r2, _K2)
    c = tl.fma(c, r2, _K1)
    c = tl.fma(c, r2, _K0)
    q = n.to(tl.int32) & 3
    swap = (q & 1) != 0
    cos_ = tl.where(swap, s, c)
    sin_ = tl.where(swap, c, s)
    cos_ = tl.where((q == 1) | (q == 2), -cos_, cos_)
    sin_ = tl.where(q >= 2, -sin_, sin_)
    return cos_, sin_


@triton.jit
def box_muller(wa, wb):
    """Two independent standard normals from two words: r cos(theta), r sin(theta)."""
    r = tl.sqrt_rn(-2.0 * log_f32(uniform_open(wa)))
    c, s = cossin_2pi(uniform_open(wb))
    return r * c, r * s


@triton.jit
def _ndtri_poly0(w):
    y = w - _A_MID
    p = tl.fma(y, _A7, _A6)
    p = tl.fma(p, y, _A5)
    p = tl.fma(p, y, _A4)
    p = tl.fma(p, y, _A3)
    p = tl.fma(p, y, _A2)
    p = tl.fma(p, y, _A1)
    return tl.fma(p, y, _A0)


@triton.jit
def _ndtri_poly1(w):
    y = w - _B_MID
    p = tl.fma(y, _B7, _B6)
    p = tl.fma(p, y, _B5)
    p = tl.fma(p, y, _B4)
    p = tl.fma(p, y, _B3)
    p = tl.fma(p, y, _B2)
    p = tl.fma(p, y, _B1)
    return tl.fma(p, y, _B0)


@triton.jit
def _ndtri_poly2(s):
    y = s - _D_MID
    p = tl.fma(y, _D7, _D6)
    p = tl.fma(p, y, _D5)
    p = tl.fma(p, y, _D4)
    p = tl.fma(p, y, _D3)
    p = tl.fma(p, y, _D2)
    p = tl.fma(p, y, _D1)
    return tl.fma(p, y, _D0)


@triton.jit
def _ndtri_poly3(s):
    y = s - _E_MID
    p = tl.fma(y, _E8, _E7)
    p = tl.fma(p, y, _E6)
    p = tl.fma(p, y, _E5)
    p = tl.fma(p, y, _E4)
    p = tl.fma(p, y, _E3)
    p = tl.fma(p, y, _E2)
    p = tl.fma(p, y, _E1)
    return tl.fma(p, y, _E0)


@triton.jit
def ndtri_factor(w):
    """P(w) with ndtri(p) = (2p - 1) P(w), w = -log(4 p (1 - p)), for a 1-D tensor w.

    Each element uses the polynomial of its own region of w. Regions that no element of
    the block reaches are skipped (a block-uniform branch), which keeps the common case
    (|z| < 2.2) to a single polynomial.
    """
    w_max = tl.max(w, axis=0)
    p = _ndtri_poly0(w)
    if w_max >= _W1:
        p = tl.where(w >= _W1, _ndtri_poly1(w), p)
        if w_max >= _W2:
            s = tl.sqrt_rn(w)
            p = tl.where(w >= _W2, _ndtri_poly2(s), p)
            if w_max >= _W3:
                p = tl.where(w >= _W3, _ndtri_poly3(s), p)
    return p


@triton.jit
def trunc_normal_standard(word, pa, qb, dd, xa):
    """Standard normal truncated to [alpha, beta] by inversion, from one word.

    With ``pa = Phi(alpha)``, ``qb = Phi(-beta)``, ``dd = Phi(beta) - Phi(alpha)`` and
    ``xa = 2 Phi(alpha) - 1`` (float32) and u uniform, the variate is
    ``Phi^-1(p) = x P(w)`` with ``p = pa + u dd``, ``x = 2p - 1`` and ``w = -log(4 p q)``,
    ``q = 1 - p``. p, q and x are each formed directly from u (never by subtraction), so
    both tails (p or q small) and the centre (x small) keep full float32 resolution.
    """
    u = uniform_open(word)
    p = tl.fma(u, dd, pa)
    q = tl.fma(1.0 - u, dd, qb)
    x = tl.fma(u, dd + dd, xa)
    w = -log_f32((p * q) * 4.0)
    return x * ndtri_factor(w)


@triton.jit
def to_output(v, shift, scale, lo, hi, OUT_DTYPE: tl.constexpr, CLAMP: tl.constexpr):
    """``shift + scale * v`` (one fma) rounded to the output dtype, then clamped to [lo, hi].

    ``v`` is the float32 standard variate. For float64 outputs the fma is done in float64;
    otherwise in float32, followed by a round-to-nearest-even to bfloat16 / float16.
    ``lo`` and ``hi`` are values of the output dtype (float64 scalars).
    """
    if OUT_DTYPE == tl.float64:
        y = tl.fma(v.to(tl.float64), scale, shift)
        if CLAMP:
            y = tl.minimum(tl.maximum(y, lo), hi)
        return y
    else:
        x = tl.fma(v, scale.to(tl.float32), shift.to(tl.float32))
        if OUT_DTYPE == tl.bfloat16:
            # Integer round-to-nearest-even, identical on every device and in the
            # interpreter (whose own float32 -> bfloat16 cast truncates).
            bits = x.to(tl.uint32, bitcast=True)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
            y = bits.to(tl.float32, bitcast=True)
        elif OUT_DTYPE == tl.float16:
            y = x.to(tl.float16).to(tl.float32)
        else:
            y = x
        if CLAMP:
            y = tl.minimum(tl.maximum(y, lo.to(tl.float32)), hi.to(tl.float32))
        if OUT_DTYPE == tl.bfloat16:
            return (y.to(tl.uint32, bitcast=True) >> 16).to(tl.uint16).to(tl.bfloat16, bitcast=True)
        else:
            return y.to(OUT_DTYPE)
