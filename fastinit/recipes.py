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

The recipes are defined by job and re-exported here: the machinery (inits, plans,
:class:`Recipe`, :class:`Rules`) in :mod:`fastinit.rules`, the built-in schemes in
:mod:`fastinit.schemes`; this module applies them (:func:`resolve`, :func:`apply`,
:func:`apply_recipe`).

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

from typing import Iterable, Mapping

import torch
from torch import nn

from fastinit import route
from fastinit.intercept import recording_into
from fastinit.provenance import recorded as _recorded
from fastinit.rules import (
    Init,
    Plan,
    Recipe,
    Rules,
    RuleValue,
    constant,
    kaiming_normal,
    kaiming_uniform,
    layer_index,
    lecun_normal,
    lecun_uniform,
    normal,
    ones,
    orthogonal,
    rules,
    scaled_residual,
    trunc_normal,
    uniform,
    variance_scaling,
    xavier_normal,
    xavier_uniform,
    zeros,
)
from fastinit.schemes import (
    _MUP_FUNCTIONS,
    RECIPES,
    RuleMapping,
    bert,
    dcgan,
    gpt2,
    llama,
    lora,
    mup,
    resnet,
    rezero,
    rnn,
    torchtitan_llama,
    vit,
)
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
    if not isinstance(recipe, Rules):
        raise TypeError("recipes.apply takes a mapping of globs to inits; use apply_recipe "
                        "for a model")
    recipe.plan(None, params).run()


#: As materialize: no progress bar for fills that take well under a second.
_PROGRESS_MIN_ELEMENTS = 1 << 26


def _tensors(model: nn.Module) -> list[torch.Tensor]:
    return list({id(t): t for t in (*model.parameters(), *model.buffers())}.values())


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
        with recording_into(router):
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
