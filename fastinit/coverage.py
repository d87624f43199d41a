"""Which elements of the tensors to initialize have been written: no uninitialized memory.

:class:`Coverage` follows the parameters and buffers ``materialize`` allocates and marks
what every write reaches (whole views without bookkeeping, partial ones in a boolean map of
the storage); :func:`mark_for` says how a torch in-place operation of the init code marks
the elements it writes. ``materialize`` asks :meth:`Coverage.missing` at the end and
refuses what is not entirely written. :class:`CoveringRouter` is ``materialize``'s router:
it marks every write it is handed, and follows the temporaries of init code run on real
memory. Nothing here writes a value.
"""
from __future__ import annotations

import weakref
from typing import Callable, Mapping

import torch

from fastinit import route
from fastinit.deferred import storage_key
from fastinit.distributed import local_tensor
from fastinit.fill import Fill, TorchWrite, Write
from fastinit.layout import is_dense, same_view, span
from fastinit.streams import stream_for_name

__all__ = ["Coverage", "CoveringRouter", "mark_for", "WHOLE_WRITES", "PARTIAL_WRITES", "EMPTY",
           "tensors_in"]

#: Operations whose result holds no value until written.
EMPTY = frozenset(f for f in (torch.empty, torch.empty_strided,
                              getattr(torch, "empty_permuted", None), torch.empty_like,
                              torch.Tensor.new_empty, torch.Tensor.new_empty_strided)
                  if f is not None)


def tensors_in(args: tuple, kwargs: dict) -> list[torch.Tensor]:
    """The tensors among the arguments, and in lists and tuples among them (pytree's
    generality is not needed by torch's signatures, and costs a build dearly)."""
    out = []
    for x in (*args, *kwargs.values()) if kwargs else args:
        if isinstance(x, torch.Tensor):
            out.append(x)
        elif type(x) in (list, tuple):
            out.extend(y for y in x if isinstance(y, torch.Tensor))
    return out


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
        if mark is None and len(entries) == 1 and entries[0][1] is view:
            # the tensor followed, alone in its memory (a replay hands the init call the
            # very view followed here): written whole
            entries[0][2] = True
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
            target = _view(self._map(key, local), local)
            if mark is None:
                target.fill_(True)
            else:
                mark(target)

    def _map(self, key: int, local: torch.Tensor) -> torch.Tensor:
        """The bool map of storage ``key`` (made, all False, on first use)."""
        bmap = self._maps.get(key)
        if bmap is None:
            n = local.untyped_storage().nbytes() // local.element_size()
            bmap = self._maps[key] = torch.zeros(n, dtype=torch.bool)
        return bmap

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
                view = _view(self._map(key, local), local)
                view.copy_(valid) if valid is not None else view.fill_(False)

    def unwritten(self, view: torch.Tensor) -> str | None:
        """The name of a followed tensor whose unwritten elements ``view`` covers (its
        memory), or None."""
        key = storage_key(view)
        local = local_tensor(view)
        bmap = self._maps.get(key)
        for name, t, full in self._entries.get(key, ()):
            if not full and (bmap is None or local.dtype != local_tensor(t).dtype
                             or not bool(_view(bmap, local).all())):
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
            bmap = self._maps.get(key)
            for name, t, full in entries:
                view = None if full or bmap is None else _view(bmap, local_tensor(t))
                if full or (view is not None and bool(view.all())):
                    continue
                partly = view is not None and bool(view.any())
                if name in self.why:
                    out[name] = ("partly " if partly else "") + f"computed from {self.why[name]}"
                else:
                    out[name] = "partly written" if partly else "never written"
        return out


def _view(bmap: torch.Tensor, local: torch.Tensor) -> torch.Tensor:
    """The elements of bool map ``bmap`` that ``local`` (a view of its storage) covers."""
    return bmap.as_strided(local.shape, local.stride(), local.storage_offset())


#: torch in-place operations that write every element of their first argument.
WHOLE_WRITES = frozenset({
    "fill_", "zero_", "copy_", "normal_", "uniform_", "random_", "bernoulli_", "exponential_",
    "geometric_", "log_normal_", "cauchy_",
})


#: torch in-place operations that write some elements of their first argument and keep the
#: others: how each marks the elements it writes in a bool map ``m`` (see :func:`mark_for`)
PARTIAL_WRITES = {
    "__setitem__": lambda m, args: m.__setitem__(args[1], True),
    "index_fill_": lambda m, args: m.index_fill_(args[1], args[2], True),
    "index_copy_": lambda m, args: m.index_fill_(args[1], args[2], True),
    "masked_fill_": lambda m, args: m.masked_fill_(args[1], True),
    "index_put_": lambda m, args: m.index_put_(args[1], torch.tensor(True)),
    "scatter_": lambda m, args: m.scatter_(args[1], args[2], True),
}


def mark_for(name: str, args: tuple, kwargs: dict) -> Callable | None | str:
    """How a torch in-place operation marks the elements it writes (see ``Coverage.wrote``):
    None for all of them, a function for some, "skip" for operations that only update
    values already there (``mul_``, ``add_``...)."""
    if name in WHOLE_WRITES:
        return None
    mark = PARTIAL_WRITES.get(name)
    return "skip" if mark is None else (lambda m: mark(m, args))


#: Factories that make a temporary from a tensor (see ``CoveringRouter._derive``).
_DERIVING = frozenset({torch.empty_like, torch.Tensor.new_empty, torch.Tensor.new_empty_strided})


class CoveringRouter(route.NameRouter):
    """``materialize``'s router: name streams and recording (:class:`route.NameRouter`),
    element coverage (:class:`Coverage`), and the temporaries of init code run on real
    memory: their streams and the garbage values computed from them."""

    def __init__(self, key: int, named, protected, coverage: Coverage, **kw) -> None:
        super().__init__(key, named, protected, **kw)
        self.coverage = coverage
        #: temporaries made from a named tensor (``t.new_empty``, ``torch.empty_like(t)``):
        #: storage -> (weak reference, stream); see :meth:`_derive`
        self._derived: dict[int, tuple[weakref.ref, int]] = {}
        self._derived_count: dict[str, int] = {}
        #: temporaries the init code makes with torch.empty & co., and what is written
        #: of them; ``tainted``: storages computed from unwritten memory -> from where.
        #: Only where init code runs on real memory (a plain meta build): a recorded
        #: construction is checked over its program (``fastinit.dataflow``) instead.
        self.temps: Coverage | None = None
        self.tainted: dict[int, str] = {}

    def emit(self, write: Write) -> None:
        super().emit(write)
        if isinstance(write, Fill) or (isinstance(write, TorchWrite) and write.whole):
            self.coverage.wrote(write.target)
            if self.temps is not None:
                self.temps.wrote(write.target)
                self._clean(write.target)

    def _clean(self, t: torch.Tensor) -> None:
        """A write of values to all of ``t``'s memory: no garbage there any more."""
        if self.tainted and is_dense(t) and t.numel() * t.element_size() == (
                t.untyped_storage().nbytes()):
            self.tainted.pop(storage_key(t), None)

    def _garbage(self, t: torch.Tensor) -> str | None:
        """Where ``t``'s garbage comes from, if it holds elements nobody wrote."""
        key = storage_key(t)
        if key in self.tainted:
            return self.tainted[key]
        return self.temps.unwritten(t)

    def _derive(self, func, args: tuple, out) -> None:
        """A temporary made from a named tensor (``t.new_empty(...)``,
        ``torch.empty_like(t)``: torchtitan's fused-QKV init draws q, k and v so) draws from
        a stream of that tensor's name - the ``i``-th such temporary of name ``n`` from the
        stream of ``"n:i"`` - instead of from the key sequence of the whole model's init.
        Its values then depend on the seed and the name only, as the named tensors' do:
        the same in a pipeline stage that holds only part of the model."""
        if func not in _DERIVING or not args or not isinstance(out, torch.Tensor) or (
                out.device.type == "meta" or not out.numel()):
            return
        hit = self._lookup(args[0]) if isinstance(args[0], torch.Tensor) else None
        if hit is None:
            return
        name = self.stream_name(hit[0])
        i = self._derived_count.get(name, 0)
        self._derived_count[name] = i + 1
        self._derived[storage_key(out)] = (weakref.ref(out), stream_for_name(f"{name}:{i}"))

    def route(self, tensor: torch.Tensor) -> route.Route:
        decision = super().route(tensor)
        if decision is route.DRAW and self._derived and tensor.numel() and (
                tensor.device.type != "meta"):
            entry = self._derived.get(storage_key(tensor))
            base = entry[0]() if entry is not None else None
            # the weak reference tells a live temporary from later memory at its address
            if base is not None and storage_key(base) == storage_key(tensor):
                return route.Keyed(self.key, entry[1], base)
        return decision

    def flow(self, func, args: tuple, kwargs: dict, out) -> None:
        """Every torch operation of the init code (``InitMode``): follow values
        computed from memory nobody wrote into the tensors to initialize."""
        if self.temps is None:
            return
        name = getattr(func, "__name__", "")
        if func in EMPTY:
            self._derive(func, args, out)
            if isinstance(out, torch.Tensor) and not out.is_meta and out.numel():
                self.temps.add(f"memory made by {name} and never written", out)
            return
        inplace = bool(args) and isinstance(args[0], torch.Tensor) and (
            (name.endswith("_") and not name.startswith("__"))
            or name in ("__setitem__", "__set__"))
        inputs = tensors_in(args[1:] if inplace else args, kwargs)
        origin = next((g for g in map(self._garbage, inputs) if g is not None), None)
        if origin is None:
            if inplace and name in WHOLE_WRITES:
                self._clean(args[0])
            return
        origin = f"{origin}, through {name}"
        targets = [args[0]] if inplace else [
            t for t in ((out,) if isinstance(out, torch.Tensor) else
                        out if isinstance(out, (list, tuple)) else ())
            if isinstance(t, torch.Tensor)]
        sources = {storage_key(t) for t in inputs}
        for t in targets:
            key = storage_key(t)
            if not inplace and key in sources:
                continue  # a view of the garbage: the same memory
            hit = self._lookup(t)
            if hit is not None:
                self.coverage.restrict(hit[0], None, origin)
            else:
                self.tainted[key] = origin

    def rebound(self, t: torch.Tensor) -> None:
        """``t`` now lives in other memory, written by whatever computed it."""
        self.rebind(t)
        self.coverage.rebound(t)

    def wrote(self, target: torch.Tensor, func, args: tuple, kwargs: dict) -> None:
        """An in-place torch operation of the init code wrote ``target`` (``args[0]``
        when the tensor is passed by position): its coverage, and its provenance when a
        recording is open."""
        self.mark_written(target)
        if not args:
            return  # the tensor passed by keyword: named as written, elements not followed
        name = getattr(func, "__name__", "")
        recording = route.open_recording()
        if recording is not None:
            recording.note_op(name, args, self)
        if name in ("__set__", "set_"):
            self.rebound(target)  # param.data = x: other memory, written by what made it
            return
        mark = mark_for(name, args, kwargs)
        if mark == "skip":
            return
        try:
            self.coverage.wrote(target, mark)
            if self.temps is not None:
                self.temps.wrote(target, mark)
        except (RuntimeError, IndexError, TypeError):
            pass  # an index the bool map cannot take: the write is not counted
