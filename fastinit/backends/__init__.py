"""Backends: the only part of fastinit that knows about devices.

``fill`` writes one tensor's segments; ``fill_grouped`` writes many tensors at once (one
kernel launch per output dtype on a GPU, one pass over a thread pool on the CPU). CPU
tensors go to the Numba backend, CUDA (and ROCm) tensors to the Triton kernels. Tensors
on other devices are filled on the CPU and copied over: the values are the same by
construction.

Triton is not a dependency of fastinit: torch's CUDA and ROCm wheels bring the Triton they
were built with, and CPU-only installs never need it.
"""
from __future__ import annotations

from collections import defaultdict
from typing import NamedTuple, Sequence

import torch

from fastinit.layout import Segment
from fastinit.spec import KernelParams


class FillEntry(NamedTuple):
    """One tensor of a grouped fill: ``segments`` of ``out`` get the stream of (key, stream)."""

    out: torch.Tensor
    segments: Sequence[Segment]
    params: KernelParams
    key: int
    stream: int
    draw_round: int = 0


def fill(out: torch.Tensor, segments: Sequence[Segment], params: KernelParams, key: int,
         stream: int, draw_round: int = 0) -> None:
    """Fill ``segments`` of ``out`` in place on ``out``'s device."""
    if out.device.type == "cpu":  # the common small call: skip the grouping
        from fastinit.backends import cpu

        cpu.fill(out, segments, params, key, stream, draw_round)
        return
    fill_grouped([FillEntry(out, segments, params, key, stream, draw_round)], grouped=False)


def fill_grouped(entries: Sequence[FillEntry], *, grouped: bool = True,
                 progress: bool = False) -> None:
    """Fill many tensors. Entries must not overlap (a later entry may not rely on an earlier).

    ``grouped=False`` fills entry by entry (the single-tensor kernel on a GPU).
    ``progress`` shows a progress bar on the CPU when the fill takes more than two seconds.
    """
    by_device: dict[torch.device, list[FillEntry]] = defaultdict(list)
    for e in entries:
        if e.segments:
            by_device[e.out.device].append(e)
    for device, group in by_device.items():
        if device.type == "cpu":
            from fastinit.backends import cpu

            cpu.fill_grouped(group, progress=progress)
        elif device.type == "cuda":
            triton_backend = _triton_backend()
            if grouped:
                triton_backend.fill_grouped(group)
            else:
                for e in group:
                    triton_backend.fill(*e)
        elif device.type == "meta":
            raise ValueError("fastinit cannot fill a meta tensor: it has no storage")
        else:
            _fill_through_cpu(group, progress)


def _triton_backend():
    """The Triton backend; a one-line ``RuntimeError`` naming the fix if Triton is missing."""
    try:
        import triton  # noqa: F401
    except ImportError as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RuntimeError(
            f"fastinit fills CUDA tensors with Triton, which cannot be imported ({reason}): "
            "pip install triton (torch's CUDA wheels include it; on ROCm, pytorch-triton-rocm)"
        ) from None
    from fastinit.backends import triton as triton_backend

    return triton_backend


def _fill_through_cpu(entries: Sequence[FillEntry], progress: bool) -> None:
    """Devices without a fastinit backend: fill a CPU copy, then copy it back."""
    from fastinit.backends import cpu

    staged = []
    for e in entries:
        host = torch.empty_strided(e.out.shape, e.out.stride(), dtype=e.out.dtype, device="cpu")
        host.copy_(e.out)  # keep the elements outside the segments
        staged.append(e._replace(out=host))
    cpu.fill_grouped(staged, progress=progress)
    for e, s in zip(entries, staged):
        e.out.copy_(s.out)
