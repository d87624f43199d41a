"""Provenance records per model: the raw writes of its sessions, resolved to its tensors.

:func:`provenance` returns, for every parameter and buffer of a model, the ordered
:class:`Write` records that produced it. The raw records a session kept
(:mod:`fastinit.sessions`) are resolved against the model's tensors when first asked: each
write is matched to the tensors whose storage it went to, named by the region it covers
(``None``: all of it, else ``"rows 0:1"``, ``"elements 10:20"``, ``"indexed elements"``),
and marked overwritten when every element it wrote was written again. Ties (one tensor
under several names) end with a ``"tie"`` write naming the source. Re-exported by
:mod:`fastinit.provenance`.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Optional

import torch
from torch import nn

from fastinit.kernels import contract as C
from fastinit.sessions import (
    _FILL,
    _LOGS,
    _MADE,
    _MOVED,
    _OP,
    _RECORDS,
    _TORCH,
    _geometry,
    _Record,
    _Session,
)

__all__ = ["Write", "provenance"]


@dataclasses.dataclass(frozen=True)
class Write:
    """One write to a parameter or buffer, in the order the writes were made.

    Attributes:
        law: ``"normal_"``, ``"uniform_"``, ``"trunc_normal_"``, ``"constant"``, ``"copy"``,
            ``"tie"``, ``"orthogonal_"``, ``"sparse_"``, ``"eye_"``, ``"dirac_"``, or the torch
            operation that wrote or modified the values (``"mul_"``...).
        params: the law's parameters (``{"mean": 0.0, "std": 0.02}``; uniform and truncated
            normal bounds ``a`` / ``b`` as the dtype holds them; ``{"value": 0.0}``;
            ``{"source": name}`` for a tie).
        caller: qualified name of the init code that asked for the write, e.g.
            ``"transformers.models.llama.modeling_llama.LlamaPreTrainedModel._init_weights"``,
            or ``"recipe 'gpt2'"``; None when not known.
        location: ``"file.py:123"`` of that call, or None.
        seed: the 64-bit key of the draw (None for constants and torch operations).
        stream: the stream id of the draw (None likewise).
        region: None for the whole tensor, else which part (``"rows 0:1"``,
            ``"elements 10:20"``, ``"indexed elements"``).
        overwritten: every element it wrote was written again by a later write.
        function: the init function called (``"kaiming_uniform_"``, ``"Tensor.normal_"``),
            when it is not the law itself.
        modifies: the write changed values already there (``mul_``) rather than replacing
            them.
    """

    law: str
    params: dict
    caller: Optional[str] = None
    location: Optional[str] = None
    seed: Optional[int] = None
    stream: Optional[int] = None
    region: Optional[str] = None
    overwritten: bool = False
    function: Optional[str] = None
    modifies: bool = False

    def as_dict(self) -> dict:
        """The write as plain JSON-serializable data."""
        return dataclasses.asdict(self)

    def describe(self) -> str:
        """One line: ``trunc_normal_(mean=0, std=0.02, a=-0.04, b=0.04) rows 0:1``."""
        args = ", ".join(f"{k}={_fmt(v)}" for k, v in self.params.items())
        out = f"{self.law}({args})"
        if self.function and self.function != self.law:
            out += f" by {self.function}"
        if self.region:
            out += f" on {self.region}"
        return out


def _fmt(v) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)



# --- records per model ---------------------------------------------------------------------


@dataclasses.dataclass
class _Entry:
    write: Write
    span: Optional[tuple[int, int]]  # memory elements of the tensor it covers; None: whole
    known: bool  # the region is known (not an advanced index)
    kernel: Optional[tuple] = None  # (KernelParams, dtype) for the law check


@dataclasses.dataclass
class _Tensor:
    entries: list
    shape: tuple
    dtype: torch.dtype


def _named(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    # (named_buffers leaves out the buffers registered as None)
    return [*module.named_parameters(remove_duplicate=False),
            *module.named_buffers(remove_duplicate=False)]


def _ties(module: nn.Module, named) -> dict[str, str]:
    """alias name -> source name, for tensors that are one object under several names."""
    first: dict[int, str] = {}
    ties: dict[str, str] = {}
    for name, t in named:
        source = first.setdefault(id(t), name)
        if source != name:
            ties[name] = source
    declared = getattr(module, "all_tied_weights_keys", None)
    for target, source in (declared.items() if isinstance(declared, dict) else ()):
        # transformers' own direction of the tie
        if ties.get(source) == target:
            del ties[source]
            ties[target] = source
    return ties


def _resolve(s: _Session, named) -> dict[str, _Tensor]:
    """The raw records of session ``s``, per named tensor (by the storage they wrote)."""
    by_storage: dict[int, list] = {}
    for name, t in named:
        g = _geometry(t)
        if g is None:
            continue
        sid = s.matches(t)
        if sid is None:
            continue  # no write of the session went to this storage
        lo, hi = _extent(g)
        by_storage.setdefault(sid, []).append((name, t, (sid,) + g[1:], lo, hi))
    out: dict[str, _Tensor] = {}
    if not by_storage:
        return out
    for kind, g, payload, site in _follow_moves(s.raw):
        tensors = by_storage.get(g[0])
        if not tensors:
            continue
        lo, hi = _extent(g)
        for name, t, tg, tlo, thi in tensors:
            if hi <= tlo or thi <= lo:
                continue
            entry = _entry(kind, g, payload, site, tg, t)
            if entry is not None:
                out.setdefault(name, _Tensor([], tuple(t.shape), t.dtype)).entries.append(entry)
    return out


def _follow_moves(raw: list[tuple]) -> list[tuple]:
    """A tensor given other memory (``param.data = x``) keeps the history of its old
    memory: the earlier writes there, then a copy (the values came from ``x``)."""
    if not any(r[0] == _MOVED for r in raw):
        return raw
    out: list[tuple] = []
    for kind, g, payload, site in raw:
        if kind != _MOVED:
            out.append((kind, g, payload, site))
            continue
        old_storage, old_offset = payload
        for k2, g2, p2, s2 in list(out):  # (out holds no move: each became a copy)
            if g2[0] == old_storage:
                out.append((k2, (g[0], g2[1] + g[1] - old_offset) + g2[2:], p2, s2))
        out.append((_OP, g, ("copy_", None), site))
    return out


def _extent(g) -> tuple[int, int]:
    """[first byte, one past the last byte) a geometry can touch."""
    _, off, shape, stride, size = g
    lo = off // size + sum((n - 1) * s for n, s in zip(shape, stride) if s < 0)
    hi = off // size + sum((n - 1) * s for n, s in zip(shape, stride) if s >= 0)
    return lo * size, (hi + 1) * size


def _dense(shape, stride) -> bool:
    dims = sorted((s, n) for n, s in zip(shape, stride) if n != 1)
    expect = 1
    for s, n in dims:
        if s != expect:
            return False
        expect *= n
    return True


def _entry(kind, g, payload, site, tg, t) -> Optional[_Entry]:
    fn, module, code, line = site
    if code is not None:
        qual = getattr(code, "co_qualname", code.co_name)
        caller = f"{module}.{qual}" if module else qual
        location = f"{code.co_filename}:{line}"
    else:
        caller, location = module, None
    span, region, known = _region(g, tg, t)
    if span == "outside":
        return None
    kernel = seed = stream = function = None
    args, modifies = {}, False
    if kind == _FILL:
        params, key, drawn_stream = payload
        law, args = _law(params)
        if params.dist != C.CONSTANT:
            seed, stream = key, drawn_stream
        kernel = (params, t.dtype) if g[4] == tg[4] else None
        function = fn
    elif kind == _TORCH:
        law = fn if fn in ("orthogonal_", "sparse_", "eye_", "dirac_") else (
            "constant" if fn in ("constant_", "zeros_", "ones_") else (fn or "torch"))
        function = fn
    elif kind == _MADE:
        law, args = payload[0], dict(payload[1])
    else:
        name, value = payload
        modifies = name.endswith("_") and name not in _REPLACING
        if name.startswith("__setitem__"):
            if name != "__setitem__":
                known, region = False, "indexed elements"
            law = "constant" if isinstance(value, (int, float, bool)) else "copy"
            if law == "constant":
                args = {"value": float(value)}
        else:
            law = "copy" if name == "copy_" else name
            if name in _PARTIAL_OPS:
                known, region, modifies = False, "indexed elements", False
    w = Write(law, args, caller, location, seed, stream, region, False,
              function if function and function != law else None, modifies)
    return _Entry(w, span, known, kernel)


#: torch in-place operations that replace the values they write (the rest modify them)
_REPLACING = frozenset({"fill_", "zero_", "copy_", "normal_", "uniform_", "random_",
                        "bernoulli_", "exponential_", "geometric_", "log_normal_", "cauchy_"})
#: ... and those that write an index set of their target
_PARTIAL_OPS = frozenset({"index_fill_", "index_copy_", "masked_fill_", "index_put_",
                          "scatter_", "masked_scatter_", "index_add_", "scatter_add_"})


def _region(g, tg, t):
    """(span of memory elements relative to the tensor or None for all of it, the region's
    name, whether it is known)."""
    _, off, shape, stride, size = g
    _, toff, tshape, tstride, tsize = tg
    if (off, shape, stride, size) == (toff, tshape, tstride, tsize):
        return None, None, True
    lo, hi = _extent(g)
    tlo, thi = _extent(tg)
    dense = _dense(shape, stride) and _dense(tshape, tstride)
    if dense and lo <= tlo and thi <= hi:  # covers the whole tensor
        return None, None, True
    if size != tsize or not dense:
        return (0, 0), "part", False
    a, b = max(lo, tlo) // size - tlo // size, min(hi, thi) // size - tlo // size
    if a >= b:
        return "outside", None, False
    row = math.prod(tshape[1:]) if len(tshape) >= 2 else 0
    contiguous = tuple(tstride) == torch.empty(tshape, device="meta").stride()
    if contiguous and row and a % row == 0 and b % row == 0:
        name = f"rows {a // row}:{b // row}"
    else:
        name = f"elements {a}:{b}" if contiguous else f"memory elements {a}:{b}"
    return (a, b), name, True


def _law(params) -> tuple[str, dict]:
    if params.dist == C.CONSTANT:
        return "constant", {"value": params.shift}
    if params.dist == C.NORMAL:
        return "normal_", {"mean": params.shift, "std": params.scale}
    if params.dist == C.UNIFORM:
        return "uniform_", {"a": params.shift, "b": params.shift + params.scale}
    return "trunc_normal_", {"mean": params.shift, "std": params.scale, "a": params.lo,
                             "b": params.hi}


def _merge(record: "_Record", sessions, model: nn.Module) -> None:
    """Add what ``sessions`` wrote to the tensors of ``model`` to ``record``, in order."""
    named = _named(model)
    for s in sessions:
        for name, tensor in _resolve(s, named).items():
            old = record.tensors.get(name)
            if old is None or old.shape != tensor.shape or old.dtype != tensor.dtype:
                record.tensors[name] = tensor
            else:
                old.entries.extend(tensor.entries)
    for name, t in named:  # a tensor no session wrote: no writes
        record.tensors.setdefault(name, _Tensor([], tuple(t.shape), t.dtype))
    record.ties = _ties(model, named)


def _record_of(model: nn.Module) -> _Record:
    if not isinstance(model, nn.Module):
        raise TypeError(f"fastinit.provenance needs an nn.Module, got {type(model).__name__}")
    record = _RECORDS.get(model)
    if record is not None:
        if record.pending:  # resolve the sessions kept for the model, in order
            _merge(record, record.pending, model)
            record.pending.clear()
        return record
    record = _Record()
    _merge(record, _LOGS, model)
    if not any(t.entries for t in record.tensors.values()):
        raise ValueError(
            f"fastinit.provenance: no writes were recorded for this {type(model).__name__}: "
            "provenance is recorded by fastinit.materialize and fastinit.apply_recipe, and "
            "for code run under fastinit.patch() inside fastinit.provenance.recording()")
    return record


def _effective(tensor: _Tensor) -> tuple[list[bool], list[tuple[int, int, int]], bool]:
    """(overwritten per entry, segments (lo, hi, entry) of memory elements each entry
    still owns, whether every element's last write is known)."""
    n = math.prod(tensor.shape)
    segments: list[tuple[int, int, int]] = []
    known = True
    modified = [False] * len(tensor.entries)
    for i, e in enumerate(tensor.entries):
        if not e.known:
            known = False
            continue
        a, b = (0, n) if e.span is None else e.span
        if e.write.modifies:
            for lo, hi, k in segments:
                if lo < b and a < hi:
                    modified[k] = True
            continue
        kept = [(a, b, i)]
        for lo, hi, k in segments:  # what each segment keeps left of a and right of b
            if lo < min(hi, a):
                kept.append((lo, min(hi, a), k))
            if max(lo, b) < hi:
                kept.append((max(lo, b), hi, k))
        segments = sorted(kept)
    owners = {k for _, _, k in segments}
    over = [known and i not in owners and not e.write.modifies and e.known
            for i, e in enumerate(tensor.entries)]
    segments = [s for s in segments if not modified[s[2]]]
    return over, segments, known and not any(modified)


def provenance(model: nn.Module) -> dict[str, list[Write]]:
    """The ordered writes that produced each parameter and buffer of ``model``.

    Every name (tied names too, ``named_parameters(remove_duplicate=False)``) maps to its
    writes in the order they were made; a tensor kept as it was (a loaded weight) maps to
    an empty list. A tied name's list ends with a ``Write("tie", {"source": name})``.

    Raises:
        TypeError: ``model`` is not an ``nn.Module``.
        ValueError: nothing was recorded for the model: it was not made by
            ``fastinit.materialize`` / ``fastinit.apply_recipe``, nor built under
            ``fastinit.patch()`` inside :func:`recording`.
    """
    record = _record_of(model)
    out: dict[str, list[Write]] = {}
    for name, tensor in record.tensors.items():
        over, _, _ = _effective(tensor)
        writes = [dataclasses.replace(e.write, overwritten=o) if o else e.write
                  for e, o in zip(tensor.entries, over)]
        source = record.ties.get(name)
        if source is not None:
            writes.append(Write("tie", {"source": source}))
        out[name] = writes
    return out
