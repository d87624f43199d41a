"""The CPU backend: the same stream as the Triton kernels, computed with Numba.

Every float operation mirrors ``fastinit/kernels/distributions.py`` one for one (same
operations, same order, float32 unless the output is float64, explicit fused
multiply-adds), so the CPU and the GPU give bit-identical values. The work is split
over a thread pool; Numba releases the GIL and writes straight into the output, so a
fill needs no temporary beyond a few scalars per thread (1 KiB of flags for a truncated
normal that reaches the rare regions).

Vector code: each distribution's loop over element groups is shaped for LLVM's loop
vectorizer (16 groups per iteration in AVX-512 registers on x86-64, checked in the
generated assembly by ``tests/test_cpu_vector.py``): Philox as straight-line IR on 64-bit
lanes (:func:`_philox_rounds`), the integer steps of the uniform, log, angle reduction
and bfloat16 rounding as 32-bit IR, no branch in a loop body (selects; the quadrant's
signs as bit flips), and the truncated normal's rare inverse-CDF regions evaluated only
for the groups that reach them. No fast-math flag is used: every value is the same
IEEE-754 operation as before, so every output bit is unchanged.

Compiling: each distribution (and truncated-normal region count) has its own entry point,
compiled for an output dtype the first time a fill needs it and kept in Numba's on-disk
cache (see :func:`_cached_jit`), so a new process loads it in a fraction of a second. A
fill that compiles prints one line to stderr first ("compiling the CPU kernels once, ~N
s"); loading from the cache prints nothing.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Iterable, Iterator, Sequence

import numba
import numpy as np
import torch
from llvmlite import ir
from numba import literally, njit, types
from numba.core import event as numba_event
from numba.extending import intrinsic, overload

from fastinit import memory
from fastinit.kernels import contract as C
from fastinit.layout import Segment
from fastinit.spec import KernelParams

# --- primitives Numba lacks: fma and bit casts -------------------------------------------


@intrinsic
def _fma(typingctx, a, b, c):
    """Fused multiply-add with a single rounding (llvm.fma)."""
    if not (isinstance(a, types.Float) and a == b == c):
        return None

    def codegen(context, builder, signature, args):
        return builder.fma(*args)

    return a(a, b, c), codegen


def _bitcast_intrinsic(src, dst, llvm_type):
    @intrinsic
    def cast(typingctx, x):
        if x != src:
            return None

        def codegen(context, builder, signature, args):
            return builder.bitcast(args[0], llvm_type)

        return dst(x), codegen

    return cast


_f32_bits = _bitcast_intrinsic(types.float32, types.uint32, ir.IntType(32))
_bits_f32 = _bitcast_intrinsic(types.uint32, types.float32, ir.FloatType())

# --- the integer steps of the device math, as 32-bit LLVM IR ----------------------------
# Numba widens integer arithmetic on uint32 / int32 values to 64 bits; in a vectorized
# loop that doubles the lanes of every integer step (and LLVM does not always narrow it
# back). These helpers state each step in 32-bit operations, the same bits.

_F32 = ir.FloatType()
_I16 = ir.IntType(16)


def _c32(v: int) -> ir.Constant:
    return ir.Constant(ir.IntType(32), v & 0xFFFFFFFF)


@intrinsic
def _uniform_bits(typingctx, w):
    """float32 ``1 + (w >> 9) 2**-23`` from the word's top 23 bits."""
    if w != types.uint32:
        return None

    def codegen(context, builder, signature, args):
        m = builder.lshr(args[0], _c32(C.UNIFORM_SHIFT))
        return builder.bitcast(builder.or_(m, _c32(0x3F800000)), _F32)

    return types.float32(w), codegen


@intrinsic
def _log_split(typingctx, x):
    """``(m, k)`` with ``x = 2**k m``, m in [sqrt(1/2), sqrt(2)), k as a float32 (x > 0)."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        bits = builder.bitcast(args[0], ir.IntType(32))
        k = builder.ashr(builder.sub(bits, _c32(C.LOG_SQRT_HALF_BITS)), _c32(23))
        m = builder.bitcast(builder.sub(bits, builder.shl(k, _c32(23))), _F32)
        return context.make_tuple(builder, signature.return_type,
                                  [m, builder.sitofp(k, _F32)])

    return types.UniTuple(types.float32, 2)(x), codegen


@intrinsic
def _angle_split(typingctx, w):
    """The quarter turn ``n`` of the word's uniform and its remainder times 2**24 (a
    float32, exact): ``odd = 2 (w >> 9) + 1``, ``n = (odd + 2**21) >> 22``,
    ``odd - n 2**22``."""
    if w != types.uint32:
        return None

    def codegen(context, builder, signature, args):
        odd = builder.or_(builder.lshr(args[0], _c32(C.UNIFORM_SHIFT - 1)), _c32(1))
        n = builder.ashr(builder.add(odd, _c32(1 << 21)), _c32(22))
        rem = builder.sitofp(builder.sub(odd, builder.shl(n, _c32(22))), _F32)
        return context.make_tuple(builder, signature.return_type, [rem, n])

    return types.Tuple((types.float32, types.int32))(w), codegen


@intrinsic
def _quadrant(typingctx, rc, rs, n):
    """``(r cos, r sin)`` of the full turn from those of the reduced angle and the quarter
    turn ``n``: swapped for odd ``n``, the cosine negated where bit 1 of ``n + 1`` is set
    (quadrants 1 and 2), the sine where bit 1 of ``n`` is (quadrants 2 and 3)."""
    if not (rc == rs == types.float32 and n == types.int32):
        return None

    def codegen(context, builder, signature, args):
        rc, rs, n = args
        swap = builder.trunc(n, ir.IntType(1))
        a = builder.select(swap, rs, rc)
        b = builder.select(swap, rc, rs)
        sign = _c32(0x80000000)

        def flip(x, k):
            mask = builder.and_(builder.shl(k, _c32(30)), sign)
            return builder.bitcast(builder.xor(builder.bitcast(x, ir.IntType(32)), mask), _F32)

        return context.make_tuple(builder, signature.return_type,
                                  [flip(a, builder.add(n, _c32(1))), flip(b, n)])

    return types.UniTuple(types.float32, 2)(rc, rs, n), codegen


@intrinsic
def _round_bf16_bits(typingctx, x):
    """float32 rounded to the nearest bfloat16 (even on ties), as a float32."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        b = builder.bitcast(args[0], ir.IntType(32))
        odd = builder.and_(builder.lshr(b, _c32(16)), _c32(1))
        b = builder.and_(builder.add(builder.add(b, _c32(0x7FFF)), odd), _c32(0xFFFF0000))
        return builder.bitcast(b, _F32)

    return types.float32(x), codegen


@intrinsic
def _bf16_bits(typingctx, y):
    """The top 16 bits of a float32 (its bfloat16 bits when it is a bfloat16 value)."""
    if y != types.float32:
        return None

    def codegen(context, builder, signature, args):
        b = builder.bitcast(args[0], ir.IntType(32))
        return builder.trunc(builder.lshr(b, _c32(16)), _I16)

    return types.uint16(y), codegen


# --- constants, typed so that no operation is promoted to float64 ------------------------

F = np.float32
U = np.uint32
U64 = np.uint64
_M0 = U64(C.PHILOX_M0)
_M1 = U64(C.PHILOX_M1)
_W0 = U(C.PHILOX_W0)
_W1 = U(C.PHILOX_W1)
_LO32 = U64(0xFFFFFFFF)
_SH32 = U64(32)
_ROUNDS = C.PHILOX_ROUNDS
_USCALE = F(C.UNIFORM_SCALE)
_ONE_MINUS_HALF_CELL = F(1.0 - C.UNIFORM_SCALE)  # 1 - 2**-24, exact in float32
_LN2_HI = F(C.LN2_HI)
_LN2_LO = F(C.LN2_LO)
_ZERO = F(0.0)
_NEG_ZERO = F(-0.0)  # a constant's variate: fma(-0, 0, c) is c for every c, -0 included
_ONE = F(1.0)
_TWO = F(2.0)
_FOUR = F(4.0)
_MINUS_TWO = F(-2.0)

_L9, _L8, _L7, _L6, _L5, _L4, _L3, _L2, _L1, _L0 = (F(c) for c in reversed(C.LOG1P))
_S4, _S3, _S2, _S1, _S0 = (F(c) for c in reversed(C.SIN2PI))
_K4, _K3, _K2, _K1, _K0 = (F(c) for c in reversed(C.COS2PI))
_A7, _A6, _A5, _A4, _A3, _A2, _A1, _A0 = (F(c) for c in reversed(C.NDTRI0))
_B7, _B6, _B5, _B4, _B3, _B2, _B1, _B0 = (F(c) for c in reversed(C.NDTRI1))
_D7, _D6, _D5, _D4, _D3, _D2, _D1, _D0 = (F(c) for c in reversed(C.NDTRI2))
_E8, _E7, _E6, _E5, _E4, _E3, _E2, _E1, _E0 = (F(c) for c in reversed(C.NDTRI3))
_A_MID = F(C.NDTRI0_CENTRE)
_B_MID = F(C.NDTRI1_CENTRE)
_D_MID = F(C.NDTRI2_CENTRE)
_E_MID = F(C.NDTRI3_CENTRE)
_W1_ = F(C.NDTRI_W1)
_W2_ = F(C.NDTRI_W2)
_W3_ = F(C.NDTRI_W3)

_CONSTANT = C.CONSTANT
_UNIFORM = C.UNIFORM
_NORMAL = C.NORMAL
_TRUNC = C.TRUNC_NORMAL

# --- Numba's on-disk cache ------------------------------------------------------------------


def _contract_fingerprint() -> str:
    """A hash of the contract's constants (those compiled into the kernels)."""
    items = sorted((k, v) for k, v in vars(C).items() if k.isupper())
    return hashlib.sha256(repr(items).encode()).hexdigest()[:12]


_CONTRACT_KEY = _contract_fingerprint()


def _cached_jit(**options):
    """``njit(cache=True, **options)`` keyed on the contract as well as on this file.

    Numba caches compiled code next to this file (``__pycache__``) or, where that is not
    writable, in the user's cache directory (``NUMBA_CACHE_DIR`` overrides both), and
    keys it on this file's source only. The constants compiled in come from
    ``fastinit.kernels.contract``, so its fingerprint goes into the cached names: a
    changed contract compiles afresh instead of loading stale code. Without any writable
    cache directory the code is compiled in every process instead.
    """

    def wrap(fn):
        fn.__qualname__ = f"{fn.__qualname__}_{_CONTRACT_KEY}"
        try:
            return njit(cache=True, **options)(fn)
        except RuntimeError:  # Numba found no writable cache directory
            return njit(**options)(fn)

    return wrap


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


_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


@intrinsic
def _philox_rounds(typingctx, c0, c1, c2, c3, k0, k1):
    """Philox4x32 with the contract's round count, as straight-line LLVM IR.

    Each word lives in the low half of a 64-bit integer whose high half is not kept
    clean: a round is then one 32x32->64 multiply per product (``vpmuludq``, which
    reads the low halves only), a shift for the high word and two xors, and nothing
    moves between 32- and 64-bit lanes until the four words are truncated at the end.
    The low 32 bits of every value are those of :func:`philox4x32` (the high halves
    never reach them: they are masked off before each multiply).
    """
    u32 = types.uint32
    if not all(a == u32 for a in (c0, c1, c2, c3, k0, k1)):
        return None

    def codegen(context, builder, signature, args):
        c0, c1, c2, c3, k0, k1 = (builder.zext(a, _I64) for a in args)
        low = ir.Constant(_I64, 0xFFFFFFFF)
        m0, m1 = ir.Constant(_I64, C.PHILOX_M0), ir.Constant(_I64, C.PHILOX_M1)
        w0, w1 = ir.Constant(_I64, C.PHILOX_W0), ir.Constant(_I64, C.PHILOX_W1)
        s32 = ir.Constant(_I64, 32)
        for r in range(C.PHILOX_ROUNDS):
            if r:
                k0 = builder.and_(builder.add(k0, w0), low)
                k1 = builder.and_(builder.add(k1, w1), low)
            p0 = builder.mul(builder.and_(c0, low), m0)
            p1 = builder.mul(builder.and_(c2, low), m1)
            c0, c1, c2, c3 = (builder.xor(builder.xor(builder.lshr(p1, s32), c1), k0), p1,
                              builder.xor(builder.xor(builder.lshr(p0, s32), c3), k1), p0)
        words = [builder.trunc(c, _I32) for c in (c0, c1, c2, c3)]
        return context.make_tuple(builder, signature.return_type, words)

    return types.UniTuple(u32, 4)(c0, c1, c2, c3, k0, k1), codegen


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


# --- output conversion -----------------------------------------------------------------


@intrinsic
def f32_to_f16_bits(typingctx, x):
    """float32 -> float16 bits (LLVM fptrunc: IEEE round to nearest even, vectorizable)."""
    if x != types.float32:
        return None

    def codegen(context, builder, signature, args):
        return builder.bitcast(builder.fptrunc(args[0], ir.HalfType()), ir.IntType(16))

    return types.int16(x), codegen


@intrinsic
def f16_bits_to_f32(typingctx, h):
    """float16 bits -> float32 (exact)."""
    if h != types.int16:
        return None

    def codegen(context, builder, signature, args):
        return builder.fpext(builder.bitcast(args[0], ir.HalfType()), ir.FloatType())

    return types.float32(h), codegen


@njit
def round_bf16(x):
    """float32 rounded to the nearest bfloat16 (even on ties), as a float32."""
    return _round_bf16_bits(x)


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
            out[i] = min(max(_fma(v, scale, shift), lo), hi)
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


# --- the fill loops: one per distribution ----------------------------------------------------
# Every distribution has its own loop over whole element groups (``_<dist>_groups``) and its
# own four variates of one group (``_<dist>_variates``, for the partial groups at the ends
# of a row). An entry point (:func:`_entry_point`) combines one pair with the walk over a
# segment's rows, so that a fill compiles - or loads from the cache - its own distribution's
# code only. One loop per distribution also keeps each loop body free of a distribution
# switch, and indices counted from zero let the compiler drop negative-index handling: both
# are needed for the loops to vectorize.


@njit
def _store4(out, i, v0, v1, v2, v3, shift, scale, lo, hi):
    store(out, i, v0, shift, scale, lo, hi)
    store(out, i + 1, v1, shift, scale, lo, hi)
    store(out, i + 2, v2, shift, scale, lo, hi)
    store(out, i + 3, v3, shift, scale, lo, hi)


@njit
def _constant_groups(out, g0, n, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo, hi):
    for i in range(n):
        _store4(out, 4 * i, _NEG_ZERO, _NEG_ZERO, _NEG_ZERO, _NEG_ZERO, shift, scale, lo, hi)


@njit
def _constant_variates(group, k0, k1, c2, c3, pa, qb, dd, xa, regions):
    return _NEG_ZERO, _NEG_ZERO, _NEG_ZERO, _NEG_ZERO


@njit
def _uniform_groups(out, g0, n, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo, hi):
    for i in range(n):
        w0, w1, w2, w3 = run_words(g0, i, k0, k1, c2, c3)
        _store4(out, 4 * i, uniform_open(w0), uniform_open(w1), uniform_open(w2),
                uniform_open(w3), shift, scale, lo, hi)


@njit
def _uniform_variates(group, k0, k1, c2, c3, pa, qb, dd, xa, regions):
    w0, w1, w2, w3 = _scalar_group_words(group, k0, k1, c2, c3)
    return uniform_open(w0), uniform_open(w1), uniform_open(w2), uniform_open(w3)


@njit
def _normal_groups(out, g0, n, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo, hi):
    for i in range(n):
        w0, w1, w2, w3 = run_words(g0, i, k0, k1, c2, c3)
        z0, z1 = box_muller(w0, w1)
        z2, z3 = box_muller(w2, w3)
        _store4(out, 4 * i, z0, z1, z2, z3, shift, scale, lo, hi)


@njit
def _normal_variates(group, k0, k1, c2, c3, pa, qb, dd, xa, regions):
    w0, w1, w2, w3 = _scalar_group_words(group, k0, k1, c2, c3)
    z0, z1 = box_muller(w0, w1)
    z2, z3 = box_muller(w2, w3)
    return z0, z1, z2, z3


#: Groups per pass of a truncated normal that reaches the rare regions (w >= NDTRI_W2).
_TRUNC_TILE = 1024


@njit
def _trunc_groups(out, g0, n, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo, hi):
    regions = literally(regions)  # a compile-time region count: the loop vectorizes
    if regions <= 2:
        for i in range(n):
            w0, w1, w2, w3 = run_words(g0, i, k0, k1, c2, c3)
            _store4(out, 4 * i, trunc_normal_standard(w0, pa, qb, dd, xa, regions),
                    trunc_normal_standard(w1, pa, qb, dd, xa, regions),
                    trunc_normal_standard(w2, pa, qb, dd, xa, regions),
                    trunc_normal_standard(w3, pa, qb, dd, xa, regions), shift, scale, lo, hi)
        return
    # Regions 3 and 4 (w >= 6.25: one element in ~1000 for a wide interval) cost a square
    # root and a polynomial each: a pass over a tile evaluates every element with regions
    # 1-2 and flags the groups with an element in region 3 or 4, which are then evaluated
    # again with all regions (scanned 8 flags at a time).
    size = (min(n, _TRUNC_TILE) + 7) & ~7
    flags = np.zeros(size, np.uint8)
    words8 = flags.view(np.uint64)
    dd2 = dd + dd
    for t in range(0, n, _TRUNC_TILE):
        nt = min(_TRUNC_TILE, n - t)
        o = out[4 * t:]
        for i in range(nt):
            w0, w1, w2, w3 = run_words(g0, t + i, k0, k1, c2, c3)
            u0, u1, u2, u3 = uniform_open(w0), uniform_open(w1), uniform_open(w2), uniform_open(w3)
            v0, v1 = _trunc_w(u0, pa, qb, dd), _trunc_w(u1, pa, qb, dd)
            v2, v3 = _trunc_w(u2, pa, qb, dd), _trunc_w(u3, pa, qb, dd)
            flags[i] = max(max(v0, v1), max(v2, v3)) >= _W2_
            _store4(o, 4 * i, _fma(u0, dd2, xa) * ndtri_factor(v0, 2),
                    _fma(u1, dd2, xa) * ndtri_factor(v1, 2),
                    _fma(u2, dd2, xa) * ndtri_factor(v2, 2),
                    _fma(u3, dd2, xa) * ndtri_factor(v3, 2), shift, scale, lo, hi)
        for i in range(nt, (nt + 7) & ~7):
            flags[i] = 0
        for q in range((nt + 7) >> 3):
            if words8[q]:
                for i in range(8 * q, min(8 * q + 8, nt)):
                    if flags[i]:
                        z0, z1, z2, z3 = _trunc_variates(g0 + t + i, k0, k1, c2, c3, pa, qb,
                                                         dd, xa, regions)
                        _store4(o, 4 * i, z0, z1, z2, z3, shift, scale, lo, hi)


@njit
def _trunc_variates(group, k0, k1, c2, c3, pa, qb, dd, xa, regions):
    regions = literally(regions)
    w0, w1, w2, w3 = _scalar_group_words(group, k0, k1, c2, c3)
    return (trunc_normal_standard(w0, pa, qb, dd, xa, regions),
            trunc_normal_standard(w1, pa, qb, dd, xa, regions),
            trunc_normal_standard(w2, pa, qb, dd, xa, regions),
            trunc_normal_standard(w3, pa, qb, dd, xa, regions))


def _variates(dist, group, k0, k1, c2, c3, pa, qb, dd, xa, regions):
    """The four standard variates of one group; ``dist`` is a compile-time constant."""


@overload(_variates, prefer_literal=True)
def _variates_impl(dist, group, k0, k1, c2, c3, pa, qb, dd, xa, regions):
    # Chosen while typing, from the literal value of ``dist``: only that distribution's
    # code is compiled.
    if not isinstance(dist, types.IntegerLiteral):
        return None
    pick = {_UNIFORM: _uniform_variates, _NORMAL: _normal_variates,
            _TRUNC: _trunc_variates}.get(dist.literal_value, _constant_variates)

    def impl(dist, group, k0, k1, c2, c3, pa, qb, dd, xa, regions):
        return pick(group, k0, k1, c2, c3, pa, qb, dd, xa, regions)
    return impl


_RUN_GROUPS = 1 << 32
_RUN_MASK = (1 << 32) - 1


def _groups(dist, out, g0, n, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo, hi):
    """``n`` whole element groups starting at group ``g0``; ``out`` starts at group ``g0``;
    ``dist`` is a compile-time constant. The loops take runs of groups with one high
    counter word (:func:`run_words`)."""


@overload(_groups, prefer_literal=True)
def _groups_impl(dist, out, g0, n, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo,
                 hi):
    if not isinstance(dist, types.IntegerLiteral):
        return None
    pick = {_UNIFORM: _uniform_groups, _NORMAL: _normal_groups,
            _TRUNC: _trunc_groups}.get(dist.literal_value, _constant_groups)

    def impl(dist, out, g0, n, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo, hi):
        # runs that keep the high counter word (c1 = group >> 32) of their first group
        while n > 0:
            run = min(n, _RUN_GROUPS - (g0 & _RUN_MASK))
            pick(out, g0, run, k0, k1, c2, c3, pa, qb, dd, xa, regions, shift, scale, lo, hi)
            out = out[4 * run:]
            g0 += run
            n -= run
    return impl


@njit
def _walk(dist, regions, out, m_base, m_row_stride, g_base, g_row_stride, row_len, e0, e1,
          k0, k1, c2, c3, pa, qb, dd, xa, shift, scale, lo, hi):
    """Fill local elements ``[e0, e1)`` (row-major over ``n_rows x row_len``) of a segment.

    ``out`` is a flat array over the segment's memory: float32, float64, uint16 holding
    bfloat16 bits or int16 holding float16 bits.
    """
    e = e0
    while e < e1:
        row = e // row_len
        col = e - row * row_len
        n = min(row_len - col, e1 - e)
        gs = g_base + row * g_row_stride + col  # global index of the first element
        ge = gs + n
        base = m_base + row * m_row_stride + col - gs  # memory offset of global index 0
        grp = gs >> 2
        if gs & 3:  # leading partial group
            v = _variates(dist, grp, k0, k1, c2, c3, pa, qb, dd, xa, regions)
            for j in range(gs & 3, min(4, ge - (grp << 2))):
                store(out, base + (grp << 2) + j, v[j], shift, scale, lo, hi)
            grp += 1
        if (ge >> 2) > grp:
            _groups(dist, out[base + (grp << 2):], grp, (ge >> 2) - grp, k0, k1, c2, c3, pa, qb,
                    dd, xa, regions, shift, scale, lo, hi)
        if (ge & 3) and (ge >> 2) >= grp:  # trailing partial group
            g = ge >> 2
            v = _variates(dist, g, k0, k1, c2, c3, pa, qb, dd, xa, regions)
            for j in range(ge & 3):
                store(out, base + (g << 2) + j, v[j], shift, scale, lo, hi)
        e += n


def _entry_point(dist: int, regions: int):
    """The compiled, cached fill of one distribution (and truncated-normal region count).

    Arguments: ``out, m_base, m_row_stride, g_base, g_row_stride, row_len, e0, e1, k0, k1,
    c2, c3, pa, qb, dd, xa, shift, scale, lo, hi`` (see :func:`_walk`). ``dist`` and
    ``regions`` are closure variables: Numba compiles them in as constants, so only the
    code of that distribution and region count is compiled.
    """

    def fill(out, m_base, m_row_stride, g_base, g_row_stride, row_len, e0, e1,
             k0, k1, c2, c3, pa, qb, dd, xa, shift, scale, lo, hi):
        _walk(dist, regions, out, m_base, m_row_stride, g_base, g_row_stride, row_len, e0, e1,
              k0, k1, c2, c3, pa, qb, dd, xa, shift, scale, lo, hi)

    fill.__qualname__ = fill.__name__ = f"fill_{_DIST_NAMES[dist]}" + (
        f"{regions}" if dist == _TRUNC else "")
    return _cached_jit(nogil=True)(fill)


# --- host side ------------------------------------------------------------------------------

#: Fills smaller than this run on the calling thread (measured crossover on 2 cores).
PARALLEL_THRESHOLD = 1 << 18
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


_CPU_COUNT = os.cpu_count() or 1


def _threads() -> int:
    return max(1, min(torch.get_num_threads(), _CPU_COUNT))


def _forget_pool_after_fork() -> None:
    """A forked child inherits the pool's bookkeeping but not its threads: start afresh
    (otherwise its first parallel fill waits forever for threads that do not exist)."""
    global _pool, _pool_lock
    _pool = None
    _pool_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_after_fork)


def _executor() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None or _pool._max_workers < _threads():  # noqa: SLF001
            _pool = ThreadPoolExecutor(max_workers=_threads(), thread_name_prefix="fastinit")
        return _pool


def _flat_array(out: torch.Tensor, span: int) -> np.ndarray:
    """A NumPy view of ``span`` elements of ``out``'s memory (16-bit dtypes as their bits:
    bfloat16 as uint16, float16 as int16, so that each has its own compiled store)."""
    out = out.detach()
    if out.is_contiguous() and span == out.numel():
        flat = out.view(-1)
    else:
        flat = torch.as_strided(out, (span,), (1,))
    if out.dtype == torch.bfloat16:
        return flat.view(torch.int16).numpy().view(np.uint16)
    if out.dtype == torch.float16:
        return flat.view(torch.int16).numpy()
    return flat.numpy()


# --- entry points and the compile notice -------------------------------------------------------


_DIST_NAMES = {C.CONSTANT: "constant", C.UNIFORM: "uniform", C.NORMAL: "normal",
               C.TRUNC_NORMAL: "trunc_normal"}

#: The compiled fills, by (distribution, truncated-normal region count).
_KERNELS = {(d, r): _entry_point(d, r)
            for d, r in ((C.CONSTANT, 1), (C.UNIFORM, 1), (C.NORMAL, 1), (C.TRUNC_NORMAL, 1),
                         (C.TRUNC_NORMAL, 2), (C.TRUNC_NORMAL, 3), (C.TRUNC_NORMAL, 4))}
_KERNEL_DIST = {kernel: d for (d, _), kernel in _KERNELS.items()}

#: Seconds to compile one entry point for one dtype (measured on a 2-core AMD EPYC VM:
#: 1.3 s uniform, 1.6 s normal, 2.2 s truncated normal in a new process), for the notice
#: only; later processes load the code from the cache.
_COMPILE_SECONDS = {C.CONSTANT: 0.5, C.UNIFORM: 1.5, C.NORMAL: 2.0, C.TRUNC_NORMAL: 2.5}

#: (entry point, dtype) pairs compiled or loaded in this process, and the (distribution,
#: dtype) pairs that have been filled: a first fill may compile (``trunc_regions`` too).
_ready: set[tuple] = set()
_warm: set[tuple] = set()


@contextlib.contextmanager
def _compile_notice(what: Iterable[tuple[int, torch.dtype]]) -> Iterator[None]:
    """Print one line if Numba compiles anything inside the block.

    ``what``: the (distribution, dtype) pairs that may compile, for the estimate. Numba
    fires ``numba:compile`` only on a cache miss, so loading cached code (every process
    after the first) prints nothing.
    """
    what = sorted(set(what), key=lambda dd: (dd[0], str(dd[1])))
    said = []

    class Listener(numba_event.Listener):
        def on_start(self, event) -> None:
            if said:
                return
            said.append(True)
            seconds = sum(_COMPILE_SECONDS[d] for d, _ in what)
            names = ", ".join(f"{_DIST_NAMES[d]} {str(t).removeprefix('torch.')}"
                              for d, t in what)
            print(f"fastinit: compiling the CPU kernels once, ~{max(1, round(seconds))} s "
                  f"({names}); later runs load them from Numba's cache", file=sys.stderr,
                  flush=True)

        def on_end(self, event) -> None:
            pass

    with numba_event.install_listener("numba:compile", Listener()):
        yield


def _param_args(params: KernelParams, float64: bool) -> tuple:
    """``(kernel, distribution arguments)`` of a fill, typed as the kernel is compiled for."""
    # -0.0 == 0.0: the sign of the shift must be part of the cache key
    return _param_args_cached(params, float64, math.copysign(1.0, params.shift))


@functools.lru_cache(maxsize=4096)
def _param_args_cached(params: KernelParams, float64: bool, _sign: float) -> tuple:
    ftype = np.float64 if float64 else np.float32
    pa, qb, dd = F(params.pa), F(params.qb), F(params.dd)
    regions = trunc_regions(pa, qb, dd) if params.dist == C.TRUNC_NORMAL else 1
    return _KERNELS[params.dist, regions], (pa, qb, dd, F(params.xa), ftype(params.shift),
                                            ftype(params.scale), ftype(params.lo),
                                            ftype(params.hi))


def _jobs(entry, pieces_for) -> list[tuple]:
    """``(kernel, dtype, args, touch)`` of every piece of an entry's segments (``touch``:
    the ``(address, bytes)`` to populate before the piece is filled, or None)."""
    out, segments, params, key, stream, draw_round = entry
    span = max(s.m_base + (s.n_rows - 1) * s.m_row_stride + s.row_len for s in segments)
    arr = _flat_array(out, span)
    c2, c3 = C.stream_words(stream, draw_round)
    kernel, dargs = _param_args(params, out.dtype == torch.float64)
    args = (U(key & 0xFFFFFFFF), U(key >> 32), U(c2), U(c3)) + dargs
    jobs = []
    fresh = memory.is_fresh(out)
    size = out.element_size()
    for s in segments:
        total = s.n_rows * s.row_len
        pieces = pieces_for(total)
        # Fresh memory (materialize's): each chunk's pages are populated right before the
        # chunk is filled, by the thread that fills it - one system call instead of a
        # fault per page, the cleared pages still in cache when the fill writes them.
        touch = fresh and (s.n_rows == 1 or s.m_row_stride == s.row_len)
        if touch:
            pieces = max(pieces, -(-total * size // memory.TOUCH_CHUNK_BYTES))
        for i in range(pieces):
            e0, e1 = total * i // pieces, total * (i + 1) // pieces
            if e1 > e0:
                jobs.append((kernel, out.dtype, (arr, s.m_base, s.m_row_stride, s.g_base,
                                                 s.g_row_stride, s.row_len, e0, e1) + args,
                             (arr.ctypes.data + (s.m_base + e0) * size, (e1 - e0) * size)
                             if touch else None))
    return jobs


def _compile(jobs: list[tuple]) -> None:
    """Compile, or load from the cache, every kernel ``jobs`` use that this process lacks.

    Typed as a call types its arguments, so the calls that follow find the code.
    """
    for kernel, dtype, args, _ in jobs:
        if (kernel, dtype) not in _ready:
            kernel.compile(tuple(numba.typeof(a) for a in args))
            _ready.add((kernel, dtype))


def _prepared_jobs(entries, pieces_for) -> list[tuple]:
    """The jobs of ``entries``, with their kernels compiled or loaded (in the calling
    thread, before any job runs) and one notice for the whole call if that compiles."""
    entries = [e for e in entries if e[1]]
    fresh = {(e[2].dist, e[0].dtype) for e in entries} - _warm
    if fresh:  # a first fill of a distribution and dtype in this process
        with _compile_notice(fresh):
            jobs = [job for e in entries for job in _jobs(e, pieces_for)]
            _compile(jobs)
        _warm.update(fresh)
        return jobs
    jobs = [job for e in entries for job in _jobs(e, pieces_for)]
    missing = [job for job in jobs if (job[0], job[1]) not in _ready]
    if missing:  # e.g. a truncated normal reaching a region count not used before
        with _compile_notice({(_KERNEL_DIST[job[0]], job[1]) for job in missing}):
            _compile(missing)
    return jobs


def fill(out: torch.Tensor, segments: Sequence[Segment], params: KernelParams, key: int,
         stream: int, draw_round: int = 0) -> None:
    """Fill ``segments`` of ``out`` (a CPU tensor) with the stream of (key, stream)."""
    entry = (out, segments, params, key, stream, draw_round)
    if len(segments) != 1 or segments[0].numel >= PARALLEL_THRESHOLD:
        fill_grouped([entry])
        return
    # Small: on the calling thread, without the pool.
    if (params.dist, out.dtype) in _warm:
        kernel, dargs = _param_args(params, out.dtype == torch.float64)
        if (kernel, out.dtype) in _ready:  # the common case, kept lean
            s = segments[0]
            c2, c3 = C.stream_words(stream, draw_round)
            kernel(_flat_array(out, s.m_base + (s.n_rows - 1) * s.m_row_stride + s.row_len),
                   s.m_base, s.m_row_stride, s.g_base, s.g_row_stride, s.row_len, 0, s.numel,
                   U(key & 0xFFFFFFFF), U(key >> 32), U(c2), U(c3), *dargs)
            return
    for kernel, _, args, _ in _prepared_jobs([entry], lambda total: 1):
        kernel(*args)


#: Elements per job of a large grouped fill (so that a progress bar can move).
GROUPED_CHUNK = 1 << 22


def fill_grouped(entries, progress: bool = False) -> None:
    """Fill many ``(out, segments, params, key, stream, draw_round)`` entries on the CPU.

    The jobs of all entries are shared by the calling thread and the pool's threads; with
    ``progress``, a progress bar appears once the fill has taken two seconds.
    """
    threads = _threads()

    def pieces_for(total: int) -> int:
        if total < PARALLEL_THRESHOLD:
            return 1
        return max(threads, -(-total // GROUPED_CHUNK)) if progress else threads

    jobs = _prepared_jobs(entries, pieces_for)
    if not progress:
        _run(jobs, threads)
        return
    from tqdm.auto import tqdm

    with tqdm(total=sum(_size(job) for job in jobs), unit="el", unit_scale=True,
              desc="fastinit", delay=2.0, mininterval=0.5, leave=False) as bar:
        _run(jobs, threads, lambda job: bar.update(_size(job)))


def _size(job: tuple) -> int:
    """Elements a job writes."""
    args = job[2]
    return args[7] - args[6]


def _run(jobs: list[tuple], threads: int, done=None) -> None:
    """Run every job: the caller works too (a pool thread takes tens of
    microseconds to wake up), pool threads help when there is more than one job and the
    jobs write :data:`PARALLEL_THRESHOLD` elements or more in all (below that, threads
    taking turns at the interpreter's lock for each tiny job cost more than the fills)."""
    if not jobs:
        return
    if threads > 1 and len(jobs) > 1 and sum(_size(job) for job in jobs) < PARALLEL_THRESHOLD:
        threads = 1
    lock = threading.Lock()
    order = iter(range(len(jobs)))

    def work() -> None:
        while True:
            with lock:
                i = next(order, None)
            if i is None:
                return
            kernel, _, args, touch = jobs[i]
            if touch is not None:
                memory.populate(*touch)
            kernel(*args)
            if done is not None:
                done(jobs[i])

    helpers = [_executor().submit(work) for _ in range(min(threads, len(jobs)) - 1)]
    work()
    for h in helpers:
        h.result()


def philox_words(key: int, stream: int, groups: np.ndarray, draw_round: int = 0,
                 rounds: int = C.PHILOX_ROUNDS) -> np.ndarray:
    """Raw Philox words of element groups, shape (len(groups), 4) (for tests and tools)."""
    k0, k1 = C.key_words(key)
    c2, c3 = C.stream_words(stream, draw_round)
    groups = np.ascontiguousarray(groups, dtype=np.uint64)
    return _words(groups, U(k0), U(k1), U(c2), U(c3), rounds)


@_cached_jit()
def _words(groups, k0, k1, c2, c3, rounds):
    out = np.empty((groups.size, 4), dtype=np.uint32)
    for i in range(groups.size):
        g = groups[i]
        if rounds == _ROUNDS:  # the fills' own Philox
            w = group_words(g, k0, k1, c2, c3)
        else:
            w = philox4x32(U(g & _LO32), U(g >> _SH32), c2, c3, k0, k1, rounds)
        out[i, 0], out[i, 1], out[i, 2], out[i, 3] = w
    return out


@_cached_jit()
def _philox_once(c0, c1, c2, c3, k0, k1, rounds):
    if rounds == _ROUNDS:  # the fills' own Philox
        return _philox_rounds(c0, c1, c2, c3, k0, k1)
    return philox4x32(c0, c1, c2, c3, k0, k1, rounds)


def philox_block(counter: Sequence[int], key: Sequence[int], rounds: int) -> tuple[int, ...]:
    """Philox4x32 of one raw (counter, key) pair, for the known-answer tests."""
    c = [U(x) for x in counter]
    return tuple(int(x) for x in _philox_once(c[0], c[1], c[2], c[3], U(key[0]), U(key[1]), rounds))


