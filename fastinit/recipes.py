"""Declarative initialization schemes: ``{name-glob: init}`` rules.

A recipe maps parameter names to initializations. The first rule whose glob matches a
parameter's qualified name wins (``fnmatch`` syntax: ``*`` matches any characters,
dots included). ``materialize(model, recipe=...)`` applies a recipe instead of the
model's own initialization of its parameters (buffers are still computed by the model's
code). Built-in recipes: ``gpt2``, ``llama``, ``bert``, ``torchtitan_llama``, ``vit``.

Examples:
    >>> recipe = {"*norm*.weight": ones(), "*.bias": zeros(), "*": normal(std=0.02)}
    >>> fastinit.materialize(model, recipe=recipe)
"""
from __future__ import annotations

import fnmatch
import math
import re
import warnings
from typing import Callable, Mapping, Union

import torch
from torch import nn

from fastinit.init import fill_spec_
from fastinit.spec import InitSpec

__all__ = ["Init", "normal", "trunc_normal", "uniform", "constant", "zeros", "ones",
           "scaled_residual", "resolve", "apply", "RECIPES"]


class Init:
    """One initialization of a recipe: a distribution, possibly depending on the tensor."""

    def __init__(self, describe: str, make: Callable[[torch.Tensor, str], InitSpec]) -> None:
        self._describe = describe
        self._make = make

    def spec(self, tensor: torch.Tensor, name: str) -> InitSpec:
        return self._make(tensor, name)

    def __call__(self, tensor: torch.Tensor, name: str = "", *,
                 generator: torch.Generator | None = None,
                 seed: int | None = None) -> torch.Tensor:
        """Fill ``tensor`` in place, as the matching ``fastinit.<fn>_`` function would:
        a key from ``seed`` or drawn from ``generator`` (default: torch's default
        generator), or - inside ``materialize`` - the materialize seed and the stream of
        the parameter's name."""
        return fill_spec_(tensor, self.spec(tensor, name), "recipes", seed, generator)

    def __repr__(self) -> str:
        return self._describe


def normal(mean: float = 0.0, std: float = 1.0) -> Init:
    spec = InitSpec.normal(mean, std)
    return Init(f"normal(mean={mean}, std={std})", lambda t, n: spec)


def trunc_normal(mean: float = 0.0, std: float = 1.0, a: float = -2.0, b: float = 2.0) -> Init:
    spec = InitSpec.trunc_normal(mean, std, a, b)
    return Init(f"trunc_normal(mean={mean}, std={std}, a={a}, b={b})", lambda t, n: spec)


def uniform(a: float = 0.0, b: float = 1.0) -> Init:
    spec = InitSpec.uniform(a, b)
    return Init(f"uniform(a={a}, b={b})", lambda t, n: spec)


def constant(value: float) -> Init:
    spec = InitSpec.constant(value)
    return Init(f"constant({value})", lambda t, n: spec)


def zeros() -> Init:
    return constant(0.0)


def ones() -> Init:
    return constant(1.0)


_LAYER = re.compile(r"(?:^|\.)(?:layers|h|layer|blocks)\.(\d+)\.")


def layer_index(name: str) -> int:
    """The block index in a qualified name such as ``model.layers.7.mlp.down_proj.weight``."""
    m = _LAYER.search(name)
    if m is None:
        raise ValueError(f"cannot find a layer index in parameter name {name!r}")
    return int(m.group(1))


def scaled_residual(std: float = 0.02, num_layers: int | None = None, *, depth: bool = False,
                    truncated: bool = False, cutoff: float | None = None) -> Init:
    """Residual-output init: std / sqrt(2 num_layers), or std / sqrt(2 (layer + 1)) with
    ``depth=True`` (the layer index is read from the parameter's name).

    ``truncated`` draws from a normal truncated at ``cutoff`` standard deviations
    (default: torch's absolute bounds -2, 2).
    """
    if not depth and (num_layers is None or num_layers < 1):
        raise ValueError("scaled_residual needs num_layers >= 1 unless depth=True")

    def make(t: torch.Tensor, name: str) -> InitSpec:
        n = 2 * (layer_index(name) + 1) if depth else 2 * num_layers
        s = std / math.sqrt(n)
        if not truncated:
            return InitSpec.normal(0.0, s)
        if cutoff is None:
            return InitSpec.trunc_normal(0.0, s, -2.0, 2.0)
        return InitSpec.trunc_normal(0.0, s, -cutoff * s, cutoff * s)

    form = "std/sqrt(2(layer+1))" if depth else f"std/sqrt(2*{num_layers})"
    kind = "trunc_normal" if truncated else "normal"
    return Init(f"scaled_residual({kind}, {form}, std={std})", make)


RuleValue = Union[Init, Callable[[torch.Tensor, str], object]]
Recipe = Mapping[str, RuleValue]


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


def gpt2(model: nn.Module) -> Recipe:
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


def llama(model: nn.Module) -> Recipe:
    """Hugging Face Llama: N(0, initializer_range) everywhere, norms at one."""
    std = _config(model, "initializer_range", default=0.02)
    return {"*norm.weight": ones(), "*.bias": zeros(), "*": normal(0.0, std)}


def bert(model: nn.Module) -> Recipe:
    """BERT: N(0, initializer_range), LayerNorm one/zero, biases zero."""
    std = _config(model, "initializer_range", default=0.02)
    return {"*LayerNorm.weight": ones(), "*LayerNorm.bias": zeros(), "*.bias": zeros(),
            "*": normal(0.0, std)}


def torchtitan_llama(model: nn.Module) -> Recipe:
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


def vit(model: nn.Module) -> Recipe:
    """Vision Transformer (timm / Hugging Face): trunc-normal(0.02), norms one, biases zero."""
    std = _config(model, "initializer_range", default=0.02)
    return {"*norm*.weight": ones(), "*norm*.bias": zeros(), "*.bias": zeros(),
            "*": trunc_normal(0.0, std)}


RECIPES: dict[str, Callable[[nn.Module], Recipe]] = {
    "gpt2": gpt2, "llama": llama, "bert": bert, "torchtitan_llama": torchtitan_llama, "vit": vit,
}


def resolve(recipe: str | Recipe, model: nn.Module) -> tuple[Recipe, bool]:
    """A recipe given by name (built-in) or as a mapping, and whether to warn about rules
    that match nothing (built-in recipes cover several naming styles, so they do not)."""
    if isinstance(recipe, str):
        if recipe not in RECIPES:
            raise ValueError(f"unknown recipe {recipe!r}; known recipes: {', '.join(sorted(RECIPES))}")
        return RECIPES[recipe](model), False
    if not isinstance(recipe, Mapping):
        raise TypeError(f"recipe must be a name or a mapping of globs to inits, got {type(recipe).__name__}")
    return recipe, True


def apply(recipe: Recipe, params: Mapping[str, torch.Tensor], warn_unused: bool = True) -> None:
    """Initialize each of ``params`` (name -> tensor) with its first matching rule.

    Raises ``ValueError`` naming the parameters no rule matches (before anything is
    written) and, with ``warn_unused``, warns about rules that match nothing.
    """
    plan: list[tuple[str, torch.Tensor, RuleValue]] = []
    used: set[str] = set()
    unmatched = []
    for name, tensor in params.items():
        for glob, rule in recipe.items():
            if fnmatch.fnmatchcase(name, glob):
                plan.append((name, tensor, rule))
                used.add(glob)
                break
        else:
            unmatched.append(name)
    if unmatched:
        raise ValueError(f"no recipe rule matches these parameters: {', '.join(unmatched)}")
    for glob in recipe:
        if warn_unused and glob not in used:
            warnings.warn(f"recipe rule {glob!r} matched no parameter", UserWarning, stacklevel=3)
    specs = []
    for name, tensor, rule in plan:  # validate every rule before writing anything
        spec = rule.spec(tensor, name) if isinstance(rule, Init) else None
        if spec is not None:
            spec.kernel_params(tensor.dtype)
        specs.append(spec)
    for (name, tensor, rule), spec in zip(plan, specs):
        if spec is not None:
            fill_spec_(tensor, spec, "recipes")
        else:
            rule(tensor, name)
