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
import triton.language as tl

from fastinit.kernels.fill import _fill_kernel, _grouped_fill_kernel
from fastinit.layout import Segment
from fastinit.spec import KernelParams, float64_bits

#: Elements per program and warps per program (tuned per device in the GPU issue).
DEFAULT_BLOCK = 4096
DEFAULT_NUM_WARPS = 8

_TL_DTYPES = {torch.float32: tl.float32, torch.float64: tl.float64, torch.float16: tl.float16,
              torch.bfloat16: tl.bfloat16}


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
                           ALIGNED=_aligned(out.data_ptr(), s), num_warps=num_warps,
                           enable_fp_fusion=False)


def _aligned(address: int, seg: Segment) -> bool:
    """Whether whole blocks of ``seg`` start on 16-byte boundaries (see ``fill_block``)."""
    return address % 16 == 0 and all(
        x % 8 == 0 for x in (seg.m_base, seg.m_row_stride, seg.g_base, seg.g_row_stride))


def _i64(x: int) -> int:
    """An unsigned 64-bit value as the signed int64 with the same bits."""
    return x - (1 << 64) if x >= 1 << 63 else x


def _table_row(out: torch.Tensor, seg: Segment, params: KernelParams, key: int, stream: int,
               draw_round: int, first_block: int, block: int) -> list[int]:
    """One row of the grouped kernel's table (see the field list in kernels/fill.py)."""
    c2, c3 = C.stream_words(stream, draw_round)
    return [out.data_ptr() + seg.m_base * out.element_size(), seg.m_row_stride, seg.g_base,
            seg.g_row_stride, seg.row_len, triton.cdiv(seg.row_len + 3, block), first_block,
            params.dist, _i64(key), _i64(c2 | (c3 << 32))] + [
        float64_bits(x) for x in (params.shift, params.scale, params.pa, params.qb, params.dd,
                                  params.xa, params.lo, params.hi)]


def fill_grouped(entries, *, block: int | None = None, num_warps: int | None = None) -> None:
    """Fill many ``(out, segments, params, key, stream, draw_round)`` entries: one kernel
    launch per output dtype, no host synchronization."""
    block = block or DEFAULT_BLOCK
    num_warps = num_warps or DEFAULT_NUM_WARPS
    by_dtype: dict[torch.dtype, list] = {}
    for e in entries:
        by_dtype.setdefault(e[0].dtype, []).append(e)
    for dtype, group in by_dtype.items():
        rows, counts = [], []
        total = 0
        aligned = True
        for out, segments, params, key, stream, draw_round in group:
            for seg in segments:
                n = seg.n_rows * triton.cdiv(seg.row_len + 3, block)
                rows.append(_table_row(out, seg, params, key, stream, draw_round, total, block))
                counts.append(n)
                total += n
                aligned = aligned and _aligned(out.data_ptr(), seg)
        if total == 0:
            continue
        device = group[0][0].device
        table = torch.tensor(rows, dtype=torch.int64)
        repeats = torch.tensor(counts, dtype=torch.int64)
        if device.type == "cuda":
            table = table.pin_memory().to(device, non_blocking=True)
            repeats = repeats.pin_memory().to(device, non_blocking=True)
        block_entry = torch.repeat_interleave(
            torch.arange(len(rows), dtype=torch.int32, device=device), repeats, output_size=total)
        _grouped_fill_kernel[(total,)](table, block_entry, OUT_DTYPE=_TL_DTYPES[dtype],
                                       BLOCK=block, ALIGNED=aligned, num_warps=num_warps,
                                       enable_fp_fusion=False)
