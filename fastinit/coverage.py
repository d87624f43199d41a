"""Which elements of the tensors to initialize have been written: no uninitialized memory.

:class:`Coverage` follows the parameters and buffers ``materialize`` allocates and marks
what every write reaches (whole views without bookkeeping, partial ones in a boolean map of
the storage); :func:`mark_for` says how a torch in-place operation of the init code marks
the elements it writes. ``materialize`` asks :meth:`Coverage.missing` at the end and
refuses what is not entirely written. Nothing here writes a value.
"""
from __future__ import annotations

from typing import Callable, Mapping

import torch

from fastinit.deferred import storage_key
from fastinit.distributed import local_tensor
from fastinit.layout import is_dense, same_view, span

__all__ = ["Coverage", "mark_for", "WHOLE_WRITES"]


class Coverage:
    """Which elements of the tensors to initialize have been written.

    A write covers a tensor whole when it is the same view or a dense view around it (the
    common case, no bookkeeping); other writes mark the elements they touch in a boolean
    map of the storage, made only for storages that need one.
    """

    def __init__(self, named: Mapping[str, torch.Tensor] = {}) -> None:
        self._entries: dict[int, list[list]] = {}  # storage -> [[name, tensor, full]]
        self._maps: dict[int, torch.Tensor] = {}  # storage -> bool map of its elements
        self.why: dict[str, str] = {}  # name -> where its garbage came from
        for name, t in named.items():
            self.add(name, t)

    def add(self, name: str, t: torch.Tensor, full: bool = False) -> None:
        """Follow ``t`` (``full``: its values are already all there)."""
        if local_tensor(t).numel():
            self._entries.setdefault(storage_key(t), []).append([name, t, full])

    def wrote(self, view: torch.Tensor, mark: Callable[[torch.Tensor], object] | None = None
              ) -> None:
        """``view`` was written: all of it, or the elements ``mark(bool view)`` sets."""
        local = local_tensor(view)
        if local.is_meta or local.numel() == 0:
            return
        key = storage_key(view)
        entries = self._entries.get(key)
        if not entries:
            return
        lo, hi = span(local)
        dense = mark is None and is_dense(local)
        pending = False
        for entry in entries:
            if entry[2]:
                continue
            t = local_tensor(entry[1])
            tlo, thi = span(t)
            if thi < lo or hi < tlo:
                continue
            if mark is None and (same_view(local, t) or (dense and lo <= tlo and thi <= hi)):
                entry[2] = True
            else:
                pending = True
        if pending:
            if local.dtype != local_tensor(entries[0][1]).dtype:
                return  # a view of another element size: conservatively not counted
            bmap = self._maps.get(key)
            if bmap is None:
                n = local.untyped_storage().nbytes() // local.element_size()
                bmap = self._maps[key] = torch.zeros(n, dtype=torch.bool)
            target = bmap.as_strided(local.shape, local.stride(), local.storage_offset())
            if mark is None:
                target.fill_(True)
            else:
                mark(target)

    def restrict(self, name: str, valid: torch.Tensor | None, why: str) -> None:
        """Only the elements ``valid`` marks of tensor ``name`` hold values (None: none);
        the others were computed from memory nobody wrote (``why``: from where)."""
        for key, entries in self._entries.items():
            for entry in entries:
                if entry[0] != name:
                    continue
                entry[2] = False
                self.why[name] = why
                local = local_tensor(entry[1])
                bmap = self._maps.get(key)
                if bmap is None:
                    n = local.untyped_storage().nbytes() // local.element_size()
                    bmap = self._maps[key] = torch.zeros(n, dtype=torch.bool)
                view = bmap.as_strided(local.shape, local.stride(), local.storage_offset())
                view.copy_(valid) if valid is not None else view.fill_(False)

    def unwritten(self, view: torch.Tensor) -> str | None:
        """The name of a followed tensor whose unwritten elements ``view`` covers (its
        memory), or None."""
        entries = self._entries.get(storage_key(view))
        if not entries:
            return None
        local = local_tensor(view)
        for name, t, full in entries:
            if full:
                continue
            bmap = self._maps.get(storage_key(view))
            if bmap is None or local.dtype != local_tensor(t).dtype:
                return name
            if not bool(bmap.as_strided(local.shape, local.stride(),
                                        local.storage_offset()).all()):
                return name
        return None

    def rebound(self, t: torch.Tensor) -> None:
        """``t`` now lives in memory something else computed (``param.data = x``)."""
        for entries in self._entries.values():
            for entry in entries:
                if entry[1] is t:
                    entry[2] = True

    def missing(self) -> dict[str, str]:
        """name -> "untouched" / "partly written", for tensors not entirely written."""
        out = {}
        for key, entries in self._entries.items():
            for name, t, full in entries:
                if full:
                    continue
                bmap = self._maps.get(key)
                local = local_tensor(t)
                if bmap is None:
                    out[name] = "never written"
                elif not bool(bmap.as_strided(local.shape, local.stride(),
                                              local.storage_offset()).all()):
                    touched = bool(bmap.as_strided(local.shape, local.stride(),
                                                   local.storage_offset()).any())
                    out[name] = "partly written" if touched else "never written"
                if name in out and name in self.why:
                    out[name] = ("partly " if out[name].startswith("partly") else "") + (
                        f"computed from {self.why[name]}")
        return out


#: torch in-place operations that write every element of their first argument.
WHOLE_WRITES = frozenset({
    "fill_", "zero_", "copy_", "normal_", "uniform_", "random_", "bernoulli_", "exponential_",
    "geometric_", "log_normal_", "cauchy_",
})


def mark_for(name: str, args: tuple, kwargs: dict) -> Callable | None | str:
    """How a torch in-place operation marks the elements it writes (see ``Coverage.wrote``):
    None for all of them, a function for some, "skip" for operations that only update
    values already there (``mul_``, ``add_``...)."""
    if name in WHOLE_WRITES:
        return None
    if name == "__setitem__":
        index = args[1]
        return lambda m: m.__setitem__(index, True)
    if name == "index_fill_":
        return lambda m: m.index_fill_(args[1], args[2], True)
    if name == "index_copy_":
        return lambda m: m.index_fill_(args[1], args[2], True)
    if name == "masked_fill_":
        return lambda m: m.masked_fill_(args[1], True)
    if name == "index_put_":
        return lambda m: m.index_put_(args[1], torch.tensor(True))
    if name == "scatter_":
        return lambda m: m.scatter_(args[1], args[2], True)
    return "skip"
