"""Filling one tensor: from (tensor, distribution, key, stream) to a backend call.

This is the single path every fill takes: plain tensors, views (by their logical
index) and DTensors (each rank fills its local shard at its global offsets). Nothing is
validated here: callers validate before they get here, so a fill never starts on bad
input.

A *sink* (see ``fastinit.deferred``) can take fills over: ``materialize`` and
``patch(deferred=True)`` install one to record fills and flush them later in grouped
launches.
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Iterator, Protocol

import torch

from fastinit import backends
from fastinit.kernels import contract as C
from fastinit.layout import Segment, tensor_segments
from fastinit.spec import KernelParams
from fastinit.streams import call_key

#: ``Sink.key_for`` answer: the tensor must be left alone.
SKIP = "skip"


class Sink(Protocol):
    def write(self, tensor: torch.Tensor, params: KernelParams, key: int, stream: int,
              draw_round: int) -> bool:
        """Take the fill over (record it, or skip it); False lets it run now."""

    def key_for(self, tensor: torch.Tensor) -> tuple[int, int] | str | None:
        """The (key, stream) for ``tensor``, ``SKIP``, or None for the caller's own."""


_SINK: ContextVar[Sink | None] = ContextVar("fastinit_sink", default=None)


@contextlib.contextmanager
def sink(s: Sink) -> Iterator[Sink]:
    """Route fills to ``s`` inside the block."""
    token = _SINK.set(s)
    try:
        yield s
    finally:
        _SINK.reset(token)


def current_sink() -> Sink | None:
    return _SINK.get()


def resolve_key(tensor: torch.Tensor, seed: int | None,
                generator: torch.Generator | None) -> tuple[int, int] | None:
    """The (key, stream) of a fill of ``tensor``, or None if it must be left alone.

    Normally the key is ``seed`` or a draw from ``generator``, and the stream is 0; an
    active sink (``materialize``) may decide instead, e.g. the stream of a parameter's
    name. Functions that compute values from their own draws (orthogonal_, sparse_) use
    this, so they follow the same rules as plain fills.
    """
    active = _SINK.get()
    if active is not None:
        decided = active.key_for(tensor)
        if decided == SKIP:
            return None
        if decided is not None:
            return decided
    return call_key(seed, generator), 0


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
    active = _SINK.get()
    if active is not None and active.write(tensor, params, key, stream, draw_round):
        return
    if tensor.device.type == "meta" or tensor.numel() == 0:
        return
    with torch.no_grad():
        if params.dist == C.CONSTANT and not is_dtensor(tensor):
            tensor.fill_(params.shift)  # same rounding as the kernels, any view, any device
            return
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
