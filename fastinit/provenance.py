"""Where every weight came from, and whether its values follow the law it was given.

**Provenance.** ``materialize`` and ``apply_recipe`` see every write they make to a model's
tensors; they keep, per parameter and buffer, the ordered list of those writes
(:class:`Write`): the law and its parameters, the init code that asked for it (the
innermost frame outside fastinit, torch's internals and transformers' init wrappers:
e.g. transformers' ``_init_weights``, or ``torch.nn.Linear.reset_parameters`` for
torch's defaults), the seed and stream, the region written (``None``: the whole tensor,
else e.g. ``"rows 0:1"``) and whether a later write overwrote it. Ties (one tensor under
several names) end with a ``"tie"`` write naming the source. :func:`provenance` returns
them. Recording is always on in ``materialize`` and ``apply_recipe`` (it costs a frame
walk and a tuple per write; see bench/RESULTS.md); for code run under
``fastinit.patch()``, open :func:`recording` around it (what ``patch`` routes is recorded:
``torch.nn.init`` calls and ``Tensor.normal_`` / ``uniform_``; writes made with other torch
operations are not seen there). Records live outside the model (a weak mapping): its
``state_dict``, parameters and checkpoints are unchanged.

**Law check.** :func:`check_laws` compares each tensor's values with the law recorded for
them and its shape with the references for it, and returns :class:`fastinit.findings.Finding`
records (:func:`law_table` gives the numbers behind them):

* ``"law"``: the values of each region a law wrote (a sample of at most
  :data:`SAMPLE_MAX` elements at fixed, evenly spaced positions: positions chosen without
  looking at the values, so the sample is i.i.d. under the law) must pass a one-sample
  Kolmogorov-Smirnov test at level :data:`KS_ALPHA` (critical distance from the
  Dvoretzky-Kiefer-Wolfowitz-Massart bound ``sqrt(ln(2/alpha) / (2n))``, valid at every
  ``n``; for 16-bit dtypes the law's CDF is taken at the rounding boundaries of each value,
  so rounding is not mistaken for a departure), have mean and standard deviation within
  :data:`Z_MAX` standard errors of the law's (``SE(mean) = sigma/sqrt(n)``,
  ``SE(std) = sqrt((mu4 - sigma^4) / (4 sigma^2 n))``, plus the largest shift rounding to
  the dtype can make), lie within the law's bounds (every element, not a sample), be
  finite; a constant region must hold exactly its constant. ``KS_ALPHA`` and ``Z_MAX`` are
  those of the test suite (``fastinit.cli.laws``): about 1.6e-6 false alarms per region.
* ``"fan"``: a drawn matrix or convolution weight whose std exceeds
  :data:`FAN_FACTOR` times He's ``sqrt(2 / fan)`` with the *smaller* of its two fans -
  wider than every standard scheme (LeCun, Xavier with ReLU gain, He on either fan), so
  each such layer multiplies the variance of a signal by more than 4 per layer.
  Embeddings are exempt (their input is one-hot: a row is the output).
* ``"siblings"``: tensors with the same role in different layers (names equal once the
  layer indices are replaced by ``*``, at least 3 of them) whose std differs from their
  median by more than :data:`SIBLING_FACTOR` (an order of magnitude: deliberate depth
  schemes - GPT-2's ``1/sqrt(2L)``, torchtitan's per-layer ``1/sqrt(2(l+1))`` - spread
  the std by at most ``sqrt(L)`` around the median, below 10 for L <= 100), or that are a
  constant where the others are drawn.
* ``"scale"``: a drawn matrix or embedding whose std is more than :data:`SCALE_FACTOR`
  times the median std of the model's drawn matrices and embeddings (at least 4 of them):
  a tensor an init loop missed (it kept a default) or gave a wrong std. The documented
  exception: models that put their embedding at std 1 on purpose (T5 ties it to a head
  rescaled by ``d**-0.5``; a model of torch's default layers with an ``nn.Embedding``,
  N(0, 1), next to ``Linear`` layers at ``1/sqrt(3 fan_in)``) are flagged, with the reason.
* ``"tie"``: a tensor recorded as tied to another that no longer shares its memory.
* ``"unmatched-rule"``: a recipe rule (a glob of a mapping recipe) that matched no
  parameter; ``materialize`` and ``apply_recipe`` warn about it and record it here.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import statistics
import sys
import itertools
import weakref
from typing import Iterator, Optional

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef

from fastinit import laws
from fastinit.findings import Finding
from fastinit.route import _PROVENANCE
from fastinit.kernels import contract as C

__all__ = ["Write", "provenance", "recording", "law_table", "check_laws", "SAMPLE_MAX",
           "KS_ALPHA", "Z_MAX", "FAN_FACTOR", "SIBLING_FACTOR", "SCALE_FACTOR"]

#: Level of the Kolmogorov-Smirnov test, and standard errors allowed for a moment: the
#: test suite's (``fastinit.cli.laws``; the tests check they agree).
KS_ALPHA = 1e-6
Z_MAX = 5.0
#: Most elements of one region the law check reads (evenly spaced positions).
SAMPLE_MAX = 1 << 16
#: A drawn weight wider than this many times He's std with its smaller fan is flagged.
FAN_FACTOR = 2.0
#: Siblings (the same tensor in other layers) further than this factor from their median.
SIBLING_FACTOR = 10.0
#: A matrix or embedding wider than this many times the model's median std.
SCALE_FACTOR = 10.0
#: Moments are compared only on regions of at least this many elements (the KS test,
#: the bounds and constants are checked at every size).
MIN_MOMENT_N = 50


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


# --- recording -----------------------------------------------------------------------------
#
# The hooks (fastinit.route._emit for every write fastinit routes, materialize's router for
# the torch in-place operations of the init code, the recipes for rules matching nothing)
# call note / note_op / note_unmatched; each appends one tuple to the open session, if any.
# Everything else - names, regions, which write overwrote which - is worked out at the end.


class _Session:
    __slots__ = ("raw", "unmatched", "replay", "storages")

    def __init__(self) -> None:
        #: the site of the recorded operation a replay runs (``fastinit.construction``)
        self.replay: Optional[tuple] = None
        #: (kind, geometry, payload, site): kind "fill" (payload: Fill params, key,
        #: stream), "torch" (TorchWrite: whole), "op" (torch op: name, value); a
        #: geometry's first item is the id of a storage (see :meth:`storage_id`)
        self.raw: list[tuple] = []
        self.unmatched: list[tuple[str, str]] = []
        #: storage address -> (weak reference to the storage written there last, its id)
        self.storages: dict[int, tuple] = {}

    def note(self, write) -> None:
        """``fastinit.route``'s hook: see :func:`note`."""
        note(write)

    def storage_id(self, t: torch.Tensor) -> Optional[int]:
        """The id of the storage of ``t`` in this session's records.

        A storage is known by its address, but memory freed inside the block (a
        temporary) is handed out again: another storage at an address gets another id,
        so the writes to the first are never matched to a tensor of the second. The weak
        reference held for each keeps the storage's identity unique while the records
        live (the memory it held is freed as usual)."""
        with _PLAIN():
            storage = _local(t).untyped_storage()
            address = storage.data_ptr()
            known = self.storages.get(address)
            if known is None or known[0].cdata != storage._cdata:
                known = self.storages[address] = (StorageWeakRef(storage), len(self.storages)
                                                   if known is None else _fresh_id())
        return known[1]

    def id_at(self, address: int) -> Optional[int]:
        """The id of the storage recorded last at ``address`` (None: none was)."""
        known = self.storages.get(address)
        return None if known is None else known[1]

    def matches(self, t: torch.Tensor) -> Optional[int]:
        """The id under which this session recorded writes to the storage of ``t`` (None:
        it recorded none: a storage at that address then was another one)."""
        with _PLAIN():
            storage = _local(t).untyped_storage()
            known = self.storages.get(storage.data_ptr())
            if known is None or known[0].expired() or known[0].cdata != storage._cdata:
                return None
        return known[1]


_IDS = itertools.count(1 << 40)


def _fresh_id() -> int:
    """An id no address-numbered storage of a session takes (see ``storage_id``)."""
    return next(_IDS)


def _local(t: torch.Tensor) -> torch.Tensor:
    return t._local_tensor if type(t).__name__ == "DTensor" else t


_SESSION = _PROVENANCE  # the open session (fastinit.route reads it at every write)

_FILL, _TORCH, _OP, _MADE, _MOVED = 0, 1, 2, 3, 4


def _geometry(t: torch.Tensor, session: Optional[_Session] = None):
    """(storage, byte offset, shape, stride, element size) of ``t``'s memory, or None.

    The storage is its address, or with ``session`` its id there (``storage_id``)."""
    t = _local(t)
    with _PLAIN():  # no torch-function mode (a device context) sees these queries
        if t.device.type == "meta" or t.numel() == 0 or t.layout != torch.strided:
            return None
        size = t.element_size()
        offset = t.storage_offset() * size
        # the storage's address: data_ptr() less the offset (untyped_storage() costs more)
        storage = t.data_ptr() - offset if session is None else session.storage_id(t)
        return (storage, offset, tuple(t.shape), t.stride(), size)


_PLAIN = torch._C.DisableTorchFunction


def note(write) -> None:
    """A write fastinit routes (``fastinit.route``): recorded if a session is open."""
    session = _SESSION.get()
    if session is None:
        return
    geometry = _geometry(write.target, session)
    if geometry is None:
        return
    if hasattr(write, "params"):
        payload = (write.params, write.key, write.stream)
        session.raw.append((_FILL, geometry, payload, session.replay or _site()))
    else:
        session.raw.append((_TORCH, geometry, write.whole, session.replay or _site()))


def note_op(name: str, args: tuple, router=None) -> None:
    """A torch in-place operation of init code on a tensor (``materialize``'s router,
    which knows where a tensor given other memory, ``param.data = x``, lived before)."""
    session = _SESSION.get()
    if session is None or not args or not isinstance(args[0], torch.Tensor):
        return
    target = args[0]
    value = None
    if name in ("__set__", "set_"):
        old = _old_memory(router, target)
        if old is not None:
            old = (session.id_at(old[0]), old[1])
        geometry = _geometry(target, session)
        if old is not None and geometry is not None:
            session.raw.append((_MOVED, geometry, old, session.replay or _site()))
        return
    if name == "__setitem__" and len(args) > 2:
        index, value = args[1], args[2]
        if isinstance(value, torch.Tensor) and value.numel() == 1 and value.device.type == "cpu":
            value = value.item()
        basic = index if isinstance(index, tuple) else (index,)
        if all(isinstance(i, (int, slice, type(None), type(Ellipsis))) for i in basic):
            target = target[index]
        else:
            name = "__setitem__[indexed]"
    geometry = _geometry(target, session)
    if geometry is None:
        return
    session.raw.append((_OP, geometry, (name, value), session.replay or _site()))


def _old_memory(router, t: torch.Tensor):
    """(storage, byte offset) where the router last saw named tensor ``t``."""
    named = getattr(router, "_named", None)
    if not named:
        return None
    for key, entries in named.items():
        for e in entries:
            if e[1] is t:
                return key, e[3][0] * t.element_size()
    return None


_FACTORY_CONSTANTS = {"zeros": 0.0, "zeros_like": 0.0, "ones": 1.0, "ones_like": 1.0}


def note_factory(func, args: tuple, kwargs: dict, results: list) -> None:
    """A replayed factory (``torch.zeros``, ``torch.arange``...) made tensors' values."""
    session = _SESSION.get()
    name = getattr(func, "__name__", "")
    if session is None or name.startswith("empty"):
        return
    if name in _FACTORY_CONSTANTS:
        payload = ("constant", {"value": _FACTORY_CONSTANTS[name]})
    elif name in ("full", "full_like") and len(args) > 1 and isinstance(args[1], (int, float)):
        payload = ("constant", {"value": float(args[1])})
    else:
        payload = (name, {})
    for t in results:
        geometry = _geometry(t, session)
        if geometry is not None:
            session.raw.append((_MADE, geometry, payload, session.replay or (None, None, None, 0)))


def site(fn=None) -> tuple:
    """The site of the init code calling the caller (``fastinit.construction`` records
    it with each write, for its replay); ``fn``: the init function called."""
    found = _site()
    if fn is not None:
        return (getattr(fn, "__name__", None),) + found[1:]
    return found


def replaying(op) -> None:
    """A replay runs recorded operation ``op`` (None: done): its writes are attributed
    to the site recorded with it."""
    session = _SESSION.get()
    if session is not None:
        session.replay = getattr(op, "site", None)


def note_unmatched(glob: str, recipe: str) -> None:
    """A recipe rule matched nothing (``fastinit.recipes``)."""
    session = _SESSION.get()
    if session is not None:
        session.unmatched.append((glob, recipe))


# The init code that asked: the innermost frame that is not fastinit's, not torch's own
# machinery (torch.nn.modules' reset_parameters is init code: kept), not transformers'
# init wrappers (transformers.initialization) and not contextlib's.
_SKIP, _FN, _RECIPE, _USER = 0, 1, 2, 3
_OWN_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep
#: the init functions' modules: fastinit.init and those it re-exports (fastinit.initscan's
#: _FRONT_END names the same modules)
_INIT_FILES = frozenset(_OWN_DIR + f for f in ("init.py", "arguments.py", "structured.py",
                                               "embeddings.py"))
_RECIPES_FILE = _OWN_DIR + "rules.py"  # Plan.run: a recipe's writes
_TORCH_DIR = os.path.dirname(os.path.abspath(torch.__file__)) + os.sep
_TORCH_MODULES = _TORCH_DIR + os.path.join("nn", "modules") + os.sep
_WRAPPERS = (os.sep + os.path.join("transformers", "initialization.py"),
             os.sep + "contextlib.py")
_CATEGORY: dict = {}


def _category(code) -> int:
    c = _CATEGORY.get(code)
    if c is None:
        f = code.co_filename
        if f.startswith(_OWN_DIR):
            if f in _INIT_FILES and not code.co_name.startswith("_"):
                c = _FN
            elif f == _RECIPES_FILE and code.co_name == "run" and "self" in code.co_varnames:
                c = _RECIPE
            else:
                c = _SKIP
        elif (f.startswith(_TORCH_DIR) and not f.startswith(_TORCH_MODULES)) or f.endswith(
                _WRAPPERS):
            c = _SKIP
        else:
            c = _USER
        _CATEGORY[code] = c
    return c


def _site() -> tuple:
    """(init function, module name or recipe, code, line) of the write being recorded."""
    frame = sys._getframe(2)
    fn = None
    while frame is not None:
        code = frame.f_code
        c = _category(code)
        if c == _USER:
            return fn, frame.f_globals.get("__name__"), code, frame.f_lineno
        if c == _FN:
            fn = code.co_name
            if fn == "fill_spec_":
                fn = frame.f_locals.get("fn", fn)
        elif c == _RECIPE:
            plan = frame.f_locals.get("self")
            name = getattr(plan, "recipe", None)
            if isinstance(name, str):
                return fn, f"recipe {name!r}", None, 0
        frame = frame.f_back
    return fn, None, None, 0


@contextlib.contextmanager
def session(module: Optional[nn.Module] = None) -> Iterator[_Session]:
    """Record the writes made inside the block; on success, attach them to ``module``
    (``materialize`` and ``apply_recipe``). Without a module, see :func:`recording`."""
    s = _Session()
    token = _SESSION.set(s)
    try:
        yield s
    finally:
        _SESSION.reset(token)
    if module is not None:
        _attach(module, s)


def recorded(fn):
    """``fn(model, ...)`` with the provenance of its writes attached to ``model`` when it
    returns (``apply_recipe``)."""
    import functools

    @functools.wraps(fn)
    def wrapper(model, *args, **kwargs):
        if not isinstance(model, nn.Module):
            return fn(model, *args, **kwargs)
        with session(model):
            return fn(model, *args, **kwargs)

    return wrapper


@contextlib.contextmanager
def recording() -> Iterator[None]:
    """Record the provenance of the writes fastinit routes inside the block: for models
    built under ``fastinit.patch()``. After the block, :func:`provenance` of a model built
    inside it returns its writes (matched by the storage they went to: a tensor whose
    storage was made after the block, or freed in it, has none of them).

    Examples:
        >>> with fastinit.patch(), fastinit.provenance.recording():
        ...     model = Net()
        >>> fastinit.provenance(model)["fc.weight"][0].law
        'uniform_'
    """
    with session() as s:
        yield
    _LOGS[:] = [old for old in _LOGS if _alive(old)]
    if _alive(s):
        _LOGS.append(s)
    _CLOSED[0] += 1


def _alive(s: _Session) -> bool:
    """Whether a storage session ``s`` wrote to still exists."""
    return any(not ref.expired() for ref, _ in s.storages.values())


#: sessions of closed recording() blocks whose storages are not all freed, and how many
#: blocks have closed
_LOGS: list[_Session] = []
_CLOSED = [0]


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


class _Record:
    def __init__(self) -> None:
        self.tensors: dict[str, _Tensor] = {}
        self.unmatched: list[tuple[str, str]] = []
        self.ties: dict[str, str] = {}
        #: raw records of the sessions not resolved yet
        self.pending: list[_Session] = []
        self.generation = 0  # sessions attached so far


_RECORDS: "weakref.WeakKeyDictionary[nn.Module, _Record]" = weakref.WeakKeyDictionary()


def _named(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    out = list(module.named_parameters(remove_duplicate=False))
    out += [(n, b) for n, b in module.named_buffers(remove_duplicate=False) if b is not None]
    return out


def _ties(module: nn.Module, named) -> dict[str, str]:
    """alias name -> source name, for tensors that are one object under several names."""
    first: dict[int, str] = {}
    ties: dict[str, str] = {}
    declared = getattr(module, "all_tied_weights_keys", None)
    declared = dict(declared) if isinstance(declared, dict) else {}
    for name, t in named:
        if id(t) in first:
            ties[name] = first[id(t)]
        else:
            first[id(t)] = name
    for target, source in declared.items():  # transformers' own direction of the tie
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
        (old_storage, old_offset), shift = payload, None
        shift = g[1] - old_offset
        for k2, g2, p2, s2 in list(out):
            if g2[0] == old_storage and k2 != _MOVED:
                out.append((k2, (g[0], g2[1] + shift) + g2[2:], p2, s2))
        out.append((_OP, g, ("copy_", None), site))
    return out


def _extent(g) -> tuple[int, int]:
    """[first byte, one past the last byte) a geometry can touch."""
    _, off, shape, stride, size = g
    lo = hi = off // size
    for n, s in zip(shape, stride):
        if s >= 0:
            hi += (n - 1) * s
        else:
            lo += (n - 1) * s
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
    kernel = None
    if kind == _FILL:
        params, key, stream = payload
        law, args = _law(params)
        seed = None if params.dist == C.CONSTANT else key
        stream = None if params.dist == C.CONSTANT else stream
        kernel = (params, t.dtype) if g[4] == tg[4] else None
        w = Write(law, args, caller, location, seed, stream, region, False,
                  fn if fn and fn != law else None)
    elif kind == _TORCH:
        law = fn if fn in ("orthogonal_", "sparse_", "eye_", "dirac_") else (
            "constant" if fn in ("constant_", "zeros_", "ones_") else (fn or "torch"))
        w = Write(law, {}, caller, location, None, None, region, False,
                  fn if fn and fn != law else None)
    elif kind == _MADE:
        law, args = payload
        w = Write(law, dict(args), caller, location, None, None, region, False)
    else:
        name, value = payload
        modifies = name.endswith("_") and name not in _REPLACING
        if name.startswith("__setitem__"):
            if name != "__setitem__":
                known = False
                region = "indexed elements"
            law = "constant" if isinstance(value, (int, float, bool)) else "copy"
            args = {"value": float(value)} if law == "constant" else {}
        else:
            law = "copy" if name == "copy_" else name
            args = {}
            if name in _PARTIAL_OPS:
                known, region, modifies = False, "indexed elements", False
        w = Write(law, args, caller, location, None, None, region, False, None, modifies)
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
    if size != tsize or not _dense(tshape, tstride) or not _dense(shape, stride):
        if lo <= tlo and thi <= hi and _dense(shape, stride) and _dense(tshape, tstride):
            return None, None, True
        return (0, 0), "part", False
    if lo <= tlo and thi <= hi:
        return None, None, True
    a, b = max(lo, tlo) // size - tlo // size, min(hi, thi) // size - tlo // size
    if a >= b:
        return "outside", None, False
    row = math.prod(tshape[1:]) if len(tshape) >= 2 else 0
    contiguous = tuple(tstride) == _contiguous_strides(tshape)
    if contiguous and row and a % row == 0 and b % row == 0:
        name = f"rows {a // row}:{b // row}"
    else:
        name = f"elements {a}:{b}" if contiguous else f"memory elements {a}:{b}"
    return (a, b), name, True


def _contiguous_strides(shape) -> tuple:
    out, acc = [], 1
    for n in reversed(shape):
        out.append(acc)
        acc *= max(n, 1)
    return tuple(reversed(out))


def _law(params) -> tuple[str, dict]:
    if params.dist == C.CONSTANT:
        return "constant", {"value": params.shift}
    if params.dist == C.NORMAL:
        return "normal_", {"mean": params.shift, "std": params.scale}
    if params.dist == C.UNIFORM:
        return "uniform_", {"a": params.shift, "b": params.shift + params.scale}
    return "trunc_normal_", {"mean": params.shift, "std": params.scale, "a": params.lo,
                             "b": params.hi}


def _attach(module: nn.Module, s: _Session) -> None:
    """Keep session ``s``'s raw records for ``module``, resolved against the model's
    tensors when :func:`provenance` is first asked (names, regions and overwrites cost
    nothing until then; a tensor given other memory since - loaded weights - has none of
    the writes)."""
    record = _RECORDS.get(module)
    if record is None:
        record = _RECORDS[module] = _Record()
    record.pending.append(s)
    record.unmatched.extend(s.unmatched)
    record.generation += 1


def _settle(record: "_Record", model: nn.Module) -> None:
    """Resolve the sessions kept for a model, in order."""
    if not record.pending:
        return
    _merge(record, record.pending, model)
    record.pending.clear()


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
        _settle(record, model)
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
            for j, (lo, hi, k) in enumerate(segments):
                if lo < b and a < hi:
                    modified[k] = True
            continue
        kept = []
        for lo, hi, k in segments:
            if hi <= a or b <= lo:
                kept.append((lo, hi, k))
                continue
            if lo < a:
                kept.append((lo, a, k))
            if b < hi:
                kept.append((b, hi, k))
        kept.append((a, b, i))
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


# --- the law check -------------------------------------------------------------------------


def _phi(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0)) if math.isfinite(x) else (0.0 if x < 0 else 1.0)


def _pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2 * math.pi) if math.isfinite(x) else 0.0


def _moments(params) -> Optional[tuple[float, float, float]]:
    """(mean, variance, 4th central moment) of a kernel law (None: constant)."""
    if params.dist == C.NORMAL:
        s = params.scale
        return params.shift, s * s, 3 * s ** 4
    if params.dist == C.UNIFORM:
        w = params.scale
        return params.shift + w / 2, w * w / 12, w ** 4 / 80
    if params.dist == C.TRUNC_NORMAL:
        mu, s = params.shift, params.scale
        alpha, beta = (params.lo - mu) / s, (params.hi - mu) / s
        z = _phi(beta) - _phi(alpha)
        # raw moments of the standard normal truncated to [alpha, beta]:
        # m_k = (k - 1) m_{k-2} + (alpha^(k-1) phi(alpha) - beta^(k-1) phi(beta)) / Z
        m = [1.0]
        prev = 0.0
        for k in range(1, 5):
            ta = alpha ** (k - 1) * _pdf(alpha) if math.isfinite(alpha) else 0.0
            tb = beta ** (k - 1) * _pdf(beta) if math.isfinite(beta) else 0.0
            mk = (k - 1) * (m[k - 2] if k >= 2 else prev) + (ta - tb) / z
            m.append(mk)
        m1, m2, m3, m4 = m[1:]
        c2 = m2 - m1 * m1
        c4 = m4 - 4 * m1 * m3 + 6 * m1 * m1 * m2 - 3 * m1 ** 4
        return mu + s * m1, s * s * c2, s ** 4 * c4
    return None


def _cdf(params, x: torch.Tensor) -> torch.Tensor:
    if params.dist == C.NORMAL:
        return torch.special.ndtr((x - params.shift) / params.scale)
    if params.dist == C.UNIFORM:
        return ((x - params.shift) / params.scale).clamp(0.0, 1.0)
    mu, s = params.shift, params.scale
    pa, pb = _phi((params.lo - mu) / s), _phi((params.hi - mu) / s)
    return ((torch.special.ndtr((x - mu) / s) - pa) / (pb - pa)).clamp(0.0, 1.0)


def _law_std(params) -> Optional[float]:
    if params.dist == C.CONSTANT:
        return 0.0
    m = _moments(params)
    return math.sqrt(m[1]) if m else None


_INT = {torch.float16: torch.int16, torch.bfloat16: torch.int16}


def _rounding_cells(x: torch.Tensor, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    """[low, high] of the real numbers that round to each value of ``x`` (a 16-bit
    dtype's values as float64): half-way to the neighbouring values."""
    v = x.to(dtype)
    bits = v.view(_INT[dtype])
    up = torch.where(v >= 0, bits + 1, bits - 1)
    down = torch.where(v > 0, bits - 1, bits + 1)
    zero = v == 0
    tiny = torch.tensor(1, dtype=_INT[dtype]).view(dtype).to(torch.float64)
    hi = torch.where(zero, tiny, up.view(dtype).to(torch.float64))
    lo = torch.where(zero, -tiny, down.view(dtype).to(torch.float64))
    return (x + lo) / 2, (x + hi) / 2


def _values(t: torch.Tensor) -> torch.Tensor:
    """``t``'s elements in memory order (a dense tensor), 1-D."""
    t = t.detach()
    if type(t).__name__ == "DTensor":
        t = t.to_local()
    if t.is_contiguous():
        return t.reshape(-1)
    return t.as_strided((t.numel(),), (1,), t.storage_offset() - _lowest(t))


def _lowest(t: torch.Tensor) -> int:
    return sum((n - 1) * s for n, s in zip(t.shape, t.stride()) if s < 0)


def _sample(flat: torch.Tensor, segments) -> tuple[torch.Tensor, int]:
    total = sum(hi - lo for lo, hi in segments)
    step = max(1, -(-total // SAMPLE_MAX))
    parts = [flat[lo:hi:step] for lo, hi in segments]
    x = torch.cat(parts) if len(parts) > 1 else parts[0]
    return x.to(device="cpu", dtype=torch.float64), total


def _check_region(name: str, t: torch.Tensor, w: Write, params, dtype, segments
                  ) -> tuple[list[Finding], dict]:
    """The law check of one region of ``t`` (see the module documentation)."""
    flat = _values(t)
    x, total = _sample(flat, segments)
    stats = {"n": int(x.numel())}
    if x.numel() == 0:
        return [], stats
    where = f" ({w.caller} at {w.location})" if w.location else (
        f" ({w.caller})" if w.caller else "")
    law = w.describe()
    out = []
    finite = math.isfinite(float(x.sum()))  # NaN or inf anywhere makes the sum so
    if not finite:
        return [Finding(name, "law", f"holds NaN or inf where {law}{where} wrote finite "
                        "values: written after the init, or garbage")], stats
    if params.dist == C.CONSTANT:
        wrong = int((x != params.shift).sum())
        if wrong:
            out.append(Finding(name, "law", f"{wrong} of {x.numel()} sampled elements "
                               f"differ from the constant {_fmt(params.shift)} that "
                               f"{law}{where} wrote", observed=float(x.std()) if
                               x.numel() > 1 else None, expected=0.0))
        return out, stats
    if params.clamp:  # every element within the law's bounds, not only the sample
        bounds = [torch.aminmax(flat[a:b]) for a, b in segments]
        lo = min(float(b.min) for b in bounds)
        hi = max(float(b.max) for b in bounds)
        if lo < params.lo or hi > params.hi:
            out.append(Finding(name, "law", f"values in [{lo:.6g}, {hi:.6g}] outside the "
                               f"bounds [{params.lo:.6g}, {params.hi:.6g}] of {law}{where}"))
    mean, var, mu4 = _moments(params)
    sigma = math.sqrt(var)
    n = x.numel()
    if dtype in _INT:
        low, high = _rounding_cells(x, dtype)
        half = (high - low) / 2
        bias = float(half.abs().max())  # rounding moves a value by at most half a cell
        rms = float(half.pow(2).mean().sqrt())
    else:
        low = high = x
        bias = rms = 0.0
    s, m = (float(v) for v in torch.std_mean(x, correction=0)) if n > 1 else (0.0, float(x[0]))
    stats.update(mean=m, std=s)
    if n >= MIN_MOMENT_N and sigma > 0:
        se_m = sigma / math.sqrt(n)
        se_s = math.sqrt(max(mu4 - var * var, 0.0) / (4 * var * n))
        if abs(m - mean) > Z_MAX * se_m + bias:
            out.append(Finding(name, "law", f"mean {m:.4g} is {abs(m - mean) / se_m:.1f} "
                               f"standard errors from {mean:.4g}, the mean of {law}{where} "
                               f"(> {Z_MAX:g}): the values were changed after it",
                               observed=m, expected=mean))
        if abs(s - sigma) > Z_MAX * se_s + rms:
            out.append(Finding(name, "law", f"std {s:.4g} is {abs(s - sigma) / se_s:.1f} "
                               f"standard errors from {sigma:.4g}, the std of {law}{where} "
                               f"(> {Z_MAX:g}): the values were changed after it",
                               observed=s, expected=sigma))
    if low is x:
        xs = lows = highs = torch.sort(x).values
    else:
        xs, order = torch.sort(x)
        lows, highs = low[order], high[order]
    fn_hi = torch.arange(1, n + 1, dtype=torch.float64) / n
    fn_lo = fn_hi - 1.0 / n
    cdf_hi = _cdf(params, highs)
    cdf_lo = cdf_hi if lows is highs else _cdf(params, lows)
    if params.clamp:  # the clamped values carry the mass beyond the bounds
        cdf_hi = torch.where(xs >= params.hi, torch.ones_like(cdf_hi), cdf_hi)
        cdf_lo = torch.where(xs <= params.lo, torch.zeros_like(cdf_lo), cdf_lo)
    d = max(float((fn_hi - cdf_hi).max()), float((cdf_lo - fn_lo).max()), 0.0)
    crit = math.sqrt(math.log(2 / KS_ALPHA) / (2 * n))
    stats["ks"] = d
    if d > crit:
        out.append(Finding(name, "law", f"the values do not follow {law}{where}: "
                           f"Kolmogorov-Smirnov distance {d:.3g} > {crit:.3g} (level "
                           f"{KS_ALPHA:g}, {n} of {total} elements)", observed=d,
                           expected=crit))
    return out, stats


def _fans(shape: tuple) -> tuple[Optional[int], Optional[int]]:
    """torch's fans of a tensor of ``shape`` (:func:`fastinit.laws.fans`), or None, None
    below two dimensions."""
    if len(shape) < 2:
        return None, None
    return laws.fans(torch.empty(shape, device="meta"))


def _kind(model: nn.Module, name: str, shape: tuple) -> str:
    owner_name, _, _ = name.rpartition(".")
    try:
        owner = model.get_submodule(owner_name) if owner_name else model
    except AttributeError:
        owner = None
    if owner is not None and (isinstance(owner, nn.Embedding)
                              or "Embedding" in type(owner).__name__) and len(shape) == 2:
        return "embedding"
    return {0: "scalar", 1: "vector", 2: "matrix"}.get(len(shape), "conv")


def _shape_refs(kind: str, fan_in, fan_out) -> dict:
    if fan_in is None or not fan_in or not fan_out:
        return {}
    refs = {"lecun": laws.variance_scaling_std(fan_in, fan_out, 1.0, "fan_in"),
            "xavier": laws.xavier_std(fan_in, fan_out),
            "he": laws.kaiming_std(fan_in, fan_out, laws.calculate_gain("relu"))}
    if kind == "embedding":
        refs["unit"] = 1.0
    return refs


_ANALYSED: "weakref.WeakKeyDictionary[nn.Module, tuple]" = weakref.WeakKeyDictionary()


def _analyse(model: nn.Module):
    """(law table, findings) of ``model``; kept until a tensor changes (its memory, or
    autograd's version counter, which every in-place write moves)."""
    record = _record_of(model)
    named = _named(model)
    key = (record.generation, _CLOSED[0], tuple(
        (id(t), t._version, t.data_ptr() if t.device.type != "meta" else 0) for _, t in named))
    cached = _ANALYSED.get(model)
    if cached is not None and cached[0] == key:
        return cached[1]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many small reductions: threads only add their hand-offs
    try:
        result = _analyse_now(model, record, dict(named))
    finally:
        torch.set_num_threads(threads)
    _ANALYSED[model] = (key, result)
    return result


def _analyse_now(model: nn.Module, record: "_Record", tensors: dict):
    rows, findings = [], []
    for name, tensor in record.tensors.items():
        t = tensors.get(name)
        if t is None or name in record.ties:
            continue
        over, segments, known = _effective(tensor)
        owners = sorted({k for _, _, k in segments})
        last = tensor.entries[owners[-1]].write if owners else None
        shape = tuple(t.shape)
        fan_in, fan_out = _fans(shape)
        kind = _kind(model, name, shape)
        row = {"name": name, "shape": list(shape), "dtype": str(t.dtype).replace("torch.", ""),
               "kind": kind, "law": None, "writes": len(tensor.entries),
               "observed_mean": None, "observed_std": None, "expected_std_law": None,
               "expected_std_shape": _shape_refs(kind, fan_in, fan_out),
               "fan_in": fan_in, "fan_out": fan_out, "caller": None, "location": None,
               "checked": False}
        if last is not None:
            # the law of the tensor: the one owning most of its elements
            sizes = {}
            for lo, hi, k in segments:
                sizes[k] = sizes.get(k, 0) + hi - lo
            main = tensor.entries[max(sizes, key=sizes.get)]
            row.update(law=main.write.law, caller=main.write.caller,
                       location=main.write.location)
            if main.kernel is not None and known:
                row["expected_std_law"] = _law_std(main.kernel[0])
        if t.dtype.is_floating_point and t.numel() and t.device.type != "meta":
            v = t.detach().to_local() if type(t).__name__ == "DTensor" else t.detach()
            v = v.reshape(-1)
            step = max(1, -(-v.numel() // SAMPLE_MAX))
            v = v[::step].to(device="cpu", dtype=torch.float64)
            row["observed_mean"] = float(v.mean())
            row["observed_std"] = float(v.std(unbiased=False)) if v.numel() > 1 else 0.0
        if known and t.dtype.is_floating_point and t.device.type != "meta" and (
                shape == tensor.shape and t.dtype == tensor.dtype):
            checked = True
            for k in owners:
                e = tensor.entries[k]
                if e.kernel is None:
                    checked = False
                    continue
                segs = [(lo, hi) for lo, hi, j in segments if j == k]
                found, _ = _check_region(name, t, e.write, e.kernel[0], e.kernel[1], segs)
                findings += found
            row["checked"] = checked and bool(owners)
        elif known and shape != tensor.shape:
            findings.append(Finding(name, "law", f"shape {shape} is not the shape "
                                    f"{tensor.shape} its recorded writes were made to: the "
                                    "tensor was replaced after its init"))
        rows.append(row)
    findings += _shape_findings(rows)
    for alias, source in record.ties.items():
        a, b = tensors.get(alias), tensors.get(source)
        if a is not None and b is not None and a is not b and (
                _geometry(a) is None or _geometry(a) != _geometry(b)):
            findings.append(Finding(alias, "tie", f"recorded as tied to {source}, but it no "
                                    "longer shares its memory: the tie was broken after the "
                                    "init"))
    for glob, recipe in dict.fromkeys(record.unmatched):
        findings.append(Finding(glob, "unmatched-rule", f"rule {glob!r} of recipe {recipe!r} "
                                "matched no parameter: the init it names was not applied"))
    return rows, findings


def _drawn(row: dict) -> bool:
    return (row["law"] not in (None, "constant", "copy") and row["observed_std"] is not None
            and row["observed_std"] > 0)


_INDEX = re.compile(r"(?<![^.])\d+(?=\.)")  # a layer index: a whole dotted component


def _shape_findings(rows: list[dict]) -> list[Finding]:
    out = []
    for row in rows:  # fan: wider than every standard scheme
        refs = row["expected_std_shape"]
        if row["kind"] in ("matrix", "conv") and _drawn(row) and refs:
            widest = laws.kaiming_std(row["fan_in"], row["fan_out"], laws.calculate_gain("relu"),
                                      "fan_in" if row["fan_in"] <= row["fan_out"] else "fan_out")
            if row["observed_std"] > FAN_FACTOR * widest:
                out.append(Finding(
                    row["name"], "fan", f"std {row['observed_std']:.4g} is "
                    f"{row['observed_std'] / widest:.1f}x He's sqrt(2/fan) with its smaller "
                    f"fan ({min(row['fan_in'], row['fan_out'])}), wider than any standard "
                    f"scheme (> {FAN_FACTOR:g}x): every pass through it multiplies the "
                    "signal's variance", observed=row["observed_std"],
                    expected=refs.get("he")))
    groups: dict[str, list[dict]] = {}
    for row in rows:
        key = _INDEX.sub("*", row["name"])
        if key != row["name"] and row["observed_std"] is not None:
            groups.setdefault(key, []).append(row)
    for key, members in groups.items():
        drawn = [r for r in members if _drawn(r)]
        if len(members) < 3 or not drawn:
            continue
        median = statistics.median(r["observed_std"] for r in drawn)
        for r in members:
            std = r["observed_std"]
            if r["law"] == "constant" and len(drawn) > len(members) / 2:
                out.append(Finding(r["name"], "siblings", f"a constant where most of its "
                                   f"siblings ({key}) are drawn (median std {median:.4g})",
                                   observed=std, expected=median))
            elif _drawn(r) and (std > SIBLING_FACTOR * median or std * SIBLING_FACTOR < median):
                out.append(Finding(r["name"], "siblings", f"std {std:.4g} is "
                                   f"{max(std / median, median / std):.1f}x from the median "
                                   f"{median:.4g} of its siblings {key} "
                                   f"(> {SIBLING_FACTOR:g}x)", observed=std, expected=median))
    wide = [r for r in rows if r["kind"] in ("matrix", "embedding") and _drawn(r)]
    if len(wide) >= 4:
        median = statistics.median(r["observed_std"] for r in wide)
        for r in wide:
            if r["observed_std"] > SCALE_FACTOR * median:
                what = (" (an embedding at N(0, 1) is torch's nn.Embedding default: the "
                        "model's init did not reach it, or set it so)"
                        if r["kind"] == "embedding" else "")
                out.append(Finding(r["name"], "scale", f"std {r['observed_std']:.4g} is "
                                   f"{r['observed_std'] / median:.0f}x the median std "
                                   f"{median:.4g} of the model's matrices "
                                   f"(> {SCALE_FACTOR:g}x){what}; its law: {r['law']} from "
                                   f"{r['caller']}", observed=r["observed_std"],
                                   expected=median))
    return out


def law_table(model: nn.Module) -> list[dict]:
    """Per parameter and buffer of ``model`` (tied names once, under their source): its
    name, shape, dtype, kind (``"matrix"``, ``"conv"``, ``"embedding"``, ``"vector"``,
    ``"scalar"``), the law of its last effective write (the one owning most of its
    elements; None if nothing was recorded), the init code behind it (``caller``,
    ``location``), the observed mean and std, the std of the recorded law
    (``expected_std_law``), the references for its shape (``expected_std_shape``:
    ``lecun`` 1/sqrt(fan_in), ``xavier`` sqrt(2/(fan_in+fan_out)), ``he`` sqrt(2/fan_in);
    ``unit`` 1 for embeddings), ``fan_in`` / ``fan_out`` (torch's convention), and whether
    its values were checked against the law (``checked``).

    Raises:
        TypeError, ValueError: as :func:`provenance`.
    """
    return [dict(r) for r in _analyse(model)[0]]


def check_laws(model: nn.Module) -> list[Finding]:
    """Check ``model``'s values against their recorded laws and its shapes against the
    references (see the module documentation for every check and its threshold).

    Returns:
        the findings (empty when nothing is flagged): checks ``"law"``, ``"fan"``,
        ``"siblings"``, ``"scale"``, ``"tie"``, ``"unmatched-rule"``.

    Raises:
        TypeError, ValueError: as :func:`provenance`.

    Examples:
        >>> fastinit.materialize(model, "cpu", seed=0)
        >>> for f in fastinit.provenance.check_laws(model):
        ...     print(f.name, f.check, f.message)
    """
    return list(_analyse(model)[1])


class _CallableModule(type(sys)):
    """``fastinit.provenance(model)`` is :func:`provenance`; the module's other names
    (``fastinit.provenance.check_laws``, ``.recording``...) stay reachable on it."""

    def __call__(self, model: nn.Module) -> dict[str, list[Write]]:
        return provenance(model)


sys.modules[__name__].__class__ = _CallableModule
