"""Meta-device models to real ones: allocate, run the model's own init, fill in one pass.

``materialize`` gives every meta parameter and buffer real storage, then runs the model's
initialization code with every fill recorded instead of executed (see ``intercept`` and
``deferred``), and writes all of them at the end in grouped launches: one kernel launch
per dtype on a GPU, one pass over a thread pool on the CPU. Each tensor's values come
from the materialize seed and a stream derived from its qualified name, so they do not
depend on the order in which modules were built or initialized, nor on the device.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn

from fastinit import recipes as recipes_mod
from fastinit import route
from fastinit.distributed import is_dtensor
from fastinit.intercept import InitMode, patched_init_functions
from fastinit.streams import draw_seed, normalize_seed


#: Smaller models never show a progress bar (they take well under a second).
PROGRESS_MIN_ELEMENTS = 1 << 26


def default_device() -> torch.device:
    return torch.device("cuda") if torch.cuda.is_available() else torch.device("cpu")


def _is_hf_model(module: nn.Module) -> bool:
    return any(c.__name__ == "PreTrainedModel" and c.__module__.startswith("transformers")
               for c in type(module).__mro__)


def run_model_init(module: nn.Module) -> None:
    """Run the model's own initialization code.

    Hugging Face models: ``initialize_weights()`` (transformers 5) or ``init_weights()``;
    models with an ``init_weights()`` method (torchtitan style): that; otherwise every
    submodule's ``reset_parameters()`` (or ``_reset_parameters()``), as torch's layers call
    it at construction.
    """
    if _is_hf_model(module):
        if hasattr(module, "initialize_weights"):
            module.initialize_weights()
        else:
            module.init_weights()
        return
    init_weights = getattr(module, "init_weights", None)
    if callable(init_weights):
        init_weights()
        return
    for m in module.modules():
        reset = getattr(m, "reset_parameters", None) or getattr(m, "_reset_parameters", None)
        if callable(reset):
            reset()


@contextlib.contextmanager
def _untied(module: nn.Module) -> Iterator[None]:
    """Hugging Face ties parameters after initializing them, so the init code of a tied
    *target* (the LM head sharing the embedding) writes values that the tie throws away.
    On a model built on meta the tie exists before init, and that write would land on the
    shared tensor (undoing, e.g., a zeroed padding row). Give each tied target a meta
    stand-in while the init code runs: its writes go nowhere, as in transformers' own order.
    """
    targets = getattr(module, "all_tied_weights_keys", None)
    if not isinstance(targets, dict) or not _is_hf_model(module):
        yield
        return
    swapped = []
    for target, source in targets.items():
        try:
            t = module.get_parameter(target)
            src = module.get_parameter(source)
        except AttributeError:
            continue
        if t is not src:
            continue
        owner_name, _, attr = target.rpartition(".")
        owner = module.get_submodule(owner_name)
        stand_in = nn.Parameter(torch.empty(t.shape, dtype=t.dtype, device="meta"),
                                requires_grad=t.requires_grad)
        swapped.append((owner, attr, t))
        owner._parameters[attr] = stand_in
    try:
        yield
    finally:
        for owner, attr, t in reversed(swapped):
            owner._parameters[attr] = t


class _Allocation:
    """Real storage for a module's meta tensors; undoable until the fill is flushed."""

    def __init__(self, module: nn.Module, device: torch.device, overwrite: bool) -> None:
        self.module = module
        self.replaced: list[tuple[dict, str, torch.Tensor]] = []
        self.emptied = False
        self.named: dict[str, torch.Tensor] = {}  # tensors to initialize, by name
        self.protected: list[torch.Tensor] = []  # real already: left alone
        self.params: dict[str, torch.Tensor] = {}  # name -> parameter, for recipes
        tensors = [t for _, _, t in _slots(module)]
        if any(is_dtensor(t) and t.is_meta for t in tensors):
            self._to_empty(device)
        names: dict[int, str] = {}
        for name, p in module.named_parameters():
            names.setdefault(id(p), name)
        for name, b in module.named_buffers():
            names.setdefault(id(b), name)
        memo: dict[int, torch.Tensor] = {}
        for table, attr, t in _slots(module):
            if id(t) in memo:  # tied parameters and shared modules stay shared
                self._replace(table, attr, t, memo[id(t)])
                continue
            name = names.get(id(t), attr)
            if t.is_meta:
                new = self._allocate(t, device)
                memo[id(t)] = new
                self._replace(table, attr, t, new)
                t = new
            elif not overwrite and not self.emptied:
                self.protected.append(t)
                memo[id(t)] = t
                continue
            memo[id(t)] = t
            self.named.setdefault(name, t)
            if isinstance(t, nn.Parameter) and not getattr(t, "_is_hf_initialized", False):
                self.params.setdefault(name, t)

    def _to_empty(self, device: torch.device) -> None:
        """Sharded (DTensor) models: ``to_empty`` lets FSDP2 re-create its sharded
        parameters (its own hook); re-link the tensors that were shared before."""
        slots = _slots(self.module)
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
        self.module.to_empty(device=device)
        self.emptied = True
        for table, attr, (src_table, src_attr) in links:
            table[attr] = src_table[src_attr]

    def _replace(self, table: dict, attr: str, old: torch.Tensor, new: torch.Tensor) -> None:
        if old is not new:
            self.replaced.append((table, attr, old))
            table[attr] = new

    @staticmethod
    def _allocate(t: torch.Tensor, device: torch.device) -> torch.Tensor:
        new = torch.empty(t.shape, dtype=t.dtype, device=device)
        if isinstance(t, nn.Parameter):
            new = nn.Parameter(new, requires_grad=t.requires_grad)
            new.__dict__.update(t.__dict__)
        return new

    def undo(self) -> None:
        for table, attr, old in reversed(self.replaced):
            table[attr] = old
        if self.emptied:
            self.module.to_empty(device="meta")


def _slots(module: nn.Module) -> list[tuple[dict, str, torch.Tensor]]:
    """Every (parameter or buffer table, name, tensor) of every module, shared ones repeated."""
    return [(table, attr, t) for _, mod in module.named_modules(remove_duplicate=False)
            for table in (mod._parameters, mod._buffers) for attr, t in table.items()
            if t is not None]


def materialize(module: nn.Module, device: torch.device | str | None = None, *,
                seed: int | None = None, recipe=None, overwrite: bool = False,
                progress: bool = True) -> nn.Module:
    """Give a model built on the meta device real storage and initialize it in one pass.

    Every meta parameter and buffer gets storage on ``device``; tied parameters stay
    tied. Then the model's own initialization runs (``run_model_init``) with every
    ``torch.nn.init`` call and in-place ``normal_`` / ``uniform_`` / ``zero_`` / ``fill_``
    recorded, and all records are written at the end in grouped launches. Buffers that
    the model's code computes (RoPE ``inv_freq``, ``position_ids``) are computed by it.

    Values depend only on ``seed``, each tensor's qualified name, its shape and dtype:
    not on module order, not on the device. Tensors that were already real are left alone
    (their fills are skipped) unless ``overwrite=True``. Hugging Face's
    ``_is_hf_initialized`` flags are respected.

    Args:
        module: the model (built under ``torch.device("meta")``, or partly so)
        device: where to allocate (default: CUDA if available, else CPU)
        seed: the 64-bit seed (default: drawn from torch's default generator, so
            ``torch.manual_seed`` makes materialize reproducible)
        recipe: a scheme applied after the model's own init: its rules overwrite the
            parameters they match (the overwritten fills are dropped before they are
            written), the rest keeps the model's init. A built-in name (``"resnet"``,
            ``"rnn"``, ``"dcgan"``, ``"rezero"``, ``"lora"``, ``"mup"``, ``"gpt2"``,
            ``"llama"``, ``"bert"``, ``"torchtitan_llama"``, ``"vit"``), a recipe from
            ``fastinit.recipes`` (``resnet(zero_init_residual=True)``), or a mapping
            ``{name-glob: init}`` (``fastinit.recipes.rules(mapping, strict=True)``
            requires every parameter to match). A recipe matching nothing warns. See
            ``fastinit.recipes`` and ``fastinit.apply_recipe`` (the same on a real model).
        overwrite: also re-initialize parameters and buffers that are already real
        progress: show a progress bar when the CPU fill takes more than two seconds

    Returns:
        the module, materialized in place

    Raises:
        ValueError: if a tensor is left uninitialized (no init code and no recipe rule
            wrote it), or for recipe errors; the module is then left as it was.

    Examples:
        >>> with torch.device("meta"):
        ...     model = LlamaForCausalLM(config)
        >>> fastinit.materialize(model, "cuda", seed=0)
    """
    device = torch.device(device) if device is not None else default_device()
    key = normalize_seed(seed) if seed is not None else draw_seed(None)
    alloc = _Allocation(module, device, overwrite)
    big = sum(t.numel() for t in alloc.named.values()) >= PROGRESS_MIN_ELEMENTS
    router = route.NameRouter(key, alloc.named, alloc.protected,
                              progress=progress and big and device.type == "cpu")
    try:
        with _recording(router):
            with _untied(module):
                run_model_init(module)
            if recipe is not None:
                # the model's own init has run: the recipe's rules overwrite what they match
                recipes_mod.resolve(recipe, module).plan(module, alloc.params).run()
        missing = [name for name, t in alloc.named.items()
                   if t.numel() and name not in router.written and _still_owned(module, t)]
        if missing:
            raise ValueError(
                "materialize: nothing initialized these tensors (the model's init code does not "
                f"write them): {', '.join(sorted(missing))}; give their modules a "
                "reset_parameters() or pass a recipe that covers them")
    except BaseException:
        alloc.undo()
        raise
    router.flush()
    return module


def _still_owned(module: nn.Module, t: torch.Tensor) -> bool:
    return any(p is t for p in module.parameters()) or any(b is t for b in module.buffers())


@contextlib.contextmanager
def _recording(router: route.NameRouter) -> Iterator[None]:
    with patched_init_functions(), route.routing(router), torch.no_grad(), InitMode(
            recorder=router.recorder, methods=True, accepts=router.accepts,
            on_write=router.mark_written):
        yield
