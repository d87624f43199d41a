"""Deferred fills: record now, write later in grouped launches.

A :class:`Recorder` collects fills (tensor, distribution, key, stream) instead of running
them, and :meth:`Recorder.flush` writes them all with ``backends.fill_grouped`` - one
kernel launch per output dtype on a GPU. Order is kept where it matters: a fill of a
whole tensor supersedes earlier pending fills of it, and a fill of part of a tensor
(an embedding's padding row) goes into a later *wave*, flushed after the fills it
overwrites. Anything else that touches a pending tensor (a read, a copy, an arithmetic
update) flushes first, so deferred execution never changes a value.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

import torch

from fastinit import backends
from fastinit.fill import fill_tensor, is_dtensor, sink
from fastinit.layout import tensor_segments, view_segments
from fastinit.spec import KernelParams


def storage_key(t: torch.Tensor) -> int:
    """Identity of the memory a tensor (or a DTensor's local shard) lives in."""
    if is_dtensor(t):
        t = t._local_tensor
    return t.untyped_storage().data_ptr()


def _same_view(a: torch.Tensor, b: torch.Tensor) -> bool:
    if is_dtensor(a) or is_dtensor(b):
        return a is b
    return (a.storage_offset() == b.storage_offset() and a.shape == b.shape
            and a.stride() == b.stride())


def _covers(new: torch.Tensor, old: torch.Tensor) -> bool:
    """Whether writing ``new`` overwrites every element of ``old`` (same memory)."""
    if _same_view(new, old):
        return True
    if is_dtensor(new):
        return False
    return (new.is_contiguous() and new.storage_offset() == 0
            and new.numel() * new.element_size() == new.untyped_storage().nbytes())


@dataclass
class _Record:
    target: torch.Tensor  # what the fill writes: ``base`` or a view of it
    base: torch.Tensor  # the tensor whose global index the values follow
    params: KernelParams
    key: int
    stream: int
    draw_round: int
    wave: int


class Recorder:
    """Pending fills, flushed wave by wave in grouped launches."""

    def __init__(self, progress: bool = False) -> None:
        self.progress = progress
        self._pending: dict[int, list[_Record]] = defaultdict(list)

    def __len__(self) -> int:
        return sum(len(v) for v in self._pending.values())

    def add(self, target: torch.Tensor, base: torch.Tensor, params: KernelParams, key: int,
            stream: int, draw_round: int = 0) -> None:
        """Record a fill of ``target`` (``base`` itself or a view of it)."""
        if target.numel() == 0:
            return
        skey = storage_key(base)
        queue = self._pending[skey]
        if all(_covers(target, r.target) for r in queue):
            queue.clear()  # earlier pending fills of this memory are overwritten: drop them
            wave = 0
        else:
            wave = queue[-1].wave + 1
        queue.append(_Record(target, base, params, key, stream, draw_round, wave))

    def touches(self, tensors: Iterable[torch.Tensor]) -> bool:
        """Whether any of ``tensors`` shares memory with a pending fill."""
        if not self._pending:
            return False
        for t in tensors:
            if t.device.type != "meta" and t.numel() and storage_key(t) in self._pending:
                return True
        return False

    def flush(self) -> None:
        """Write every pending fill: one grouped fill per wave."""
        if not self._pending:
            return
        records = [r for queue in self._pending.values() for r in queue]
        self._pending.clear()
        waves: dict[int, list[backends.FillEntry]] = defaultdict(list)
        eager: list[_Record] = []
        for r in records:
            entry = self._entry(r)
            if entry is None:
                eager.append(r)
            else:
                waves[r.wave].append(entry)
        for wave in sorted(waves):
            backends.fill_grouped(waves[wave], progress=self.progress)
        with sink(None):  # strided views: write them now, outside any recording
            for r in sorted(eager, key=lambda r: r.wave):
                fill_tensor(r.target, r.params, r.key, r.stream, r.draw_round)

    @staticmethod
    def _entry(r: _Record) -> backends.FillEntry | None:
        if r.target is r.base or _same_view(r.target, r.base):
            if is_dtensor(r.base):
                from fastinit.distributed import local_fill_plan

                out, segs = local_fill_plan(r.base)
            else:
                out, segs = r.base, tensor_segments(r.base)
        else:
            out, segs = r.target, view_segments(r.target, r.base)
        if segs is None:
            return None
        return backends.FillEntry(out, segs, r.params, r.key, r.stream, r.draw_round)
