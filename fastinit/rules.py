"""The machinery of recipes: inits, plans, and the recipe classes the schemes are built on.

* An :class:`Init` is one initialization of one tensor: a distribution that may depend on
  the tensor (its shape decides fans, its name a layer index), made by :func:`normal`,
  :func:`kaiming_normal`, :func:`scaled_residual`, ... with the arguments of the matching
  ``fastinit.<fn>_`` function and checked as it checks them (:mod:`fastinit.arguments`);
  structured inits (``orthogonal(blocks=...)``, a gate's bias) write the tensor themselves.
* A :class:`Plan` is what a recipe does to one model: ``(name, tensor, init)`` writes and
  procedures, checked before anything is written, then run through the active router.
* A :class:`Recipe` makes the plan for a model; :class:`Rules` is a mapping
  ``{name-glob: init}``, and ``_ModuleRecipe`` assigns inits module by module (the
  practitioners' schemes of :mod:`fastinit.schemes`).

Everything here is re-exported by :mod:`fastinit.recipes`, the public module.
"""
from __future__ import annotations

import fnmatch
import functools
import math
import os
import re
import sys
import warnings
from typing import Callable, Iterator, Mapping, Sequence, Union

import torch
from torch import nn

from fastinit import laws, route
from fastinit.arguments import _check_mode, _kaiming_gain, _variance_scaling_spec, check_spec, fill_spec_
from fastinit.fill import fill_target
from fastinit.provenance import note_unmatched
from fastinit.spec import InitSpec, check_dtype
from fastinit.streams import check_rng
from fastinit.structured import _orthogonal_values, _write_values

__all__ = [
    "Init", "normal", "trunc_normal", "uniform", "constant", "zeros", "ones",
    "scaled_residual", "kaiming_normal", "kaiming_uniform", "xavier_uniform",
    "xavier_normal", "orthogonal", "variance_scaling", "lecun_normal", "lecun_uniform",
    "layer_index", "RuleValue", "Plan", "Recipe", "Rules", "rules",
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
    ``check_shape(tensor, name)`` validates the shape (the dtype and the target are checked
    here), and the values written through ``fastinit.route`` are ``values(tensor, key,
    stream)`` with the call's key and stream if ``keyed``, else ``values(tensor)``."""

    def __init__(self, describe: str, check_shape: Callable[[torch.Tensor, str], None],
                 values: Callable[..., torch.Tensor], *, keyed: bool) -> None:
        super().__init__(describe, lambda t, n: None)
        self._check_shape = check_shape

        @route.entry
        def write(t: torch.Tensor, name: str, seed: int | None = None,
                  generator: torch.Generator | None = None) -> None:
            if fill_target(t, _FN, elementwise=False) is None:
                return
            if not keyed:
                _write_values(t, values(t))
                return
            decided = route.keyed(t, seed, generator)
            if decided is not None:
                _write_values(t, values(t, *decided), routed=False)

        self.write = write  # the routed fill, in place of Init.write

    def check(self, tensor: torch.Tensor, name: str) -> None:
        self._check_shape(tensor, name)
        check_dtype(tensor.dtype, _FN)
        fill_target(tensor, _FN, elementwise=False)


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


def _kaiming(dist: str, a: float, mode: str, nonlinearity: str) -> Init:
    mode = _check_mode(mode)
    gain = _kaiming_gain(a, nonlinearity, f"recipes.kaiming_{dist}")

    def make(t: torch.Tensor) -> InitSpec:
        return laws.spread(laws.kaiming_std(*laws.fans(t), gain, mode), dist, _FN)

    return Init(f"kaiming_{dist}(a={a}, mode={mode!r}, nonlinearity={nonlinearity!r})",
                _fan_spec(make))


def kaiming_normal(a: float = 0.0, mode: str = "fan_in",
                   nonlinearity: str = "leaky_relu") -> Init:
    """He normal, as ``fastinit.kaiming_normal_``: N(0, (gain / sqrt(fan))^2)."""
    return _kaiming("normal", a, mode, nonlinearity)


def kaiming_uniform(a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu") -> Init:
    """He uniform, as ``fastinit.kaiming_uniform_``: U(-b, b), b = gain sqrt(3 / fan)."""
    return _kaiming("uniform", a, mode, nonlinearity)


def _check_blocks(blocks: int) -> int:
    if isinstance(blocks, bool) or not isinstance(blocks, int) or blocks < 1:
        raise ValueError(f"blocks must be an int >= 1, got {blocks!r}")
    return blocks


def _xavier(dist: str, gain: float, blocks: int) -> Init:
    blocks = _check_blocks(blocks)

    def make(t: torch.Tensor) -> InitSpec:
        return laws.spread(laws.xavier_std(*laws.fans(t, blocks), gain), dist, _FN)

    return Init(f"xavier_{dist}(gain={gain}, blocks={blocks})", _fan_spec(make))


def xavier_uniform(gain: float = 1.0, blocks: int = 1) -> Init:
    """Glorot uniform, as ``fastinit.xavier_uniform_``; with ``blocks > 1`` the fans are
    those of one of ``blocks`` equal row blocks (each gate of a stacked RNN matrix)."""
    return _xavier("uniform", gain, blocks)


def xavier_normal(gain: float = 1.0, blocks: int = 1) -> Init:
    """Glorot normal, as ``fastinit.xavier_normal_`` (``blocks`` as in
    :func:`xavier_uniform`)."""
    return _xavier("normal", gain, blocks)


def variance_scaling(scale: float = 1.0, mode: str = "fan_in",
                     distribution: str = "truncated_normal") -> Init:
    """JAX's variance scaling, as ``fastinit.variance_scaling_``."""
    make = functools.partial(_variance_scaling_spec, scale=scale, mode=mode,
                             distribution=distribution, fn=_FN)
    make(torch.empty(1, 1, device="meta"))  # the arguments' errors now, before any model is seen
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

    values = functools.partial(_orthogonal_values, gain=gain, blocks=blocks)  # (t, key, stream)
    return _WriteInit(f"orthogonal(gain={gain}, blocks={blocks})", check, values, keyed=True)


def _gate_bias(gates: int, gate: int, value: float) -> Init:
    """A bias of ``gates`` stacked gate vectors: ``value`` on gate ``gate``, 0 elsewhere."""
    def check(t: torch.Tensor, name: str) -> None:
        if t.dim() != 1 or t.shape[0] % gates:
            raise ValueError(f"{name or 'bias'}: shape {tuple(t.shape)} is not {gates} "
                             "stacked gate vectors")

    def values(t: torch.Tensor) -> torch.Tensor:
        h = t.shape[0] // gates
        full = torch.zeros(t.shape[0], dtype=torch.float64, device="cpu")
        full[gate * h:(gate + 1) * h] = value
        return full.to(t.dtype)

    return _WriteInit(f"gate_bias(gate {gate} of {gates} = {value})", check, values,
                      keyed=False)


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
        """Write ``tensor`` (named ``name``) with ``init``, replacing an earlier entry."""
        self._writes.pop(id(tensor), None)  # keep the order of the last assignment
        self._writes[id(tensor)] = (name, tensor, init)

    def add_procedure(self, run: Callable[[], None], targets: Mapping[str, torch.Tensor]) -> None:
        """Run ``run()`` (code that writes ``targets`` itself) after the writes."""
        self._procedures.append((run, dict(targets)))

    @property
    def writes(self) -> list[tuple[str, torch.Tensor, RuleValue]]:
        """The ``(name, tensor, init)`` writes, in order."""
        return list(self._writes.values())

    @property
    def has_procedures(self) -> bool:
        """Whether the plan runs code that writes its targets itself."""
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
        """The recipe's writes in ``model``, among ``params`` (name -> tensor it may write)."""
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
        """The globs the rules are for."""
        return "parameters named " + ", ".join(repr(g) for g in self.must_match or self.mapping)

    def plan(self, model: nn.Module | None, params: Mapping[str, torch.Tensor]) -> Plan:
        """Each of ``params`` with its first matching rule (``model``: None for
        :func:`fastinit.recipes.apply`, which has no model to check)."""
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


