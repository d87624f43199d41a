"""Routing unmodified code through fastinit: ``patch()`` and the mode behind it.

Code reaches weight initialization in every way Python allows, and one mechanism serves
``patch()``, ``empty_init`` and ``materialize`` alike:

* ``torch.nn.init``'s functions, however they are held - looked up as module attributes,
  bound at import (``from torch.nn.init import trunc_normal_``), in a ``functools.partial``
  or a dict made at import, through ``getattr``, behind a deprecated alias, called with
  ``tensor=`` - are one set of function objects. Replacing references (what monkeypatching
  does) cannot find a partial's or a closure's, nor a worker process's; so the function
  objects themselves get, once, code of the same signature that passes their arguments to
  :func:`_route`: fastinit's function of the same name while a block is open in the
  process, torch's own code (:data:`ORIGINALS`) otherwise. Identities, signatures and
  sources stay torch's, and nothing has to be put back on exit;
* calls torch dispatches through ``__torch_function__`` reach :class:`InitMode` (or
  ``empty_init``'s recorder) too, and are sent the same way;
* in-place tensor methods: ``Tensor.normal_`` / ``uniform_`` under ``patch()``, and also
  ``zero_`` / ``fill_`` of the tensors ``materialize`` initializes, are routed by
  :class:`InitMode`; other draws from torch's generators under ``patch()`` are reported.

:class:`InitMode` also keeps deferred execution exact: an operation that touches memory
with pending writes - a read, a write, ``untyped_storage()``, ``data_ptr()``, pickling,
``numpy()``, anything but pure metadata - flushes those writes first. All of this is opaque
to ``torch.compile`` (:func:`opaque`).
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.util
import inspect
import os
import sys
import threading
import types
from typing import Callable, Iterator

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._device import DeviceContext
from torch.utils._pytree import tree_flatten

from fastinit import route
from fastinit.deferred import PendingWrites
from fastinit.fill import Write
from fastinit.spec import SUPPORTED_DTYPES, InitSpec
from fastinit.streams import SEEDINGS

INIT_NAMES = ("uniform_", "normal_", "trunc_normal_", "constant_", "ones_", "zeros_", "eye_",
              "dirac_", "xavier_uniform_", "xavier_normal_", "kaiming_uniform_",
              "kaiming_normal_", "orthogonal_", "sparse_")

#: Tensor queries that neither read nor write element values, nor expose the memory.
QUERIES = frozenset({
    "size", "stride", "dim", "numel", "element_size", "is_contiguous", "nelement",
    "ndimension", "is_floating_point", "is_complex", "get_device", "__len__", "__hash__",
    "__get__", "storage_offset", "requires_grad_", "_is_view", "is_set_to", "is_pinned",
    "is_shared", "has_names",
})
# ... and the views (``untyped_storage``, ``data_ptr`` and friends are *not* here: they
# hand the memory out)
_METADATA = QUERIES | {
    "view", "view_as", "unsqueeze", "squeeze", "t", "transpose", "permute", "select",
    "narrow", "as_strided", "expand", "expand_as", "detach", "diagonal", "unbind", "split",
    "chunk", "movedim", "swapaxes",
}
_BASIC_INDEX = (int, slice, type(None), type(Ellipsis))


_INIT_MODULE: list = []
#: what :func:`redirecting` put in front of fastinit's functions, innermost last
_REDIRECTS: list[Callable[[str, Callable], Callable]] = []


def fastinit_function(name: str) -> Callable:
    """The function a call of ``torch.nn.init.<name>`` goes to while fastinit routes it:
    ``fastinit.<name>``, or what an open :func:`redirecting` block puts in its place."""
    if not _INIT_MODULE:
        from fastinit import init

        _INIT_MODULE.append(init)
    fn = getattr(_INIT_MODULE[0], name)
    for redirect in _REDIRECTS:
        fn = redirect(name, fn)
    return fn



def torch_init_name(func) -> str | None:
    """The name of the ``torch.nn.init`` function ``func`` is, or None."""
    return _ORIGINAL_TO_NAME.get(func)


@contextlib.contextmanager
def redirecting(redirect: Callable[[str, Callable], Callable]) -> Iterator[None]:
    """For the block, a routed call of ``torch.nn.init.<name>`` goes to
    ``redirect(name, fn)``, where ``fn`` is the function it would go to otherwise (a
    recipe's own samplers for the tensors it knows, ``fn`` for the rest)."""
    _REDIRECTS.append(redirect)
    try:
        yield
    finally:
        _REDIRECTS.remove(redirect)


def _is_metadata(func, args) -> bool:
    name = getattr(func, "__name__", "")
    if name in _METADATA:
        return True
    if name == "__getitem__" and len(args) == 2:  # basic indexing makes a view
        idx = args[1] if isinstance(args[1], tuple) else (args[1],)
        return all(isinstance(i, _BASIC_INDEX) for i in idx)
    return False


def _method_fill(name: str, args, kwargs) -> InitSpec | None:
    """The distribution a tensor method call asks for, or None if it is not a plain fill.
    (An explicit ``generator=`` is kept by the caller: the fill takes its key from it.)"""
    def arg(i: int, keyword: str, default=None):
        return args[i] if len(args) > i else kwargs.get(keyword, default)

    if name == "normal_":
        return InitSpec.normal(arg(1, "mean", 0.0), arg(2, "std", 1.0))
    if name == "uniform_":
        return InitSpec.uniform(arg(1, "from", 0.0), arg(2, "to", 1.0))
    if name == "zero_":
        return InitSpec.constant(0.0)
    if name == "fill_":
        value = arg(1, "value")
        if isinstance(value, torch.Tensor) or isinstance(value, complex):
            return None
        return InitSpec.constant(value)
    return None


#: torch operations that draw from torch's generators (the ones ``patch()`` reports)
_TORCH_DRAWS = frozenset({
    "rand", "randn", "randint", "randperm", "rand_like", "randn_like", "randint_like",
    "normal", "bernoulli", "multinomial", "poisson", "binomial", "normal_", "uniform_",
    "random_", "exponential_", "cauchy_", "log_normal_", "geometric_", "bernoulli_",
    "dropout", "dropout_", "alpha_dropout", "feature_alpha_dropout", "dropout1d",
    "dropout2d", "dropout3d", "rrelu", "rrelu_", "native_dropout",
})

_DRAWING_METHODS = frozenset({torch.Tensor.normal_, torch.Tensor.uniform_})
_METHODS = {torch.Tensor.normal_: "normal_", torch.Tensor.uniform_: "uniform_",
            torch.Tensor.zero_: "zero_", torch.Tensor.fill_: "fill_"}


# What InitMode does with a function, decided once per function (it sees every torch call)
_OTHER, _METADATA_OP, _METHOD, _DRAW = "other", "metadata", "method", "draw"
_KINDS: dict = {}


def _kind(func) -> str:
    name = getattr(func, "__name__", "")
    kind = _KINDS[func] = (_ORIGINAL_TO_NAME.get(func) or (_METHOD if func in _METHODS else None)
                           or (_DRAW if name in _TORCH_DRAWS else None)
                           or (_METADATA_OP if name in _METADATA else _OTHER))
    return kind


class InitMode(route.OwnMode, TorchFunctionMode):
    """Sends initialization calls to fastinit and keeps a recorder's pending writes exact.

    With a ``router`` (a :class:`fastinit.route.NameRouter`: ``materialize``,
    ``apply_recipe``), only the tensors it ``accepts`` have their tensor-method fills routed
    through fastinit, every other in-place write of the init code is reported to its
    ``wrote``, every operation's result to its ``flow``, and an indexing of a sharded tensor
    may be answered by its ``dtensor_part``. ``methods=False``: only ``torch.nn.init``
    functions (and ``methods_routed``) are routed. ``on_draw(func)`` is told of other draws
    from torch's generators (``patch()``'s report).
    """

    def __init__(self, recorder: PendingWrites | None = None, methods: bool = False,
                 router: route.NameRouter | None = None,
                 methods_routed: frozenset = frozenset(), on_draw: Callable | None = None
                 ) -> None:
        super().__init__()
        self.router = router
        self.parts = None if router is None else router.dtensor_part
        self.accepts = (lambda t: True) if router is None else router.accepts
        self.methods_routed = methods_routed
        self.on_draw = on_draw
        self.recorder = recorder
        self.methods = methods

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if route.inside():  # fastinit's own operations, on behalf of a call already routed
            return func(*args, **kwargs)
        kind = _KINDS.get(func)
        if kind is None:
            kind = _kind(func)
        if kind is _OTHER:
            pass
        elif kind in _ORIGINAL_NAMES:  # a torch.nn.init function (by __torch_function__)
            return fastinit_function(kind)(*args, **kwargs)
        elif kind is _METADATA_OP and self.parts is None:
            return func(*args, **kwargs)
        method = _METHODS.get(func) if kind is _METHOD else None
        if not self.methods and method not in self.methods_routed:
            method = None
        if method is not None and args and isinstance(args[0], torch.Tensor):
            target = args[0]
            if target.dtype in SUPPORTED_DTYPES and self.accepts(target):
                spec = _method_fill(method, args, kwargs)
                if spec is not None:
                    from fastinit.init import fill_spec_

                    return fill_spec_(target, spec, f"Tensor.{method}",
                                      generator=kwargs.get("generator"))
        if self.on_draw is not None and (kind is _DRAW or func in _DRAWING_METHODS):
            out = func(*args, **kwargs)
            first = args[0] if args and isinstance(args[0], torch.Tensor) else out
            if not (isinstance(first, torch.Tensor) and first.is_meta):
                self.on_draw(func)
            return out
        if self.parts is not None and args and type(args[0]).__name__ == "DTensor":
            part = self.parts(func, args, kwargs)
            if part is route._HANDLED:
                return None
            if part is not None:
                return part
        if _is_metadata(func, args):
            return func(*args, **kwargs)
        if self.recorder:  # a pending write (None: no recorder)
            tensors = [x for x in tree_flatten((args, kwargs))[0] if isinstance(x, torch.Tensor)]
            hits = self.recorder.pending(tensors)
            if hits:
                self.recorder.flush(hits)
        out = func(*args, **kwargs)
        router = self.router
        if router is not None:
            fname = getattr(func, "__name__", "")
            target = args[0] if args else kwargs.get("tensor", kwargs.get("input"))
            if (fname.endswith("_") and not fname.startswith("__") or fname in (
                    "__setitem__", "__set__")) and isinstance(target, torch.Tensor):
                router.wrote(target, func, args, kwargs)
            elif isinstance(kwargs.get("out"), torch.Tensor):
                router.wrote(kwargs["out"], torch.Tensor.copy_, (kwargs["out"],), {})
            router.flow(func, args, kwargs, out)
        return out


# --- routing torch.nn.init's functions at the function objects themselves ------------------
#
# Code holds torch's init functions in every way Python allows: looked up as module
# attributes, bound at import (``from torch.nn.init import trunc_normal_``), inside
# ``functools.partial`` objects made at import, in dicts, in closures (torch's deprecated
# aliases), in other processes' modules. Replacing references cannot find most of them;
# the function objects are what every one of them shares. So each of torch's init functions
# gets, once, a code object of the same signature that hands its bound arguments to
# :func:`_route`: fastinit's function of the same name while a ``patch()`` block (or a
# recording) is open, torch's own code (kept in :data:`ORIGINALS`) otherwise. Identities
# never change: ``nn.init.normal_ is normal_`` holds everywhere, before, inside and after.

#: torch.nn.init's public function objects (their identity never changes).
PUBLIC: dict[str, Callable] = {n: getattr(torch.nn.init, n) for n in INIT_NAMES}
#: torch's own behaviour: functions running the original code of each init function.
ORIGINALS: dict[str, Callable] = {}
_ORIGINAL_TO_NAME = {fn: n for n, fn in PUBLIC.items()}
_ORIGINAL_NAMES = frozenset(INIT_NAMES)
_ROUTE_NAME = "__fastinit_route__"


def _copy_function(fn: Callable) -> Callable:
    copy = types.FunctionType(fn.__code__, fn.__globals__, fn.__name__, fn.__defaults__,
                              fn.__closure__)
    copy.__kwdefaults__ = fn.__kwdefaults__
    copy.__qualname__, copy.__module__, copy.__doc__ = fn.__qualname__, fn.__module__, fn.__doc__
    copy.__annotations__ = dict(getattr(fn, "__annotations__", {}))
    return copy


def _routing_code(fn: Callable, index: int) -> types.CodeType | None:
    """A code object with ``fn``'s parameters that passes them to ``_route(index, ...)``,
    or None for a signature this does not handle (then the mode catches the calls)."""
    params = list(inspect.signature(fn).parameters.values())
    kinds = {p.kind for p in params}
    if kinds - {inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY}:
        return None
    if fn.__closure__ or fn.__code__.co_freevars:
        return None
    pos = [p.name for p in params if p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD]
    kw = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    head = ", ".join(pos + (["*"] + kw if kw else []))
    # the tensor positionally, the rest by keyword: what a callee wrapping fastinit's
    # function (mup's samplers) expects, whatever way the caller passed them
    call_kw = "{" + ", ".join(f"{k!r}: {k}" for k in pos[1:] + kw) + "}"
    call_pos = f"({pos[0]},)" if pos else "()"
    src = f"def {fn.__name__}({head}):\n    return {_ROUTE_NAME}({index}, {call_pos}, {call_kw})\n"
    scope: dict = {}
    exec(compile(src, fn.__code__.co_filename, "exec"), scope)
    code = scope[fn.__name__].__code__
    names = {"co_qualname": fn.__code__.co_qualname} if hasattr(code, "co_qualname") else {}
    return code.replace(co_firstlineno=fn.__code__.co_firstlineno, co_name=fn.__code__.co_name,
                        **names)  # (Python 3.10's code objects have no co_qualname)


def _route(index: int, args: tuple, kwargs: dict):
    """Where every call of a torch.nn.init function lands (see above)."""
    if _state.depth and not route.inside():
        return fastinit_function(INIT_NAMES[index])(*args, **kwargs)
    return ORIGINALS[INIT_NAMES[index]](*args, **kwargs)


def _install() -> None:
    """Give torch's init functions their routing code (once per process)."""
    for i, name in enumerate(INIT_NAMES):
        fn = PUBLIC[name]
        ORIGINALS[name] = _copy_function(fn)
        code = _routing_code(fn, i)
        if code is not None:
            fn.__globals__[_ROUTE_NAME] = _route
            fn.__code__ = code


_OPAQUE: list[tuple[object, str]] = []  # (owner, attribute) made opaque to torch.compile


def opaque(owner: object, attribute: str) -> None:
    """Make ``owner.attribute`` (fastinit's machinery: the routing function, its modes'
    ``__torch_function__``) opaque to ``torch.compile``: Dynamo neither inlines nor traces
    it - the call runs as plain Python, with the values eager code gets. Done when Dynamo
    is imported (it takes a second or more: processes that never compile never pay it)."""
    _OPAQUE.append((owner, attribute))
    if "torch._dynamo" in sys.modules:
        _disable(owner, attribute)


def _disable(owner: object, attribute: str) -> None:
    import torch._dynamo

    if isinstance(owner, dict):  # a module's globals: the name its code calls
        value = owner[attribute]
    else:
        value = owner.__dict__[attribute] if isinstance(owner, type) else getattr(owner, attribute)
    if not getattr(value, "_fastinit_opaque", False):
        wrapped = torch._dynamo.disable(value)
        wrapped._fastinit_opaque = True
        if isinstance(owner, dict):
            owner[attribute] = wrapped
        else:
            setattr(owner, attribute, wrapped)


class _DynamoWatch(importlib.abc.MetaPathFinder):
    """Runs :func:`_disable` on everything registered once ``torch._dynamo`` is loaded."""

    def find_spec(self, name, path=None, target=None):
        if name != "torch._dynamo":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None:
            return spec
        loader = spec.loader
        run = loader.exec_module

        def exec_module(module):
            run(module)
            for owner, attribute in _OPAQUE:
                _disable(owner, attribute)

        loader.exec_module = exec_module
        return spec


if "torch._dynamo" not in sys.modules:
    sys.meta_path.insert(0, _DynamoWatch())


_install()
opaque(torch.nn.init.__dict__, _ROUTE_NAME)


# ``fastinit.streams.SEEDINGS`` counts the calls of ``torch.manual_seed`` in this process
# (any reference to it: the function object gets code that counts, like the init
# functions above)
_SEED_ORIGINAL = _copy_function(torch.random.manual_seed)


def _seeded(seed):
    SEEDINGS[0] += 1
    return _SEED_ORIGINAL(seed)


def _watch_manual_seed() -> None:
    fn = torch.random.manual_seed
    params = list(inspect.signature(fn).parameters)
    if fn.__code__.co_freevars or params != ["seed"]:  # pragma: no cover - another torch
        return
    scope: dict = {}
    exec(compile("def manual_seed(seed):\n    return __fastinit_seeded__(seed)\n",
                 fn.__code__.co_filename, "exec"), scope)
    fn.__globals__["__fastinit_seeded__"] = _seeded
    fn.__code__ = scope["manual_seed"].__code__.replace(
        co_firstlineno=fn.__code__.co_firstlineno)


_watch_manual_seed()
opaque(InitMode, "__torch_function__")


class _PatchState:
    """Process-wide: fastinit's functions answer torch's while any block is open."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.depth = 0


_state = _PatchState()


@contextlib.contextmanager
def patched_init_functions() -> Iterator[None]:
    """Route torch.nn.init's functions to fastinit's inside the block, however held."""
    with _state.lock:
        _state.depth += 1
    try:
        yield
    finally:
        with _state.lock:
            _state.depth -= 1


class _DeviceMode(route.OwnMode, DeviceContext):
    """``with torch.device(device)`` of a recording: fastinit's own, so that entry points
    (whose factories name their devices) run without it on the mode stack."""


@contextlib.contextmanager
def recording_into(router, device: torch.device | None = None) -> Iterator[None]:
    """Run code with its fills recorded into ``router`` (a ``route.NameRouter``): its
    ``torch.nn.init`` calls, fastinit calls and in-place fills of the router's tensors;
    any operation on memory with pending fills runs after them; indexing a sharded tensor
    of the router gives its local part. ``device``: where the code's factories allocate
    by default (as eager code on that device). ``materialize`` and ``apply_recipe``."""
    on_device = contextlib.nullcontext() if device is None else _DeviceMode(device)
    with patched_init_functions(), route.routing(router), torch.no_grad(), on_device, \
            InitMode(recorder=router.recorder, methods=True, router=router):
        yield


recording = recording_into  # the older name


# --- patch(deferred=True): record every fill, flush on observation and on exit ---------


class DeferredRouter:
    """Records every fill with the key the call draws (the eager key): the values are
    those of ``patch()`` without deferral."""

    def __init__(self, recorder: PendingWrites) -> None:
        self.recorder = recorder

    def route(self, tensor: torch.Tensor) -> route.Route:
        return route.DRAW

    def emit(self, write: Write) -> None:
        self.recorder.add(write)


#: the tensor methods ``patch()`` routes: the random fills init code makes with them
_PATCH_METHODS = frozenset({"normal_", "uniform_"})


class TorchRNGWarning(UserWarning):
    """Code inside ``fastinit.patch()`` drew values from torch's own generator."""


_OWN_DIRS = (os.path.dirname(torch.__file__) + os.sep, os.path.dirname(__file__) + os.sep)


def _call_site() -> tuple[str, int]:
    """The innermost frame outside torch and fastinit: the user's call."""
    frame = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_OWN_DIRS):
        frame = frame.f_back
    if frame is None:
        return "<unknown>", 0
    return frame.f_code.co_filename, frame.f_lineno


class _DrawReporter:
    """Says once per call site that code drew from torch's generator; or raises."""

    def __init__(self, strict: bool) -> None:
        self.strict = strict
        self.seen: set[tuple[str, int]] = set()

    def __call__(self, func) -> None:
        filename, line = _call_site()
        what = getattr(func, "__name__", str(func))
        message = (f"fastinit.patch(): {what} at {filename}:{line} drew from torch's own "
                   "generator, so these values are torch's, not fastinit's, and are not "
                   "independent of sharding; use a torch.nn.init or fastinit function "
                   "(or Tensor.normal_ / uniform_, which patch() routes)")
        if self.strict:
            raise RuntimeError(message + " (patch(strict=True))")
        if (filename, line) not in self.seen:
            self.seen.add((filename, line))
            import warnings

            warnings.warn_explicit(message, TorchRNGWarning, filename, line)


@contextlib.contextmanager
def patch(deferred: bool = False, strict: bool = False) -> Iterator[None]:
    """Route ``torch.nn.init`` through fastinit inside the block, for unmodified code.

    Every ``torch.nn.init`` function - including the calls torch's own layers make in
    their default ``reset_parameters`` and the copies other modules hold - runs as the
    fastinit function of the same name, drawing its seed from the same generator, so the
    values are those of calling fastinit directly. The replacement is process-wide while
    the block runs; on exit every module (also one first imported inside the block) holds
    torch's functions again. Blocks nest.

    In-place ``Tensor.normal_`` and ``Tensor.uniform_`` (the random fills model code
    makes with tensor methods - timm's ``trunc_normal_`` starts with ``uniform_``) are
    routed too, so what is computed from them elementwise is sharding-invariant as well.
    Every other draw from torch's generators (``torch.randn``, ``bernoulli_``, dropout...)
    keeps torch's values and is reported once per call site with a
    :class:`TorchRNGWarning` naming the file and line; ``strict=True`` raises there.

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
        strict: raise ``RuntimeError`` at a draw from torch's generator instead of
            warning (see above)

    Examples:
        >>> with fastinit.patch():
        ...     model = torch.nn.Linear(1024, 1024)  # reset_parameters() runs on fastinit
        >>> with fastinit.patch(deferred=True), torch.device("cuda"):
        ...     model = build_model()  # all of its init in a few grouped launches
    """
    recorder = PendingWrites() if deferred else None
    with contextlib.ExitStack() as stack:
        stack.enter_context(patched_init_functions())
        if recorder is not None:
            stack.enter_context(route.routing(DeferredRouter(recorder)))
            stack.callback(recorder.flush)  # on every exit, an exception's too
        stack.enter_context(InitMode(recorder=recorder, methods_routed=_PATCH_METHODS,
                                     on_draw=_DrawReporter(strict)))
        yield
