"""Writes: what a fill does to memory, and doing it now.

A :class:`Fill` is one kernel fill: the Philox stream of ``(key, stream, draw_round)``
with distribution ``params``, written to ``target``. Element ``i`` of the *logical*
tensor ``base`` gets the value of global index ``i``; ``target`` is ``base`` itself or a
view of it (``materialize`` writes a padding row with its parameter's stream at the
row's indices). A :class:`TorchWrite` is a write done with torch operations
(structured matrices, constants of dtypes the kernels do not write).

:func:`plan` says where the values go, :func:`execute` writes a record now. Nothing
here decides keys or streams, and nothing here records: that is ``fastinit.route``
(the routing decision) and ``fastinit.deferred`` (recording). Nothing is validated
here either: the front end checks everything (:func:`check_target`) before a key is
drawn.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from fastinit import backends
from fastinit.distributed import is_dtensor, local_plan
from fastinit.kernels import contract as C
from fastinit.layout import Segment, same_view, tensor_segments, view_segments
from fastinit.spec import KernelParams

_OVERLAP_MESSAGE = (
    "unsupported operation: more than one element of the written-to tensor refers to a "
    "single memory location. Please clone() the tensor before performing the operation.")

#: Layouts whose stored values fastinit fills (as torch does for them): the tensor
#: holds a dense ``values()`` buffer, filled by its own index.
VALUE_LAYOUTS = (torch.sparse_csr, torch.sparse_csc, torch.sparse_bsr, torch.sparse_bsc)


@dataclass(frozen=True, eq=False)
class Fill:
    """A kernel fill of ``target`` (``base`` or a view of it) by ``base``'s index."""

    target: torch.Tensor
    base: torch.Tensor
    params: KernelParams
    key: int
    stream: int
    draw_round: int = 0


@dataclass(frozen=True, eq=False)
class TorchWrite:
    """A write of ``target`` made by torch operations: ``apply()`` performs it, writing
    every element of ``target`` (``whole``) or only some of them."""

    target: torch.Tensor
    apply: Callable[[], object]
    whole: bool = True


Write = Fill | TorchWrite


def fill_target(tensor: torch.Tensor, fn: str, *, elementwise: bool = True,
                overlap_ok: bool = False) -> torch.Tensor | None:
    """The tensor a fill of ``tensor`` writes, or None when there is nothing to write.

    Checks everything a fill needs from the tensor before any key is drawn: sparse
    compressed and nested tensors have their stored values filled (elementwise fills
    only, as torch fills them), sparse COO tensors and other layouts are refused with
    ``NotImplementedError``; a view whose elements overlap is refused with torch's
    ``RuntimeError`` (unless ``overlap_ok``: structured constants, as torch writes them);
    a DTensor's placements must be fillable (``Partial`` is refused).
    Meta and zero-element tensors give None.
    """
    if tensor.is_nested or tensor.layout in VALUE_LAYOUTS:
        if not elementwise:
            raise NotImplementedError(
                f"fastinit.{fn} needs a dense (strided) tensor; got a "
                f"{'nested' if tensor.is_nested else str(tensor.layout)} tensor")
        tensor = tensor.values()
    elif tensor.layout != torch.strided:
        raise NotImplementedError(
            f"fastinit.{fn} does not fill {tensor.layout} tensors (torch's init functions "
            "neither): fill a dense tensor and convert it, e.g. with .to_sparse()")
    if tensor.is_meta or tensor.numel() == 0:
        return None
    if is_dtensor(tensor):
        local_plan(tensor)  # raises for placements a fill cannot serve
    elif not overlap_ok and torch._debug_has_internal_overlap(tensor) == 1:
        raise RuntimeError(_OVERLAP_MESSAGE)
    return tensor


def plan(target: torch.Tensor, base: torch.Tensor | None = None
         ) -> tuple[torch.Tensor, list[Segment] | None]:
    """Where a fill of ``target`` by ``base``'s index (default: its own) writes.

    Returns the tensor that owns the memory (a DTensor's local tensor) and the segments
    to fill in it, or None instead of segments when no segments describe the fill (the
    innermost dimension is not unit-stride, or ``base`` is not contiguous): such a fill
    goes through a contiguous temporary (:func:`execute`).
    """
    if base is None or target is base:
        if is_dtensor(target):
            return local_plan(target)
        return target, tensor_segments(target)
    if is_dtensor(base) or is_dtensor(target):
        raise NotImplementedError("fastinit: a fill of part of a DTensor by the DTensor's "
                                  "index goes through fastinit.distributed")
    if not base.is_contiguous():
        return target, None
    if same_view(target, base):
        return target, tensor_segments(target)  # the same (contiguous) view: its own index
    return target, view_segments(target, base)


def execute(write: Write) -> None:
    """Perform ``write`` now, on its tensor's device."""
    if isinstance(write, TorchWrite):
        with torch.no_grad():
            write.apply()
        return
    target, base = write.target, write.base
    with torch.no_grad():
        if write.params.dist == C.CONSTANT and not is_dtensor(target):
            target.fill_(write.params.shift)  # torch's own rounding, any view, any device
            return
        local, segs = plan(target, base)
        if segs is None:
            _fill_through_copy(write)
        elif segs:
            backends.fill(local, segs, write.params, write.key, write.stream,
                          write.draw_round)
    bump_version(target)


def _fill_through_copy(write: Fill) -> None:
    """Fills no segment list describes: fill a contiguous temporary by the logical index,
    then copy the elements ``target`` holds. With ``base`` given (``target`` a view of
    it), the temporary is the whole of ``base``, laid out as ``base`` is in memory, so
    that ``target``'s strides pick the elements it aliases."""
    target, base = write.target, write.base
    logical = base if base is not None else target
    tmp = torch.empty(logical.shape, dtype=logical.dtype, device=logical.device)
    backends.fill(tmp, [Segment(0, 0, 0, 0, tmp.numel(), 1)], write.params, write.key,
                  write.stream, write.draw_round)
    if base is None or base is target:
        target.copy_(tmp)
        return
    laid_out = torch.empty_strided(base.shape, base.stride(), dtype=base.dtype,
                                   device=base.device).copy_(tmp)
    target.copy_(laid_out.as_strided(target.shape, target.stride(),
                                     target.storage_offset() - base.storage_offset()))


def fill_tensor(tensor: torch.Tensor, params: KernelParams, key: int, stream: int = 0,
                draw_round: int = 0) -> None:
    """Write the stream of ``(key, stream, draw_round)`` to ``tensor`` now, by its own
    index (a DTensor by its global index). No routing, no recording: for temporaries
    and for code that has decided the key itself."""
    if tensor.is_meta or tensor.numel() == 0:
        return
    execute(Fill(tensor, tensor, params, key, stream, draw_round))


def bump_version(t: torch.Tensor) -> None:
    """Advance autograd's version counter of ``t`` as an in-place torch op would: the
    kernels write memory behind autograd's back, and a graph that saved ``t`` must see
    that it changed ("modified by an inplace operation")."""
    if is_dtensor(t):
        t = t._local_tensor
    if t.is_inference():
        return
    torch._C._autograd._unsafe_set_version_counter((t,), (t._version + 1,))
