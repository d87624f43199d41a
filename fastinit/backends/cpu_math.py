"""The CPU backend's device math: Philox and the distributions of the Triton kernels.

Every float operation mirrors ``fastinit/kernels/distributions.py`` one for one (same
operations, same order, float32 unless the output is float64, explicit fused
multiply-adds from :mod:`fastinit.backends.cpu_ir`), so that the CPU and the GPU give
bit-identical values: Philox4x32 and the words of an element group, the open uniform,
log, the angle of Box-Muller, the inverse normal CDF's regions, the truncated normal, and
the output conversion (:func:`store`: scale and shift, round to the dtype, clamp).

These are Numba functions that the fill loops (:mod:`fastinit.backends.cpu_loops`)
inline; the tests call them one element at a time.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, types
from numba.extending import overload

from fastinit.kernels import contract as C

from .cpu_ir import (
    _A0, _A1, _A2, _A3, _A4, _A5, _A6, _A7, _A_MID, _B0, _B1, _B2, _B3, _B4, _B5, _B6, _B7,
    _B_MID, _D0, _D1, _D2, _D3, _D4, _D5, _D6, _D7, _D_MID, _E0, _E1, _E2, _E3, _E4, _E5, _E6,
    _E7, _E8, _E_MID, _FOUR, _K0, _K1, _K2, _K3, _K4, _L0, _L1, _L2, _L3, _L4, _L5, _L6, _L7,
    _L8, _L9, _LN2_HI, _LN2_LO, _LO32, _M0, _M1, _MINUS_TWO, _ONE, _ONE_MINUS_HALF_CELL,
    _ROUNDS, _S0, _S1, _S2, _S3, _S4, _SH32, _USCALE, _W0, _W1, _W1_, _W2_, _W3_, F, U, U64,
    _angle_split, _bf16_bits, _fma, _log_split, _philox_pairs, _philox_rounds, _quadrant,
    _round_bf16_bits, _uniform_bits, f16_bits_to_f32, f32_to_f16_bits)
from .cpu_jit import _cached_jit

# --- Philox and the counter layout ------------------------------------------------------


@njit(inline="always")
def philox4x32(c0, c1, c2, c3, k0, k1, rounds):
    """Philox4x32 with ``rounds`` rounds on uint32 words (any round count; the fills use
    :func:`_philox_rounds`, the same function in a form the loops vectorize)."""
    for _ in range(rounds):
        p0 = U64(c0) * _M0
        p1 = U64(c2) * _M1
        n0 = U(U(p1 >> _SH32) ^ c1 ^ k0)
        n2 = U(U(p0 >> _SH32) ^ c3 ^ k1)
        c1 = U(p1 & _LO32)
        c3 = U(p0 & _LO32)
        c0 = n0
        c2 = n2
        k0 = U(k0 + _W0)
        k1 = U(k1 + _W1)
    return c0, c1, c2, c3




@njit(inline="always")
def group_words(group, k0, k1, c2, c3):
    g = U64(group)
    return _philox_rounds(U(g & _LO32), U(g >> _SH32), c2, c3, k0, k1)


@njit(inline="always")
def _scalar_group_words(group, k0, k1, c2, c3):
    """:func:`group_words` as a rolled loop: the same words, less code to compile for the
    partial groups at the ends of a row (one Philox call each)."""
    g = U64(group)
    return philox4x32(U(g & _LO32), U(g >> _SH32), c2, c3, k0, k1, _ROUNDS)


@njit(inline="always")
def run_words(g0, i, k0, k1, c2, c3):
    """The words of group ``g0 + i`` in a run of groups whose high counter word is that of
    ``g0`` (see :func:`_groups`): the compiler then sees c1 as loop-invariant, and the
    first two rounds need one vector multiply each instead of two."""
    g = U64(g0)
    return _philox_rounds(U(U(g & _LO32) + U(i)), U(g >> _SH32), c2, c3, k0, k1)


@njit(inline="always")
def run_pairs(g0, i, k0, k1, c2, c3):
    """:func:`run_words` as two uint64 word pairs, ``w0 | w1 << 32`` and ``w2 | w3 << 32``
    (:func:`fastinit.backends.cpu_ir._philox_pairs`): the group's 16 bytes in memory order."""
    g = U64(g0)
    return _philox_pairs(U(U(g & _LO32) + U(i)), U(g >> _SH32), c2, c3, k0, k1)


# --- device math, mirrored ----------------------------------------------------------------


@njit(inline="always")
def uniform_open(w):
    """The contract's uniform ``((w >> 9) * 2 + 1) * 2**-24`` of word ``w``, without an
    integer -> float conversion: the top 23 bits become the mantissa of
    ``x = 1 + (w >> 9) 2**-23`` and ``x - (1 - 2**-24)`` is exact (Sterbenz), the same
    bits (all 2**23 values are checked by the tests)."""
    return _uniform_bits(w) - _ONE_MINUS_HALF_CELL


@njit
def log_f32(x):
    m, kf = _log_split(x)
    f = m - _ONE
    p = _fma(f, _L9, _L8)
    p = _fma(p, f, _L7)
    p = _fma(p, f, _L6)
    p = _fma(p, f, _L5)
    p = _fma(p, f, _L4)
    p = _fma(p, f, _L3)
    p = _fma(p, f, _L2)
    p = _fma(p, f, _L1)
    p = _fma(p, f, _L0)
    return _fma(kf, _LN2_HI, _fma(kf, _LN2_LO, f * p))


@njit
def cossin_2pi(w):
    """``(cos(2 pi r), sin(2 pi r), n)`` for the uniform u of word ``w``: the reduced
    angle's and the quarter turn (applied in :func:`box_muller`).

    The contract's reduction ``n = floor(4u + 1/2)``, ``r = (4u - n) / 4`` is done exactly
    on the integer ``odd = u 2**24 = 2 (w >> 9) + 1``: ``n = (odd + 2**21) >> 22`` and
    ``r = (odd - n 2**22) 2**-24``, the same bits as the float32 form for all 2**23
    words (checked by the tests), with no float -> int conversion and no branch.
    """
    rem, n = _angle_split(w)
    r = rem * _USCALE
    r2 = r * r
    s = _fma(r2, _S4, _S3)
    s = _fma(s, r2, _S2)
    s = _fma(s, r2, _S1)
    s = _fma(s, r2, _S0)
    s = r * s
    c = _fma(r2, _K4, _K3)
    c = _fma(c, r2, _K2)
    c = _fma(c, r2, _K1)
    c = _fma(c, r2, _K0)
    return c, s, n


@njit
def box_muller(wa, wb):
    """Two standard normals from two words: ``r cos(theta)``, ``r sin(theta)``.

    The quadrant's swap and signs are applied after the products with the radius (a
    negation commutes with a rounded product)."""
    r = np.sqrt(_MINUS_TWO * log_f32(uniform_open(wa)))
    c, s, n = cossin_2pi(wb)
    return _quadrant(r * c, r * s, n)


@njit
def _ndtri_poly0(w):
    y = w - _A_MID
    p = _fma(y, _A7, _A6)
    p = _fma(p, y, _A5)
    p = _fma(p, y, _A4)
    p = _fma(p, y, _A3)
    p = _fma(p, y, _A2)
    p = _fma(p, y, _A1)
    return _fma(p, y, _A0)


@njit
def _ndtri_poly1(w):
    y = w - _B_MID
    p = _fma(y, _B7, _B6)
    p = _fma(p, y, _B5)
    p = _fma(p, y, _B4)
    p = _fma(p, y, _B3)
    p = _fma(p, y, _B2)
    p = _fma(p, y, _B1)
    return _fma(p, y, _B0)


@njit
def _ndtri_poly2(s):
    y = s - _D_MID
    p = _fma(y, _D7, _D6)
    p = _fma(p, y, _D5)
    p = _fma(p, y, _D4)
    p = _fma(p, y, _D3)
    p = _fma(p, y, _D2)
    p = _fma(p, y, _D1)
    return _fma(p, y, _D0)


@njit
def _ndtri_poly3(s):
    y = s - _E_MID
    p = _fma(y, _E8, _E7)
    p = _fma(p, y, _E6)
    p = _fma(p, y, _E5)
    p = _fma(p, y, _E4)
    p = _fma(p, y, _E3)
    p = _fma(p, y, _E2)
    p = _fma(p, y, _E1)
    return _fma(p, y, _E0)


@njit
def ndtri_factor(w, regions):
    """The polynomial of w's own region; ``regions`` (1-4) bounds the regions that occur.

    Regions beyond ``regions`` are never evaluated, and the selection is branch-free so
    that the loops vectorize.
    """
    p = _ndtri_poly0(w)
    if regions >= 2:
        p1 = _ndtri_poly1(w)
        p = p1 if w >= _W1_ else p
        if regions >= 3:
            s = np.sqrt(w)
            p2 = _ndtri_poly2(s)
            p = p2 if w >= _W2_ else p
            if regions >= 4:
                p3 = _ndtri_poly3(s)
                p = p3 if w >= _W3_ else p
    return p


@njit
def _trunc_w(u, pa, qb, dd):
    """w = -log(4 p q) of the inversion for uniform u."""
    p = _fma(u, dd, pa)
    q = _fma(_ONE - u, dd, qb)
    return -log_f32((p * q) * _FOUR)


@njit
def trunc_normal_standard(word, pa, qb, dd, xa, regions):
    u = uniform_open(word)
    x = _fma(u, dd + dd, xa)
    return x * ndtri_factor(_trunc_w(u, pa, qb, dd), regions)


@_cached_jit()
def trunc_regions(pa, qb, dd):
    """How many inverse-CDF regions a truncated normal with these parameters reaches.

    w is largest at the extreme uniforms; it is computed exactly as the fill computes it
    and given a margin, so that every element's region is evaluated.
    """
    u_min = _USCALE  # the smallest uniform, 2**-24; 1 - u_min is the largest
    w_lo = _trunc_w(u_min, pa, qb, dd)
    w_hi = _trunc_w(_ONE - u_min, pa, qb, dd)
    w_max = max(w_lo, w_hi) * F(1.001) + F(1e-3)
    if w_max >= _W3_:
        return 4
    if w_max >= _W2_:
        return 3
    if w_max >= _W1_:
        return 2
    return 1


def trunc_rare_fraction(params) -> float:
    """The fraction of a truncated normal's elements in the rare regions (w >= NDTRI_W2).

    An element's uniform u maps to the lower mass p = pa + u dd and the upper mass
    q = qb + (1 - u) dd; w = -log(4 p q) reaches NDTRI_W2 where p or q is below t, with
    4 t (1 - t) = exp(-NDTRI_W2). Computed in float64: it chooses a loop, not a value.
    """
    t = 0.5 * (1.0 - math.sqrt(1.0 - math.exp(-C.NDTRI_W2)))
    dd = params.dd
    if dd <= 0.0:
        return 1.0
    rare = min(max(t - params.pa, 0.0), dd) + min(max(t - params.qb, 0.0), dd)
    return min(rare / dd, 1.0)


# --- output conversion -----------------------------------------------------------------


@njit
def round_bf16(x):
    """float32 rounded to the nearest bfloat16 (even on ties), as a float32."""
    return _round_bf16_bits(x)


@njit(inline="always")
def value_f32(v, shift, scale, lo, hi):
    """The float32 element of standard variate ``v``: fma, clamp (what :func:`store`
    writes into a float32 output)."""
    return min(max(_fma(v, scale, shift), lo), hi)


def store(out, i, v, shift, scale, lo, hi):
    """Write standard variate ``v`` as element ``i``: fma, round to the dtype, clamp.

    The output array's type says the dtype: float32, float64, uint16 (bfloat16 bits) or
    int16 (float16 bits); each gets its own compiled loop.
    """


@overload(store)
def _store_impl(out, i, v, shift, scale, lo, hi):
    if out.dtype == types.float64:
        def store_f64(out, i, v, shift, scale, lo, hi):
            out[i] = min(max(_fma(np.float64(v), scale, shift), lo), hi)
        return store_f64
    if out.dtype == types.float32:
        def store_f32(out, i, v, shift, scale, lo, hi):
            out[i] = value_f32(v, shift, scale, lo, hi)
        return store_f32
    if out.dtype == types.uint16:
        def store_bf16(out, i, v, shift, scale, lo, hi):
            y = min(max(round_bf16(_fma(v, scale, shift)), lo), hi)
            out[i] = _bf16_bits(y)
        return store_bf16

    def store_f16(out, i, v, shift, scale, lo, hi):
        y = f16_bits_to_f32(f32_to_f16_bits(_fma(v, scale, shift)))
        out[i] = f32_to_f16_bits(min(max(y, lo), hi))
    return store_f16
