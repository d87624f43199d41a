"""A tiny Triton kernel with a known number of fused multiply-adds (for tests/test_sass.py).

Kept in a module of its own: Triton reads a kernel's source from its file, and the test
compiles it in a child process without the interpreter.
"""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def extra_fmas(x, a, b):
    """Five more chained fmas (the body of the run-time branch)."""
    for _ in tl.static_range(5):
        x = tl.fma(x, a, b)
    return x


@triton.jit
def chain_kernel(x_ptr, a, b, flag, N_FMA: tl.constexpr, BLOCK: tl.constexpr):
    """x = fma(x, a, b) N_FMA times per element, 5 times more when ``flag`` is set."""
    offs = tl.arange(0, BLOCK)
    x = tl.load(x_ptr + offs)
    for _ in tl.static_range(N_FMA):
        x = tl.fma(x, a, b)
    if flag != 0:
        x = extra_fmas(x, a, b)
    tl.store(x_ptr + offs, x)
