"""Provenance recording: the sessions, the hooks that note every write, and its site.

While a session is open (``materialize``, ``apply_recipe``, a
``fastinit.provenance.recording()`` block) the hooks append one raw tuple per write:
:func:`note` for every write fastinit routes (``fastinit.route`` calls it through the
session it reads at each write), :func:`note_op` for the torch in-place operations of init
code (``materialize``'s router), :func:`note_factory` for replayed factories,
:func:`note_unmatched` for recipe rules that match nothing. A write is kept with the
geometry of the memory it went to (the storage's identity, not its address: memory freed
and handed out again is another storage) and its site (:func:`site`: the init function
called and the innermost frame of init code outside fastinit). Names, regions and
overwrites are worked out only when asked (:mod:`fastinit.records`), so the per-write cost
is a frame walk and a tuple. A session that ends attaches its raw records to its model.
Re-exported by :mod:`fastinit.provenance`.
"""
from __future__ import annotations

import contextlib
import itertools
import os
import sys
import weakref
from typing import Iterator, Optional

import torch
from torch import nn
from torch.multiprocessing.reductions import StorageWeakRef

from fastinit.distributed import local_tensor as _local
from fastinit.route import _PROVENANCE

__all__ = ["note", "note_op", "note_factory", "note_unmatched", "site", "replaying",
           "session", "recorded", "recording"]


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

    def note_op(self, name: str, args: tuple, router=None) -> None:
        """A router's hook for the torch operations of init code: see :func:`note_op`."""
        note_op(name, args, router)

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
                                                   if known is None else next(_IDS))
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


#: ids no address-numbered storage of a session takes (see ``storage_id``)
_IDS = itertools.count(1 << 40)


_SESSION = _PROVENANCE  # the open session (fastinit.route reads it at every write)

_FILL, _TORCH, _OP, _MADE, _MOVED = 0, 1, 2, 3, 4


def _geometry(t: torch.Tensor, session: Optional[_Session] = None):
    """(storage, byte offset, shape, stride, element size) of ``t``'s memory, or None.

    The storage is its address, or with ``session`` its id there (``storage_id``)."""
    t = _local(t)
    with _PLAIN():  # no torch-function mode (a device context) sees these queries
        if t.is_meta or t.numel() == 0 or t.layout != torch.strided:
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
    for key, entries in (getattr(router, "_named", None) or {}).items():
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
    return found if fn is None else (getattr(fn, "__name__", None),) + found[1:]


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


# --- what is kept per model until it is asked for ------------------------------------------------


class _Record:
    """What is kept for one model: the raw records of its sessions until they are asked
    for (``pending``), then their writes per tensor (``fastinit.records._Tensor``, resolved
    there)."""

    def __init__(self) -> None:
        self.tensors: dict[str, object] = {}  # name -> fastinit.records._Tensor
        self.unmatched: list[tuple[str, str]] = []
        self.ties: dict[str, str] = {}
        #: raw records of the sessions not resolved yet
        self.pending: list[_Session] = []
        self.generation = 0  # sessions attached so far


_RECORDS: "weakref.WeakKeyDictionary[nn.Module, _Record]" = weakref.WeakKeyDictionary()


def _attach(module: nn.Module, s: _Session) -> None:
    """Keep session ``s``'s raw records for ``module``, resolved against the model's
    tensors when :func:`provenance` is first asked (names, regions and overwrites cost
    nothing until then; a tensor given other memory since - loaded weights - has none of
    the writes)."""
    record = _RECORDS.setdefault(module, _Record())
    record.pending.append(s)
    record.unmatched.extend(s.unmatched)
    record.generation += 1
