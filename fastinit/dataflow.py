"""Which recorded values come from memory nobody wrote: "no uninitialized memory" as a
property of the data flow of a construction program.

``torch.empty``, ``new_empty`` and a legacy ``torch.Tensor(n)`` make memory without values.
A value computed from such memory - copied (``copy_``, ``clone``, ``cat``), viewed, or
used in arithmetic - holds garbage too, however it got into a parameter; eager code
would hand that garbage out, and ``materialize`` refuses it instead, naming the tensor
and where the garbage came from.

The analysis runs over the recorded operations (no values, no device), before anything is
allocated. Each storage's bytes are *valid* (written from values) or not; a storage is
summarised as all valid, none valid, or - only when it needs one - a boolean map of its
bytes. Each operation's written region becomes valid when everything it reads is valid
(copies and elementwise arithmetic carry validity element by element; any other op makes
its whole output invalid if any input element is). Writes that keep the other elements
(``w[0] = 0``, ``masked_fill_``) change only the elements they write, where those can be
computed from the recording; otherwise a valid write counts for nothing and an invalid one
for the whole target - the safe side in both cases.
"""
from __future__ import annotations

import math
from typing import Iterable, Mapping

import torch

from fastinit.construction import _EMPTY, Op, Program, Ref, fname_of
from fastinit.coverage import PARTIAL_WRITES, WHOLE_WRITES

#: operations whose output element i depends only on input element i (broadcast)
_ELEMENTWISE = frozenset({
    "copy_", "clone", "contiguous", "to", "float", "half", "bfloat16", "double", "type_as",
    "detach", "mul", "add", "sub", "div", "mul_", "add_", "sub_", "div_", "neg", "abs",
    "clamp", "clamp_", "erfinv_", "erfinv", "sqrt", "exp", "log", "tanh", "sigmoid",
    "__mul__", "__rmul__", "__add__", "__radd__", "__sub__", "__rsub__", "__truediv__",
    "__neg__", "__imul__", "__iadd__", "__isub__", "__itruediv__",
})
#: operations that make tensors from sizes and Python values, not from their tensor
#: arguments' values (``zeros_like(t)`` reads only ``t``'s shape)
_FRESH = frozenset({
    "zeros_like", "ones_like", "full_like", "rand_like", "randn_like", "randint_like",
    "new_zeros", "new_ones", "new_full", "zeros", "ones", "full", "arange", "linspace",
    "logspace", "eye", "rand", "randn", "randint", "randperm", "tensor", "new_tensor",
})


def _refs(x, out: list) -> list:
    if isinstance(x, Ref):
        out.append(x)
    elif type(x) in (list, tuple):
        for y in x:
            _refs(y, out)
    elif type(x) is dict:
        for y in x.values():
            _refs(y, out)
    return out


class _Flow:
    def __init__(self, program: Program) -> None:
        self.program = program
        self.state: dict[int, object] = {}  # storage -> True / False / bool map of bytes
        self.origin: dict[int, str] = {}  # storage -> where its garbage came from

    def _get(self, s: int):
        state = self.state.get(s)
        if state is None:
            info = self.program.storages.get(s)
            state = self.state[s] = not (info is not None and info.empty)
        return state

    def _nbytes(self, s: int) -> int:
        info = self.program.storages.get(s)
        return info.nbytes if info is not None else 0

    @staticmethod
    def _bytes(m: torch.Tensor, ref: Ref) -> torch.Tensor:
        """The bytes of ``ref``'s elements in byte map ``m``: shape + (element size,)."""
        es = ref.dtype.itemsize
        return m.as_strided(ref.shape + (es,), tuple(st * es for st in ref.stride) + (1,),
                            ref.offset * es)

    def _covers_all(self, ref: Ref) -> bool:
        es = ref.dtype.itemsize
        n = math.prod(ref.shape)
        if ref.offset or n * es != self._nbytes(ref.storage):
            return False
        expected = 1
        for size, st in sorted(zip(ref.shape, ref.stride), key=lambda p: p[1]):
            if size != 1 and st != expected:
                return False
            expected *= size
        return True

    def _map(self, s: int) -> torch.Tensor:
        state = self._get(s)
        if isinstance(state, torch.Tensor):
            return state
        self.state[s] = torch.full((self._nbytes(s),), bool(state))
        return self.state[s]

    def valid(self, ref: Ref) -> torch.Tensor | bool:
        """True, False, or a bool map of ``ref``'s elements."""
        state = self._get(ref.storage)
        if not isinstance(state, torch.Tensor):
            return state
        if math.prod(ref.shape) == 0:
            return True
        elements = self._bytes(state, ref).all(-1)
        if bool(elements.all()):
            return True
        return elements if bool(elements.any()) else False

    def set(self, ref: Ref, value, index=None) -> None:
        """Make ``ref``'s elements (those ``index`` selects) ``value`` (bool or map)."""
        if math.prod(ref.shape) == 0:
            return
        if index is None and not isinstance(value, torch.Tensor) and (
                self._get(ref.storage) is bool(value) or self._covers_all(ref)):
            self.state[ref.storage] = bool(value)
            return
        view = self._bytes(self._map(ref.storage), ref)
        if isinstance(value, torch.Tensor):
            value = value.expand(ref.shape).unsqueeze(-1).expand(view.shape)
        view[... if index is None else index] = value

    def taint(self, ref: Ref, why: str, reads: list[Ref]) -> None:
        sources = [self.origin[r.storage] for r in reads
                   if r.storage in self.origin and r.storage != ref.storage]
        if sources:
            self.origin[ref.storage] = f"{sources[0]}, through {why}"
        else:
            self.origin.setdefault(ref.storage, why)

    def run(self, op: Op) -> None:
        name = fname_of(op.func)
        fastinit_entry = getattr(op.func, "__module__", "").startswith("fastinit")
        empty = op.func in _EMPTY
        if empty or name in _FRESH or (op.factory and not _refs((op.args, op.kwargs), [])):
            for ref in op.outs:
                if ref is None:
                    continue
                if empty:
                    self.set(ref, False)
                    self.origin.setdefault(ref.storage, f"memory made by {name} and never written")
                elif self._get(ref.storage) is not True:
                    self.set(ref, True)
            return
        args = op.args
        target = args[0] if args and isinstance(args[0], Ref) and (
            op.writes and args[0].storage == op.writes[0]) and (
            name.endswith("_") and not name.startswith("__") or name in PARTIAL_WRITES) else None
        overwrite = target is not None and (name in WHOLE_WRITES or fastinit_entry)
        partial = target is not None and name in PARTIAL_WRITES
        reads = _refs((args[1:] if target is not None else args, op.kwargs), [])
        out_kw = op.kwargs.get("out")
        if isinstance(out_kw, Ref):
            reads = [r for r in reads if r is not out_kw]
        if partial and name == "__setitem__":
            reads = _refs(args[2:], [])
        if (overwrite and not partial and not reads and not isinstance(out_kw, Ref)
                and not any(op.outs)):
            self.set(target, True)  # a whole write from Python values (an init call)
            return
        states = [self.valid(r) for r in reads]
        elementwise = name in _ELEMENTWISE
        if all(s is True for s in states):
            ok: object = True
        elif elementwise and not any(s is False for s in states):
            ok = None  # element by element, below
        else:
            ok = False

        def combined(shape: tuple[int, ...]):
            if ok is not None:
                return ok
            m = torch.ones(shape, dtype=torch.bool)
            for r, s in zip(reads, states):
                if isinstance(s, torch.Tensor):
                    try:
                        m &= s.expand(shape) if s.shape != shape else s
                    except RuntimeError:
                        return False
            return m

        def mark(ref: Ref, value, index=None) -> None:
            if value is not True and not (isinstance(value, torch.Tensor) and bool(value.all())):
                self.taint(ref, name, reads)
            self.set(ref, value, index)

        if target is not None:
            if partial:
                index = self._index(name, args)
                if index is None:
                    if ok is not True:
                        mark(target, False)
                    return
                value = combined(target.shape)
                if isinstance(value, torch.Tensor):
                    value = False  # a map over a part: the safe side
                mark(target, value, index)
            elif overwrite:
                mark(target, combined(target.shape))
            else:  # reads and writes its target (mul_, clamp_...)
                before = self.valid(target)
                value = combined(target.shape)
                if before is not True:
                    if value is True:
                        value = before
                    elif isinstance(value, torch.Tensor) and isinstance(before, torch.Tensor) and elementwise:
                        value = value & before
                    else:
                        value = False
                mark(target, value)
        if isinstance(out_kw, Ref):
            mark(out_kw, combined(out_kw.shape))
        aliased = {r.storage for r in reads} | ({target.storage} if target is not None else set())
        for ref in op.outs:
            if ref is None or ref.storage in aliased:
                continue
            value = combined(ref.shape)
            if isinstance(value, torch.Tensor) and value.shape != ref.shape:
                value = False
            mark(ref, value)

    @staticmethod
    def _index(name: str, args: tuple):
        """The index a partial write uses, in a form a byte map's element view takes; None
        where the recording holds tensors for it."""
        if name != "__setitem__" or len(args) < 2:
            return None
        parts = args[1] if isinstance(args[1], tuple) else (args[1],)
        basic = not any(isinstance(p, (Ref, torch.Tensor)) or type(p) in (list, tuple)
                        for p in parts)
        return args[1] if basic else None


def unwritten(program: Program, ops: Iterable[Op], named: Mapping[str, Ref]
              ) -> dict[str, tuple[torch.Tensor | None, str]]:
    """For each of ``named`` (name -> Ref) holding elements computed from memory nobody
    wrote once ``ops`` have run: (a bool map of its valid elements, or None when no
    element is valid; where the garbage came from).

    Raises:
        ValueError: construction read values (``.item()``, ``bool(t)``, ``.tolist()``)
            computed from memory nobody wrote: what it computed from them is garbage
            wherever it went (a ``fill_`` of the value read leaves no trace of the
            garbage in the tensor's data flow), so the program is refused.
    """
    flow = _Flow(program)
    for op in ops:
        if op.expect is None:
            flow.run(op)
            continue
        read = op.args[0]
        if flow.valid(read) is not True:
            where = flow.origin.get(read.storage, "memory nobody wrote")
            raise ValueError(
                "materialize: the model's construction read the values of a tensor (shape "
                f"{tuple(read.shape)}, {read.dtype}; `.item()`, `bool()`, `.tolist()`...) "
                f"computed from {where}, and went on with them: eager code computes from "
                "whatever that memory happens to hold. Write the temporary (torch.empty, "
                "new_empty) before its values are used")
    out = {}
    for name, ref in named.items():
        v = flow.valid(ref)
        if v is True:
            continue
        out[name] = (v if isinstance(v, torch.Tensor) else None,
                     flow.origin.get(ref.storage, "memory nobody wrote"))
    return out
