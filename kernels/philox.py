"""Philox4x32 and the counter layout, as Triton device functions.

This is the only device module that knows how a (seed, stream, draw round, element
group) becomes Philox key and counter words; the constants come from ``contract``.
"""
from __future__ import annotations

import triton
import triton.language as tl

from . import contract as C

_M0 = tl.constexpr(C.PHILOX_M0)
_M1 = tl.constexpr(C.PHILOX_M1)
_W0 = tl.constexpr(C.PHILOX_W0)
_W1 = tl.constexpr(C.PHILOX_W1)
PHILOX_ROUNDS = tl.constexpr(C.PHILOX_ROUNDS)


@triton.jit
def _mulhilo(a, M: tl.constexpr):
    """(high, low) 32-bit halves of the 64-bit product a * M, from one widening multiply
    (``mul.wide.u32``: one IMAD.WIDE where ``umulhi`` and ``*`` issue two)."""
    p = a.to(tl.uint64) * M
    return (p >> 32).to(tl.uint32), p.to(tl.uint32)


@triton.jit
def philox4x32(c0, c1, c2, c3, k0, k1, N_ROUNDS: tl.constexpr):
    """Philox4x32 with ``N_ROUNDS`` rounds on uint32 counter words under key (k0, k1)."""
    for _ in tl.static_range(N_ROUNDS):
        hi1, lo1 = _mulhilo(c2, _M1)
        hi0, lo0 = _mulhilo(c0, _M0)
        c0 = hi1 ^ c1 ^ k0
        c2 = hi0 ^ c3 ^ k1
        c1 = lo1
        c3 = lo0
        k0 = k0 + _W0
        k1 = k1 + _W1
    return c0, c1, c2, c3


@triton.jit
def group_words(group, k0, k1, c2, c3):
    """The four Philox output words of each element group.

    ``group`` is an int64 tensor of group indices (element index // 4); ``k0, k1`` are the
    key words of the seed and ``c2, c3`` the counter words of the stream and draw round,
    all uint32 scalars.
    """
    g = group.to(tl.uint64)
    lo = (g & 0xFFFFFFFF).to(tl.uint32)
    hi = (g >> 32).to(tl.uint32)
    zero = tl.zeros_like(lo)
    return philox4x32(lo, hi, zero + c2, zero + c3, k0, k1, PHILOX_ROUNDS)
