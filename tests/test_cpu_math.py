"""The CPU backend's per-element device math (``fastinit/backends/cpu_math.py``) against
the contract, one element at a time.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from fastinit.backends import cpu
from fastinit.kernels import contract as C

F = np.float32


def test_uniform_open_is_the_contract_uniform_for_every_grid_point():
    """All 2**23 uniforms of the backend's exponent-bit form equal ``(2m + 1) 2**-24``."""
    m = np.arange(1 << 23, dtype=np.uint32)
    low = np.random.default_rng(0).integers(0, 1 << 9, m.size).astype(np.uint32)
    words = (m << np.uint32(9)) | low  # the low 9 bits must not matter

    @njit
    def uniforms(words, out):
        for i in range(words.size):
            out[i] = cpu.uniform_open(words[i])

    got = np.empty(m.size, np.float32)
    uniforms(words, got)
    expected = (m * np.uint32(2) + np.uint32(1)).astype(np.float32) * F(C.UNIFORM_SCALE)
    assert np.array_equal(got.view(np.uint32), expected.view(np.uint32))
