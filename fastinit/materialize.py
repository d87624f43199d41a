"""Meta-device models to real ones, equal to eager construction.

The yardstick is eager construction: ``materialize(model)`` gives what building the model
on the real device would have given, with fastinit's streams instead of torch's.

* **Allocation.** Every meta storage gets one real storage on the device, and every
  parameter and buffer on it keeps its view (strides, offset): channels_last stays
  channels_last, parameters carved from one flat buffer stay views of one buffer, tied
  parameters stay one object. Peak memory: the parameter bytes.
* **The model's init, in eager order.** Construction runs a module's children's
  initialization before its own (``nn.MultiheadAttention`` zeroes ``out_proj.bias`` after
  the ``Linear`` drew it; ``nn.Transformer`` re-initializes everything after its layers).
  So: every module's ``reset_parameters()`` (or ``_reset_parameters()``), children before
  parents (post-order), then the model-level init eager construction ends with - Hugging
  Face's ``initialize_weights()`` (``post_init``), or a torchtitan-style ``init_weights()``.
  Parametrized tensors (``weight_norm``, ``register_parametrization``) are initialized as
  plain tensors and handed to the parametrization's ``right_inverse``, as registering it
  after construction does.
* **Recorded, grouped, exact.** Inside, every ``torch.nn.init`` call and in-place
  ``normal_`` / ``uniform_`` / ``zero_`` / ``fill_`` of a model tensor is recorded with the
  materialize seed and the stream of the tensor's name, and written at the end in grouped
  launches; anything that reads a pending tensor runs after its writes. Init code that
  draws from torch's generators (``torch.rand``) runs under generators seeded from the
  materialize seed, and the caller's generator states are restored. A temporary made
  from a model tensor (``t.new_empty(...)``, ``torch.empty_like(t)``) and filled by an
  init function draws from a stream of that tensor's name, so a pipeline stage holding
  part of the model gets the whole model's values (``names=`` maps renumbered names).
* **No uninitialized memory.** Every element of every parameter and buffer must be
  written by the init code (partial writes are tracked element by element) or kept from
  a real tensor; otherwise materialize raises naming the tensors, and leaves the model as
  it was - as on every other failure.
* **What a meta build cannot know.** A model built under ``torch.device("meta")`` keeps
  nothing of its construction, so what ``__init__`` did beyond the init code is not seen.
  Before allocating, ``fastinit.initscan`` reads the modules' ``__init__`` code: where it
  does init work the re-run cannot redo (torchvision's ResNet loop, timm's
  ``_init_weight_goog``, a zero convolution), materialize refuses, naming the class, the
  file and line, and ``fastinit.empty_init()``; ``accept_reset_defaults=True`` takes the
  modules' ``reset_parameters()`` defaults instead (a row ``__init__`` zeroed after
  ``reset_parameters()`` is then drawn again). ``deepcopy``-ed layers inside torch's own
  classes (``nn.TransformerEncoder``) are drawn independently, where eager copies are
  equal. A model built under ``fastinit.empty_init()`` has its construction recorded and
  replayed: exact (``fastinit.construction``).
"""
from __future__ import annotations

import contextlib
import fnmatch
import math
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import torch
from torch import nn

from fastinit import initscan
from fastinit import provenance
from fastinit import route
from fastinit import recipes as recipes_mod
from fastinit.construction import (Construction, Program, Ref, Replay, construction_of,
                                   named_tensors, tensor_attributes)
from fastinit.dataflow import unwritten
from fastinit.distributed import is_dtensor
from fastinit import memory
from fastinit.memory import advise_fresh, fresh_storages
from fastinit import intercept
from fastinit.intercept import recording_into
from fastinit.coverage import Coverage, CoveringRouter
from fastinit.modelinit import is_hf_model, run_model_init
from fastinit.streams import _splitmix64, draw_seed, normalize_seed

#: Smaller models never show a progress bar (they take well under a second).
PROGRESS_MIN_ELEMENTS = 1 << 26


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


# --- allocation -----------------------------------------------------------------------------


def _slots(module: nn.Module) -> list[tuple[dict, str, torch.Tensor]]:
    """Every (parameter or buffer table, name, tensor) of every module, shared ones repeated."""
    return [(table, attr, t) for _, mod in module.named_modules(remove_duplicate=False)
            for table in (mod._parameters, mod._buffers) for attr, t in table.items()
            if t is not None]


def _to_empty(module: nn.Module, device: torch.device) -> None:
    """Sharded (DTensor) models: ``to_empty`` lets FSDP2 re-create its sharded
    parameters (its own hook); re-link the tensors that were shared before."""
    slots = _slots(module)
    if any(not t.is_meta for _, _, t in slots):
        raise NotImplementedError(
            "materialize: a model with meta DTensor parameters must be entirely on meta")
    first: dict[int, tuple[dict, str]] = {}
    links = []
    for table, attr, t in slots:
        if id(t) in first:
            links.append((table, attr, first[id(t)]))
        else:
            first[id(t)] = (table, attr)
    module.to_empty(device=device)
    for table, attr, (src_table, src_attr) in links:
        table[attr] = src_table[src_attr]


class _Allocation:
    """Real storage for a module's tensors to initialize; undoable until the end.

    ``named`` maps each tensor to initialize to its (first) qualified name; ``protected``
    lists the real tensors that are kept (loaded weights).
    """

    def __init__(self, module: nn.Module, device: torch.device, overwrite: bool,
                 keep: Sequence[str] | None) -> None:
        self.module = module
        self.replaced: list[tuple[dict, str, torch.Tensor]] = []
        self.emptied = False
        self.named: dict[str, torch.Tensor] = {}
        self.protected: list[torch.Tensor] = []
        self.params: dict[str, torch.Tensor] = {}  # name -> parameter, for recipes
        slots = _slots(module)
        _refuse_uninitialized_parameters(slots)
        if any(is_dtensor(t) and t.is_meta for _, _, t in slots):
            _to_empty(module, device)
            self.emptied = True
            slots = _slots(module)
        names = _first_names(module)
        hf = is_hf_model(module)
        storages: dict[int, torch.UntypedStorage] = {}  # meta storage -> real storage
        memo: dict[int, torch.Tensor] = {}
        try:
            for table, attr, t in slots:
                if id(t) in memo:  # tied parameters and shared modules stay shared
                    self._replace(table, attr, t, memo[id(t)])
                    continue
                name = names.get(id(t), attr)
                if not t.is_meta and not self.emptied and _kept(t, name, hf, overwrite, keep):
                    self.protected.append(t)
                    memo[id(t)] = t
                    continue
                new = t
                if t.is_meta or (t.device != device and not is_dtensor(t)):
                    new = self._allocate(t, device, storages)
                    self._replace(table, attr, t, new)
                memo[id(t)] = new
                self.named.setdefault(name, new)
                if isinstance(new, nn.Parameter) and not getattr(new, "_is_hf_initialized", False):
                    self.params.setdefault(name, new)
        except BaseException:
            self.undo()
            raise

    def _replace(self, table: dict, attr: str, old: torch.Tensor, new: torch.Tensor) -> None:
        if old is not new:
            self.replaced.append((table, attr, old))
            table[attr] = new

    @staticmethod
    def _allocate(t: torch.Tensor, device: torch.device,
                  storages: dict[int, torch.UntypedStorage]) -> torch.Tensor:
        """``t``'s view of one real storage per source storage (same offset, strides)."""
        key = t.untyped_storage()._cdata
        storage = storages.get(key)
        if storage is None:
            nbytes = max(t.untyped_storage().nbytes(),
                         (t.storage_offset() + _extent(t)) * t.element_size())
            storage = storages[key] = torch.UntypedStorage(nbytes, device=device)
            if nbytes >= memory.ADVISED_MIN_BYTES:
                advise_fresh(storage)  # before the first touch: see fastinit.memory
        new = torch.empty(0, dtype=t.dtype, device=device)
        return _as_like(new.set_(storage, t.storage_offset(), t.shape, t.stride()), t)

    def undo(self) -> None:
        for table, attr, old in reversed(self.replaced):
            table[attr] = old
        self.replaced.clear()
        if self.emptied:
            self.module.to_empty(device="meta")


def _extent(t: torch.Tensor) -> int:
    """Elements from a tensor's first to one past its last element."""
    if t.numel() == 0:
        return 0
    return 1 + sum((n - 1) * s for n, s in zip(t.shape, t.stride()))


def _kept(t: torch.Tensor, name: str, hf: bool, overwrite: bool,
          keep: Sequence[str] | None) -> bool:
    """Whether a real tensor is kept as it is (a loaded weight) rather than initialized."""
    if overwrite:
        return False
    if keep is not None:
        return any(fnmatch.fnmatchcase(name, g) for g in keep)
    if hf:  # transformers flags what it loaded; anything else is construction memory
        return bool(getattr(t, "_is_hf_initialized", False))
    return True


def _refuse_uninitialized_parameters(slots) -> None:
    lazy = [attr for _, attr, t in slots
            if isinstance(t, nn.parameter.UninitializedTensorMixin)]
    if lazy:
        raise ValueError(
            "materialize: the model has uninitialized lazy parameters or buffers "
            f"({', '.join(lazy)}) whose shapes are not known yet; run a forward pass (or "
            "build the model with explicit sizes) before materializing it")


# --- materialize -------------------------------------------------------------------------------


@contextlib.contextmanager
def _seeded_generators(device: torch.device, key: int) -> Iterator[None]:
    """Init code that draws from torch's generators (``torch.rand``) draws from generators
    seeded from the materialize key; the caller's states are restored afterwards."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] \
        if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices, device_type="cuda"):
        seed = _splitmix64(key ^ 0x6D617465)  # "mate"
        torch.default_generator.manual_seed(seed)
        for d in devices:
            torch.cuda.default_generators[d].manual_seed(seed)
        yield


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while materialize runs: its bookkeeping makes many
    small objects that stay alive until it ends (a few per tensor and per recorded call),
    so the collector would scan the whole heap again and again - about a quarter of
    materialize's time for a model of thousands of small tensors. Reference counting still frees what
    dies; the collector runs as before once materialize returns."""
    import gc

    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def materialize(module: nn.Module, device: torch.device | str | None = None, *,
                seed: int | None = None, recipe=None, overwrite: bool = False,
                keep: Iterable[str] | None = None, progress: bool = True,
                accept_reset_defaults: bool = False,
                names: Mapping[str, str] | Callable[[str], str] | None = None) -> nn.Module:
    """Give a model built on the meta device real storage, initialized as eager
    construction would have initialized it, in grouped launches.

    Every meta parameter and buffer gets storage on ``device`` (views of one storage stay
    views of one storage; strides are kept; tied parameters stay one object). Then the
    model's own initialization runs in eager order (see the module documentation) with
    every fill recorded, and all of them are written at the end in grouped launches.

    Values depend only on ``seed``, each tensor's qualified name, its shape and dtype -
    not on module order, nor on the device. Init code that draws from torch's generators
    draws from generators seeded from ``seed``; the caller's generator states are left as
    they were.

    Real tensors already in the model are kept - weights the user loaded - unless
    ``overwrite``; in a Hugging Face model only those transformers flagged as loaded
    (``_is_hf_initialized``) are kept, since a real tensor of a model built on meta is
    construction memory (a legacy ``nn.Parameter(torch.Tensor(n))``). ``keep`` names the
    real tensors to keep explicitly (globs), for any model.

    Args:
        module: the model (built under ``torch.device("meta")``, or partly so)
        device: where to allocate (default: CUDA if available, else CPU); not "meta"
        seed: the 64-bit seed (default: drawn from torch's default generator, so
            ``torch.manual_seed`` makes materialize reproducible)
        recipe: a scheme applied after the model's own init: its rules overwrite the
            parameters they match (the overwritten fills are dropped before they are
            written), the rest keeps the model's init. A built-in name (``"resnet"``,
            ``"rnn"``, ``"dcgan"``, ``"rezero"``, ``"lora"``, ``"mup"``, ``"gpt2"``,
            ``"llama"``, ``"bert"``, ``"torchtitan_llama"``, ``"vit"``), a recipe from
            ``fastinit.recipes`` (``resnet(zero_init_residual=True)``), or a mapping
            ``{name-glob: init}`` (``fastinit.recipes.rules(mapping, strict=True)``
            requires every parameter to match). A built-in recipe that finds nothing of
            what it is for raises (``"rnn"`` on a model without recurrent layers); a
            mapping matching nothing warns. See
            ``fastinit.recipes`` and ``fastinit.apply_recipe`` (the same on a real model).
        overwrite: re-initialize every tensor, the real ones included
        keep: globs of the names of real tensors to keep as they are (default: see above)
        progress: show a progress bar when the CPU fill takes more than two seconds
        accept_reset_defaults: for a model not built under ``fastinit.empty_init()``
            (a plain meta build), materialize even where a module's ``__init__`` does init
            work that re-running the init code cannot redo, giving those modules their
            ``reset_parameters()`` defaults instead (see ``fastinit.initscan``); without
            it such a model is refused before anything is allocated
        names: for a part of a larger model (a pipeline stage), the names its tensors
            have in the whole model, so that each takes the whole model's stream and
            values: a mapping of prefixes (``{"layers.0": "layers.2"}`` renames
            ``layers.0.*`` to ``layers.2.*``; the longest matching prefix wins, a prefix
            matches whole components) or a function of the qualified name. Names it does
            not map stay as they are. Not needed where a split keeps the names (a
            ``ModuleDict`` of layers, as torchtitan's pipeline split keeps them). For a
            model built under ``empty_init()`` the mapped names are also the names its
            tensors were recorded under

    Every write is recorded: ``fastinit.provenance(model)`` lists, per parameter and buffer,
    the writes that made its values (law, init code and line, seed, stream, region).

    Returns:
        the module, materialized in place

    Raises:
        fastinit.initscan.LostInitError: (a ValueError) a plain meta build whose modules'
            ``__init__`` does init work the re-run cannot redo, naming the class, the file
            and line, and the fix (``fastinit.empty_init()``), unless
            ``accept_reset_defaults``.
        ValueError: if an element of a parameter or buffer would be left uninitialized (no
            init code writes it), for lazy (uninitialized) parameters, a meta ``device``,
            or recipe errors. On any error the module is left as it was.

    Examples:
        >>> with torch.device("meta"):
        ...     model = LlamaForCausalLM(config)
        >>> fastinit.materialize(model, "cuda", seed=0)
    """
    device = torch.device(device) if device is not None else default_device()
    if device.type == "meta":
        raise ValueError("materialize: the device must hold memory (e.g. 'cpu' or 'cuda'), "
                         "not 'meta'")
    key = normalize_seed(seed) if seed is not None else draw_seed(None)
    keep = None if keep is None else list(keep)
    stream_name = _stream_namer(names)
    recorded = construction_of(module)
    with _seeded_generators(device, key), fresh_storages(), _gc_paused(), \
            provenance.session(module):
        if recorded is not None and _replay_construction(
                module, recorded, device, key, recipe, overwrite, keep, progress,
                stream_name):
            return module
        if not accept_reset_defaults:
            initscan.check(module, recipe)  # exact or a clear error, before allocating
        alloc = _Allocation(module, device, overwrite, keep)
        try:
            big = sum(t.numel() for t in alloc.named.values()) >= PROGRESS_MIN_ELEMENTS
            coverage = Coverage(alloc.named)
            router = CoveringRouter(key, alloc.named, alloc.protected, coverage,
                             progress=progress and big and device.type == "cpu",
                             stream_name=stream_name)
            router.seedings = intercept.SEEDINGS[0]
            router.temps = Coverage()
            with recording_into(router, device):
                run_model_init(module)
                if recipe is not None:
                    # the model's own init has run: the recipe's rules overwrite what they match
                    recipes_mod.resolve(recipe, module).plan(module, alloc.params).run()
            _check_written(module, alloc, coverage)
            router.flush()
        except BaseException:
            alloc.undo()
            raise
    return module


# --- models built under empty_init(): replay their construction ------------------------------


def _stream_namer(names) -> Callable[[str], str] | None:
    """``materialize(names=...)`` as a function of a qualified name (None: the identity)."""
    if names is None or callable(names):
        return names
    if not isinstance(names, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in names.items()):
        raise TypeError("materialize: names must be a mapping of str prefixes to str "
                        f"prefixes or a function of a name, not {type(names).__name__}")
    table = dict(names)

    def rename(name: str) -> str:
        parts = name.split(".")
        for n in range(len(parts), 0, -1):
            prefix = ".".join(parts[:n])
            if prefix in table:
                return ".".join(filter(None, [table[prefix]] + parts[n:]))
        return name

    return rename


def _replay_construction(module: nn.Module, recorded: Construction, device: torch.device,
                         key: int, recipe, overwrite: bool, keep, progress: bool,
                         stream_name: Callable[[str], str] | None = None) -> bool:
    """materialize for a model built inside ``empty_init()``: replay what its tensors
    depend on (see ``fastinit.construction``), with the same routing, recording, grouped
    writes and coverage as the meta path.

    Returns False, having done nothing, when the recording no longer describes any of the
    model's tensors (all were replaced: a model materialized before) and ``overwrite``
    asks for re-initialization: the caller then runs the model's init code on them, as
    for any real model."""
    program = recorded.program
    slots = _slots(module)
    _refuse_uninitialized_parameters(slots)
    # tensors kept as plain attributes, made in the block (on meta): replayed like the rest
    slots += [(table, attr, t) for _, table, attr, t in tensor_attributes(module)
              if t.is_meta and program.knows(t)]
    hf = is_hf_model(module)
    names = _first_names(module)
    replayed: dict[int, tuple[str, Ref]] = {}  # id(tensor) -> (name, ref)
    kept: list[torch.Tensor] = []
    changed = []
    for _, _, t in slots:
        name = names.get(id(t))
        if id(t) in replayed or name is None:
            continue
        # the name it was built under (a stage's renumbered layer: through ``names=``)
        built = stream_name(name) if stream_name is not None else name
        ref = recorded.refs.get(built)
        same = ref is not None and (
            (recorded.objects[built] is t and program.ref(t) == ref)
            or (is_dtensor(t) and tuple(t.shape) == ref.shape and t.dtype == ref.dtype))
        # a real tensor the block made or wrote (legacy torch.Tensor(n), a copy of one) is
        # construction memory: replayed unless kept explicitly (keep=, transformers' flag);
        # one given other memory after the block (a loaded weight) is kept
        construction_memory = same and not t.is_meta
        if not t.is_meta and not is_dtensor(t) and (
                _kept(t, name, hf or construction_memory, overwrite, keep)):
            kept.append(t)
            continue
        if not same:
            if t.is_meta or is_dtensor(t):
                changed.append(name)
            else:
                kept.append(t)
            continue
        replayed[id(t)] = (name, ref)
    if overwrite and not replayed and not changed:
        return False
    if changed:
        raise ValueError(
            "materialize: these tensors were not made by operations the "
            "fastinit.empty_init() block that built the model recorded: "
            f"{', '.join(changed)} (made outside the block, replaced or converted after "
            "it, or computed by an operation whose result the recording does not follow); "
            "make them inside the block from torch operations on tensors, or build the "
            "model under torch.device('meta') to have materialize run its init code instead; "
            "for a part of the built model whose modules were renamed (a pipeline stage's "
            "renumbered layers), pass names= with the names they were built under")
    sharded = {id(t): t for _, _, t in slots if id(t) in replayed and is_dtensor(t)}
    if any(t.is_meta for t in sharded.values()):
        _to_empty(module, device)
    for i, t in sharded.items():
        name, ref = replayed[i]
        _replay_sharded(program, device, key, name, ref, t, replayed.values(), stream_name)
    plain = {i: v for i, v in replayed.items() if i not in sharded}
    total = sum(math.prod(ref.shape) for _, ref in plain.values())
    replay, router, coverage = _named_replay(
        program, device, key, replayed.values(), kept, stream_name=stream_name,
        checked={name for name, _ in plain.values()},
        progress=progress and total >= PROGRESS_MIN_ELEMENTS and device.type == "cpu")
    swapped: list[tuple[dict, str, torch.Tensor]] = []
    ops = program.needed({ref.storage for _, ref in plain.values()})
    garbage = unwritten(program, ops, dict(plain.values()))
    try:
        with recording_into(router, device):
            replay.run(ops)
            for name, (valid, why) in garbage.items():
                coverage.restrict(name, valid, why)
            memo: dict[int, torch.Tensor] = {}
            params: dict[str, torch.Tensor] = {}
            with route.internal():  # fastinit's own bookkeeping: not the init code's
                for table, attr, t in slots:
                    if id(t) not in plain:
                        continue
                    new = memo.get(id(t))
                    if new is None:
                        new = memo[id(t)] = _as_like(replay.resolve(plain[id(t)][1]), t)
                    swapped.append((table, attr, t))
                    table[attr] = new
                    if isinstance(new, nn.Parameter) and not getattr(
                            new, "_is_hf_initialized", False):
                        params.setdefault(plain[id(t)][0], new)
            if recipe is not None:
                recipes_mod.resolve(recipe, module).plan(module, params).run()
        _raise_missing(coverage.missing())
        router.flush()
    except BaseException:
        for table, attr, t in reversed(swapped):
            table[attr] = t
        raise
    finally:
        # the replay and its binding callback refer to each other: freed now, by reference
        # counting, instead of by the next collection (which scans all they hold)
        replay.on_bind = None
    return True


def _replay_sharded(program: Program, device: torch.device, key: int, name: str, ref: Ref,
                    dt, named, stream_name: Callable[[str], str] | None = None) -> None:
    """A DTensor parameter of a recorded model: replay it whole on this rank (one
    temporary of its global size), then keep the part this rank holds. No communication.
    ``named``: every replayed tensor of the model (``(name, ref)``): what this one is
    computed from draws from the same streams as in the whole model's replay."""
    from fastinit.distributed import copy_from_full_

    replay, router, coverage = _named_replay(program, device, key, named, (), checked={name},
                                             stream_name=stream_name)
    ops = program.needed({ref.storage})
    with recording_into(router, device):
        replay.run(ops)
        for n, (valid, why) in unwritten(program, ops, {name: ref}).items():
            coverage.restrict(n, valid, why)
    _raise_missing(coverage.missing())
    router.flush()
    with torch.no_grad():
        copy_from_full_(dt, replay.resolve(ref))


def _named_replay(program: Program, device: torch.device, key: int, named, kept, *,
                  checked: set[str], progress: bool = False,
                  stream_name: Callable[[str], str] | None = None
                  ) -> tuple[Replay, CoveringRouter, Coverage]:
    """A replay whose router names each of ``named`` (``(name, ref)`` pairs) as soon as
    its memory exists - before its fills run - and follows what is written of those in
    ``checked`` (names). A part of the program replayed on its own (one sharded
    parameter) names every tensor, so that each fill draws from the stream it draws from
    in the whole replay."""
    by_storage: dict[int, list[tuple[str, Ref]]] = {}
    for name, ref in named:
        by_storage.setdefault(ref.storage, []).append((name, ref))
    coverage = Coverage()
    router = CoveringRouter(key, {}, kept, coverage, progress=progress, stream_name=stream_name)
    replay = Replay(program, device, key=key)

    def bound(s: int) -> None:
        info = program.storages.get(s)
        if info is not None and info.empty and info.nbytes >= memory.ADVISED_MIN_BYTES:
            advise_fresh(replay.env[s])  # memory nobody has written yet (smaller: no advice)
        for name, ref in by_storage.get(s, ()):
            real = replay.resolve(ref)
            router.track(name, real)
            if name in checked:
                coverage.add(name, real, full=not program.storages[s].empty)

    replay.on_bind = bound
    return replay, router, coverage


def _as_like(real: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """``real`` dressed as ``old`` was: a Parameter (its attributes kept) or a buffer; a
    new tensor object either way (``real`` is the replay's view, which its bookkeeping
    holds too)."""
    if isinstance(old, nn.Parameter):
        new = nn.Parameter(real, requires_grad=old.requires_grad)
    else:
        new = real.detach().requires_grad_(old.requires_grad)
    new.__dict__.update(old.__dict__)
    return new


def _first_names(module: nn.Module) -> dict[int, str]:
    """``id(tensor)`` -> the first qualified name of each parameter, buffer and tensor
    attribute (parameters first, then buffers)."""
    names: dict[int, str] = {}
    for name, t in named_tensors(module):
        names.setdefault(id(t), name)
    return names


def _raise_missing(missing: Mapping[str, str], recorded: bool = True) -> None:
    """Refuse uninitialized memory, naming the tensors and what to do about them."""
    if not missing:
        return
    listed = ", ".join(f"{n} ({w})" for n, w in sorted(missing.items()))
    fix = ("write them in the model's __init__ or reset_parameters() - and write a "
           "temporary (torch.empty, new_empty) before its values are used - or pass a "
           "recipe that covers them") if recorded else (
        "build the model under fastinit.empty_init() so that values computed at "
        "construction are recorded, give their modules a reset_parameters(), or pass a "
        "recipe that covers them")
    raise ValueError("materialize: these tensors would hold uninitialized memory, because the "
                     f"model's {'construction and ' if recorded else ''}init code does not "
                     f"write them (entirely): {listed}; {fix}")


def _check_written(module: nn.Module, alloc: _Allocation, coverage: Coverage) -> None:
    owned = {id(t) for t in module.parameters()} | {id(t) for t in module.buffers()}
    _raise_missing({name: why for name, why in coverage.missing().items()
                    if id(alloc.named[name]) in owned}, recorded=False)
