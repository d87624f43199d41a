"""Where values go: from a tensor (or a shard of one) to fill segments.

A fill writes global elements of a *logical* tensor - the full tensor, whatever part of
it this process holds - to memory. :class:`Segment` is the unit both backends take: rows
of consecutive global indices stored at consecutive memory locations. A contiguous
tensor is one segment of one row; a slice or the local shard of a sharded tensor is one
segment of many rows (or, rarely, several segments).
"""
from __future__ import annotations

import itertools
from typing import NamedTuple, Sequence

import torch


class Segment(NamedTuple):
    """``n_rows`` runs of ``row_len`` elements.

    Row ``r`` holds global elements ``[g_base + r * g_row_stride, ... + row_len)`` at
    memory offsets ``[m_base + r * m_row_stride, ... + row_len)`` (elements, from the
    tensor's first element).
    """

    m_base: int
    m_row_stride: int
    g_base: int
    g_row_stride: int
    row_len: int
    n_rows: int

    @property
    def numel(self) -> int:
        return self.row_len * self.n_rows


def contiguous_strides(shape: Sequence[int]) -> list[int]:
    strides = [1] * len(shape)
    for d in range(len(shape) - 2, -1, -1):
        strides[d] = strides[d + 1] * max(int(shape[d + 1]), 1)
    return strides


def segments(shape: Sequence[int], mem_strides: Sequence[int],
             global_shape: Sequence[int] | None = None,
             global_offset: Sequence[int] | None = None,
             global_strides: Sequence[int] | None = None) -> list[Segment] | None:
    """Segments covering a local block of a logical tensor.

    ``shape``/``mem_strides`` describe the local memory; the block starts at
    ``global_offset`` inside a row-major tensor of ``global_shape`` (default: the block is
    the whole tensor). ``global_strides`` replaces the row-major strides of the global
    tensor when given (for strided shards). Returns ``None`` when the innermost local
    dimension is not unit-stride in both memory and global index; callers then fill a
    contiguous temporary.
    """
    if global_strides is None:
        global_strides = contiguous_strides(shape if global_shape is None else global_shape)
    # no global_offset: the block starts at global index 0
    g_base = sum(int(o) * int(s) for o, s in zip(global_offset or (), global_strides))
    dims = [(int(n), int(m), int(g)) for n, m, g in zip(shape, mem_strides, global_strides)]
    return block_segments(dims, 0, g_base, strided_rows=False)


def block_segments(dims: Sequence[tuple[int, int, int]], m_base: int, g_base: int, *,
                   strided_rows: bool = True) -> list[Segment] | None:
    """Segments of a block given as (size, memory stride, global stride) per dimension,
    outermost first, starting at memory offset ``m_base`` and global index ``g_base``.

    Dimensions that are contiguous in both memory and global index are merged; the
    innermost becomes the row. When no dimension is unit-stride in both (a transposed
    block), rows are one element long along the largest dimension - or, with
    ``strided_rows=False``, the answer is None.
    """
    dims = [(n, m, g) for n, m, g in dims if n != 1]
    if any(n == 0 for n, _, _ in dims):
        return []
    merged: list[tuple[int, int, int]] = []
    for n, m, g in reversed(dims):
        if merged:
            n_in, m_in, g_in = merged[-1]
            if m == n_in * m_in and g == n_in * g_in:
                merged[-1] = (n * n_in, m_in, g_in)
                continue
        merged.append((n, m, g))
    merged.reverse()
    row_len = 1
    if merged and merged[-1][1] == 1 and merged[-1][2] == 1:
        row_len = merged.pop()[0]
    elif merged:
        if not strided_rows:
            return None
        j = max(range(len(merged)), key=lambda i: merged[i][0])
        merged.append(merged.pop(j))
    # the rows: the innermost remaining dimension (one row when none remains)
    n_rows, m_row, g_row = merged.pop() if merged else (1, 0, 0)
    result = []
    for idx in itertools.product(*(range(n) for n, _, _ in merged)):
        m0 = sum(i * m for i, (_, m, _) in zip(idx, merged))
        g0 = sum(i * g for i, (_, _, g) in zip(idx, merged))
        result.append(Segment(m_base + m0, m_row, g_base + g0, g_row, row_len, n_rows))
    return result


def tensor_segments(t: torch.Tensor) -> list[Segment] | None:
    """Segments of a whole (possibly non-contiguous) tensor, by its logical index."""
    if t.is_contiguous():
        n = t.numel()
        return [Segment(0, 0, 0, 0, n, 1)] if n else []
    return segments(t.shape, t.stride())


def view_segments(view: torch.Tensor, base: torch.Tensor) -> list[Segment] | None:
    """Segments of ``view``, a view into the contiguous tensor ``base``, by ``base``'s index.

    Element ``j`` of ``base`` has global index ``j``; a view of it holds the global indices
    of the base elements it aliases. Memory offsets are relative to ``view``'s first
    element, as for every segment.
    """
    offset = view.storage_offset() - base.storage_offset()
    segs = segments(view.shape, view.stride(), global_strides=view.stride())
    if segs is None:
        return None
    return [s._replace(g_base=s.g_base + offset) for s in segs]


# --- memory spans: which addresses a view can touch ------------------------------------------


def span(t: torch.Tensor) -> tuple[int, int]:
    """``[first, last]`` element offsets (in its storage) that ``t`` can touch."""
    n = t.numel()
    if n and t.is_contiguous():  # the common case, kept short
        lo = t.storage_offset()
        return lo, lo + n - 1
    dims = list(zip(t.shape, t.stride()))
    lo = t.storage_offset() + sum((n - 1) * s for n, s in dims if s < 0)
    hi = t.storage_offset() + sum((n - 1) * s for n, s in dims if s >= 0)
    return lo, hi


def is_dense(t: torch.Tensor) -> bool:
    """Whether ``t``'s elements fill its span exactly (contiguous, or a permuted dense
    tensor: channels_last, a transpose), each address once."""
    if t.is_contiguous():
        return True
    lo, hi = span(t)
    return t.numel() == hi - lo + 1 and torch._debug_has_internal_overlap(t) == 0


def same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` are the same view of their memory (offset, shape, strides)."""
    return (a.storage_offset() == b.storage_offset() and a.shape == b.shape
            and a.stride() == b.stride())
