"""Backends: the only part of fastinit that knows about devices.

``fill(out, segments, params, key, stream)`` writes the stream of ``(key, stream)`` to
``segments`` of ``out`` with the distribution of ``params``. CPU tensors go to the Numba
backend, CUDA (and ROCm) tensors to the Triton kernels. Tensors on other devices are
filled on the CPU and copied over: the values are the same by construction.
"""
from __future__ import annotations

from typing import Sequence

import torch

from fastinit.layout import Segment
from fastinit.spec import KernelParams


def fill(out: torch.Tensor, segments: Sequence[Segment], params: KernelParams, key: int,
         stream: int, draw_round: int = 0) -> None:
    """Fill ``segments`` of ``out`` in place on ``out``'s device."""
    kind = out.device.type
    if kind == "cpu":
        from fastinit.backends import cpu

        cpu.fill(out, segments, params, key, stream, draw_round)
    elif kind == "cuda":
        from fastinit.backends import triton as triton_backend

        triton_backend.fill(out, segments, params, key, stream, draw_round)
    elif kind == "meta":
        raise ValueError("fastinit cannot fill a meta tensor: it has no storage")
    else:
        staged = torch.empty_strided(out.shape, out.stride(), dtype=out.dtype, device="cpu")
        staged.copy_(out)  # keep elements outside the segments
        fill(staged, segments, params, key, stream, draw_round)
        out.copy_(staged)
