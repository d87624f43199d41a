"""The CPU backend's LLVM-IR intrinsics (``fastinit/backends/cpu_ir.py``) against
independent computations: the fused multiply-add, Philox's rounds on 64-bit lanes, and the
32-bit integer steps of log's argument split and Box-Muller's angle reduction.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from fastinit.backends import cpu_ir
from fastinit.kernels import contract as C
from tests import reference

F = np.float32
U = np.uint32


@njit
def _fmas(a, b, c, out):
    for i in range(a.size):
        out[i] = cpu_ir._fma(a[i], b[i], c[i])


@njit
def _philox(ctr, k0, k1, out):
    for i in range(ctr.shape[0]):
        w = cpu_ir._philox_rounds(ctr[i, 0], ctr[i, 1], ctr[i, 2], ctr[i, 3], k0[i], k1[i])
        for j in range(4):
            out[i, j] = w[j]


@njit
def _pairs(ctr, k0, k1, out):
    for i in range(ctr.shape[0]):
        out[i, 0], out[i, 1] = cpu_ir._philox_pairs(ctr[i, 0], ctr[i, 1], ctr[i, 2], ctr[i, 3],
                                                    k0[i], k1[i])


@njit
def _splits(x, w, m, k, rem, n):
    for i in range(x.size):
        m[i], k[i] = cpu_ir._log_split(x[i])
        rem[i], n[i] = cpu_ir._angle_split(w[i])


def test_fma_rounds_once():
    """``_fma`` is ``a * b + c`` rounded once, where the unfused form rounds twice."""
    rng = np.random.default_rng(0)
    n = 1 << 16
    a = rng.uniform(1, 2, n).astype(F)
    b = rng.uniform(1, 2, n).astype(F)
    c = (rng.uniform(1, 4, n) * rng.choice([-1, 1], n)).astype(F)
    a[0], b[0], c[0] = F(1 + 2**-13), F(1 - 2**-13), F(-1)  # a b = 1 - 2**-26
    got = np.empty(n, F)
    _fmas(a, b, c, got)
    assert got[0] == F(-(2**-26))
    assert np.array_equal(got.view(U), reference.fma32(a, b, c).view(U))
    assert (got != a * b + c).sum() > n // 100  # the cases tell the two forms apart


def test_philox_rounds_are_philox4x32():
    """Philox on 64-bit lanes gives Random123's known answers and the NumPy reference's
    words for random counters and keys (the extreme words included)."""
    known = [((0, 0, 0, 0), (0, 0), (0x6627E8D5, 0xE169C58D, 0xBC57AC4C, 0x9B00DBD8)),
             ((0xFFFFFFFF,) * 4, (0xFFFFFFFF,) * 2,
              (0x408F276D, 0x41C83B0E, 0xA20BC7C6, 0x6D5451FD)),
             ((0x243F6A88, 0x85A308D3, 0x13198A2E, 0x03707344), (0xA4093822, 0x299F31D0),
              (0xD16CFE09, 0x94FDCCEB, 0x5001E420, 0x24126EA1))]
    assert C.PHILOX_ROUNDS == 10  # the rounds of the known answers
    rng = np.random.default_rng(1)
    n = 4096
    ctr = rng.integers(0, 1 << 32, (n, 4), dtype=np.uint64).astype(U)
    keys = rng.integers(0, 1 << 32, (n, 2), dtype=np.uint64).astype(U)
    for i, (c, k, _) in enumerate(known):
        ctr[i], keys[i] = c, k
    got = np.empty((n, 4), U)
    _philox(ctr, keys[:, 0].copy(), keys[:, 1].copy(), got)
    for i, (_, _, words) in enumerate(known):
        assert tuple(int(w) for w in got[i]) == words
    for i in range(n):
        expected = reference.philox4x32(ctr[i:i + 1], (int(keys[i, 0]), int(keys[i, 1])))
        assert np.array_equal(got[i], expected[0]), i


def test_philox_pairs_are_the_words_in_memory_order():
    """``_philox_pairs``: the four words of ``_philox_rounds`` as ``w0 | w1 << 32`` and
    ``w2 | w3 << 32`` (the group's bytes on a little-endian machine), extreme counters and
    keys included."""
    rng = np.random.default_rng(3)
    n = 4096
    ctr = rng.integers(0, 1 << 32, (n, 4), dtype=np.uint64).astype(U)
    keys = rng.integers(0, 1 << 32, (n, 2), dtype=np.uint64).astype(U)
    ctr[0], keys[0] = 0, 0
    ctr[1], keys[1] = 0xFFFFFFFF, 0xFFFFFFFF
    k0, k1 = keys[:, 0].copy(), keys[:, 1].copy()
    words = np.empty((n, 4), U)
    _philox(ctr, k0, k1, words)
    pairs = np.empty((n, 2), np.uint64)
    _pairs(ctr, k0, k1, pairs)
    assert np.array_equal(pairs.view(U), words)  # little-endian: w0 w1 w2 w3
    w = words.astype(np.uint64)
    assert np.array_equal(pairs[:, 0], w[:, 0] | (w[:, 1] << np.uint64(32)))


def test_log_and_angle_splits():
    """``_log_split``: ``x = 2**k m`` exactly with m from sqrt(1/2) (its float32 bits) up
    to sqrt(2), for positive normal floats; ``_angle_split``: the quarter turn and
    remainder of the word's odd grid point, ``odd = 2 (w >> 9) + 1``."""
    rng = np.random.default_rng(2)
    n = 1 << 16
    x = rng.integers(0x00800000, 0x7F800000, n, dtype=np.uint64).astype(U).view(F)
    w = rng.integers(0, 1 << 32, n, dtype=np.uint64).astype(U)
    w[:2] = 0, 0xFFFFFFFF
    m, k, rem, quarter = np.empty(n, F), np.empty(n, F), np.empty(n, F), np.empty(n, np.int32)
    _splits(x, w, m, k, rem, quarter)
    assert np.array_equal(k, np.round(k))
    assert np.array_equal(np.ldexp(m.astype(np.float64), k.astype(np.int64)), x.astype(np.float64))
    mb = m.view(U)
    assert (mb >= C.LOG_SQRT_HALF_BITS).all() and (mb < C.LOG_SQRT_HALF_BITS + (1 << 23)).all()
    odd = (w >> U(9)).astype(np.int64) * 2 + 1
    expected_n = (odd + (1 << 21)) >> 22
    assert np.array_equal(quarter, expected_n)
    assert np.array_equal(rem, (odd - (expected_n << 22)).astype(F))
