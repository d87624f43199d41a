"""The kernels' cheaper forms of the contract's operations are the same operations.

The GPU kernels compute some steps of the contract differently from its text (the CPU
backend's vector loops share the first two): a uniform from exponent bits instead of an integer
-> float conversion and a multiply, the Box-Muller quarter turn and remainder on integers,
log(4 p q) as log(p q) with 2 added to the exponent, and no clamp where the launcher
proves it cannot change a value. Each is exact, so the values are the same bits; these
tests check the identities exhaustively (all 2**23 uniform grid points) in float32 NumPy
(the launcher's clamp decision is checked in ``tests/test_triton.py``).
"""
from __future__ import annotations

import math

import numpy as np

from fastinit.kernels import contract as C

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
