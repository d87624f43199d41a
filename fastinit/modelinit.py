"""The model's own init code, run again in the order eager construction ran it.

:func:`run_model_init` is what ``materialize`` (and ``apply_recipe`` on a model built on
meta) runs inside its routed session: every module's ``reset_parameters()`` children
first, then the model-level init (Hugging Face's ``initialize_weights()``, a
torchtitan-style ``init_weights()``), then PEFT's LoRA adapters; parametrizations
(``weight_norm``, ``register_parametrization``, spectral norm) get the plain initial
values as registering them after construction does, and Hugging Face's tied targets are
kept out of the way while the init code runs. It knows nothing of allocation, routing or
recording: the writes it makes go through whatever router is active
(``fastinit.route``), which follows a tensor rebound by a parametrization through
``NameRouter.rebound``.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

import torch
from torch import nn
from torch.nn.utils import parametrize

from fastinit import route

__all__ = ["run_model_init", "outermost_hf_models", "is_hf_model"]


def is_hf_model(module: nn.Module) -> bool:
    """Whether ``module`` is a transformers ``PreTrainedModel`` (by its class's MRO)."""
    return any(c.__name__ == "PreTrainedModel" and c.__module__.startswith("transformers")
               for c in type(module).__mro__)


# --- the model's own init, in eager order ---------------------------------------------------


def _reset(module: nn.Module) -> None:
    """Run ``module``'s own reset (as its constructor did), parametrizations included."""
    reset = getattr(module, "reset_parameters", None) or getattr(module, "_reset_parameters", None)
    if not callable(reset):
        return
    parametrized = getattr(module, "parametrizations", None)
    with contextlib.ExitStack() as stack:
        # the attribute a legacy weight-norm hook recomputes: a plain tensor now
        for name, hook in _legacy_weight_norms(module):
            stack.enter_context(_legacy_weight_norm_reset(module, name, hook))
        if parametrized is None:
            reset()
            return
        with parametrize.cached():
            # the parametrized tensors are computed once and cached: the reset writes them
            values = {name: getattr(module, name) for name in parametrized.keys()}
            reset()
        for name, value in values.items():
            _register_again(module, name, value)


def _register_again(module: nn.Module, name: str, value: torch.Tensor) -> None:
    """Give parametrization ``name`` of ``module`` the plain initial ``value``, as
    registering it after construction does: its ``right_inverse`` sets the originals
    (without one, the original is the value itself); torch's spectral norm also draws its
    power-iteration vectors again."""
    plist = module.parametrizations[name]
    try:
        setattr(module, name, value)  # right_inverse; it rebinds the originals (set_)
        router = route.active()
        if isinstance(router, route.NameRouter):  # Tensor.set_ is invisible to torch function
            for original in plist.parameters(recurse=False):
                router.rebound(original)
    except RuntimeError:
        if not hasattr(plist, "original") or any(hasattr(p, "right_inverse") for p in plist):
            raise
        plist.original.copy_(value)
    for p in plist:
        if type(p).__name__ == "_SpectralNorm" and hasattr(p, "_u"):
            weight_mat = p._reshape_weight_to_matrix(plist.original)
            for vector, size in zip((p._u, p._v), weight_mat.shape):  # u first, as torch
                vector.copy_(nn.functional.normalize(weight_mat.new_empty(size).normal_(0, 1),
                                                     dim=0, eps=p.eps))
            p._power_method(weight_mat, 15)


def _legacy_weight_norms(module: nn.Module) -> list[tuple[str, object]]:
    """``(name, hook)`` of the hook-based ``torch.nn.utils.weight_norm`` on ``module``."""
    return [(h.name, h) for h in module._forward_pre_hooks.values()
            if type(h).__name__ == "WeightNorm" and hasattr(h, "name")]


@contextlib.contextmanager
def _legacy_weight_norm_reset(module: nn.Module, name: str, hook) -> Iterator[None]:
    g = getattr(module, name + "_g")
    v = getattr(module, name + "_v")
    plain = torch.empty(v.shape, dtype=v.dtype, device=v.device)
    setattr(module, name, plain)
    yield
    with torch.no_grad():  # what weight_norm() computes from the weight at registration
        v.copy_(plain)
        g.copy_(torch.norm_except_dim(plain, 2, hook.dim))


def run_model_init(module: nn.Module) -> None:
    """Run the model's initialization in the order eager construction runs it.

    Every submodule's ``reset_parameters()`` (or ``_reset_parameters()``), children before
    their parent; then the model-level init: Hugging Face ``initialize_weights()``
    (transformers 5) or ``init_weights()``, or a torchtitan-style ``init_weights()``.
    """
    seen: set[int] = set()

    def post_order(m: nn.Module) -> None:
        if id(m) in seen:  # a shared module is constructed, and reset, once
            return
        seen.add(id(m))
        for child in m.children():
            if type(child).__name__ != "ParametrizationList":
                post_order(child)
        _reset(m)

    post_order(module)
    hf_models = outermost_hf_models(module)
    for model in hf_models:
        with _untied(model):
            if hasattr(model, "initialize_weights"):
                model.initialize_weights()
            else:
                model.init_weights()
        # Eager construction ends by tying (post_init); transformers 5.0 does not tie a
        # model built on meta, later versions do, and tying twice is a no-op.
        tie = getattr(model, "tie_weights", None)
        if callable(tie) and getattr(getattr(model, "config", None), "tie_word_embeddings", False):
            tie()
    if not hf_models:
        init_weights = getattr(module, "init_weights", None)
        if callable(init_weights):
            init_weights()
    _reset_lora_adapters(module)


def outermost_hf_models(module: nn.Module) -> list[nn.Module]:
    """The transformers models in ``module`` that no other transformers model contains
    (the model itself, or the base model inside a PEFT wrapper)."""
    if is_hf_model(module):
        return [module]
    return [m for child in module.children() for m in outermost_hf_models(child)]


def _reset_lora_adapters(module: nn.Module) -> None:
    """PEFT adapters are initialized after the base model is built, by each LoRA layer's
    ``reset_lora_parameters(adapter, init_lora_weights)``: do it again, in that order."""
    configs = next((m.peft_config for m in module.modules()
                    if isinstance(getattr(m, "peft_config", None), dict)), None)
    if not configs:
        return
    for m in module.modules():
        reset = getattr(m, "reset_lora_parameters", None)
        if not callable(reset):
            continue
        for name in sorted({*getattr(m, "lora_A", {}), *getattr(m, "lora_embedding_A", {})}):
            init = getattr(configs.get(name), "init_lora_weights", True)
            if init is True or init is False or init == "gaussian":  # data-free schemes
                reset(name, init)


@contextlib.contextmanager
def _untied(module: nn.Module) -> Iterator[None]:
    """Hugging Face ties parameters after initializing them, so the init code of a tied
    *target* (the LM head sharing the embedding) writes values that the tie throws away.
    On a model built on meta the tie exists before init, and that write would land on the
    shared tensor (undoing, e.g., a zeroed padding row). Give each tied target a meta
    stand-in while the init code runs: its writes go nowhere, as in transformers' own order.
    """
    targets = getattr(module, "all_tied_weights_keys", None)
    if not isinstance(targets, dict):  # no ties known: nothing to swap
        targets = {}
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
        swapped.append((owner, attr, t))
        owner._parameters[attr] = nn.Parameter(torch.empty(t.shape, dtype=t.dtype, device="meta"),
                                               requires_grad=t.requires_grad)
    try:
        yield
    finally:
        for owner, attr, t in reversed(swapped):
            owner._parameters[attr] = t
