"""The CPU backend's LLVM IR: the operations Numba lacks, and the contract's typed constants.

Numba has no fused multiply-add and no bit casts, and it widens integer arithmetic on
32-bit values to 64 bits, which doubles the lanes of every integer step in a vectorized
loop. The intrinsics here state those operations directly in LLVM IR: ``llvm.fma``, bit
casts, the integer steps of the uniform, log, angle reduction and bfloat16 rounding in
32-bit operations, Philox's rounds on 64-bit lanes (:func:`_philox_rounds`; in word pairs,
:func:`_philox_pairs`) and the float16 conversions. Each is the same IEEE-754 or integer operation the device code does.

The constants below are the contract's (``fastinit.kernels.contract``) as NumPy scalars,
so that no operation of :mod:`fastinit.backends.cpu_math` is promoted to float64.
"""
from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

from fastinit.kernels import contract as C

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

# LLVM's tuning for Intel's AVX-512 cores prefers 256-bit vectors (to spare the clock in
# code that uses vectors now and then); the fill loops are long runs of integer and float
# arithmetic, and on 512-bit registers they are 1.1x (uniform), 1.5x (normal) and 2.3x
# (truncated normal) faster on an Intel Xeon with AVX-512, one thread (bench/RESULTS.md).
# The preference is a function attribute, so it applies to the fill's functions only; CPUs
# without 512-bit vectors ignore it. llvmlite accepts only enum attributes by name: the
# string attribute goes into the attribute set directly.
_FULL_WIDTH = '"prefer-vector-width"="512"'


@intrinsic
def _full_width_vectors(typingctx):
    """Marks the calling function for the CPU's widest vectors (see ``_FULL_WIDTH``).

    Called at the top of each fill loop and of each function it can be inlined into: LLVM
    does not carry a callee's preference into its caller."""

    def codegen(context, builder, signature, args):
        set.add(builder.function.attributes, _FULL_WIDTH)
        return context.get_dummy_value()

    return types.none(), codegen


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


# --- Philox's rounds, as straight-line IR on 64-bit lanes --------------------------------

_I32 = ir.IntType(32)
_I64 = ir.IntType(64)


def _philox_ir(builder, args):
    """Philox's rounds on 64-bit lanes up to the last round's products: ``(p0, p1, c1, c3,
    k0, k1)``, whose words are ``(hi(p1) ^ c1 ^ k0, lo(p1), hi(p0) ^ c3 ^ k1, lo(p0))``
    (only the low 32 bits of ``c1``, ``c3`` count; ``k0``, ``k1`` are clean)."""
    c0, c1, c2, c3, k0, k1 = (builder.zext(a, _I64) for a in args)
    low = ir.Constant(_I64, 0xFFFFFFFF)
    m0, m1 = ir.Constant(_I64, C.PHILOX_M0), ir.Constant(_I64, C.PHILOX_M1)
    w0, w1 = ir.Constant(_I64, C.PHILOX_W0), ir.Constant(_I64, C.PHILOX_W1)
    s32 = ir.Constant(_I64, 32)
    p0 = builder.mul(builder.and_(c0, low), m0)
    p1 = builder.mul(builder.and_(c2, low), m1)
    for _ in range(1, C.PHILOX_ROUNDS):  # the previous round's words, then this round's keys
        c0, c1, c2, c3 = (builder.xor(builder.xor(builder.lshr(p1, s32), c1), k0), p1,
                          builder.xor(builder.xor(builder.lshr(p0, s32), c3), k1), p0)
        k0 = builder.and_(builder.add(k0, w0), low)
        k1 = builder.and_(builder.add(k1, w1), low)
        p0 = builder.mul(builder.and_(c0, low), m0)
        p1 = builder.mul(builder.and_(c2, low), m1)
    return p0, p1, c1, c3, k0, k1


def _philox_intrinsic(result, finish, doc: str):
    """An intrinsic of six uint32 values (``c0..c3, k0, k1``) that runs :func:`_philox_ir`
    and returns ``finish(builder, p0, p1, c1, c3, k0, k1)`` typed ``result``."""

    def philox(typingctx, c0, c1, c2, c3, k0, k1):
        if not all(a == types.uint32 for a in (c0, c1, c2, c3, k0, k1)):
            return None

        def codegen(context, builder, signature, args):
            values = finish(builder, *_philox_ir(builder, args))
            return context.make_tuple(builder, signature.return_type, values)

        return result(c0, c1, c2, c3, k0, k1), codegen

    philox.__doc__ = doc
    return intrinsic(philox)


def _four_words(builder, p0, p1, c1, c3, k0, k1):
    s32 = ir.Constant(_I64, 32)
    words = (builder.xor(builder.xor(builder.lshr(p1, s32), c1), k0), p1,
             builder.xor(builder.xor(builder.lshr(p0, s32), c3), k1), p0)
    return [builder.trunc(c, _I32) for c in words]


def _two_pairs(builder, p0, p1, c1, c3, k0, k1):
    low = ir.Constant(_I64, 0xFFFFFFFF)
    s32 = ir.Constant(_I64, 32)

    def pair(p, c, k):  # (hi(p) ^ c ^ k) | lo(p) << 32: p's halves swapped, then the xor
        swapped = builder.or_(builder.shl(p, s32), builder.lshr(p, s32))
        return builder.xor(swapped, builder.and_(builder.xor(c, k), low))

    return [pair(p1, c1, k0), pair(p0, c3, k1)]


_philox_rounds = _philox_intrinsic(types.UniTuple(types.uint32, 4), _four_words, """\
Philox4x32 with the contract's round count, as straight-line LLVM IR.

Each word lives in the low half of a 64-bit integer whose high half is not kept
clean: a round is then one 32x32->64 multiply per product (``vpmuludq``, which
reads the low halves only), a shift for the high word and two xors, and nothing
moves between 32- and 64-bit lanes until the four words are truncated at the end.
The low 32 bits of every value are those of :func:`philox4x32` (the high halves
never reach them: they are masked off before each multiply).
""")

_philox_pairs = _philox_intrinsic(types.UniTuple(types.uint64, 2), _two_pairs, """\
:func:`_philox_rounds`' four words as two uint64 values ``w0 | w1 << 32`` and
``w2 | w3 << 32``: the group's 16 bytes as they lie in memory (little-endian).

The last round's product already holds a word pair: ``lo(p1)`` is w1 and ``hi(p1)``
becomes w0 once ``c1 ^ k0`` is xored in, so the pair is ``p1`` with its halves swapped
(a rotate) and that xor on the low half - no truncation to 32-bit lanes and no shuffle
of four word vectors into the output order, which the vector loops otherwise spend
about 30 instructions per 64 elements on.
""")


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
