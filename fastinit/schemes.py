"""The practitioners' schemes: the built-in recipes, by module type and by parameter name.

Module by module: :func:`resnet` (He et al.; torchvision's init, zero-init residual),
:func:`rnn` (Xavier input, orthogonal recurrent per gate, LSTM forget bias), :func:`dcgan`,
:func:`rezero`, :func:`lora` (PEFT's adapter init) and :func:`mup` (the model's own init
with ``mup.init``'s functions). By name globs: :func:`gpt2`, :func:`llama`, :func:`bert`,
:func:`torchtitan_llama`, :func:`vit`. :data:`RECIPES` maps the built-in names to them.
Each is built on the machinery of :mod:`fastinit.rules` and re-exported by
:mod:`fastinit.recipes`, whose documentation says how a recipe composes with a model.
"""
from __future__ import annotations

import contextlib
import fnmatch
import functools
import math
import warnings
from typing import Callable, Iterator, Mapping, Sequence

import torch
from torch import nn

from fastinit.provenance import note_unmatched
from fastinit.rules import (
    _LAYER,
    Init,
    Plan,
    Recipe,
    Rules,
    RuleValue,
    _gate_bias,
    _ModuleRecipe,
    _user_stacklevel,
    kaiming_normal,
    kaiming_uniform,
    layer_index,
    normal,
    ones,
    orthogonal,
    scaled_residual,
    trunc_normal,
    uniform,
    xavier_uniform,
    zeros,
)

__all__ = ["resnet", "rnn", "dcgan", "rezero", "lora", "mup", "gpt2", "llama", "bert",
           "torchtitan_llama", "vit", "RuleMapping", "RECIPES"]


# --- module by module -------------------------------------------------------------------------------


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

    #: the gates stacked in a module's matrices (else 1: nn.RNN, nn.RNNCell)
    GATES = ((nn.LSTM, 4), (nn.LSTMCell, 4), (nn.GRU, 3), (nn.GRUCell, 3))

    def assign(self, model: nn.Module) -> Iterator[tuple[torch.Tensor | None, Init]]:
        for m in model.modules():
            if not isinstance(m, (nn.RNNBase, nn.RNNCellBase)):
                continue
            gates = next((g for cls, g in self.GATES if isinstance(m, cls)), 1)
            for pname, p in m.named_parameters(recurse=False):
                if pname.startswith("weight_ih"):
                    yield p, xavier_uniform(blocks=gates)
                elif pname.startswith("weight_hh"):
                    yield p, orthogonal(blocks=gates)
                elif pname.startswith("weight_hr"):  # LSTM projection: a plain linear map
                    yield p, xavier_uniform()
                elif pname.startswith("bias_ih") and gates == 4:  # an LSTM
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
        for g in self.globs or ():
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
        gaussian = self.init == "gaussian"
        for m in model.modules():
            lora_a, lora_b = getattr(m, "lora_A", None), getattr(m, "lora_B", None)
            ranks = getattr(m, "r", None)
            if isinstance(lora_a, nn.ModuleDict) and isinstance(lora_b, nn.ModuleDict):
                for adapter, a in lora_a.items():
                    yield a.weight, normal(0.0, 1.0 / ranks[adapter]) if gaussian else a_init
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

    def redirect(name: str, own: Callable) -> Callable:
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
    mup_init.__dict__.update({k: v for k, v in samplers.items() if k in saved})
    try:
        with intercept.redirecting(redirect):
            yield
    finally:
        mup_init.__dict__.update(saved)


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
    from fastinit.modelinit import run_model_init

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
    values = (getattr(cfg, n, None) for n in names)  # all None without a config
    return next((v for v in values if v is not None), default)


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
        params = dict(model.named_parameters())
        head = params.get("output.weight", params.get("lm_head.weight"))
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

