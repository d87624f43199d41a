"""Filling one tensor: from (tensor, distribution, key, stream) to a backend call.

This is the single path every fill takes: plain tensors, views (by their logical
index) and DTensors (each rank fills its local shard at its global offsets). Nothing is
validated here: callers validate before they get here, so a fill never starts on bad
input.
"""
from __future__ import annotations

import torch

from fastinit import backends
from fastinit.layout import Segment, tensor_segments
from fastinit.spec import KernelParams


def is_dtensor(t: torch.Tensor) -> bool:
    """Whether ``t`` is a ``torch.distributed.tensor.DTensor`` (without importing it eagerly)."""
    return type(t).__name__ == "DTensor" and hasattr(t, "_local_tensor")


def fill_tensor(tensor: torch.Tensor, params: KernelParams, key: int, stream: int = 0,
                draw_round: int = 0) -> None:
    """Write the stream of ``(key, stream, draw_round)`` with distribution ``params``.

    Element ``i`` of the tensor's logical row-major order gets the value of global index
    ``i``; for a DTensor the logical tensor is the global one. ``draw_round`` selects an
    independent set of words for methods that need several draws per element.
    """
    if tensor.device.type == "meta" or tensor.numel() == 0:
        return
    with torch.no_grad():
        if is_dtensor(tensor):
            from fastinit.distributed import local_fill_plan

            local, segs = local_fill_plan(tensor)
        else:
            local, segs = tensor, tensor_segments(tensor)
        if segs is None:  # a view with a strided innermost dimension: go through a copy
            tmp = torch.empty(local.shape, dtype=local.dtype, device=local.device)
            backends.fill(tmp, [Segment(0, 0, 0, 0, tmp.numel(), 1)], params, key, stream,
                          draw_round)
            local.copy_(tmp)
        elif segs:
            backends.fill(local, segs, params, key, stream, draw_round)
