"""Recording construction: ``empty_init()``, and the replay ``materialize`` runs.

Inside ``with fastinit.empty_init():`` a model is built on the meta device (no memory, no
work), and what construction does to the tensors it makes is recorded as a *program*:
the factory calls that make tensors (``torch.zeros``, ``torch.tensor(2.6592)``,
``torch.arange``...), the operations that compute from them, the writes
(``w.diagonal().fill_(1)``, ``copy_``), the init calls (``torch.nn.init.*`` and fastinit's
own functions), clones (``copy.deepcopy`` of layers), and writes to real tensors the block
had not seen (legacy ``nn.Parameter(torch.Tensor(n))``). ``materialize`` replays the part
of the program the model's parameters and buffers depend on, on the real device: every
value is what eager construction computed, in eager order; random draws come from
fastinit's name streams (init functions, in-place ``normal_``/``uniform_`` of parameters)
or from generators seeded from the materialize seed (``torch.rand`` and the like).

Each recorded operation keeps its tensor arguments as :class:`Ref` s (storage, offset,
shape, strides, dtype at the time of the call), so the replay is exact even when a tensor
is rebound later (``param.data = x``). Operations that touch no tensor made in the block
are not recorded; reading a meta tensor's values during construction (``.item()``,
``.tolist()``) evaluates it on the CPU from the program, and the value read is recorded:
the replay checks that it computes the same values (construction went on with them), and
stops with an error where it does not - values computed from random draws, which
materialize draws afresh.
"""
from __future__ import annotations

import contextlib
import functools
import inspect
import weakref
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Callable, Iterator

import torch
from torch import nn
from torch.nn.modules import module as module_mod
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten, tree_map

from fastinit import provenance, route
from fastinit.coverage import EMPTY as _EMPTY, tensors_in as _tensors
from fastinit.intercept import (QUERIES, SEEDINGS, fastinit_function, opaque,
                                patched_init_functions, torch_init_name)
from fastinit.streams import _splitmix64, call_key

try:
    from torch.utils._device import _device_constructors

    _FACTORIES = frozenset(_device_constructors())
except ImportError:  # pragma: no cover - older torch
    _FACTORIES = frozenset()

#: Operations that hand out values as Python objects: a meta tensor is evaluated first.
_VALUE_READS = frozenset({
    "item", "tolist", "__bool__", "__int__", "__float__", "__index__", "__complex__", "numpy",
    "__array__", "__repr__", "__str__", "__format__", "equal", "allclose",
})
#: Value reads that only show a tensor: what construction computes does not depend on them.
_PRINTS = frozenset({"__repr__", "__str__", "__format__"})
#: Operations that neither compute nor write values (``__set__``: ``param.data = x``
#: rebinds; the final tensors are taken as they are at the end of the block).
_NO_VALUES = QUERIES | {"data_ptr", "untyped_storage", "__set__"}


@dataclass(frozen=True)
class Ref:
    """A tensor argument of a recorded operation: which storage, and which view of it (a
    pytree leaf, so that argument structures map over it whole)."""

    storage: int
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype


@dataclass
class Op:
    """One recorded call. ``outs`` aligns with the tensors of its result (None for those
    that are not plain tensors)."""

    func: Callable
    args: tuple
    kwargs: dict
    reads: tuple[int, ...]
    writes: tuple[int, ...]
    outs: tuple[Ref | None, ...] = ()
    factory: bool = False
    #: a value construction read (``.item()``...): the values the tensor ``args[0]`` held
    #: then (on the CPU); a replay that computes other values stops with an error
    expect: torch.Tensor | None = None
    #: the init code that made this write (``fastinit.provenance``): where a replay's
    #: writes are attributed; None for operations that do not write their argument
    site: tuple | None = None
    #: whether the replay runs it without fastinit's modes (``Replay._bare``; None: not
    #: decided yet)
    bare: bool | None = field(default=None, repr=False, compare=False)
    #: whether its arguments are flat and hold no :class:`Ref` (the replay passes them
    #: as they are; None: not decided yet)
    plain: bool | None = field(default=None, repr=False, compare=False)


@dataclass
class Storage:
    """A storage the program knows: its size, whether it starts without values, and whether
    it is a real tensor first seen being written (legacy ``torch.Tensor(n)``)."""

    nbytes: int
    empty: bool
    legacy: bool
    #: the storage itself (not a tensor on it: ``t.data = x`` moves a tensor to another
    #: storage), so that it - and its id - stays alive while recorded
    keepalive: object


@dataclass
class Program:
    """What construction did to the tensors it made (see the module docstring)."""

    ops: list[Op] = field(default_factory=list)
    storages: dict[int, Storage] = field(default_factory=dict)
    _seeds: dict = field(default_factory=dict, repr=False)  # key -> (len(ops), seeds)
    #: how many of ``storages`` are legacy (``Replay.run`` binds those before an operation)
    legacy: int = 0

    def op_seeds(self, key: int) -> dict[int, int]:
        """``id(op)`` -> the seed of torch's generators for that operation in a replay
        with ``key`` (from the key and the operation's place; see ``Replay.run``)."""
        cached = self._seeds.get(key)
        if cached is None or cached[0] != len(self.ops):
            cached = self._seeds[key] = (len(self.ops), {
                id(op): _splitmix64(key ^ _splitmix64(i)) for i, op in enumerate(self.ops)})
        return cached[1]

    def ref(self, t: torch.Tensor, storage: int | None = None) -> Ref:
        return Ref(sid(t) if storage is None else storage, t.storage_offset(), tuple(t.shape),
                   t.stride(), t.dtype)

    def knows(self, t: torch.Tensor) -> bool:
        return _plain(t) and sid(t) in self.storages

    def track(self, t: torch.Tensor, *, empty: bool, legacy: bool = False) -> int:
        storage = t.untyped_storage()
        s = storage._cdata
        if s not in self.storages:
            self.storages[s] = Storage(storage.nbytes(), empty, legacy, storage)
            self.legacy += legacy
        return s

    def needed(self, targets: set[int]) -> list[Op]:
        """The operations the values of storages ``targets`` depend on, in program order."""
        live = set(targets)
        keep = []
        for op in reversed(self.ops):
            # what construction computed after reading a value may depend on it: every
            # read value (``expect``) is recomputed and checked
            if op.expect is not None or not live.isdisjoint(op.writes):
                keep.append(op)
                live.update(op.reads)
        keep.reverse()
        return keep


def fname_of(func) -> str:
    return getattr(func, "__name__", "")


def _read_value(t: torch.Tensor) -> None:
    """Stands for a value read in a program (``Op.expect`` holds the value read)."""


def sid(t: torch.Tensor) -> int:
    """The identity of a tensor's storage (its address in memory, meta storages included)."""
    return t.untyped_storage()._cdata


def _plain(t: object) -> bool:
    tp = type(t)
    if tp is torch.Tensor or tp is nn.Parameter:
        return t.layout == torch.strided and not t.is_nested
    return (isinstance(t, torch.Tensor) and not hasattr(t, "_local_tensor")
            and t.layout == torch.strided and not t.is_nested)


def _writes_first(fname: str, args: tuple) -> bool:
    """Whether the call writes its first argument in place."""
    return bool(args) and _plain(args[0]) and (
        (fname.endswith("_") and not fname.startswith("__")) or fname == "__setitem__")


# --- recording ---------------------------------------------------------------------------------

_META = torch.device("meta")
_DATA = torch._C.TensorBase.data  # the descriptor of ``Tensor.data``
_RECORDING: ContextVar["ConstructionRecorder | None"] = ContextVar("fastinit_recording", default=None)


# How the recorder treats a function, decided once per function (the hot path of a
# build is one dictionary lookup per torch call).
_OTHER, _FACTORY, _NO_VALUE, _VALUE_READ, _DEEPCOPY, _TORCH_INIT = range(6)
_KINDS: dict = {}


def _kind(func) -> int:
    """The kind of a function not in ``_KINDS`` yet (recorded there)."""
    name = getattr(func, "__name__", "")
    kind = _KINDS[func] = (
        _FACTORY if func in _FACTORIES else _TORCH_INIT if torch_init_name(func)
        else _NO_VALUE if name in _NO_VALUES else _VALUE_READ if name in _VALUE_READS
        else _DEEPCOPY if name == "__deepcopy__" else _OTHER)
    return kind


def _map(fn, x):
    """``fn`` on the tensors of an argument structure (one level of lists and tuples)."""
    if isinstance(x, torch.Tensor):
        return fn(x)
    if type(x) in (list, tuple):
        return type(x)(fn(y) if isinstance(y, torch.Tensor) else y for y in x)
    return x


def _call_swapped(func, args: tuple, kwargs: dict, swap: dict[int, torch.Tensor]):
    """``func(*args, **kwargs)`` with the tensors ``swap`` holds (by ``id``) replaced."""
    def sub(x):
        return swap.get(id(x), x)

    return func(*[_map(sub, a) for a in args], **{k: _map(sub, v) for k, v in kwargs.items()})


class ConstructionRecorder(route.OwnMode, TorchFunctionMode):
    """Builds tensors on meta (like ``torch.device("meta")``) and records the program."""

    def __init__(self, program: Program) -> None:
        super().__init__()
        self.program = program
        self.seedings_at_entry = SEEDINGS[0]

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if route.inside():  # fastinit's own work: recorded at its entry point
            return func(*args, **kwargs)
        kind = _KINDS.get(func)
        if kind is None:
            kind = _kind(func)
        if kind == _NO_VALUE:
            if (len(args) == 2 and getattr(func, "__self__", None) is _DATA
                    and func.__name__ == "__set__" and isinstance(args[1], torch.Tensor)
                    and args[1].is_meta and not args[0].is_meta
                    and self.program.knows(args[1])):
                return self._rebind_real(func, *args)
            return func(*args, **kwargs)
        if kind == _FACTORY:
            return self._factory(func, args, kwargs)
        if kind == _TORCH_INIT:  # torch.nn.init via __torch_function__: fastinit's, recorded
            return fastinit_function(torch_init_name(func))(*args, **kwargs)
        program = self.program
        tensors = _tensors(args, kwargs)
        if not tensors:
            return func(*args, **kwargs)
        storages = program.storages
        known = [t for t in tensors if (t.is_meta or storages) and program.knows(t)]
        if kind == _VALUE_READ:
            return self._read(func, args, kwargs, known)
        if kind == _DEEPCOPY and known:  # copy.deepcopy of a layer: a clone
            out = func(*args, **kwargs)
            self.record(torch.Tensor.clone, (args[0],), {"memory_format": torch.preserve_format},
                        out)
            return out
        first = args[0] if args else None
        if (first is tensors[0] and not first.is_meta and _writes_first(func.__name__, args)
                and not program.knows(first)):
            program.track(first, empty=True, legacy=True)  # a legacy torch.Tensor(n)
            known.append(first)
        if not known:
            return func(*args, **kwargs)
        meta = [t for t in known if t.is_meta]
        if meta and len(meta) < len(known):
            # a real tensor (legacy torch.Tensor(n)) meets tensors made on meta: compute
            # on the device of the first argument, as eager code on one device does
            if first is not None and isinstance(first, torch.Tensor) and first.is_meta:
                swap = {id(t): torch.empty_strided(t.shape, t.stride(), dtype=t.dtype,
                                                   device="meta")
                        for t in known if not t.is_meta}
            else:
                swap = evaluate(program, meta)
            out = _call_swapped(func, args, kwargs, swap)
        else:
            out = func(*args, **kwargs)
        self.record(func, args, kwargs, out)
        return out

    def _rebind_real(self, func, target: torch.Tensor, value: torch.Tensor):
        """``legacy.data = t``: a real tensor (legacy ``torch.Tensor(n)``) cannot hold a
        meta tensor's data, so it gets real memory with ``t``'s values (evaluated on the
        CPU from the program), which the program makes as a copy of ``t``."""
        program = self.program
        copy = evaluate(program, [value])[id(value)].clone()
        s = program.track(copy, empty=False, legacy=True)
        program.ops.append(Op(torch.Tensor.clone, (program.ref(value),),
                              {"memory_format": torch.preserve_format}, (sid(value),), (s,),
                              (program.ref(copy, s),)))
        return func(target, copy)

    def _read(self, func, args, kwargs, known: list[torch.Tensor]):
        """Construction reads values (``.item()``, ``bool(t)``, ``.tolist()``): meta
        tensors are evaluated on the CPU from the program. Each value read is recorded
        with the values found, so that materialize can check that its replay computes
        the same (what construction computed next may depend on them)."""
        program = self.program
        meta = [t for t in known if t.is_meta]
        real = evaluate(program, meta) if meta else {}
        if fname_of(func) not in _PRINTS:
            for t in known:
                s = sid(t)
                value = real[id(t)] if t.is_meta else t.detach()
                program.ops.append(Op(_read_value, (program.ref(t, s),), {}, (s,), (),
                                      expect=value.clone()))
        return _call_swapped(func, args, kwargs, real) if real else func(*args, **kwargs)

    def _factory(self, func, args, kwargs):
        if kwargs.get("device") is None:
            kwargs = {**kwargs, "device": _META}
            out = func(*args, **kwargs)
            if out.numel() == 0:
                # no memory either way; but code that probes the device with
                # torch.tensor([]) (transformers' post_init) must see a real device, so
                # that it runs its construction-time init as eager code does (recorded)
                out = func(*args, **{**kwargs, "device": None})
        else:
            out = func(*args, **kwargs)
        if _tensors(args, kwargs) or not isinstance(out, torch.Tensor):
            self.record(func, args, kwargs, out, factory=True)
        else:  # the common case, kept short: a new tensor from Python values
            s = self.program.track(out, empty=func in _EMPTY)
            self.program.ops.append(Op(func, args, kwargs, (), (s,),
                                       (self.program.ref(out, s),), True,
                                       site=None if func in _EMPTY else provenance.site()))
        return out

    def record(self, func, args, kwargs, out, factory: bool = False, entry=None) -> None:
        program = self.program
        reads: list[int] = []

        storages = program.storages

        def to_ref(x):
            if _plain(x):
                s = sid(x)
                if s in storages:
                    reads.append(s)
                    return program.ref(x, s)
            return x

        rargs = tuple(_map(to_ref, a) for a in args)
        rkwargs = {k: _map(to_ref, v) for k, v in kwargs.items()}
        writes: list[int] = []
        site = None
        if args and _writes_first(fname_of(func), args) and program.knows(args[0]):
            writes.append(sid(args[0]))
            site = provenance.site(entry)
        out_kw = kwargs.get("out")
        if _plain(out_kw):
            writes.append(program.track(out_kw, empty=False))
        outs = []
        empty = func in _EMPTY
        results = (out,) if isinstance(out, torch.Tensor) else (
            out if isinstance(out, (list, tuple)) else
            [x for x in tree_flatten(out)[0] if isinstance(x, torch.Tensor)])
        for t in results:
            if not _plain(t):
                outs.append(None)
                continue
            s = program.track(t, empty=empty)
            writes.append(s)
            outs.append(program.ref(t, s))
        if writes:
            program.ops.append(Op(func, rargs, rkwargs, tuple(reads), tuple(writes),
                                  tuple(outs), factory, site=site))

    def _own_key(self, fn: Callable, args: tuple, kwargs: dict) -> tuple[tuple, dict]:
        """A call with an explicit generator, or made after the construction code called
        ``torch.manual_seed``, takes its key from that generator now, in eager order, as
        an eager call does; it is recorded with that key (``seed=``), so that every replay
        - a whole model, one sharded parameter - draws the same values."""
        reach = _rng_reach(fn)
        if reach is None:
            return args, kwargs
        if (len(args) <= reach and kwargs.get("seed") is None
                and kwargs.get("generator") is None and SEEDINGS[0] == self.seedings_at_entry):
            return args, kwargs  # neither given, not reseeded: what binding would find
        try:
            bound = _signature(fn).bind(*args, **kwargs)
        except TypeError:
            return args, kwargs  # the call itself raises; nothing to record
        seed = bound.arguments.get("seed")
        generator = bound.arguments.get("generator")
        if generator is None and (seed is not None or SEEDINGS[0] == self.seedings_at_entry):
            return args, kwargs
        bound.arguments["seed"] = call_key(seed, generator)
        bound.arguments.pop("generator", None)
        return bound.args, bound.kwargs

    def record_entry(self, fn: Callable, args: tuple, kwargs: dict) -> None:
        """A fastinit function was called (``route.entry``): a write of its tensor.

        The call is recorded bound to the function's signature, with the tensor first
        (``trunc_normal_(tensor=w, std=0.02)``, a ``functools.partial`` that passes it by
        keyword): the replay makes the same call, and the write is seen as one."""
        if not args:
            first = _first_parameter(fn)
            if first not in kwargs:
                return
            kwargs = dict(kwargs)
            args = (kwargs.pop(first),)
        target = args[0]
        if not _plain(target):
            return
        args, kwargs = self._own_key(fn, args, kwargs)
        program = self.program
        if not program.knows(target):
            if target.is_meta:
                return  # a meta tensor made outside the block: nothing to replay into
            program.track(target, empty=True, legacy=True)
        if (args and args[0] is target and _writes_first(fn.__name__, args)
                and not _tensors(args[1:], kwargs)):
            # the common case, kept short: an init call on one tensor, the rest Python values
            s = sid(target)
            program.ops.append(Op(fn, (program.ref(target, s), *args[1:]), dict(kwargs), (s,),
                                  (s,), site=provenance.site(fn)))
            return
        self.record(fn, args, kwargs, None, entry=fn)


@functools.cache
def _rng_reach(fn: Callable) -> int | None:
    """None if ``fn`` lacks a ``seed`` or a ``generator`` parameter; else how many
    positional arguments a call can pass without reaching either of them."""
    params = list(_signature(fn).parameters.values())
    if not {"seed", "generator"} <= {p.name for p in params}:
        return None
    reaching = [i for i, p in enumerate(params) if p.kind is inspect.Parameter.VAR_POSITIONAL
                or (p.name in ("seed", "generator") and p.kind in (
                    inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD))]
    return min(reaching + [len(params)])


_signature = functools.cache(inspect.signature)


@functools.cache
def _first_parameter(fn: Callable) -> str:
    """The name of ``fn``'s first parameter (the tensor of an init function)."""
    return next(iter(_signature(fn).parameters), "")


def active_recorder() -> ConstructionRecorder | None:
    """The recorder of the enclosing ``empty_init()`` block, if any."""
    return _RECORDING.get()


recording = active_recorder  # the older name


# --- the modules built in a block, and their tensors' names -----------------------------------


@dataclass
class Construction:
    """The program of an ``empty_init()`` block, and the tensors of a model built in it at
    the end of the block (qualified name -> :class:`Ref`, and the tensor object)."""

    program: Program
    refs: dict[str, Ref]
    objects: dict[str, torch.Tensor]


_CONSTRUCTIONS: "weakref.WeakKeyDictionary[nn.Module, Construction]" = weakref.WeakKeyDictionary()


def construction_of(module: nn.Module) -> Construction | None:
    """The recorded construction of ``module`` (built inside ``empty_init()``), if any."""
    return _CONSTRUCTIONS.get(module)


class _Block:
    """One ``empty_init()`` block: its program and the modules made in it."""

    def __init__(self) -> None:
        self.program = Program()
        self.modules: dict[int, nn.Module] = {}
        self.children: set[int] = set()

    def on_module(self, module, name, submodule) -> None:
        self.modules.setdefault(id(module), module)
        if submodule is not None:
            self.modules.setdefault(id(submodule), submodule)
            self.children.add(id(submodule))

    def on_tensor(self, module, name, tensor) -> None:
        self.modules.setdefault(id(module), module)

    def finish(self) -> None:
        for mid, module in self.modules.items():
            if mid in self.children:
                continue
            objects = {name: t for name, t in named_tensors(module) if self.program.knows(t)}
            refs = {name: self.program.ref(t) for name, t in objects.items()}
            _CONSTRUCTIONS[module] = Construction(self.program, refs, objects)


def named_tensors(module: nn.Module) -> Iterator[tuple[str, torch.Tensor]]:
    """Every (qualified name, tensor) of a module's parameters, buffers and tensor
    attributes, shared ones repeated."""
    yield from module.named_parameters(remove_duplicate=False)
    yield from module.named_buffers(remove_duplicate=False)
    for name, _, _, t in tensor_attributes(module):
        yield name, t


def tensor_attributes(module: nn.Module) -> Iterator[tuple[str, dict, str, torch.Tensor]]:
    """Tensors modules keep as plain attributes (``self.scale = torch.full(...)``, not a
    parameter or buffer): (qualified name, the module's ``__dict__``, attribute, tensor).
    Eager construction gives them values like any other tensor."""
    for prefix, mod in module.named_modules(remove_duplicate=False):
        for attr, t in list(vars(mod).items()):
            if type(t) is torch.Tensor:
                yield (f"{prefix}.{attr}" if prefix else attr), vars(mod), attr, t


@contextlib.contextmanager
def empty_init() -> Iterator[None]:
    """Build models on the meta device, recording what their construction does, so that
    ``fastinit.materialize`` gives exactly what eager construction would have given.

    Inside the block, tensors are made on the meta device as under
    ``torch.device("meta")`` (no memory, no work; a factory given an explicit device keeps
    it), and every operation that makes, computes from or writes a tensor made in the block
    is recorded, as are ``torch.nn.init`` and fastinit calls, and writes to real tensors
    first seen being written (legacy ``nn.Parameter(torch.Tensor(n))``). Then
    ``materialize(model)`` replays what the model's parameters and buffers depend on:
    values computed only in ``__init__`` (``torch.tensor(2.6592)``, ``torch.ones``,
    ``w.diagonal().fill_(1)``), copies (``copy.deepcopy`` of layers), every init call in
    construction order, parametrizations - as eager construction computed them, with
    fastinit's streams for the random draws and grouped launches for the fills.

    The recording costs little on top of a meta build (a list of calls, no values). Blocks
    nest (the outer one records). Modules built in the block keep their recording until
    they are garbage-collected.

    Examples:
        >>> with fastinit.empty_init():
        ...     model = LlamaForCausalLM(config)
        >>> fastinit.materialize(model, "cuda", seed=0)
    """
    if _RECORDING.get() is not None:
        yield
        return
    block = _Block()
    recorder = ConstructionRecorder(block.program)
    token = _RECORDING.set(recorder)
    entries = route.observe_entries(recorder.record_entry)
    handles = [
        module_mod.register_module_module_registration_hook(block.on_module),
        module_mod.register_module_parameter_registration_hook(block.on_tensor),
        module_mod.register_module_buffer_registration_hook(block.on_tensor),
    ]
    try:
        with patched_init_functions(), recorder:
            yield
    finally:
        for h in handles:
            h.remove()
        route.observe_entries(None, entries)
        _RECORDING.reset(token)
    block.finish()


# --- replay ---------------------------------------------------------------------------------


_NESTED = (tuple, list, dict)
_TENSORS = (torch.Tensor, nn.Parameter)


def _has_tensor(tree) -> bool:
    """Whether an argument structure of a recorded call holds a :class:`Ref` or a tensor."""
    if type(tree) is Ref or isinstance(tree, torch.Tensor):
        return True
    if type(tree) in (tuple, list):
        return any(_has_tensor(x) for x in tree)
    if type(tree) is dict:
        return any(_has_tensor(x) for x in tree.values())
    return False


class Replay:
    """Runs recorded operations on a real device.

    ``env`` maps each recorded storage to its real storage (``UntypedStorage``); a
    :class:`Ref` resolves to the same view of that memory. ``on_bind(storage, tensor)`` is
    told when a storage gets its memory (the router learns the names of the parameters
    before their fills run).
    """

    def __init__(self, program: Program, device: torch.device,
                 on_bind: Callable[[int], None] | None = None, key: int | None = None) -> None:
        self.program = program
        self.device = device
        self.on_bind = on_bind
        self.key = key
        self.env: dict[int, torch.UntypedStorage] = {}
        #: fastinit's modes taken off the stack by :meth:`run` (None: outside it)
        self._popped: list | None = None
        #: Ref -> (its view, the memory it was made on, its address): see :meth:`resolve`
        self._views: dict[Ref, tuple[torch.Tensor, torch.UntypedStorage, int]] = {}
        #: whether :meth:`resolve` hands out the shared views (False: for the arguments
        #: of a recorded torch operation)
        self._shared = True

    def resolve(self, ref: Ref) -> torch.Tensor:
        """The real tensor ``ref`` names. fastinit's own uses (the router's and the
        coverage's names, an init call, the tensor put back into the model) share one view
        per distinct :class:`Ref`, made once and handed out again while it still is that
        view of that memory: a parameter's view is asked for three times, and making one
        costs more than checking it. A recorded torch operation gets a view of its own
        (:attr:`_shared` False), as it may change the view's shape or memory in place
        (``t_()``, ``unsqueeze_()``, ``.data =``)."""
        base = self.env[ref.storage]
        if self._popped is not None:  # inside run: no fastinit mode is on the stack
            return self._view(ref, base)
        with route.internal():
            return self._view(ref, base)

    def _view(self, ref: Ref, base: torch.UntypedStorage) -> torch.Tensor:
        shared = self._shared
        if shared:
            known = self._views.get(ref)
            if known is not None:
                t, of, address = known
                if of is base and t.data_ptr() == address and t.stride() == ref.stride and (
                        t.shape == ref.shape):
                    return t
        t = torch.empty(0, dtype=ref.dtype, device=base.device)
        t.set_(base, ref.offset, ref.shape, ref.stride)
        if shared:
            self._views[ref] = (t, base, t.data_ptr())
        return t

    @contextlib.contextmanager
    def _modes(self) -> Iterator[None]:
        """Inside :meth:`run`: fastinit's modes back on the stack, for what the user's
        code would have run under them (a recorded torch operation, a value read)."""
        popped = self._popped
        route._push_back(popped)
        self._popped = None
        try:
            yield
        finally:
            self._popped = route._pop_own_modes()

    def _bare(self, op: Op) -> bool:
        """Whether ``op`` runs the same without fastinit's modes on the stack: a factory
        of Python values given its device that draws nothing (the modes let it through
        unchanged; ``patch()`` reports draws), or a fastinit entry point (which takes
        them off the stack itself)."""
        bare = op.bare
        if bare is None:
            bare = op.bare = bool(getattr(op.func, "_fastinit_entry", False) or (
                op.factory and fname_of(op.func) not in _torch_draws()
                and not _has_tensor(op.args) and not _has_tensor(op.kwargs)))
        return bare

    def _real(self, x):
        return self.resolve(x) if isinstance(x, Ref) else x

    def _real_all(self, tree):
        """``tree_map(self._real, tree)``; flat argument tuples and keyword dicts (almost
        every recorded call) without the general tree walk."""
        kind = type(tree)
        if kind is tuple:
            out = []
            for x in tree:
                if type(x) is Ref:
                    x = self.resolve(x)
                elif type(x) in _NESTED:
                    return tree_map(self._real, tree)
                out.append(x)
            return tuple(out)
        if kind is dict:
            out = {}
            for k, x in tree.items():
                if type(x) is Ref:
                    x = self.resolve(x)
                elif type(x) in _NESTED:
                    return tree_map(self._real, tree)
                out[k] = x
            return out
        return tree_map(self._real, tree)

    def run(self, ops: list[Op]) -> None:
        """Run ``ops`` (a part of the program, in its order). With a ``key``, torch's
        generators (the CPU's, and the device's) are seeded before each operation from the
        key and the operation's place in the program: what ``torch.rand`` and the like draw
        depends on neither which other operations run (a model replayed parameter by
        parameter, as sharded models are, or with some weights loaded) nor their number."""
        seeds = None if self.key is None else self.program.op_seeds(self.key)
        attributed = route.open_recording() is not None
        storages = self.program.storages
        legacy = self.program.legacy
        env = self.env
        cuda = self.device.type == "cuda"
        # fastinit's modes let the replay's own bookkeeping through unchanged: they are
        # off the stack while it runs, and back for what user code ran under them
        outer = self._popped
        self._popped = route._pop_own_modes() if outer is None else outer
        try:
            for op in ops:
                if attributed:  # the replay's writes are the recorded init code's
                    provenance.replaying(op)
                bare = self._bare(op)
                if seeds is not None and not (bare and op.factory):  # (those draw nothing)
                    seed = seeds[id(op)]
                    torch.default_generator.manual_seed(seed)
                    if cuda:
                        index = self.device.index
                        torch.cuda.default_generators[
                            torch.cuda.current_device() if index is None else index
                        ].manual_seed(seed)
                if legacy:
                    # storages this op makes (a copy into a new legacy storage) get its result
                    produced = {ref.storage for ref in op.outs
                                if ref is not None}.difference(op.reads)
                    for s in op.reads + op.writes:
                        info = storages.get(s)
                        if (s not in env and info is not None and info.legacy
                                and s not in produced):
                            self._bind(s, torch.empty(info.nbytes, dtype=torch.uint8,
                                                      device=self.device).untyped_storage())
                if op.expect is not None:
                    with self._modes():
                        self._check(op)
                    continue
                plain = op.plain
                if plain is None:
                    plain = op.plain = not any(
                        type(x) in _NESTED or type(x) is Ref
                        for x in (*op.args, *op.kwargs.values()))
                if plain:
                    args, kwargs = op.args, dict(op.kwargs)
                else:
                    # an init call shares the views of fastinit's bookkeeping; a torch
                    # operation may change its arguments' layout: views of its own
                    self._shared = bare and not op.factory
                    try:
                        args = self._real_all(op.args)
                        kwargs = self._real_all(op.kwargs)
                    finally:
                        self._shared = True
                if op.factory:
                    kwargs["device"] = self.device
                if bare:
                    out = op.func(*args, **kwargs)
                else:
                    with self._modes():
                        out = op.func(*args, **kwargs)
                results = [out] if type(out) in _TENSORS else [
                    t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
                if attributed and op.factory:
                    provenance.note_factory(op.func, args, kwargs, results)
                for ref, real in zip(op.outs, results):
                    if ref is None or ref.storage in env:
                        continue
                    if (real.storage_offset(), tuple(real.shape), real.stride()) != (
                            ref.offset, ref.shape, ref.stride):
                        laid_out = torch.empty_strided(ref.shape, ref.stride, dtype=real.dtype,
                                                       device=real.device)
                        with self._modes():
                            laid_out.copy_(real)  # the layout the program saw (meta's)
                        real = laid_out
                    memory = real.untyped_storage()
                    if type(real) is torch.Tensor and not real.requires_grad:
                        # the result is its own Ref's view: no need to make one
                        self._views[ref] = (real, memory, real.data_ptr())
                    self._bind(ref.storage, memory)
                out_kw = kwargs.get("out")
                for s in op.writes:
                    if s not in env and isinstance(out_kw, torch.Tensor):
                        self._bind(s, out_kw.untyped_storage())
        finally:
            if outer is None:
                route._push_back(self._popped)
            self._popped = outer
        if attributed:
            provenance.replaying(None)

    def _check(self, op: Op) -> None:
        """Construction read the values of a tensor (``.item()``, ``bool(t)``...) and
        computed on with them; the replay must find the same values."""
        # read as the user's code reads (pending fills are written first)
        actual = self.resolve(op.args[0]).detach().cpu().contiguous().reshape(-1)
        expect = op.expect.contiguous().reshape(-1)
        if not torch.equal(actual.view(torch.uint8), expect.view(torch.uint8)):
            ref = op.args[0]
            raise ValueError(
                "fastinit.empty_init(): the model's construction read the values of a "
                f"tensor computed from random draws (shape {tuple(ref.shape)}, {ref.dtype}; "
                "e.g. `.item()` of a sum of random weights) and went on with them; "
                "materialize draws the random values afresh (from its seed), so what "
                "construction computed from the values read would not match. Read values "
                "that do not depend on random draws in __init__, or build this model on its "
                "device (eagerly) or under torch.device('meta') (materialize then runs its "
                "init code)")

    def _bind(self, s: int, memory: torch.UntypedStorage) -> None:
        self.env[s] = memory
        if self.on_bind is not None:  # (inside run, fastinit's modes are off the stack)
            with route.marked_inside() if self._popped is not None else route.internal():
                self.on_bind(s)


@functools.cache
def _torch_draws() -> frozenset:
    """``fastinit.intercept._TORCH_DRAWS`` (imported when a replay first needs it)."""
    from fastinit.intercept import _TORCH_DRAWS

    return _TORCH_DRAWS


def evaluate(program: Program, tensors: list[torch.Tensor]) -> dict[int, torch.Tensor]:
    """Real CPU values of recorded meta ``tensors`` (by ``id``), computed from the program
    (construction read them: ``.item()``, ``.tolist()``, ``bool(...)``).

    A random draw gives the same values in every evaluation of one program (each operation
    draws from the CPU generator seeded from its place in the program, see
    :meth:`Replay.run`; the caller's generator is left as it was), so values read twice
    agree, as in eager code. Values
    computed from random draws cannot survive materialize, which draws afresh: the
    replay there checks every value read (``Op.expect``) and stops at a difference."""
    replay = Replay(program, torch.device("cpu"), key=0)
    token = _RECORDING.set(None)
    entries = route.observe_entries(None)
    try:
        with torch.no_grad(), torch.random.fork_rng(devices=[]):
            replay.run(program.needed({sid(t) for t in tensors}))
    finally:
        route.observe_entries(None, entries)
        _RECORDING.reset(token)
    return {id(t): replay.resolve(program.ref(t)) for t in tensors}



opaque(ConstructionRecorder, "__torch_function__")
