"""The Triton backend: launchers for the kernels in ``fastinit.kernels.fill``.

The same launchers run the kernels on CPU tensors under ``TRITON_INTERPRET=1``, which is
how the kernels are tested on machines without a GPU.
"""
from __future__ import annotations

from typing import Sequence

import torch

try:
    import triton
except ImportError as exc:  # pragma: no cover - platforms without Triton
    raise ImportError(
        "fastinit needs Triton to fill GPU tensors (pip install triton); "
        "CPU tensors work without it"
    ) from exc

from fastinit.kernels import contract as C
from fastinit.kernels.fill import _fill_kernel
from fastinit.layout import Segment
from fastinit.spec import KernelParams, float64_bits

#: Elements per program and warps per program (tuned per device in the GPU issue).
DEFAULT_BLOCK = 4096
DEFAULT_NUM_WARPS = 8


def fill(out: torch.Tensor, segments: Sequence[Segment], params: KernelParams, key: int,
         stream: int, draw_round: int = 0, *, block: int | None = None,
         num_warps: int | None = None) -> None:
    """Launch one fill kernel per segment (normally exactly one)."""
    block = block or DEFAULT_BLOCK
    num_warps = num_warps or DEFAULT_NUM_WARPS
    if block % 4 or block & (block - 1):
        raise ValueError(f"block must be a power of two >= 4, got {block}")
    k0, k1 = C.key_words(key)
    c2, c3 = C.stream_words(stream, draw_round)
    floats = tuple(float64_bits(x) for x in (params.shift, params.scale, params.pa, params.qb,
                                              params.dd, params.xa, params.lo, params.hi))
    for s in segments:
        per_row = triton.cdiv(s.row_len + 3, block)
        grid = (s.n_rows * per_row,)
        _fill_kernel[grid](out, s.m_base, s.m_row_stride, s.g_base, s.g_row_stride, s.row_len,
                           per_row, k0, k1, c2, c3, *floats,
                           DIST=params.dist, CLAMP=params.clamp, BLOCK=block,
                           num_warps=num_warps, enable_fp_fusion=False)
