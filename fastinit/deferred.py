"""Deferred writes: record now, write later in grouped launches, exactly as eager.

A :class:`Recorder` holds writes (``fastinit.fill.Fill`` kernel fills and
``TorchWrite`` s) instead of performing them, and :meth:`Recorder.flush` performs them
with ``backends.fill_grouped``: one kernel launch per output dtype and *wave* on a GPU.

Its one promise: after a flush, memory holds exactly what eager execution of the same
writes, in the order they were recorded, would have written. By construction:

* writes to different memory are independent, so their order does not matter;
* a write gets the wave after the last pending write whose memory it may overlap (the
  test is conservative: two views of one storage overlap unless their address ranges are
  disjoint), so overlapping writes are performed in recording order;
* a write that covers every element of an earlier pending write (a dense view around
  it, or the same view) makes the earlier write invisible: it is dropped.

Everything that could observe pending memory before the flush must flush first: that is
the job of the code that owns the recorder (``fastinit.intercept.InitMode`` flushes the
storages an operation touches; ``patch`` and ``materialize`` flush on exit).
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Iterable

import torch

from fastinit import backends, layout
from fastinit.distributed import local_tensor
from fastinit.fill import TorchWrite, Write, bump_version, execute, plan


def storage_key(t: torch.Tensor) -> int:
    """Identity of the memory a tensor (or a DTensor's local shard) lives in."""
    return local_tensor(t).untyped_storage().data_ptr()


@dataclass(eq=False)
class _Record:
    write: Write
    span: tuple[int, int]
    wave: int


class PendingWrites:
    """Pending writes, per storage, flushed wave by wave in grouped launches."""

    def __init__(self, progress: bool = False) -> None:
        self.progress = progress
        self._pending: dict[int, list[_Record]] = {}

    def __len__(self) -> int:
        """The number of pending writes (a sum over the storages: not for hot paths)."""
        return sum(len(v) for v in self._pending.values())

    def __bool__(self) -> bool:
        """Whether any write is pending (constant time: every queue kept holds one)."""
        return bool(self._pending)

    def add(self, write: Write) -> None:
        """Record ``write`` (its tensor must not be meta); autograd sees the write now."""
        target = write.target
        local = local_tensor(target)
        if local.numel() == 0:
            return
        span = layout.span(local)
        covering = getattr(write, "whole", True)  # a TorchWrite may write only some
        dense = covering and layout.is_dense(local)
        queue = self._pending.setdefault(storage_key(target), [])
        kept, wave = [], 0
        for r in queue:
            if (dense and span[0] <= r.span[0] and r.span[1] <= span[1]) or \
                    (covering and layout.same_view(local, local_tensor(r.write.target))):
                continue  # overwritten entirely before anyone could see it
            kept.append(r)
            if r.span[0] <= span[1] and span[0] <= r.span[1]:
                wave = max(wave, r.wave + 1)
        kept.append(_Record(write, span, wave))
        queue[:] = kept
        bump_version(target)  # an eager write would bump it now: saved graphs must see it

    def pending(self, tensors: Iterable[torch.Tensor]) -> list[int]:
        """The storages among ``tensors``' that have pending writes."""
        if not self._pending:
            return []
        hits = []
        for t in tensors:
            local = local_tensor(t)
            if local.is_meta or local.is_nested or local.layout != torch.strided:
                continue
            key = local.untyped_storage().data_ptr()
            if key in self._pending and key not in hits:
                hits.append(key)
        return hits

    def flush(self, storages: Iterable[int] | None = None) -> None:
        """Perform the pending writes (of ``storages`` only, if given), wave by wave."""
        if storages is None:
            queues = list(self._pending.values())
            self._pending = {}
        else:
            queues = [self._pending.pop(k) for k in storages if k in self._pending]
        if not queues:
            return
        waves: dict[int, list[_Record]] = defaultdict(list)
        for queue in queues:
            for r in queue:
                waves[r.wave].append(r)
        for wave in sorted(waves):
            entries, others = [], []
            for r in waves[wave]:
                entry = _entry(r.write)
                (others if entry is None else entries).append(entry or r.write)
            if entries:
                backends.fill_grouped(entries, progress=self.progress)
            for w in others:  # no overlap within a wave: any order is the eager one
                execute(w)

    def discard(self) -> None:
        """Forget every pending write (the memory stays as it is)."""
        self._pending = {}


def _entry(write: Write) -> backends.FillEntry | None:
    """The grouped-fill entry of a kernel fill, or None to perform it on its own."""
    if isinstance(write, TorchWrite):
        return None
    out, segs = plan(write.target, write.base)
    if segs is None:
        return None
    return backends.FillEntry(out, segs, write.params, write.key, write.stream,
                              write.draw_round)


Recorder = PendingWrites  # the older name
