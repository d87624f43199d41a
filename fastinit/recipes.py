"""Initialization schemes as recipes: which tensors of a model to initialize, and how.

A recipe is applied by ``materialize(model, recipe=...)`` (after the model's own init) or
by :func:`apply_recipe` (on a model that is already real). Either way the recipe's writes
are recorded and written in grouped launches, each tensor with the seed and the stream of
its qualified name, so ``apply_recipe(model, r, seed=s)`` gives a real model what
``materialize(meta_model, seed=s, recipe=r)`` gives the tensors the recipe matches.

How a recipe composes with the model:

* ``materialize``: the model's own init runs first; the recipe's rules then overwrite what
  they match (an overwritten fill is dropped before it is written: no extra work);
* ``apply_recipe``: only what the rules match is rewritten; everything else is left as it
  is. Hugging Face ``_is_hf_initialized`` flags do not protect a tensor from an explicit
  ``apply_recipe``;
* a built-in recipe that finds nothing of what it is for in the model (``"rnn"`` without
  recurrent layers, ``"lora"`` without adapters, ``"rezero"`` without gates...) raises
  ``ValueError`` naming the recipe and what it looks for, before anything is written; one
  whose targets are all kept (weights ``materialize`` keeps) warns and writes nothing;
  a mapping of globs that matches nothing warns (and writes nothing);
* a mapping ``{name-glob: init}`` rewrites the parameters its globs match (the first
  matching glob wins; ``*`` matches any characters, dots included); ``rules(mapping,
  strict=True)`` also requires every parameter to be matched.

Built-in recipes, by name or with options:

==================== ================================================================
``"resnet"``         :func:`resnet`: Kaiming-normal (fan_out, ReLU) convs, norms 1/0
``"rnn"``            :func:`rnn`: Xavier input, orthogonal recurrent, forget bias 1
``"dcgan"``          :func:`dcgan`: N(0, 0.02) convs, BatchNorm N(1, 0.02) / 0
``"rezero"``         :func:`rezero`: residual gates 0
``"lora"``           :func:`lora`: PEFT's adapter init (A Kaiming or Gaussian, B 0)
``"mup"``            :func:`mup`: the model's init with ``mup.init``'s functions
``"gpt2"``, ``"llama"``, ``"bert"``, ``"torchtitan_llama"``, ``"vit"``: name-glob schemes
==================== ================================================================

Examples:
    >>> fastinit.materialize(model, recipe=fastinit.recipes.resnet(zero_init_residual=True))
    >>> fastinit.apply_recipe(model, "lora", seed=0)  # re-initialize the adapters only
    >>> recipe = {"*norm*.weight": ones(), "*.bias": zeros(), "*": normal(std=0.02)}
    >>> fastinit.materialize(model, recipe=recipe)
"""
from __future__ import annotations

import contextlib
import fnmatch
import functools
import math
import os
import re
import sys
import warnings
from typing import Callable, Iterable, Iterator, Mapping, Sequence, Union

import torch
from torch import nn

from fastinit import route
from fastinit.distributed import is_dtensor
from fastinit.fill import fill_target, fill_tensor
from fastinit.intercept import recording
from fastinit import laws
from fastinit.arguments import _check_mode, _kaiming_gain, _variance_scaling_spec, check_spec, fill_spec_
from fastinit.kernels import contract as C
from fastinit.provenance import note_unmatched, recorded as _recorded
from fastinit.spec import SUPPORTED_DTYPES, InitSpec, check_dtype
from fastinit.streams import check_rng, draw_seed, normalize_seed

__all__ = [
    # inits
    "Init", "normal", "trunc_normal", "uniform", "constant", "zeros", "ones",
    "scaled_residual", "kaiming_normal", "kaiming_uniform", "xavier_uniform",
    "xavier_normal", "orthogonal", "variance_scaling", "lecun_normal", "lecun_uniform",
    # recipes
    "Recipe", "Plan", "rules", "resnet", "rnn", "dcgan", "rezero", "lora", "mup",
    "gpt2", "llama", "bert", "torchtitan_llama", "vit", "RECIPES",
    # applying them
    "resolve", "apply", "apply_recipe",
]

_FN = "recipes"


# --- inits: one initialization of one tensor ------------------------------------------------------


class Init:
    """One initialization of a recipe: a distribution, possibly depending on the tensor.

    ``make(tensor, name)`` gives the :class:`~fastinit.spec.InitSpec` for a tensor (its
    shape decides fans, its name a layer index). Calling an init fills a tensor in place,
    as the matching ``fastinit.<fn>_`` function would.
    """

    def __init__(self, describe: str, make: Callable[[torch.Tensor, str], InitSpec]) -> None:
        self._describe = describe
        self._make = make

    def spec(self, tensor: torch.Tensor, name: str) -> InitSpec | None:
        """The distribution for ``tensor``, or None for inits that are not one
        distribution (structured matrices)."""
        return self._make(tensor, name)

    def check(self, tensor: torch.Tensor, name: str) -> None:
        """Raise for a tensor this init cannot fill; called before anything is written."""
        check_spec(tensor, self.spec(tensor, name), _FN)

    def write(self, tensor: torch.Tensor, name: str, seed: int | None = None,
              generator: torch.Generator | None = None) -> None:
        """The routed fill (after :meth:`check`)."""
        fill_spec_(tensor, self.spec(tensor, name), _FN, seed, generator)

    def __call__(self, tensor: torch.Tensor, name: str = "", *,
                 generator: torch.Generator | None = None,
                 seed: int | None = None) -> torch.Tensor:
        """Fill ``tensor`` in place: a key from ``seed`` or drawn from ``generator``
        (default: torch's default generator), or - inside ``materialize`` /
        ``apply_recipe`` - the seed of the call and the stream of the parameter's name."""
        check_rng(seed, generator)
        self.check(tensor, name)
        self.write(tensor, name, seed, generator)
        return tensor

    def __repr__(self) -> str:
        return self._describe


class _WriteInit(Init):
    """An init that writes a tensor itself (structured matrices, constant vectors):
    ``check(tensor, name)`` validates, ``write(tensor, name, seed, generator)`` writes
    through ``fastinit.route``."""

    def __init__(self, describe: str, check: Callable[[torch.Tensor, str], None],
                 write: Callable[..., None]) -> None:
        super().__init__(describe, lambda t, n: None)
        self._check = check
        self._write = write

    def check(self, tensor: torch.Tensor, name: str) -> None:
        self._check(tensor, name)

    def write(self, tensor: torch.Tensor, name: str, seed: int | None = None,
              generator: torch.Generator | None = None) -> None:
        self._write(tensor, name, seed, generator)


def normal(mean: float = 0.0, std: float = 1.0) -> Init:
    """:math:`\\mathcal{N}(\\text{mean}, \\text{std}^2)`, as ``fastinit.normal_``."""
    spec = InitSpec.normal(mean, std)
    return Init(f"normal(mean={mean}, std={std})", lambda t, n: spec)


def trunc_normal(mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0) -> Init:
    """The normal truncated to ``[a, b]`` (absolute bounds), as ``fastinit.trunc_normal_``."""
    spec = InitSpec.trunc_normal(mean, std, a, b)
    return Init(f"trunc_normal(mean={mean}, std={std}, a={a}, b={b})", lambda t, n: spec)


def uniform(a: float = 0.0, b: float = 1.0) -> Init:
    """:math:`\\mathcal{U}(a, b)`, as ``fastinit.uniform_``."""
    spec = InitSpec.uniform(a, b)
    return Init(f"uniform(a={a}, b={b})", lambda t, n: spec)


def constant(value: float) -> Init:
    """Every element ``value``, as ``fastinit.constant_``."""
    spec = InitSpec.constant(value)
    return Init(f"constant({value})", lambda t, n: spec)


def zeros() -> Init:
    """Every element 0."""
    return constant(0.0)


def ones() -> Init:
    """Every element 1."""
    return constant(1.0)


def _fan_spec(make: Callable[[torch.Tensor], InitSpec]) -> Callable[[torch.Tensor, str], InitSpec]:
    """A fan-based spec, or nothing to draw for a zero-element tensor (whose fans may be 0)."""
    def spec(t: torch.Tensor, name: str) -> InitSpec:
        if t.dim() >= 2 and t.numel() == 0:
            return InitSpec.constant(0.0)  # writes nothing: the tensor has no elements
        return make(t)
    return spec


def kaiming_normal(a: float = 0.0, mode: str = "fan_in",
                   nonlinearity: str = "leaky_relu") -> Init:
    """He normal, as ``fastinit.kaiming_normal_``: N(0, (gain / sqrt(fan))^2)."""
    mode = _check_mode(mode)
    gain = _kaiming_gain(a, nonlinearity, "recipes.kaiming_normal")

    def make(t: torch.Tensor) -> InitSpec:
        return laws.spread(laws.kaiming_std(*laws.fans(t), gain, mode), "normal", _FN)

    return Init(f"kaiming_normal(a={a}, mode={mode!r}, nonlinearity={nonlinearity!r})",
                _fan_spec(make))


def kaiming_uniform(a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu") -> Init:
    """He uniform, as ``fastinit.kaiming_uniform_``: U(-b, b), b = gain sqrt(3 / fan)."""
    mode = _check_mode(mode)
    gain = _kaiming_gain(a, nonlinearity, "recipes.kaiming_uniform")

    def make(t: torch.Tensor) -> InitSpec:
        return laws.spread(laws.kaiming_std(*laws.fans(t), gain, mode), "uniform", _FN)

    return Init(f"kaiming_uniform(a={a}, mode={mode!r}, nonlinearity={nonlinearity!r})",
                _fan_spec(make))


def _check_blocks(blocks: int) -> int:
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
        raise ValueError(f"blocks must be an int >= 1, got {blocks!r}")
    return blocks


def xavier_uniform(gain: float = 1.0, blocks: int = 1) -> Init:
    """Glorot uniform, as ``fastinit.xavier_uniform_``; with ``blocks > 1`` the fans are
    those of one of ``blocks`` equal row blocks (each gate of a stacked RNN matrix)."""
    blocks = _check_blocks(blocks)

    def make(t: torch.Tensor) -> InitSpec:
        return laws.spread(laws.xavier_std(*laws.fans(t, blocks), gain), "uniform", _FN)

    return Init(f"xavier_uniform(gain={gain}, blocks={blocks})", _fan_spec(make))


def xavier_normal(gain: float = 1.0, blocks: int = 1) -> Init:
    """Glorot normal, as ``fastinit.xavier_normal_`` (``blocks`` as in
    :func:`xavier_uniform`)."""
    blocks = _check_blocks(blocks)

    def make(t: torch.Tensor) -> InitSpec:
        return laws.spread(laws.xavier_std(*laws.fans(t, blocks), gain), "normal", _FN)

    return Init(f"xavier_normal(gain={gain}, blocks={blocks})", _fan_spec(make))


def variance_scaling(scale: float = 1.0, mode: str = "fan_in",
                     distribution: str = "truncated_normal") -> Init:
    """JAX's variance scaling, as ``fastinit.variance_scaling_``."""
    _variance_scaling_spec(torch.empty(1, 1, device="meta"), scale, mode, distribution, _FN)

    def make(t: torch.Tensor) -> InitSpec:
        return _variance_scaling_spec(t, scale, mode, distribution, _FN)

    return Init(f"variance_scaling(scale={scale}, mode={mode!r}, "
                f"distribution={distribution!r})", _fan_spec(make))


def lecun_normal() -> Init:
    """LeCun normal, as ``fastinit.lecun_normal_``."""
    return variance_scaling(1.0, "fan_in", "truncated_normal")


def lecun_uniform() -> Init:
    """LeCun uniform, as ``fastinit.lecun_uniform_``."""
    return variance_scaling(1.0, "fan_in", "uniform")


def orthogonal(gain: float = 1.0, blocks: int = 1) -> Init:
    """A (semi-)orthogonal matrix, as ``fastinit.orthogonal_``; with ``blocks > 1`` each of
    ``blocks`` equal row blocks is orthogonal on its own (every gate of a stacked RNN
    matrix). The normal values are those ``normal_`` gives the whole tensor (the call's
    key and stream), so ``blocks=1`` is bitwise ``fastinit.orthogonal_``."""
    blocks = _check_blocks(blocks)
    if not math.isfinite(gain):
        raise ValueError(f"gain must be finite, got {gain}")

    def check(t: torch.Tensor, name: str) -> None:
        if t.dim() < 2:
            raise ValueError("Only tensors with 2 or more dimensions are supported")
        if t.shape[0] % blocks:
            raise ValueError(f"{name or 'tensor'}: {t.shape[0]} rows do not split into "
                             f"{blocks} equal blocks")
        check_dtype(t.dtype, _FN)
        fill_target(t, _FN, elementwise=False)

    @route.entry
    def write(t: torch.Tensor, name: str, seed: int | None,
              generator: torch.Generator | None) -> None:
        if fill_target(t, _FN, elementwise=False) is None:
            return
        decided = route.keyed(t, seed, generator)
        if decided is None:
            return
        key, stream = decided
        rows = t.shape[0]
        work = torch.float64 if t.dtype == torch.float64 else torch.float32
        flat = torch.empty((rows, t.numel() // rows), dtype=work, device=t.device)
        fill_tensor(flat, InitSpec.normal(0.0, 1.0).kernel_params(work), key, stream)
        q = laws.block_orthogonal(flat, blocks).mul_(gain).reshape(t.shape)
        _write_values(t, q, routed=False)

    return _WriteInit(f"orthogonal(gain={gain}, blocks={blocks})", check, write)


def _write_values(t: torch.Tensor, values: torch.Tensor, *, routed: bool = True) -> None:
    """Write ``values`` (a plain tensor of ``t``'s global shape) to ``t``, routed."""
    if is_dtensor(t):
        from fastinit.distributed import copy_from_full_

        route.torch_write(t, functools.partial(copy_from_full_, t, values), routed=routed)
    else:
        route.torch_write(t, functools.partial(_copy, t, values), routed=routed)


def _copy(t: torch.Tensor, values: torch.Tensor) -> None:
    t.copy_(values.to(device=t.device, dtype=t.dtype))


def _gate_bias(gates: int, gate: int, value: float) -> Init:
    """A bias of ``gates`` stacked gate vectors: ``value`` on gate ``gate``, 0 elsewhere."""
    def check(t: torch.Tensor, name: str) -> None:
        if t.dim() != 1 or t.shape[0] % gates:
            raise ValueError(f"{name or 'bias'}: shape {tuple(t.shape)} is not {gates} "
                             "stacked gate vectors")
        check_dtype(t.dtype, _FN)
        fill_target(t, _FN, elementwise=False)

    @route.entry
    def write(t: torch.Tensor, name: str, seed: int | None,
              generator: torch.Generator | None) -> None:
        if fill_target(t, _FN, elementwise=False) is None:
            return
        h = t.shape[0] // gates
        values = torch.zeros(t.shape[0], dtype=torch.float64, device="cpu")
        values[gate * h:(gate + 1) * h] = value
        _write_values(t, values.to(t.dtype))

    return _WriteInit(f"gate_bias(gate {gate} of {gates} = {value})", check, write)


_LAYER = re.compile(r"(?:^|\.)(?:layers|h|layer|blocks)\.(\d+)\.")


def layer_index(name: str) -> int:
    """The block index in a qualified name such as ``model.layers.7.mlp.down_proj.weight``."""
    m = _LAYER.search(name)
    if m is None:
        raise ValueError(f"cannot find a layer index in parameter name {name!r}")
    return int(m.group(1))


def scaled_residual(std: float = 0.02, num_layers: int | None = None, *, depth: bool = False,
                    mean: float = 0.0, truncated: bool = False, a: float | None = None,
                    b: float | None = None, cutoff: float | None = None) -> Init:
    """Residual-output init, as ``fastinit.scaled_residual_`` (the same law and arguments):
    std / sqrt(2 num_layers), or std / sqrt(2 (layer + 1)) with ``depth=True`` (the layer
    index is read from the parameter's name, where ``scaled_residual_`` takes
    ``layer_id``).

    ``truncated`` draws from the normal truncated to ``[a, b]`` (absolute bounds, default
    torch's -2, 2). ``cutoff`` (kept from earlier releases) instead truncates to
    ``mean +- cutoff`` scaled standard deviations, bounds that shrink with the depth.
    """
    if not depth and (num_layers is None or num_layers < 1):
        raise ValueError("scaled_residual needs num_layers >= 1 unless depth=True")
    law = functools.partial(laws.scaled_residual, mean=mean, truncated=truncated, a=a, b=b,
                            cutoff=cutoff, fn="recipes.scaled_residual")
    law(std, 1)  # the arguments' errors now, before any model is seen

    def make(t: torch.Tensor, name: str) -> InitSpec:
        return law(std, layer_index(name) + 1 if depth else num_layers)

    form = "std/sqrt(2(layer+1))" if depth else f"std/sqrt(2*{num_layers})"
    kind = "trunc_normal" if truncated else "normal"
    return Init(f"scaled_residual({kind}, {form}, std={std})", make)


RuleValue = Union[Init, Callable[[torch.Tensor, str], object]]

_OWN_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _user_stacklevel() -> int:
    """``warnings.warn``'s stacklevel, from its caller, of the innermost frame outside
    fastinit: a recipe's warning names the user's line, whatever path led to it."""
    frame, level = sys._getframe(1), 1
    while frame is not None and frame.f_code.co_filename.startswith(_OWN_DIR):
        frame, level = frame.f_back, level + 1
    return level


# --- plans: what a recipe does to one model ------------------------------------------------------


class Plan:
    """The writes of a recipe on one model: ``(name, tensor, init)`` in order (a later
    entry for the same tensor replaces the earlier), and procedures (code that writes its
    ``targets`` itself, such as the model's own init under µP)."""

    def __init__(self, recipe: str) -> None:
        self.recipe = recipe
        self._writes: dict[int, tuple[str, torch.Tensor, RuleValue]] = {}
        self._procedures: list[tuple[Callable[[], None], dict[str, torch.Tensor]]] = []

    def add(self, name: str, tensor: torch.Tensor, init: RuleValue) -> None:
        self._writes.pop(id(tensor), None)  # keep the order of the last assignment
        self._writes[id(tensor)] = (name, tensor, init)

    def add_procedure(self, run: Callable[[], None], targets: Mapping[str, torch.Tensor]) -> None:
        self._procedures.append((run, dict(targets)))

    @property
    def writes(self) -> list[tuple[str, torch.Tensor, RuleValue]]:
        return list(self._writes.values())

    @property
    def has_procedures(self) -> bool:
        return bool(self._procedures)

    def targets(self) -> dict[str, torch.Tensor]:
        """Every tensor the plan writes, by name."""
        out = {name: t for name, t, _ in self._writes.values()}
        for _, targets in self._procedures:
            out.update(targets)
        return out

    def __bool__(self) -> bool:
        return bool(self._writes or self._procedures)

    def __len__(self) -> int:
        return len(self.targets())

    def check(self) -> None:
        """Validate every init on its tensor (before anything is written)."""
        for name, tensor, init in self._writes.values():
            if isinstance(init, Init):
                try:
                    init.check(tensor, name)
                except (ValueError, RuntimeError, NotImplementedError) as exc:
                    raise type(exc)(f"recipe {self.recipe!r}, {name}: {exc}") from exc

    def run(self) -> None:
        """Check, then write (through the active router, if any)."""
        self.check()
        for name, tensor, init in self._writes.values():
            if isinstance(init, Init):
                init.write(tensor, name)
            else:
                init(tensor, name)
        for run, _ in self._procedures:
            run()

    def __repr__(self) -> str:
        lines = [f"{name}: {init!r}" for name, _, init in self._writes.values()]
        lines += [f"{', '.join(t)}: {run!r}" for run, t in self._procedures]
        return f"Plan({self.recipe!r}, [" + "; ".join(lines) + "])"


class Recipe:
    """A scheme: :meth:`plan` says what it writes in a given model.

    ``params`` maps the qualified names of the parameters the recipe may write (those of
    the model, less the ones ``materialize`` must keep) to the parameters.
    """

    name = "recipe"

    def plan(self, model: nn.Module, params: Mapping[str, torch.Tensor]) -> Plan:
        raise NotImplementedError

    def describe(self) -> str:
        """What the recipe looks for (for the "found nothing" error and warning)."""
        return "its rules"

    def _nothing_found(self, model: nn.Module) -> ValueError:
        return ValueError(f"recipe {self.name!r} found nothing to initialize in "
                          f"{type(model).__name__}: it looks for {self.describe()}; "
                          "nothing was written")

    def _empty_warning(self, model: nn.Module, plan: Plan) -> Plan:
        if not plan:
            warnings.warn(f"recipe {self.name!r} matched nothing in {type(model).__name__} "
                          f"(it looks for {self.describe()}); nothing was written",
                          UserWarning, stacklevel=_user_stacklevel())
        return plan

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"


class Rules(Recipe):
    """A mapping ``{name-glob: init}``: each parameter gets its first matching rule.

    ``strict``: every parameter must match a rule (``ValueError`` naming those that do
    not, before anything is written). ``warn_unused``: warn about globs that match
    nothing (built-in schemes cover several naming styles and do not). ``must_match``
    (the built-in schemes): globs of what the scheme is for (its family's own names, not
    the catch-alls ``*`` / ``*.bias``), ``ValueError`` when no parameter of the model
    matches any of them; otherwise a plan that writes nothing only warns.
    """

    def __init__(self, mapping: Mapping[str, RuleValue], *, strict: bool = False,
                 warn_unused: bool = True, name: str = "rules",
                 must_match: Sequence[str] = ()) -> None:
        for glob, value in mapping.items():
            if not isinstance(glob, str):
                raise TypeError(f"recipe rules are name globs (str), got {glob!r}")
            if not (isinstance(value, Init) or callable(value)):
                raise TypeError(f"recipe rule {glob!r}: expected a fastinit.recipes init or a "
                                f"callable(tensor, name), got {type(value).__name__}")
        self.mapping = dict(mapping)
        self.strict = strict
        self.warn_unused = warn_unused
        self.name = name
        self.must_match = tuple(must_match)

    def describe(self) -> str:
        return "parameters named " + ", ".join(repr(g) for g in self.must_match or self.mapping)

    def plan(self, model: nn.Module | None, params: Mapping[str, torch.Tensor]) -> Plan:
        plan = Plan(self.name)
        used: set[str] = set()
        unmatched = []
        for name, tensor in params.items():
            for glob, rule in self.mapping.items():
                if fnmatch.fnmatchcase(name, glob):
                    plan.add(name, tensor, rule)
                    used.add(glob)
                    break
            else:
                unmatched.append(name)
        if self.strict and unmatched:
            raise ValueError(f"no recipe rule matches these parameters: {', '.join(unmatched)}")
        if self.warn_unused:
            for glob in self.mapping:
                if glob not in used:
                    note_unmatched(glob, self.name)
                    warnings.warn(f"recipe rule {glob!r} matched no parameter", UserWarning,
                                  stacklevel=_user_stacklevel())
        if model is not None:
            if self.must_match and not any(
                    fnmatch.fnmatchcase(n, g) for n, _ in model.named_parameters()
                    for g in self.must_match):
                raise self._nothing_found(model)
            self._empty_warning(model, plan)
        return plan


def rules(mapping: Mapping[str, RuleValue], *, strict: bool = False) -> Rules:
    """A recipe from ``{name-glob: init}``; ``strict=True``: every parameter must match.

    Examples:
        >>> recipe = fastinit.recipes.rules({"*.weight": normal(std=0.02), "*.bias": zeros()},
        ...                                 strict=True)
    """
    return Rules(mapping, strict=strict)


class _ModuleRecipe(Recipe):
    """A recipe that assigns inits module by module (by type or class name)."""

    looks_for = "modules"

    def describe(self) -> str:
        return self.looks_for

    def assign(self, model: nn.Module) -> Iterator[tuple[torch.Tensor | None, RuleValue]]:
        raise NotImplementedError

    def finds(self, model: nn.Module, assigned: list[tuple[torch.Tensor | None, RuleValue]]
              ) -> bool:
        """Whether the model has what the recipe is for (default: anything it assigns)."""
        return any(t is not None for t, _ in assigned)

    def plan(self, model: nn.Module, params: Mapping[str, torch.Tensor]) -> Plan:
        """The recipe's writes in ``model``, among ``params``. ``ValueError`` (nothing
        written) when the model has nothing the recipe is for; a warning when all it
        found are tensors that are not in ``params`` (kept)."""
        names = {id(t): n for n, t in params.items()}
        plan = Plan(self.name)
        assigned = list(self.assign(model))
        if not self.finds(model, assigned):
            raise self._nothing_found(model)
        for tensor, init in assigned:
            name = names.get(id(tensor)) if tensor is not None else None
            if name is not None:  # not a parameter the recipe may write: left as it is
                plan.add(name, tensor, init)
        return self._empty_warning(model, plan)


def _linear_default(m: nn.Linear | nn.Module) -> Iterator[tuple[torch.Tensor | None, Init]]:
    """torch's default init of a Linear (``reset_parameters``): Kaiming uniform with
    a = sqrt(5) (U(+-1/sqrt(fan_in))), bias U(+-1/sqrt(fan_in))."""
    yield m.weight, kaiming_uniform(a=math.sqrt(5))
    if getattr(m, "bias", None) is not None:
        fan_in = m.weight.shape[1] if m.weight.dim() >= 2 else 0
        bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
        yield m.bias, uniform(-bound, bound)


_BATCH_NORMS = (nn.modules.batchnorm._BatchNorm,)
_CONVS = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


def _affine(m: nn.Module) -> bool:
    return isinstance(getattr(m, "weight", None), torch.Tensor)


class _ResNet(_ModuleRecipe):
    name = "resnet"
    looks_for = "convolutions (nn.Conv1d / Conv2d / Conv3d)"

    def finds(self, model: nn.Module, assigned) -> bool:
        return any(isinstance(m, _CONVS) for m in model.modules())

    #: class name -> attribute path of the block's last normalization layer
    LAST_NORMS = {
        "BasicBlock": ("bn2",),              # torchvision, timm
        "Bottleneck": ("bn3",),              # torchvision, timm
        "ResNetBasicLayer": ("layer", -1, "normalization"),       # Hugging Face
        "ResNetBottleNeckLayer": ("layer", -1, "normalization"),  # Hugging Face
    }

    def __init__(self, zero_init_residual: bool, residual_norms: Sequence[str]) -> None:
        self.zero_init_residual = bool(zero_init_residual)
        if isinstance(residual_norms, str):
            residual_norms = (residual_norms,)
        self.residual_norms = tuple(residual_norms)
        for g in self.residual_norms:
            if not isinstance(g, str):
                raise TypeError(f"residual_norms are module-name globs (str), got {g!r}")
        if self.residual_norms and not self.zero_init_residual:
            raise ValueError("residual_norms is used with zero_init_residual=True")

    @staticmethod
    def _follow(m: nn.Module, path: tuple) -> nn.Module | None:
        for step in path:
            try:
                m = m[step] if isinstance(step, int) else getattr(m, step)
            except (AttributeError, IndexError, TypeError, KeyError):
                return None
        return m if isinstance(m, nn.Module) else None

    def assign(self, model: nn.Module) -> Iterator[tuple[torch.Tensor | None, Init]]:
        kaiming = kaiming_normal(mode="fan_out", nonlinearity="relu")
        for m in model.modules():
            if isinstance(m, _CONVS):
                yield m.weight, kaiming
            elif isinstance(m, _BATCH_NORMS + (nn.GroupNorm,)) and _affine(m):
                yield m.weight, ones()
                yield m.bias, zeros()
            elif isinstance(m, nn.Linear):
                yield from _linear_default(m)
        if not self.zero_init_residual:
            return
        found = 0
        for m in model.modules():
            path = self.LAST_NORMS.get(type(m).__name__)
            norm = self._follow(m, path) if path else None
            if norm is not None and _affine(norm):
                found += 1
                yield norm.weight, zeros()
        for glob in self.residual_norms:
            hits = [(n, m) for n, m in model.named_modules() if fnmatch.fnmatchcase(n, glob)]
            if not hits:
                note_unmatched(glob, "resnet")
                warnings.warn(f"recipe 'resnet': residual_norms glob {glob!r} matched no module",
                              UserWarning, stacklevel=_user_stacklevel())
            for n, m in hits:
                if not _affine(m):
                    raise ValueError(f"recipe 'resnet': residual_norms glob {glob!r} matched "
                                     f"{n!r} ({type(m).__name__}), which has no weight to zero")
                found += 1
                yield m.weight, zeros()
        if not found:
            raise ValueError("recipe 'resnet': zero_init_residual=True, but no residual block "
                             f"was found in {type(model).__name__} (it looks for torchvision / "
                             "timm BasicBlock.bn2, Bottleneck.bn3, Hugging Face ResNet layers); "
                             "name the last norms with residual_norms=; nothing was written")


def resnet(zero_init_residual: bool = False, residual_norms: str | Sequence[str] = ()) -> Recipe:
    """ResNet (He et al., 2016) as torchvision's ``ResNet.__init__`` initializes it.

    * ``nn.Conv1d/2d/3d`` weights: Kaiming normal, ``mode="fan_out"``, ReLU gain
      (std = sqrt(2 / (out_channels * kernel area))); conv biases are left as they are
      (ResNet's convolutions have none);
    * BatchNorm / GroupNorm: weight 1, bias 0;
    * ``nn.Linear``: torch's default (Kaiming uniform with a = sqrt(5), bias
      U(+-1/sqrt(fan_in))), as torchvision leaves its ``fc``;
    * ``zero_init_residual=True`` ("Bag of Tricks", He et al. 2019; Goyal et al. 2017): the
      weight of the last normalization layer of each residual block is 0, so every block
      starts as the identity. Blocks are found by torchvision's and timm's names
      (``BasicBlock.bn2``, ``Bottleneck.bn3``) and Hugging Face's
      (``ResNetBasicLayer`` / ``ResNetBottleNeckLayer``: ``layer[-1].normalization``);
      ``residual_norms`` adds module-name globs for other code
      (``"encoder.*.norm_last"``).

    Reference: torchvision/models/resnet.py (``ResNet.__init__``); Hugging Face
    ``ResNetPreTrainedModel._init_weights`` follows the same rule.
    """
    return _ResNet(zero_init_residual, residual_norms)


class _RNN(_ModuleRecipe):
    name = "rnn"
    looks_for = "nn.LSTM / nn.GRU / nn.RNN modules and their cells"

    def __init__(self, forget_bias: float) -> None:
        if isinstance(forget_bias, bool) or not isinstance(forget_bias, (int, float)) \
                or not math.isfinite(forget_bias):
            raise ValueError(f"forget_bias must be a finite number, got {forget_bias!r}")
        self.forget_bias = float(forget_bias)

    @staticmethod
    def _gates(m: nn.Module) -> int:
        if isinstance(m, (nn.LSTM, nn.LSTMCell)):
            return 4
        if isinstance(m, (nn.GRU, nn.GRUCell)):
            return 3
        return 1

    def assign(self, model: nn.Module) -> Iterator[tuple[torch.Tensor | None, Init]]:
        for m in model.modules():
            if not isinstance(m, (nn.RNNBase, nn.RNNCellBase)):
                continue
            gates = self._gates(m)
            lstm = gates == 4
            for pname, p in m.named_parameters(recurse=False):
                if pname.startswith("weight_ih"):
                    yield p, xavier_uniform(blocks=gates)
                elif pname.startswith("weight_hh"):
                    yield p, orthogonal(blocks=gates)
                elif pname.startswith("weight_hr"):  # LSTM projection: a plain linear map
                    yield p, xavier_uniform()
                elif pname.startswith("bias_ih") and lstm:
                    yield p, _gate_bias(4, 1, self.forget_bias)  # torch's order: i, f, g, o
                elif pname.startswith("bias_"):
                    yield p, zeros()


def rnn(forget_bias: float = 1.0) -> Recipe:
    """Recurrent networks: ``nn.LSTM``, ``nn.GRU``, ``nn.RNN`` and their cells.

    * input-to-hidden weights (``weight_ih*``): Xavier uniform (Glorot & Bengio, 2010);
    * hidden-to-hidden weights (``weight_hh*``): orthogonal (Saxe et al., 2014);
    * biases 0, except the LSTM forget gate, whose *effective* bias
      (``bias_ih + bias_hh`` of gate 1 in torch's ``i, f, g, o`` order) is
      ``forget_bias`` (Gers et al., 2000; Jozefowicz et al., 2015): ``bias_ih`` holds it,
      ``bias_hh`` is 0. (Setting 1 on both, a common mistake, gives 2.)
    * an LSTM's projection (``weight_hr*``, ``proj_size > 0``): Xavier uniform.

    Both rules apply **per gate**: torch stacks the gates' matrices (``4 * hidden`` rows
    for an LSTM, 3 for a GRU), but each gate is its own linear map of the input or the
    state. Xavier's fans are those of one gate (``fan_out = hidden``, not ``4 * hidden``,
    which would shrink the variance), and each gate's recurrent matrix is orthogonal on
    its own - all its singular values 1, which is what orthogonal init is for; an
    orthogonal stacked matrix only makes the gates' blocks jointly orthonormal (singular
    values of each block below 1). This is Flax's ``LSTMCell`` rule (an orthogonal
    recurrent kernel per gate); Keras applies both to the stacked matrix.

    Only recurrent modules are touched. Reference: Jozefowicz, Zaremba & Sutskever, "An
    Empirical Exploration of Recurrent Network Architectures" (ICML 2015);
    flax.linen.LSTMCell.
    """
    return _RNN(forget_bias)


class _DCGAN(_ModuleRecipe):
    name = "dcgan"
    looks_for = "convolutions / transposed convolutions and BatchNorm layers"


    def assign(self, model: nn.Module) -> Iterator[tuple[torch.Tensor | None, Init]]:
        conv, norm = normal(0.0, 0.02), normal(1.0, 0.02)
        for m in model.modules():
            if isinstance(m, nn.modules.conv._ConvNd):
                yield m.weight, conv
            elif isinstance(m, _BATCH_NORMS) and _affine(m):
                yield m.weight, norm
                yield m.bias, zeros()


def dcgan() -> Recipe:
    """DCGAN (Radford, Metz & Chintala, 2016): the reference ``weights_init``.

    Convolution and transposed-convolution weights N(0, 0.02); BatchNorm weight
    N(1, 0.02), bias 0. Convolution biases are left as they are (the reference leaves
    them; DCGAN's layers have none). The reference matches class names containing
    ``Conv`` / ``BatchNorm``; this matches torch's conv and BatchNorm classes (and their
    subclasses), so a user module named ``ConvBlock`` is not mistaken for a layer.

    Reference: pytorch/examples, dcgan/main.py ``weights_init``.
    """
    return _DCGAN()


class _ReZero(_ModuleRecipe):
    name = "rezero"

    def __init__(self, glob: str | Sequence[str] | None) -> None:
        if isinstance(glob, str):
            glob = (glob,)
        self.globs = None if glob is None else tuple(glob)
        self.looks_for = ("scalar parameters named like '*alpha*' or '*resweight*'"
                          if self.globs is None else
                          "parameters named " + ", ".join(repr(g) for g in self.globs))

    def assign(self, model: nn.Module) -> Iterator[tuple[torch.Tensor | None, Init]]:
        zero = zeros()
        for name, p in model.named_parameters():
            if self.globs is None:
                leaf = name.rpartition(".")[2].lower()
                if p.numel() == 1 and ("alpha" in leaf or "resweight" in leaf):
                    yield p, zero
            elif any(fnmatch.fnmatchcase(name, g) for g in self.globs):
                yield p, zero
        if self.globs:
            for g in self.globs:
                if not any(fnmatch.fnmatchcase(n, g) for n, _ in model.named_parameters()):
                    note_unmatched(g, "rezero")
                    warnings.warn(f"recipe 'rezero': glob {g!r} matched no parameter",
                                  UserWarning, stacklevel=_user_stacklevel())


def rezero(glob: str | Sequence[str] | None = None) -> Recipe:
    """ReZero (Bachlechner et al., 2021): every residual branch's scalar gate
    :math:`\\alpha` in :math:`x + \\alpha F(x)` is 0, so every block starts as the identity.

    By default the gates are the scalar (one-element) parameters whose own name contains
    ``alpha`` or ``resweight`` (the paper's code: ``resweight``); ``glob`` (name globs of
    the qualified names, any shape) names them instead. Only the gates are touched.

    Reference: github.com/majumderb/rezero (``resweight = nn.Parameter(torch.Tensor([0]))``).
    """
    return _ReZero(glob)


_LORA_INITS = ("kaiming", "gaussian")


class _LoRA(_ModuleRecipe):
    name = "lora"
    looks_for = "PEFT LoRA adapters (lora_A / lora_B, lora_embedding_A / lora_embedding_B)"

    def __init__(self, init: str) -> None:
        if init not in _LORA_INITS:
            raise ValueError(f"lora init must be one of {list(_LORA_INITS)}, got {init!r}")
        self.init = init

    def assign(self, model: nn.Module) -> Iterator[tuple[torch.Tensor | None, Init]]:
        a_init = kaiming_uniform(a=math.sqrt(5))
        for m in model.modules():
            lora_a, lora_b = getattr(m, "lora_A", None), getattr(m, "lora_B", None)
            ranks = getattr(m, "r", None)
            if isinstance(lora_a, nn.ModuleDict) and isinstance(lora_b, nn.ModuleDict):
                for adapter, a in lora_a.items():
                    if self.init == "gaussian":
                        yield a.weight, normal(0.0, 1.0 / ranks[adapter])
                    else:
                        yield a.weight, a_init
                    b = lora_b[adapter]
                    yield b.weight, zeros()
                    if getattr(b, "bias", None) is not None:
                        yield b.bias, zeros()
            emb_a = getattr(m, "lora_embedding_A", None)
            emb_b = getattr(m, "lora_embedding_B", None)
            if isinstance(emb_a, nn.ParameterDict) and isinstance(emb_b, nn.ParameterDict):
                # PEFT (after loralib): A zeros, B N(0, 1), whatever init_lora_weights says
                for adapter, a in emb_a.items():
                    yield a, zeros()
                    yield emb_b[adapter], normal(0.0, 1.0)


def lora(init: str = "kaiming") -> Recipe:
    """LoRA adapters of a PEFT model (Hu et al., 2022), as PEFT initializes them.

    For every adapter of every LoRA layer: A as PEFT's ``init_lora_weights=True`` -
    Kaiming uniform with a = sqrt(5), i.e. U(+-1/sqrt(fan_in)) (``init="kaiming"``) - or
    ``init_lora_weights="gaussian"``: N(0, 1/r^2), std 1/r (``init="gaussian"``); B (and
    its bias, if any) 0, so the adapted model starts equal to the base model. LoRA on
    embedding layers follows PEFT: A (``lora_embedding_A``) 0, B N(0, 1). Only adapter
    weights are touched (not the base layers, not DoRA magnitudes).

    Reference: peft/tuners/lora/layer.py, ``LoraLayer.reset_lora_parameters``.
    """
    return _LoRA(init)


#: torch.nn.init functions mup's README says to replace by mup.init's.
_MUP_FUNCTIONS = ("uniform_", "normal_", "trunc_normal_", "xavier_uniform_", "xavier_normal_",
                  "kaiming_uniform_", "kaiming_normal_")


@contextlib.contextmanager
def _mup_init_functions() -> Iterator[None]:
    """Inside the block, the ``torch.nn.init`` calls that fastinit catches run as
    ``mup.init``'s function of the same name for tensors with an ``infshape`` (set by
    ``mup.set_base_shapes``), and mup's samplers draw through fastinit.

    mup's functions compute the µP scale of each call; their samplers
    (``_no_grad_uniform_`` / ``_no_grad_normal_`` / ``_no_grad_trunc_normal_``, and
    ``Tensor.uniform_`` / ``normal_`` in ``kaiming_*``) are routed to fastinit's fills,
    so values follow the recipe's seed and the tensors' names. Process-wide while the
    block runs, like ``patch()``.
    """
    try:
        import mup.init as mup_init
    except ImportError:
        raise ImportError("the 'mup' recipe needs the mup package: pip install mup "
                          "(or fastinit's 'mup' extra)") from None
    from fastinit import init as fi
    from fastinit import intercept

    previous = intercept._fastinit_fn

    def dispatch(name: str) -> Callable:
        own = previous(name)
        mu = getattr(mup_init, name, None) if name in _MUP_FUNCTIONS else None
        if mu is None:
            return own

        def call(tensor, *args, **kwargs):
            if not hasattr(tensor, "infshape"):
                return own(tensor, *args, **kwargs)
            kwargs.pop("generator", None)  # mup's functions take none; fastinit's streams decide
            return mu(tensor, *args, **kwargs)

        return call

    samplers = {
        "_no_grad_uniform_": lambda t, a, b, generator=None: fi.uniform_(t, a, b),
        "_no_grad_normal_": lambda t, mean, std, generator=None: fi.normal_(t, mean, std),
        "_no_grad_trunc_normal_":
            lambda t, mean, std, a, b, generator=None: fi.trunc_normal_(t, mean, std, a, b),
    }
    saved = {k: mup_init.__dict__[k] for k in samplers if k in mup_init.__dict__}
    intercept._fastinit_fn = dispatch
    mup_init.__dict__.update({k: v for k, v in samplers.items() if k in saved})
    try:
        yield
    finally:
        mup_init.__dict__.update(saved)
        intercept._fastinit_fn = previous


class _MuP(Recipe):
    name = "mup"

    def describe(self) -> str:
        return "parameters with an infshape (mup.set_base_shapes)"

    def plan(self, model: nn.Module, params: Mapping[str, torch.Tensor]) -> Plan:
        targets = {n: t for n, t in params.items() if hasattr(t, "infshape")}
        if not any(hasattr(p, "infshape") for p in model.parameters()):
            raise ValueError(f"recipe 'mup': no parameter of {type(model).__name__} has an "
                             "infshape: call mup.set_base_shapes(model, base) first")
        plan = Plan(self.name)
        if targets:
            plan.add_procedure(functools.partial(_run_mup_init, model), targets)
        return self._empty_warning(model, plan)


def _run_mup_init(model: nn.Module) -> None:
    from fastinit.materialize import run_model_init

    with _mup_init_functions():
        run_model_init(model)


def mup() -> Recipe:
    """µP (Yang et al., "Tensor Programs V", 2022) for a model whose base shapes were set
    with the ``mup`` package (``mup.set_base_shapes(model, base)``).

    The model's own init runs again with ``mup.init``'s functions in place of
    ``torch.nn.init``'s (mup's README: "replace your custom init ... with the same function
    from mup.init"): ``uniform_``, ``normal_``, ``trunc_normal_``, ``xavier_*`` and
    ``kaiming_*`` of tensors with an ``infshape`` get mup's width-dependent scale, drawn
    through fastinit's streams; other init calls are fastinit's as usual. The values are
    distributed as ``mup.init`` gives them on the same model. Its targets are the
    parameters with an ``infshape``. Needs ``pip install mup``.

    Reference: github.com/microsoft/mup (README, "Basic Usage"; mup/init.py).
    """
    return _MuP()


# --- name-glob schemes of known model families --------------------------------------------------


#: The name-glob schemes below return a mapping {name-glob: init}.
RuleMapping = Mapping[str, RuleValue]


def _config(model: nn.Module, *names: str, default=None):
    cfg = getattr(model, "config", None)
    for n in names:
        if cfg is not None and getattr(cfg, n, None) is not None:
            return getattr(cfg, n)
    return default


def _count_layers(model: nn.Module) -> int:
    ids = {layer_index(n) for n, _ in model.named_parameters() if _LAYER.search(n)}
    if not ids:
        raise ValueError("cannot count the model's layers: no parameter name has a layer index")
    return max(ids) + 1


def gpt2(model: nn.Module) -> RuleMapping:
    """GPT-2 (Radford et al.): N(0, 0.02), residual projections N(0, 0.02 / sqrt(2 n_layer))."""
    std = _config(model, "initializer_range", default=0.02)
    n_layer = _config(model, "n_layer", "num_hidden_layers") or _count_layers(model)
    return {
        "*ln_*.weight": ones(),
        "*ln_*.bias": zeros(),
        "*.c_proj.weight": scaled_residual(std, n_layer),
        "*.bias": zeros(),
        "*": normal(0.0, std),
    }


def llama(model: nn.Module) -> RuleMapping:
    """Hugging Face Llama: N(0, initializer_range) everywhere, norms at one."""
    std = _config(model, "initializer_range", default=0.02)
    return {"*norm.weight": ones(), "*.bias": zeros(), "*": normal(0.0, std)}


def bert(model: nn.Module) -> RuleMapping:
    """BERT: N(0, initializer_range), LayerNorm one/zero, biases zero."""
    std = _config(model, "initializer_range", default=0.02)
    return {"*LayerNorm.weight": ones(), "*LayerNorm.bias": zeros(), "*.bias": zeros(),
            "*": normal(0.0, std)}


def torchtitan_llama(model: nn.Module) -> RuleMapping:
    """torchtitan's Llama: truncated normals, output projections scaled by depth.

    Embeddings N(0, 1); q/k/v and the MLP's first projection trunc-normal(0.02); the
    attention output and the MLP's other projections trunc-normal(0.02 / sqrt(2 (layer+1)));
    the LM head trunc-normal(dim^-0.5) cut at 3 standard deviations; norms one. Both
    torchtitan's names (wq, w1, ...) and Hugging Face's (q_proj, gate_proj, ...) match.
    """
    dim = _config(model, "hidden_size", "dim")
    if dim is None:
        head = dict(model.named_parameters()).get("output.weight")
        if head is None:
            head = dict(model.named_parameters()).get("lm_head.weight")
        if head is None:
            raise ValueError("torchtitan_llama needs the model dimension (config.hidden_size "
                             "or an output / lm_head weight)")
        dim = head.shape[-1]
    out_std = dim ** -0.5
    depth = scaled_residual(0.02, depth=True, truncated=True)
    return {
        "*norm.weight": ones(),
        "*tok_embeddings.weight": normal(0.0, 1.0),
        "*embed_tokens.weight": normal(0.0, 1.0),
        "*.w[qkv].weight": trunc_normal(0.0, 0.02),
        "*.[qkv]_proj.weight": trunc_normal(0.0, 0.02),
        "*.wo.weight": depth,
        "*.o_proj.weight": depth,
        "*.w1.weight": trunc_normal(0.0, 0.02),
        "*.gate_proj.weight": trunc_normal(0.0, 0.02),
        "*.w[23].weight": depth,
        "*.up_proj.weight": depth,
        "*.down_proj.weight": depth,
        "output.weight": trunc_normal(0.0, out_std, -3 * out_std, 3 * out_std),
        "lm_head.weight": trunc_normal(0.0, out_std, -3 * out_std, 3 * out_std),
        "*.bias": zeros(),
    }


def vit(model: nn.Module) -> RuleMapping:
    """Vision Transformer (timm / Hugging Face): trunc-normal(0.02), norms one, biases zero."""
    std = _config(model, "initializer_range", default=0.02)
    return {"*norm*.weight": ones(), "*norm*.bias": zeros(), "*.bias": zeros(),
            "*": trunc_normal(0.0, std)}


def _glob_scheme(fn: Callable[[nn.Module], RuleMapping]) -> Callable[[nn.Module], Recipe]:
    @functools.wraps(fn)
    def make(model: nn.Module) -> Recipe:
        try:
            mapping = fn(model)
        except ValueError as exc:  # the scheme cannot be sized for this model
            raise ValueError(f"recipe {fn.__name__!r}: {exc}") from exc
        own = tuple(g for g in mapping if g not in ("*", "*.bias"))
        return Rules(mapping, warn_unused=False, name=fn.__name__, must_match=own)
    return make


#: Built-in recipes by name: each makes the recipe for a given model.
RECIPES: dict[str, Callable[[nn.Module], Recipe]] = {
    "gpt2": _glob_scheme(gpt2), "llama": _glob_scheme(llama), "bert": _glob_scheme(bert),
    "torchtitan_llama": _glob_scheme(torchtitan_llama), "vit": _glob_scheme(vit),
    "resnet": lambda model: resnet(), "rnn": lambda model: rnn(),
    "dcgan": lambda model: dcgan(), "rezero": lambda model: rezero(),
    "lora": lambda model: lora(), "mup": lambda model: mup(),
}


# --- applying recipes ----------------------------------------------------------------------------------


def resolve(recipe: str | Recipe | Mapping[str, RuleValue], model: nn.Module) -> Recipe:
    """The :class:`Recipe` that ``recipe`` names: a built-in name (``ValueError`` listing the
    known ones otherwise), a :class:`Recipe`, or a mapping ``{name-glob: init}`` (not
    strict: see :func:`rules`)."""
    if isinstance(recipe, str):
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; known recipes: {', '.join(sorted(RECIPES))}")
        return RECIPES[recipe](model)
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, Mapping):
        return Rules(recipe)
    raise TypeError("recipe must be a name, a fastinit.recipes recipe or a mapping of globs to "
                    f"inits, got {type(recipe).__name__}")


def apply(recipe: Mapping[str, RuleValue] | Recipe, params: Mapping[str, torch.Tensor],
          warn_unused: bool = True) -> None:
    """Initialize each of ``params`` (name -> tensor) with its first matching rule, now (or
    through the active router), each fill drawing its own key.

    The low-level form: a mapping is applied strictly - ``ValueError`` naming the
    parameters no rule matches, before anything is written - and, with ``warn_unused``,
    warns about rules that match nothing.
    """
    if isinstance(recipe, Mapping):
        recipe = Rules(recipe, strict=True, warn_unused=warn_unused)
    if isinstance(recipe, Rules):
        plan = recipe.plan(None, params)
    else:
        raise TypeError("recipes.apply takes a mapping of globs to inits; use apply_recipe "
                        "for a model")
    plan.run()


#: As materialize: no progress bar for fills that take well under a second.
_PROGRESS_MIN_ELEMENTS = 1 << 26


def _tensors(model: nn.Module) -> list[torch.Tensor]:
    seen: dict[int, torch.Tensor] = {}
    for t in (*model.parameters(), *model.buffers()):
        seen.setdefault(id(t), t)
    return list(seen.values())


@_recorded
def apply_recipe(model: nn.Module, recipe: str | Recipe | Mapping[str, RuleValue],
                 seed: int | None = None, generator: torch.Generator | None = None, *,
                 progress: bool = True) -> nn.Module:
    """Re-initialize the parameters of a real model that ``recipe`` matches.

    The recipe's writes are recorded and written in grouped launches, as in
    ``materialize``: each tensor gets the key of the call and the stream of its qualified
    name, so ``apply_recipe(model, r, seed=s)`` gives the matched tensors the values
    ``materialize(meta_model, seed=s, recipe=r)`` gives them. Only what the recipe matches
    is rewritten; everything else (other parameters, buffers) is left as it is, whatever
    code the recipe runs (µP re-runs the model's init). Hugging Face ``_is_hf_initialized``
    flags do not protect a parameter from an explicit ``apply_recipe``.

    Args:
        model: a module whose parameters are real (not on the meta device: use
            ``materialize``)
        recipe: a built-in name (``"resnet"``, ``"rnn"``, ``"dcgan"``, ``"rezero"``,
            ``"lora"``, ``"mup"``, ``"gpt2"``, ``"llama"``, ``"bert"``,
            ``"torchtitan_llama"``, ``"vit"``), a recipe from ``fastinit.recipes``
            (``resnet(zero_init_residual=True)``...), or a mapping ``{name-glob: init}``
        seed: the 64-bit key (default: drawn from ``generator``)
        generator: the torch Generator to draw the key from (default: torch's default
            generator, so ``torch.manual_seed`` makes the call reproducible)
        progress: show a progress bar when a CPU fill is large

    The writes are recorded after the model's earlier ones: see ``fastinit.provenance``
    (a rule that matched nothing is one of its findings).

    Returns:
        the module, re-initialized in place

    Raises:
        ValueError: an unknown recipe name (the message lists the known ones), a built-in
            recipe that finds nothing of what it is for in the model (``"rnn"`` without
            recurrent layers, ``"lora"`` without adapters, ``"rezero"`` without gates,
            ``"resnet"`` without convolutions or, with ``zero_init_residual=True``, without
            residual blocks, ``"dcgan"`` without convolutions or BatchNorm, a name-glob
            scheme matching no parameter; the message names the recipe and what it looks
            for), a parameter of the model on the meta device, a strict mapping that
            leaves a parameter unmatched, or an init that cannot fill its tensor - before
            anything is written.

    Warns:
        UserWarning: when a mapping of globs matches nothing in the model (nothing is
            written), or a glob matches nothing.

    Examples:
        >>> fastinit.apply_recipe(model, "lora", seed=0)   # fresh adapters, base untouched
        >>> fastinit.apply_recipe(resnet50, fastinit.recipes.resnet(zero_init_residual=True))
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"apply_recipe needs an nn.Module, got {type(model).__name__}")
    check_rng(seed, generator)
    params = dict(model.named_parameters())
    plan = resolve(recipe, model).plan(model, params)
    if not plan:
        return model
    targets = plan.targets()
    meta = [n for n, t in targets.items() if t.is_meta]
    if meta:
        raise ValueError(f"apply_recipe: these parameters are on the meta device: "
                         f"{', '.join(meta)}; use fastinit.materialize(model, recipe=...)")
    plan.check()
    key = normalize_seed(seed) if seed is not None else draw_seed(generator)
    ids = {id(t) for t in targets.values()}
    others = [t for t in _tensors(model) if id(t) not in ids and not t.is_meta]
    big = sum(t.numel() for t in targets.values()) >= _PROGRESS_MIN_ELEMENTS
    on_cpu = all(t.device.type == "cpu" for t in targets.values())
    router = route.NameRouter(key, targets, others, progress=progress and big and on_cpu)
    # Procedures run the model's own code, which may write other tensors with torch
    # operations (BatchNorm's integer num_batches_tracked.zero_()): keep their buffers.
    kept = ([(b, b.detach().clone()) for b in model.buffers() if id(b) not in ids
             and not b.is_meta] if plan.has_procedures else [])
    try:
        with recording(router):
            plan.run()
    except BaseException:
        router.recorder.discard()
        _restore(kept)
        raise
    router.flush()
    _restore(kept)
    return model


def _restore(kept: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> None:
    with torch.no_grad():
        for b, saved in kept:
            if not torch.equal(b, saved):
                b.copy_(saved)
