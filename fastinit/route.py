"""Routing: one explicit decision per fill, made after validation and before any draw.

Every fill of the public functions (``fastinit.<fn>_``, recipes, the fills
``materialize`` and ``patch`` catch) goes through :func:`fill` (kernel fills),
:func:`keyed` (functions that compute values from their own draws: ``orthogonal_``,
``sparse_``) or :func:`torch_write` (writes made with torch operations). Each asks the
active :class:`Router` once what to do with the tensor:

* :data:`SKIP` - leave it alone (a tensor ``materialize`` must not touch);
* :data:`DRAW` - the caller's own key: ``seed=`` if given, else a draw from
  ``generator`` (torch's default generator by default); stream 0; the tensor's own index;
* :class:`Keyed` - the router's key and stream, by the index of the logical tensor
  ``base`` (``materialize``: the materialize seed and the stream of the parameter's name).

Then the write is handed to the router (which records it, or writes it now) or, with no
router, written now. Without a router the decision is always :data:`DRAW`: there is no
placeholder key anywhere, and a fill outside ``materialize`` can never reuse a key.
"""
from __future__ import annotations

import contextlib
import functools
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Mapping, Protocol, Union

import torch

from fastinit.deferred import PendingWrites, storage_key
from fastinit.distributed import is_dtensor, local_tensor, refuse_unplaced_shard
from fastinit.fill import Fill, TorchWrite, Write, execute
from fastinit.layout import span
from fastinit.spec import KernelParams
from fastinit.streams import SEEDINGS, call_key, stream_for_name


@dataclass(frozen=True)
class Skip:
    """Leave the tensor as it is."""


@dataclass(frozen=True)
class Draw:
    """Use the caller's key (``seed=`` or a generator draw), stream 0, the tensor's index."""


@dataclass(frozen=True, eq=False)
class Keyed:
    """Use ``key`` and ``stream``, with the values of ``base``'s global index (the tensor
    filled is ``base`` or a view of it)."""

    key: int
    stream: int
    base: torch.Tensor


SKIP = Skip()
DRAW = Draw()
_HANDLED = object()  # a hook's answer: done, nothing to return
Route = Union[Skip, Draw, Keyed]


class Router(Protocol):
    """Decides where fills go (``materialize``, ``patch(deferred=True)``)."""

    def route(self, tensor: torch.Tensor) -> Route:
        """The decision for a fill of ``tensor``."""

    def emit(self, write: Write) -> None:
        """Take ``write`` over: record it, or perform it now (``fastinit.fill.execute``)."""


_ROUTER: ContextVar[Router | None] = ContextVar("fastinit_router", default=None)
_INSIDE: ContextVar[bool] = ContextVar("fastinit_inside", default=False)


_OBSERVER: ContextVar[Callable | None] = ContextVar("fastinit_entry_observer", default=None)
#: the open provenance recording (``fastinit.provenance`` sets it), None: none
_PROVENANCE: ContextVar[object | None] = ContextVar("fastinit_provenance", default=None)


def entry(fn: Callable) -> Callable:
    """Mark ``fn`` as a fastinit entry point: the torch operations it performs on the
    way (storage queries, temporaries, writes it has already routed) are fastinit's own,
    and :class:`fastinit.intercept.InitMode` does not treat them as the user's. A
    successful call is reported to the entry observer (``fastinit.empty_init`` records it)."""

    @functools.wraps(fn)
    def entered(*args, **kwargs):
        if _INSIDE.get():
            return fn(*args, **kwargs)
        popped = _pop_own_modes()
        try:
            token = _INSIDE.set(True)
            try:
                result = fn(*args, **kwargs)
            finally:
                _INSIDE.reset(token)
            observer = _OBSERVER.get()
            if observer is not None:
                observer(entered, args, kwargs)
        finally:
            _push_back(popped)
        return result

    entered._fastinit_entry = True  # it takes fastinit's modes off the stack itself
    return entered


class OwnMode:
    """Marks fastinit's torch-function modes. They let every operation of an entry point
    through unchanged, so an entry point runs with them taken off the top of the mode
    stack: the same result, without a Python call for every tensor operation (and
    attribute access) of the fill's own bookkeeping."""


def _pop_own_modes() -> list:
    """Take fastinit's modes off the top of the torch-function mode stack (stopping at the
    first mode that is not fastinit's: the modes below it stay, so a user's mode above
    ours keeps seeing what it sees today); returns them, innermost first."""
    n = torch._C._len_torch_function_stack()
    if not n:
        return _NONE
    popped = []
    while n and isinstance(torch._C._get_function_stack_at(n - 1), OwnMode):
        popped.append(torch._C._pop_torch_function_stack())
        n -= 1
    return popped


_NONE: list = []  # nothing popped (never appended to)


def _push_back(popped: list) -> None:
    for mode in reversed(popped):
        torch._C._push_on_torch_function_stack(mode)


def observe_entries(observer: Callable | None, token=None):
    """Set the entry observer (returns a token); with ``token``, restore the previous one."""
    if token is not None:
        _OBSERVER.reset(token)
        return None
    return _OBSERVER.set(observer)


def open_recording():
    """The open provenance recording (``fastinit.provenance``), or None: what
    :func:`_emit` notes each write in, and what a router notes torch operations in."""
    return _PROVENANCE.get()


def inside() -> bool:
    """Whether the caller runs inside a fastinit entry point."""
    return _INSIDE.get()


class _Internal:
    """fastinit's own bookkeeping operations (storage queries, views it makes for itself):
    not the user's, as inside an entry point (fastinit's modes are taken off the stack
    meanwhile, as there). The context manager :func:`internal` (a class: entered for every
    tensor a replay resolves, where a generator-based context manager costs more than the
    work)."""

    __slots__ = ("popped", "token")

    def __enter__(self) -> None:
        self.popped = _pop_own_modes()
        self.token = _INSIDE.set(True)

    def __exit__(self, *exc) -> bool:
        _INSIDE.reset(self.token)
        _push_back(self.popped)
        return False


class _Marked:
    """As :func:`internal`, for code that has taken fastinit's modes off the stack
    already (a replay's run): only marks what runs in the block as fastinit's own. The
    context manager :func:`marked_inside`."""

    __slots__ = ("token",)

    def __enter__(self) -> None:
        self.token = _INSIDE.set(True)

    def __exit__(self, *exc) -> bool:
        _INSIDE.reset(self.token)
        return False


marked_inside = _Marked
internal = _Internal


@contextlib.contextmanager
def routing(router: Router | None) -> Iterator[Router | None]:
    """Send the fills made inside the block to ``router`` (None: none, write now)."""
    token = _ROUTER.set(router)
    try:
        yield router
    finally:
        _ROUTER.reset(token)


def active() -> Router | None:
    """The router of the current context, if any."""
    return _ROUTER.get()


def decide(tensor: torch.Tensor, seed: int | None, generator: torch.Generator | None
           ) -> tuple[int, int, torch.Tensor] | None:
    """``(key, stream, base)`` for a fill of ``tensor``, or None if it must be skipped.

    Draws from the generator only when the decision is :data:`DRAW` and ``seed`` is None:
    call it after every check has passed.

    Raises:
        NotImplementedError: ``tensor`` is a part of a larger tensor whose place is not
            known (``fastinit.distributed.unplaced_shard_axes``).
    """
    if getattr(tensor, "_local_type", None):  # a part whose place is not known: refused
        refuse_unplaced_shard(tensor)
    router = _ROUTER.get()
    decision = DRAW if router is None else router.route(tensor)
    if isinstance(decision, Keyed):
        if (seed is not None or generator is not None
                or (hasattr(router, "reseeded") and router.reseeded())):
            # a knob the init code set (an explicit seed or generator, torch.manual_seed
            # in __init__): the call's own key, the tensor's stream - values follow the
            # user's seed and still do not depend on how the tensor is sharded
            return call_key(seed, generator), decision.stream, decision.base
        return decision.key, decision.stream, decision.base
    if isinstance(decision, Skip):
        return None
    return call_key(seed, generator), 0, tensor


def fill(tensor: torch.Tensor, params: KernelParams, seed: int | None = None,
         generator: torch.Generator | None = None, draw_round: int = 0) -> None:
    """Fill ``tensor`` (already checked) with distribution ``params``, routed."""
    decided = decide(tensor, seed, generator)
    if decided is None:
        return
    key, stream, base = decided
    _emit(Fill(tensor, base, params, key, stream, draw_round))


def constant(tensor: torch.Tensor, params: KernelParams) -> None:
    """Fill ``tensor`` with a constant (``params`` of ``InitSpec.constant``), routed:
    no key is drawn, but a router may still skip the tensor."""
    router = _ROUTER.get()
    decision = DRAW if router is None else router.route(tensor)
    if not isinstance(decision, Skip):
        base = decision.base if isinstance(decision, Keyed) else tensor
        _emit(Fill(tensor, base, params, 0, 0))


def keyed(tensor: torch.Tensor, seed: int | None,
          generator: torch.Generator | None) -> tuple[int, int] | None:
    """``(key, stream)`` for a function that computes ``tensor``'s values from its own
    draws (``orthogonal_``, ``sparse_``), or None if the tensor must be left alone. The
    function then writes through :func:`torch_write` or :func:`fill`."""
    decided = decide(tensor, seed, generator)
    return None if decided is None else decided[:2]


def fill_keyed(tensor: torch.Tensor, params: KernelParams, key: int, stream: int,
               draw_round: int = 0) -> None:
    """Fill ``tensor`` by its own index with a key already decided by :func:`keyed`."""
    _emit(Fill(tensor, tensor, params, key, stream, draw_round))


def torch_write(tensor: torch.Tensor, apply: Callable[[], object], *,
                routed: bool = True, whole: bool = True) -> None:
    """Write ``tensor`` with torch operations (``apply()``), in order with the other
    writes of the active router. ``whole``: ``apply`` writes every element of ``tensor``.
    ``routed=False``: the caller has already asked the router (:func:`keyed`)."""
    router = _ROUTER.get()
    if router is not None and routed and isinstance(router.route(tensor), Skip):
        return
    _emit(TorchWrite(tensor, apply, whole))


def _emit(write: Write) -> None:
    """Every write of a routed fill ends here: recorded for provenance (when a recording
    is open, ``fastinit.provenance``), then handed to the router or written now."""
    recording = _PROVENANCE.get()
    if recording is not None:
        recording.note(write)
    router = _ROUTER.get()
    if router is None:
        execute(write)
    else:
        router.emit(write)


_NOT_ROUTED = (None, None)


class NameRouter:
    """Fills of named tensors use ``key`` and the stream of each tensor's name, and are
    recorded (written in grouped launches by :meth:`flush`); fills of ``protected``
    tensors are skipped; anything else (temporaries) draws as usual.

    The router of ``materialize`` and ``apply_recipe``. A fill of a view of a named tensor
    takes the named tensor's stream at the view's indices (the named tensor is the one
    whose memory holds the view: several may share one storage). ``written`` collects the
    names filled so far.
    """

    def __init__(self, key: int, named: Mapping[str, torch.Tensor],
                 protected: Iterable[torch.Tensor] = (), *, progress: bool = False,
                 stream_name: Callable[[str], str] | None = None) -> None:
        self.key = key
        #: the name whose stream a tensor of this name takes (``materialize(names=...)``:
        #: a part of a larger model takes the whole model's streams)
        self.stream_name = stream_name or (lambda name: name)
        self.recorder = PendingWrites(progress=progress)
        #: (tensor, its named tensor's entry) of the last :meth:`route`
        self._routed: tuple = _NOT_ROUTED
        self._named: dict[int, list[tuple[str, torch.Tensor, int, tuple[int, int]]]] = {}
        for name, t in named.items():
            self.track(name, t)
        self.protected = {storage_key(t) for t in protected if not _is_empty(t)}
        self.written: set[str] = set()
        #: ``fastinit.streams.SEEDINGS`` when the init code started; None: not watched
        #: (a replay, whose recording already holds such calls' keys)
        self.seedings: int | None = None

    def reseeded(self) -> bool:
        """Whether the init code has called ``torch.manual_seed`` (its calls then take
        their keys from torch's generator, as eager code's values follow that seed)."""
        return self.seedings is not None and SEEDINGS[0] != self.seedings

    def track(self, name: str, t: torch.Tensor) -> None:
        """Name ``t`` (a tensor that now has memory): its fills take its name's stream."""
        self._routed = _NOT_ROUTED
        if _is_empty(t):
            return
        entry = (name, t, stream_for_name(self.stream_name(name)), _span(t))
        entries = self._named.setdefault(storage_key(t), [])
        if all(e[1] is not t for e in entries):
            entries.append(entry)

    def _lookup(self, t: torch.Tensor):
        """The named tensor whose memory holds ``t`` (None: none, or several)."""
        if _is_empty(t):
            return None
        entries = self._named.get(storage_key(t))
        if not entries:
            return None
        if len(entries) == 1:
            return entries[0]
        lo, hi = _span(t)
        inside = [e for e in entries if e[3][0] <= lo and hi <= e[3][1]]
        return inside[0] if len(inside) == 1 else None

    def accepts(self, t: torch.Tensor) -> bool:
        """Whether ``t`` is (part of) a named or a protected tensor."""
        if _is_empty(t):
            return False
        key = storage_key(t)
        return key in self._named or key in self.protected

    def mark_written(self, t: torch.Tensor) -> None:
        """Note a write to ``t`` made outside fastinit (a torch op of the init code)."""
        hit = self._lookup(t)
        if hit is not None:
            self.written.add(hit[0])

    def rebind(self, t: torch.Tensor) -> None:
        """A named tensor now lives in other memory (``param.data = x``): follow it."""
        self._routed = _NOT_ROUTED
        for entries in self._named.values():
            for i, e in enumerate(entries):
                if e[1] is t:
                    del entries[i]
                    self.track(e[0], t)
                    self.written.add(e[0])
                    return

    def wrote(self, target: torch.Tensor, func, args: tuple, kwargs: dict) -> None:
        """An in-place torch operation of the init code (``func(*args, **kwargs)``) wrote
        ``target`` (``fastinit.intercept.InitMode`` says so); a router that tracks more
        overrides this."""
        self.mark_written(target)

    def flow(self, func, args: tuple, kwargs: dict, out) -> None:
        """Every torch operation of the init code and its result ``out``
        (``fastinit.intercept.InitMode``): nothing to do here; a router that follows
        values overrides this."""

    def rebound(self, t: torch.Tensor) -> None:
        """``t`` was given other memory by code fastinit does not see (``Tensor.set_``
        inside a parametrization's ``right_inverse``): the init-code runner says so here.
        Follows it (:meth:`rebind`); a router that tracks more overrides this."""
        self.rebind(t)

    def route(self, tensor: torch.Tensor) -> Route:
        if _is_empty(tensor):
            return DRAW
        hit = self._lookup(tensor)
        self._routed = (tensor, hit)  # the write that follows asks again: see emit
        if hit is not None:
            return Keyed(self.key, hit[2], hit[1])
        return SKIP if storage_key(tensor) in self.protected else DRAW

    def emit(self, write: Write) -> None:
        if _is_empty(write.target):
            return
        routed = self._routed
        hit = routed[1] if routed[0] is write.target else self._lookup(write.target)
        if hit is not None:
            self.written.add(hit[0])
            if is_dtensor(hit[1]) and write.target is not hit[1]:
                self._write_part(write)
                return
        self.recorder.add(write)

    def _write_part(self, write: Write) -> None:
        """A write to part of a sharded tensor (a padding row, a slice): this rank writes
        the elements of the part it holds, now, after the writes pending on that memory."""
        from fastinit.distributed import fill_part
        from fastinit.kernels import contract as C

        self.recorder.flush(self.recorder.pending([write.target]))
        part = getattr(write.target, "_fastinit_part", None)
        if not isinstance(write, Fill) or write.params.dist == C.CONSTANT:
            execute(write if not isinstance(write, Fill) else Fill(
                write.target, write.target, write.params, write.key, write.stream))
        elif part is not None:
            fill_part(write.target, write.params, write.key, write.stream, write.draw_round)
        else:
            raise NotImplementedError(
                "fastinit: a random fill of part of a sharded tensor reached through an "
                "indexing fastinit cannot place in the global tensor; index with integers "
                "and unit-step slices (w[i], w[a:b], w.narrow, w.select)")

    def dtensor_part(self, func, args: tuple, kwargs: dict):
        """``InitMode``'s hook for indexing a named DTensor: the local part (see
        ``fastinit.distributed.local_part``), or None to let torch index it."""
        from fastinit.distributed import local_part

        target = args[0] if args else None
        if kwargs or not is_dtensor(target) or self._lookup(target) is None:
            return None
        name = getattr(func, "__name__", "")
        if name == "__setitem__":
            part = local_part(target, "__getitem__", args[:2])
            if part is None:
                return None
            part[...] = args[2].to_local() if is_dtensor(args[2]) else args[2]
            self.mark_written(target)
            return _HANDLED
        if name in ("__getitem__", "select", "narrow"):
            return local_part(target, name, args)
        return None

    def flush(self) -> None:
        """Write every recorded fill."""
        self.recorder.flush()


def _span(t: torch.Tensor) -> tuple[int, int]:
    return span(local_tensor(t))


def _is_empty(t: torch.Tensor) -> bool:
    return t.is_meta or t.numel() == 0
