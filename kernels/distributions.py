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
_ONE_BITS = tl.constexpr(0x3F800000)  # float32 bits of 1.0
_ONE_MINUS_HALF_CELL = tl.constexpr(1.0 - C.UNIFORM_SCALE)  # 1 - 2**-24, exact in float32
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
    """float32 in (0, 1) from a uint32 word: ((w >> 9) * 2 + 1) * 2**-24, exact.

    Computed without an integer -> float conversion: the top 23 bits become the mantissa
    of x = 1 + (w >> 9) 2**-23 in [1, 2), and x - (1 - 2**-24) is exact (Sterbenz), which
    is ((w >> 9) * 2 + 1) * 2**-24 bit for bit (checked for all 2**23 values by the tests).
    """
    x = ((w >> _U_SHIFT) | _ONE_BITS).to(tl.float32, bitcast=True)
    return x - _ONE_MINUS_HALF_CELL


@triton.jit
def log_f32(x, EXP2: tl.constexpr = 0):
    """Natural log of ``x * 2**EXP2`` for a positive float32 ``x`` such that both ``x`` and
    ``x * 2**EXP2`` are normal (the exact scaling is an add to the exponent field, which
    folds into the reduction's constant)."""
    bits = x.to(tl.int32, bitcast=True) + (EXP2 << 23)
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
def cossin_2pi(w):
    """(cos(2 pi u), sin(2 pi u)) for the uniform u = u(w) of word ``w``.

    The reduction is exact and done on the integer ``odd = 2 (w >> 9) + 1 = u 2**24``:
    the quarter turn ``n = floor(4u + 1/2) = (odd + 2**21) >> 22`` and the remainder
    ``r = u - n / 4 = (odd - n 2**22) 2**-24`` in [-1/8, 1/8] equal the float32 forms
    ``floor(u * 4 + 0.5)`` and ``(u * 4 - n) * 0.25`` of the contract bit for bit (checked
    for all 2**23 words by the tests), without float -> int conversions. The quadrant's
    signs are applied to the product with the radius in ``box_muller`` (exact: negation
    commutes with a rounded product).
    """
    odd = ((w >> (_U_SHIFT - 1)) | 1).to(tl.int32)
    n = (odd + 0x200000) >> 22
    r = (odd - (n << 22)).to(tl.float32) * _U_SCALE
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
    swap = (n & 1) != 0
    return tl.where(swap, s, c), tl.where(swap, c, s), n


@triton.jit
def _flip(x, sign):
    """``x`` with its sign bit xor-ed with bit 31 of ``sign`` (an exact negation or not)."""
    bits = x.to(tl.uint32, bitcast=True) ^ (sign.to(tl.uint32) & 0x80000000)
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def box_muller(wa, wb):
    """Two independent standard normals from two words: r cos(theta), r sin(theta).

    The cosine is negated in quadrants 1 and 2, the sine in quadrants 2 and 3: bit 1 of
    ``n + 1`` and of ``n`` (moved to the sign bit).
    """
    r = tl.sqrt_rn(-2.0 * log_f32(uniform_open(wa)))
    c, s, n = cossin_2pi(wb)
    return _flip(r * c, (n + 1) << 30), _flip(r * s, n << 30)


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
def _ndtri_select(w, s, p, REGION: tl.constexpr):
    """``p`` with the elements of region ``REGION`` (1-3) replaced by that region's
    polynomial (``s = sqrt(w)`` for regions 2 and 3)."""
    if REGION == 1:
        return tl.where(w >= _W1, _ndtri_poly1(w), p)
    elif REGION == 2:
        return tl.where(w >= _W2, _ndtri_poly2(s), p)
    else:
        return tl.where(w >= _W3, _ndtri_poly3(s), p)


@triton.jit
def ndtri_factor4(w0, w1, w2, w3, regions):
    """P(w) with ndtri(p) = (2p - 1) P(w), w = -log(4 p (1 - p)), for the four 1-D tensors
    of a block's words.

    Each element uses the polynomial of its own region of w. ``regions`` (1-4, computed
    by the launcher from the distribution's parameters, as the CPU backend does) bounds
    the regions any element can reach: the others are skipped by one branch that is
    uniform over the launch, so the common case (|z| < 2.2) evaluates one polynomial
    and no block-wide reduction is needed.
    """
    p0 = _ndtri_poly0(w0)
    p1 = _ndtri_poly0(w1)
    p2 = _ndtri_poly0(w2)
    p3 = _ndtri_poly0(w3)
    if regions >= 2:
        p0 = _ndtri_select(w0, w0, p0, 1)
        p1 = _ndtri_select(w1, w1, p1, 1)
        p2 = _ndtri_select(w2, w2, p2, 1)
        p3 = _ndtri_select(w3, w3, p3, 1)
        if regions >= 3:
            s0 = tl.sqrt_rn(w0)
            s1 = tl.sqrt_rn(w1)
            s2 = tl.sqrt_rn(w2)
            s3 = tl.sqrt_rn(w3)
            p0 = _ndtri_select(w0, s0, p0, 2)
            p1 = _ndtri_select(w1, s1, p1, 2)
            p2 = _ndtri_select(w2, s2, p2, 2)
            p3 = _ndtri_select(w3, s3, p3, 2)
            if regions >= 4:
                p0 = _ndtri_select(w0, s0, p0, 3)
                p1 = _ndtri_select(w1, s1, p1, 3)
                p2 = _ndtri_select(w2, s2, p2, 3)
                p3 = _ndtri_select(w3, s3, p3, 3)
    return p0, p1, p2, p3


@triton.jit
def trunc_w(word, pa, qb, dd, xa):
    """(x, w) of the inversion for one word: x = 2p - 1 and w = -log(4 p q).

    With ``pa = Phi(alpha)``, ``qb = Phi(-beta)``, ``dd = Phi(beta) - Phi(alpha)`` and
    ``xa = 2 Phi(alpha) - 1`` (float32) and u uniform, ``p = pa + u dd`` and
    ``q = 1 - p``. p, q and x are each formed directly from u (never by subtraction), so
    both tails (p or q small) and the centre (x small) keep full float32 resolution.
    ``(p q) * 4`` is exact (p q is a normal float32 for intervals within 11 standard
    deviations): the log takes it as p q with 2 added to its exponent.
    """
    u = uniform_open(word)
    p = tl.fma(u, dd, pa)
    q = tl.fma(1.0 - u, dd, qb)
    x = tl.fma(u, dd + dd, xa)
    return x, -log_f32(p * q, 2)


@triton.jit
def trunc_normal_standard(w0, w1, w2, w3, pa, qb, dd, xa, regions):
    """Standard normals truncated to [alpha, beta] by inversion, ``Phi^-1(p) = x P(w)``,
    from the four words of a block's groups (see ``trunc_w``)."""
    x0, v0 = trunc_w(w0, pa, qb, dd, xa)
    x1, v1 = trunc_w(w1, pa, qb, dd, xa)
    x2, v2 = trunc_w(w2, pa, qb, dd, xa)
    x3, v3 = trunc_w(w3, pa, qb, dd, xa)
    p0, p1, p2, p3 = ndtri_factor4(v0, v1, v2, v3, regions)
    return x0 * p0, x1 * p1, x2 * p2, x3 * p3


@triton.jit
def clamp_to(y, lo, hi):
    """``y`` clamped to [lo, hi] (values of y's dtype; a clamp the fill needs). The cast
    is exact: Triton < 3.7 computes 16-bit min/max in float32."""
    return tl.minimum(tl.maximum(y, lo), hi).to(y.dtype)


@triton.jit
def to_output(v, shift, scale, lo, hi, OUT_DTYPE: tl.constexpr, CLAMP: tl.constexpr,
              clamp, NATIVE_BF16: tl.constexpr):
    """``shift + scale * v`` (one fma) rounded to the output dtype, then clamped to [lo, hi].

    ``v`` is the float32 standard variate. For float64 outputs the fma is done in float64;
    otherwise in float32, followed by a round-to-nearest-even to bfloat16 / float16.
    ``lo`` and ``hi`` are values of the output dtype (float64 scalars). ``CLAMP``: 0 never
    (the launcher proved the clamp changes nothing), 1 always, 2 when the run-time
    ``clamp`` is non-zero. The clamp is applied to the rounded value in the output dtype
    (the bounds are values of that dtype, so this equals clamping its float32 widening).
    ``NATIVE_BF16``: round to bfloat16 with the device's ``cvt.rn`` (two values per
    instruction) rather than with integer operations; both round to nearest even, but the
    Triton interpreter's own cast truncates, so the interpreter takes the integer form.
    """
    if OUT_DTYPE == tl.float64:
        y = tl.fma(v.to(tl.float64), scale, shift)
        lo_t = lo
        hi_t = hi
    else:
        x = tl.fma(v, scale.to(tl.float32), shift.to(tl.float32))
        if (OUT_DTYPE == tl.bfloat16) and not NATIVE_BF16:
            # Integer round-to-nearest-even, clamped as float32 (the interpreter's bfloat16
            # min/max compare raw bits), then the top 16 bits.
            bits = x.to(tl.uint32, bitcast=True)
            bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
            y = bits.to(tl.float32, bitcast=True)
            if CLAMP == 1:
                y = clamp_to(y, lo.to(tl.float32), hi.to(tl.float32))
            elif CLAMP == 2:
                if clamp != 0:
                    y = clamp_to(y, lo.to(tl.float32), hi.to(tl.float32))
            bits = y.to(tl.uint32, bitcast=True) >> 16
            return bits.to(tl.uint16).to(tl.bfloat16, bitcast=True)
        y = x.to(OUT_DTYPE, fp_downcast_rounding="rtne") if OUT_DTYPE == tl.bfloat16 else \
            x.to(OUT_DTYPE)
        lo_t = lo.to(tl.float32).to(OUT_DTYPE)
        hi_t = hi.to(tl.float32).to(OUT_DTYPE)
    if CLAMP == 1:
        y = clamp_to(y, lo_t, hi_t)
    elif CLAMP == 2:
        if clamp != 0:
            y = clamp_to(y, lo_t, hi_t)
    return y
