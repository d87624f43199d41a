"""Routing unmodified code through fastinit: ``patch()`` and the mode behind it.

Code reaches weight initialization in three ways, and all three are covered:

* ``torch.nn.init.<fn>(...)`` looked up at call time (torch's own layers), and references
  bound at import time (``from torch.nn.init import xavier_uniform_`` in
  ``torch.nn.modules.activation``, transformers' ``TORCH_INIT_FUNCTIONS`` table, user
  modules): on entry, every module global (and every value of a module-level dict) that
  *is* one of torch's init functions is replaced by a trampoline of the same name. A
  trampoline calls fastinit's function while a ``patch()`` block is active and torch's
  otherwise, so a copy taken inside the block (a module first imported there) is harmless
  after it; on exit, every trampoline found in any module - including modules imported
  inside the block - is put back to torch's function, so identities are as they were;
* calls torch dispatches through ``__torch_function__`` (``uniform_``, ``normal_``,
  ``constant_``, ``kaiming_uniform_``) from references nobody could replace (closures):
  caught by :class:`InitMode`;
* in-place tensor methods (``w.data.normal_()``, ``b.zero_()``, ``w.fill_(1)``): routed
  by :class:`InitMode` when ``methods=True`` (``materialize``), for the tensors it accepts.

:class:`InitMode` also keeps deferred execution exact: an operation that touches memory
with pending writes - a read, a write, ``untyped_storage()``, ``data_ptr()``, pickling,
``numpy()``, anything but pure metadata - flushes those writes first.
"""
from __future__ import annotations

import contextlib
import functools
import sys
import threading
from typing import Callable, Iterator

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_flatten

from fastinit import route
from fastinit.deferred import Recorder
from fastinit.fill import Write
from fastinit.spec import SUPPORTED_DTYPES, InitSpec

INIT_NAMES = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_",
              "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
              "kaiming_normal_", "orthogonal_", "sparse_")
#: torch's own functions, captured before anything can replace them.
ORIGINALS: dict[str, Callable] = {n: getattr(torch.nn.init, n) for n in INIT_NAMES}
_ORIGINAL_TO_NAME = {fn: n for n, fn in ORIGINALS.items()}

# Tensor operations that neither read nor write element values, nor expose the memory
# (``untyped_storage``, ``data_ptr`` and friends are *not* here: they hand it out).
_METADATA = frozenset({
    "size", "stride", "dim", "numel", "element_size", "is_contiguous", "nelement",
    "ndimension", "is_floating_point", "is_complex", "get_device", "__len__", "__hash__",
    "__get__", "storage_offset", "view", "view_as", "unsqueeze", "squeeze", "t",
    "transpose", "permute", "select", "narrow", "as_strided", "expand", "expand_as",
    "detach", "requires_grad_", "_is_view", "is_set_to", "diagonal", "unbind", "split",
    "chunk", "movedim", "swapaxes", "is_pinned", "is_shared", "has_names",
})
_BASIC_INDEX = (int, slice, type(None), type(Ellipsis))


def _fastinit_fn(name: str) -> Callable:
    from fastinit import init

    return getattr(init, name)


def _is_metadata(func, args) -> bool:
    name = getattr(func, "__name__", "")
    if name in _METADATA:
        return True
    if name == "__getitem__" and len(args) == 2:  # basic indexing makes a view
        idx = args[1] if isinstance(args[1], tuple) else (args[1],)
        return all(isinstance(i, _BASIC_INDEX) for i in idx)
    return False


def _method_fill(name: str, args, kwargs) -> InitSpec | None:
    """The distribution a tensor method call asks for, or None if it is not a plain fill."""
    if kwargs.get("generator") is not None:
        return None  # an explicit torch generator: the caller wants torch's stream
    if name == "normal_":
        mean = args[1] if len(args) > 1 else kwargs.get("mean", 0.0)
        std = args[2] if len(args) > 2 else kwargs.get("std", 1.0)
        return InitSpec.normal(mean, std)
    if name == "uniform_":
        a = args[1] if len(args) > 1 else kwargs.get("from", 0.0)
        b = args[2] if len(args) > 2 else kwargs.get("to", 1.0)
        return InitSpec.uniform(a, b)
    if name == "zero_":
        return InitSpec.constant(0.0)
    if name == "fill_":
        value = args[1] if len(args) > 1 else kwargs.get("value")
        if isinstance(value, torch.Tensor) or isinstance(value, complex):
            return None
        return InitSpec.constant(value)
    return None


_METHODS = {torch.Tensor.normal_: "normal_", torch.Tensor.uniform_: "uniform_",
            torch.Tensor.zero_: "zero_", torch.Tensor.fill_: "fill_"}


class InitMode(route.OwnMode, TorchFunctionMode):
    """Sends initialization calls to fastinit and keeps a recorder's pending writes exact.

    ``accepts(tensor)`` decides which tensors' tensor-method fills are routed through
    fastinit; with ``methods=False`` only ``torch.nn.init`` functions are.
    ``on_write(tensor)`` is told of every other in-place write, and ``on_op(func, args,
    kwargs)`` of the operation itself (``materialize``'s bookkeeping). ``parts(func, args,
    kwargs)`` may answer an indexing of a sharded tensor with its local part.
    """

    def __init__(self, recorder: Recorder | None = None, methods: bool = False,
                 accepts: Callable[[torch.Tensor], bool] = lambda t: True,
                 on_write: Callable[[torch.Tensor], None] | None = None,
                 on_op: Callable[[Callable, tuple, dict], None] | None = None,
                 parts: Callable[[Callable, tuple, dict], object] | None = None) -> None:
        super().__init__()
        self.parts = parts
        self.recorder = recorder
        self.methods = methods
        self.accepts = accepts
        self.on_write = on_write
        self.on_op = on_op

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if route.inside():  # fastinit's own operations, on behalf of a call already routed
            return func(*args, **kwargs)
        name = _ORIGINAL_TO_NAME.get(func)
        if name is not None:
            return _fastinit_fn(name)(*args, **kwargs)
        method = _METHODS.get(func) if self.methods else None
        if method is not None and args and isinstance(args[0], torch.Tensor):
            target = args[0]
            if target.dtype in SUPPORTED_DTYPES and self.accepts(target):
                spec = _method_fill(method, args, kwargs)
                if spec is not None:
                    from fastinit.init import fill_spec_

                    return fill_spec_(target, spec, f"Tensor.{method}")
        if self.parts is not None and args and type(args[0]).__name__ == "DTensor":
            part = self.parts(func, args, kwargs)
            if part is route._HANDLED:
                return None
            if part is not None:
                return part
        if _is_metadata(func, args):
            return func(*args, **kwargs)
        if self.recorder is not None and len(self.recorder):
            tensors = [x for x in tree_flatten((args, kwargs))[0] if isinstance(x, torch.Tensor)]
            hits = self.recorder.pending(tensors)
            if hits:
                self.recorder.flush(hits)
        out = func(*args, **kwargs)
        if self.on_write is not None or self.on_op is not None:
            fname = getattr(func, "__name__", "")
            target = args[0] if args else kwargs.get("tensor", kwargs.get("input"))
            if (fname.endswith("_") and not fname.startswith("__") or fname in (
                    "__setitem__", "__set__")) and isinstance(target, torch.Tensor):
                if self.on_write is not None:
                    self.on_write(target)
                if self.on_op is not None:
                    self.on_op(func, args, kwargs)
            elif isinstance(kwargs.get("out"), torch.Tensor):
                if self.on_write is not None:
                    self.on_write(kwargs["out"])
                if self.on_op is not None:
                    self.on_op(torch.Tensor.copy_, (kwargs["out"],), {})
        return out


# --- replacing torch.nn.init's functions wherever they are held ---------------------------


def _make_trampoline(name: str) -> Callable:
    original = ORIGINALS[name]

    @functools.wraps(original)
    def trampoline(*args, **kwargs):
        if _state.depth:
            return _fastinit_fn(name)(*args, **kwargs)
        return original(*args, **kwargs)

    trampoline.__fastinit_trampoline__ = name
    return trampoline


_TRAMPOLINES: dict[str, Callable] = {n: _make_trampoline(n) for n in INIT_NAMES}
_TRAMPOLINE_TO_NAME = {id(fn): n for n, fn in _TRAMPOLINES.items()}
_ORIGINAL_IDS = {id(fn): n for n, fn in ORIGINALS.items()}


class _PatchState:
    """Process-wide: the replacement is in place while any ``patch()`` block is open.

    ``holders`` remembers where torch's init functions were found (module globals, or
    dicts held in module globals), so that only modules not seen before are scanned
    again: a full scan of a large process takes a fraction of a second, once.
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0
        self.holders: list[tuple[dict, object, str]] = []  # (holder, key, function name)
        self.seen: dict[str, object] = {}  # module name -> module object scanned
        self.seen_count = -1  # len(sys.modules) at the last scan
        self.entry_count = 0

    def _new_modules(self) -> list[object]:
        if len(sys.modules) == self.seen_count:  # nothing imported since the last look
            return []
        new = [(name, mod) for name, mod in list(sys.modules.items())
               if self.seen.get(name) is not mod and name.partition(".")[0] != "fastinit"]
        for name, mod in new:
            self.seen[name] = mod
        self.seen_count = len(sys.modules)
        return new

    @staticmethod
    def _scan(modules, table: dict[int, str]) -> list[tuple[dict, object, str]]:
        found = []
        for _, mod in modules:
            d = getattr(mod, "__dict__", None)
            if type(d) is not dict:
                continue
            for holder in (d, *(v for v in list(d.values()) if type(v) is dict and v is not d
                                 and v is not ORIGINALS and v is not _TRAMPOLINES)):
                for key, value in list(holder.items()):
                    name = table.get(id(value))
                    if name is not None:
                        found.append((holder, key, name))
        return found

    def install(self) -> None:
        """Replace torch's functions by trampolines wherever they are held."""
        self.holders += self._scan(self._new_modules(), _ORIGINAL_IDS)
        self.entry_count = len(sys.modules)
        for holder, key, name in self.holders:
            if holder.get(key) is ORIGINALS[name]:
                holder[key] = _TRAMPOLINES[name]

    def restore(self) -> None:
        """Put torch's functions back, also where modules imported meanwhile copied a
        trampoline."""
        if len(sys.modules) != self.entry_count:  # modules imported inside the block
            self.holders += self._scan(self._new_modules(), _TRAMPOLINE_TO_NAME)
        for holder, key, name in self.holders:
            if holder.get(key) is _TRAMPOLINES[name]:
                holder[key] = ORIGINALS[name]


_state = _PatchState()


@contextlib.contextmanager
def patched_init_functions() -> Iterator[None]:
    """Route torch.nn.init's functions to fastinit's inside the block, wherever held."""
    with _state.lock:
        if _state.depth == 0:
            _state.install()
        _state.depth += 1
    try:
        yield
    finally:
        with _state.lock:
            _state.depth -= 1
            if _state.depth == 0:
                _state.restore()


@contextlib.contextmanager
def recording(router, device: torch.device | None = None) -> Iterator[None]:
    """Run code with its fills recorded into ``router`` (a ``route.NameRouter``): its
    ``torch.nn.init`` calls, fastinit calls and in-place fills of the router's tensors;
    any operation on memory with pending fills runs after them; indexing a sharded tensor
    of the router gives its local part. ``device``: where the code's factories allocate
    by default (as eager code on that device). ``materialize`` and ``apply_recipe``."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(patched_init_functions())
        stack.enter_context(route.routing(router))
        stack.enter_context(torch.no_grad())
        if device is not None:
            stack.enter_context(torch.device(device))
        stack.enter_context(InitMode(
            recorder=router.recorder, methods=True, accepts=router.accepts,
            on_write=router.mark_written, on_op=getattr(router, "saw", None),
            parts=router.dtensor_part))
        yield


# --- patch(deferred=True): record every fill, flush on observation and on exit ---------


class DeferredRouter:
    """Records every fill with the key the call draws (the eager key): the values are
    those of ``patch()`` without deferral."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def route(self, tensor: torch.Tensor) -> route.Route:
        return route.DRAW

    def emit(self, write: Write) -> None:
        self.recorder.add(write)


@contextlib.contextmanager
def patch(deferred: bool = False) -> Iterator[None]:
    """Route ``torch.nn.init`` through fastinit inside the block, for unmodified code.

    Every ``torch.nn.init`` function - including the calls torch's own layers make in
    their default ``reset_parameters`` and the copies other modules hold - runs as the
    fastinit function of the same name, drawing its seed from the same generator, so the
    values are those of calling fastinit directly. The replacement is process-wide while
    the block runs; on exit every module (also one first imported inside the block) holds
    torch's functions again. Blocks nest.

    Args:
        deferred: record the fills instead of running them, and write them in grouped
            launches (one per dtype on a GPU). Whatever the code can observe is what
            ``deferred=False`` gives: each call's seed is drawn when the call is made;
            any operation that touches a tensor with pending fills (reads, writes,
            ``torch.save``, pickling, ``numpy()``, ``data_ptr()``...) runs after those
            fills; autograd's version counters move at the call; and when an exception
            leaves the block, the pending fills are written before it propagates, as
            eager code would have written them. Observations from other threads are not
            seen: do not share tensors being initialized with other threads inside
            the block.

    Examples:
        >>> with fastinit.patch():
        ...     model = torch.nn.Linear(1024, 1024)  # reset_parameters() runs on fastinit
        >>> with fastinit.patch(deferred=True), torch.device("cuda"):
        ...     model = build_model()  # all of its init in a few grouped launches
    """
    recorder = Recorder() if deferred else None
    with contextlib.ExitStack() as stack:
        stack.enter_context(patched_init_functions())
        if recorder is not None:
            stack.enter_context(route.routing(DeferredRouter(recorder)))
            stack.callback(recorder.flush)  # on every exit, an exception's too
        stack.enter_context(InitMode(recorder=recorder))
        yield
