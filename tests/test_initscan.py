"""A plain meta build is exact or a clear error: fastinit.initscan.

A model built under ``torch.device("meta")`` keeps nothing of its construction, so
``materialize`` re-runs the model's init code. Where a module's ``__init__`` did init work
that re-run cannot redo (torchvision's ResNet / GoogLeNet loops, timm's
``_init_weight_goog`` and ``named_apply``, diffusers' zero convolutions), materialize
refuses before allocating, naming the class, the file and line, and the fix; where the
model's entry point re-does everything (Hugging Face, a root ``init_weights``), it stays
quiet. The modules below mirror those libraries' patterns (torchvision cannot be imported
with a CPU torch).
"""
from __future__ import annotations

import functools
import inspect
import math
import time

import pytest
import torch
from torch import nn
from torch.nn.init import trunc_normal_ as tn

import fastinit
from fastinit import initscan
from fastinit.initscan import LostInitError

EARLY = functools.partial(nn.init.normal_, std=0.02)


def _line(cls_or_fn, marker: str) -> int:
    """The file line of the statement marked ``# <marker>`` in a class's or function's source."""
    lines, first = inspect.getsourcelines(cls_or_fn)
    return first + next(i for i, s in enumerate(lines) if s.rstrip().endswith(f"# {marker}"))


def _meta(build):
    with torch.device("meta"):
        return build()


def _all_meta(model: nn.Module) -> bool:
    return all(t.is_meta for t in (*model.parameters(), *model.buffers()))


# --- mirrors of the libraries' patterns -----------------------------------------------------------


class BasicBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)


class TVResNet(nn.Module):
    """torchvision's ResNet.__init__: Kaiming-normal fan-out convs, norms 1/0, and
    zero_init_residual."""

    def __init__(self, zero_init_residual: bool = True) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = nn.Sequential(BasicBlock(16), BasicBlock(16))
        self.fc = nn.Linear(16, 10)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")  # KAIMING
            elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, BasicBlock):
                    nn.init.constant_(m.bn2.weight, 0)


class GoogLeNetLike(nn.Module):
    """torchvision's GoogLeNet: trunc-normal 0.01 on convs and linears."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, 4)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                torch.nn.init.trunc_normal_(m.weight, mean=0.0, std=0.01, a=-2, b=2)  # TRUNC
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)


def _init_weight_goog(m: nn.Module, n: str = "") -> None:
    """timm's EfficientNet init: conv weights N(0, sqrt(2 / fan_out)) through .data."""
    if isinstance(m, nn.Conv2d):
        fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels
        m.weight.data.normal_(0, math.sqrt(2.0 / fan_out))  # GOOG
        if m.bias is not None:
            m.bias.data.zero_()


def efficientnet_init_weights(model: nn.Module) -> None:
    for n, m in model.named_modules():
        _init_weight_goog(m, n)


class EfficientNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.head = nn.Linear(8, 4)
        efficientnet_init_weights(self)  # EFFNET


def named_apply(fn, module: nn.Module, name: str = "") -> nn.Module:
    for child_name, child in module.named_children():
        named_apply(fn, child, f"{name}.{child_name}" if name else child_name)
    fn(module=module, name=name)
    return module


def _regnet_init(module: nn.Module, name: str = "", zero_init_last: bool = False) -> None:
    if isinstance(module, nn.Conv2d):
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels
        module.weight.data.normal_(0, math.sqrt(2.0 / fan_out))
    elif zero_init_last and hasattr(module, "zero_init_last"):
        module.zero_init_last()


class RegNetLike(nn.Module):
    """timm's RegNet: named_apply(partial(_init_weights, zero_init_last=...), self)."""

    def __init__(self, zero_init_last: bool = True) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.final = nn.BatchNorm2d(8)
        named_apply(functools.partial(_regnet_init, zero_init_last=zero_init_last), self)  # NAMED


class AppliesItsInit(nn.Module):
    """timm / Hugging Face style: self.apply(self._init_weights) in __init__."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.apply(self._init_weights)  # APPLY

    def _init_weights(self, m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.zeros_(m.bias)


def zero_module(module: nn.Module) -> nn.Module:
    """diffusers' ControlNet helper: every parameter of the module 0."""
    for p in module.parameters():
        nn.init.zeros_(p)  # ZERO
    return module


class ControlNetLike(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Conv2d(4, 4, 3, padding=1)
        self.zero_conv = zero_module(nn.Conv2d(4, 4, 1))  # ZEROCALL


class HelperMethod(nn.Module):
    """Init work in a helper method whose name does not say init."""

    def __init__(self) -> None:
        super().__init__()
        self.head = nn.Linear(4, 4)
        self._setup_head()  # HELPER

    def _setup_head(self) -> None:
        self.head.weight.data.zero_()  # INNER


class AliasedInit(nn.Module):
    """Init functions under other names: an alias import and a partial made beforehand."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        tn(self.a.weight, std=0.02)  # ALIAS
        EARLY(self.b.weight)


INITS = {"weight": functools.partial(nn.init.trunc_normal_, std=0.02)}


class IndirectInit(nn.Module):
    """torchtitan-style: init functions kept in a table, or reached through getattr."""

    def __init__(self, name: str = "zeros_") -> None:
        super().__init__()
        self.a = nn.Linear(4, 4)
        self.b = nn.Linear(4, 4)
        getattr(nn.init, name)(self.a.bias)  # GETATTR
        INITS["weight"](self.b.weight)


class TableInit(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.b = nn.Linear(4, 4)
        INITS["weight"](self.b.weight)  # TABLE


class PartialAlias(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.b = nn.Linear(4, 4)
        EARLY(self.b.weight)  # PARTIAL


class ResetsItself(nn.Module):
    """The common pattern: __init__ makes the tensors, then calls its own reset, which the
    re-run calls again: exact, quiet (what ran before the reset call is overwritten by it,
    eagerly too)."""

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 4))
        self.b = nn.Parameter(torch.empty(4))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.w, std=0.5)
        nn.init.zeros_(self.b)


class ScalesAfterReset(ResetsItself):
    def __init__(self) -> None:
        super().__init__()
        self.w.data.mul_(0.1)  # AFTER


class FactoryAndOtherReset(nn.Module):
    """A value made in __init__ that the class's own reset_parameters (not called there)
    would overwrite: eager construction has ones, a re-run zeros."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(4))  # FACTORY

    def reset_parameters(self) -> None:
        nn.init.zeros_(self.scale)


class ZeroBiasLinear(nn.Linear):
    """A torch layer's subclass replacing a tensor after torch's reset ran."""

    def __init__(self, n: int) -> None:
        super().__init__(n, n)
        self.bias = nn.Parameter(torch.zeros(n))  # SUBCLASS


class PlainBlock(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.fc = nn.Linear(d, d)
        self.norm = nn.LayerNorm(d)
        self.gate = nn.Parameter(torch.empty(d))

    def reset_parameters(self) -> None:
        nn.init.ones_(self.gate)


class TorchtitanLike(nn.Module):
    """A root init_weights (torchtitan, olmo-core): run_model_init calls it, and it
    re-does what the root's __init__ did."""

    def __init__(self) -> None:
        super().__init__()
        self.blocks = nn.ModuleList([PlainBlock(8), PlainBlock(8)])
        self.out = nn.Linear(8, 8)
        nn.init.zeros_(self.out.weight)

    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.zeros_(m.bias) if m.bias is not None else None
        nn.init.zeros_(self.out.weight)


class Wrapper(nn.Module):
    """A root without an entry point: a child's init_weights is not called by the re-run."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = TorchtitanLike()


class ConvNorm(nn.Module):
    """timm's LeViT: a child zeroes its BatchNorm weight in __init__..."""

    def __init__(self, c: int, bn_weight_init: float = 0.0) -> None:
        super().__init__()
        self.linear = nn.Conv2d(c, c, 1, bias=False)
        self.bn = nn.BatchNorm2d(c)
        nn.init.constant_(self.bn.weight, bn_weight_init)  # CONVNORM


class LeViTLike(nn.Module):
    """... and the root's init_weights only resets the layers: not trusted for children."""

    def __init__(self) -> None:
        super().__init__()
        self.stage = nn.Sequential(ConvNorm(4), ConvNorm(4))
        self.init_weights(needs_reset=False)

    def init_weights(self, needs_reset: bool = True) -> None:
        self.apply(functools.partial(self._init_weights, needs_reset=needs_reset))

    def _init_weights(self, m: nn.Module, needs_reset: bool = True) -> None:
        if needs_reset and hasattr(m, "reset_parameters"):
            m.reset_parameters()


REFUSED = [
    (TVResNet, TVResNet, "KAIMING", "calls init function nn.init.kaiming_normal_"),
    (GoogLeNetLike, GoogLeNetLike, "TRUNC", "trunc_normal_"),
    (EfficientNetLike, EfficientNetLike, "EFFNET", "efficientnet_init_weights"),
    (RegNetLike, RegNetLike, "NAMED", "named_apply"),
    (AppliesItsInit, AppliesItsInit, "APPLY", "self.apply"),
    (ControlNetLike, ControlNetLike, "ZEROCALL", "zero_module"),
    (HelperMethod, HelperMethod, "HELPER", "self._setup_head"),
    (AliasedInit, AliasedInit, "ALIAS", "tn("),
    (PartialAlias, PartialAlias, "PARTIAL", "EARLY("),
    (IndirectInit, IndirectInit, "GETATTR", "getattr(nn.init, ...)"),
    (TableInit, TableInit, "TABLE", "INITS[...]"),
    (ScalesAfterReset, ScalesAfterReset, "AFTER", "in-place mul_"),
    (FactoryAndOtherReset, FactoryAndOtherReset, "FACTORY", "factory torch.ones"),
    (lambda: nn.Sequential(ZeroBiasLinear(4)), ZeroBiasLinear, "SUBCLASS", "torch.zeros"),
    (Wrapper, TorchtitanLike, "", "nn.init.zeros_"),
    (LeViTLike, ConvNorm, "CONVNORM", "nn.init.constant_"),
]


@pytest.mark.parametrize("build,cls,marker,what", REFUSED,
                         ids=[c.__name__ + ("-wrapped" if b is Wrapper else "")
                              for b, c, _, _ in REFUSED])
def test_plain_meta_build_losing_init_work_is_refused_before_allocation(build, cls, marker,
                                                                        what):
    """On the old code materialize returned torch's layer defaults here, silently (no
    error): this fails there."""
    model = _meta(build)
    state = torch.get_rng_state()
    with pytest.raises(ValueError) as info:
        fastinit.materialize(model, "cpu", seed=0)
    assert isinstance(info.value, LostInitError)
    message = str(info.value)
    assert f"{cls.__qualname__} (" in message and what in message, message
    if marker:
        assert f"{__file__}:{_line(cls, marker)}" in message, message
    assert "fastinit.empty_init()" in message and "accept_reset_defaults=True" in message
    assert _all_meta(model)  # nothing allocated
    assert torch.equal(state, torch.get_rng_state())


def test_followed_calls_name_the_inner_statement_too():
    message = str(pytest.raises(LostInitError, fastinit.materialize, _meta(HelperMethod),
                                "cpu").value)
    assert f"{__file__}:{_line(HelperMethod._setup_head, 'INNER')}" in message
    message = str(pytest.raises(LostInitError, fastinit.materialize, _meta(ControlNetLike),
                                "cpu").value)
    assert f"{__file__}:{_line(zero_module, 'ZERO')}" in message


def test_resnet_like_empty_init_is_exact_and_the_opt_in_gives_reset_defaults():
    torch.manual_seed(0)
    eager = TVResNet()
    with fastinit.empty_init():
        recorded = TVResNet()
    fastinit.materialize(recorded, "cpu", seed=1)
    fan_out = 16 * 9
    for model in (eager, recorded):
        assert all((b.bn2.weight == 0).all() for b in model.layer1)
        std = model.layer1[0].conv1.weight.std().item()
        assert abs(std / math.sqrt(2 / fan_out) - 1) < 0.1, std
    opted = fastinit.materialize(_meta(TVResNet), "cpu", seed=1, accept_reset_defaults=True)
    # the modules' reset_parameters defaults, as documented: BatchNorm weight 1,
    # conv Kaiming uniform (a = sqrt(5)): std 1/sqrt(3 fan_in)
    assert all((b.bn2.weight == 1).all() for b in opted.layer1)
    std = opted.layer1[0].conv1.weight.std().item()
    assert abs(std / (1 / math.sqrt(3 * 16 * 9)) - 1) < 0.1, std


def test_a_recipe_that_rewrites_every_parameter_makes_the_own_init_moot():
    """The example of docs/materialize.md: a meta-built ResNet with the ResNet recipe is
    not refused (every parameter is the recipe's); a recipe that leaves a parameter to the
    model's own init is."""
    from fastinit import recipes

    model = fastinit.materialize(_meta(TVResNet), "cpu", seed=0,
                                 recipe=recipes.resnet(zero_init_residual=True))
    assert all((b.bn2.weight == 0).all() for b in model.layer1)
    with pytest.raises(LostInitError, match="TVResNet"):
        fastinit.materialize(_meta(TVResNet), "cpu", seed=0,
                             recipe={"*conv*.weight": recipes.zeros()})


def test_a_module_that_resets_itself_is_quiet_and_exact():
    model = fastinit.materialize(_meta(ResetsItself), "cpu", seed=0)
    assert (model.b == 0).all()
    assert abs(model.w.std().item() / 0.5 - 1) < 0.5
    assert initscan.scan(_meta(ResetsItself)) == []


def test_a_root_init_weights_is_trusted_and_a_childs_is_not():
    assert initscan.scan(_meta(TorchtitanLike)) == []
    model = fastinit.materialize(_meta(TorchtitanLike), "cpu", seed=0)
    assert (model.out.weight == 0).all()
    found = initscan.scan(_meta(Wrapper))
    assert [f.cls.rsplit(".", 1)[-1] for f in found] == ["TorchtitanLike"]


def test_source_unavailable_is_refused_with_the_opt_in():
    scope: dict = {"nn": nn, "torch": torch}
    exec("class Generated(nn.Module):\n"
         "    def __init__(self):\n"
         "        super().__init__()\n"
         "        self.fc = nn.Linear(2, 2)\n", scope)
    generated = scope["Generated"]
    with pytest.raises(LostInitError, match="Generated.*source of __init__ unavailable"):
        fastinit.materialize(_meta(generated), "cpu")
    model = fastinit.materialize(_meta(generated), "cpu", accept_reset_defaults=True)
    assert not model.fc.weight.is_meta


TORCH_LAYERS = [
    lambda: nn.Linear(4, 3), lambda: nn.Bilinear(3, 4, 2), lambda: nn.Conv1d(2, 3, 3),
    lambda: nn.Conv2d(2, 3, 3), lambda: nn.Conv3d(2, 3, 2), lambda: nn.ConvTranspose2d(2, 3, 3),
    lambda: nn.LSTM(4, 5, num_layers=2, proj_size=2), lambda: nn.GRU(4, 5), lambda: nn.RNN(4, 5),
    lambda: nn.LSTMCell(4, 5), lambda: nn.Embedding(6, 4, padding_idx=0),
    lambda: nn.EmbeddingBag(6, 4), lambda: nn.MultiheadAttention(8, 2, kdim=4, vdim=4),
    lambda: nn.Transformer(8, 2, 1, 1, 16), lambda: nn.TransformerEncoderLayer(8, 2, 16),
    lambda: nn.TransformerDecoderLayer(8, 2, 16), lambda: nn.BatchNorm2d(3),
    lambda: nn.LayerNorm(4), lambda: nn.GroupNorm(2, 4), lambda: nn.InstanceNorm2d(3, affine=True),
    lambda: nn.PReLU(3), lambda: nn.RMSNorm(4),
    lambda: nn.utils.parametrizations.weight_norm(nn.Linear(3, 3)),
    lambda: nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), PlainBlock(4)),
]


@pytest.mark.filterwarnings("ignore")  # nn.Transformer's nested-tensor note
@pytest.mark.parametrize("build", TORCH_LAYERS, ids=lambda b: type(b()).__name__)
def test_torch_layers_are_not_refused(build):
    model = _meta(build)
    assert initscan.scan(model) == []
    fastinit.materialize(model, "cpu", seed=0)
    assert not any(t.is_meta for t in model.parameters())


def _tiny_hf(name: str):
    transformers = pytest.importorskip("transformers")
    if name == "llama":
        cfg = transformers.LlamaConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                       num_hidden_layers=2, num_attention_heads=2,
                                       num_key_value_heads=1)
        return lambda: transformers.LlamaForCausalLM(cfg)
    if name == "bert":
        cfg = transformers.BertConfig(vocab_size=64, hidden_size=16, intermediate_size=32,
                                      num_hidden_layers=2, num_attention_heads=2)
        return lambda: transformers.BertModel(cfg)
    cfg = transformers.GPT2Config(vocab_size=64, n_embd=16, n_layer=2, n_head=2, n_positions=32)
    return lambda: transformers.GPT2LMHeadModel(cfg)


class HFInside(nn.Module):
    def __init__(self, build) -> None:
        super().__init__()
        self.backbone = build()
        self.head = nn.Linear(16, 2)


@pytest.mark.parametrize("name", ["llama", "bert", "gpt2"])
def test_hugging_face_models_are_not_refused(name):
    build = _tiny_hf(name)
    assert initscan.scan(_meta(build)) == []
    fastinit.materialize(_meta(build), "cpu", seed=0)
    wrapped = _meta(lambda: HFInside(build))
    assert initscan.scan(wrapped) == []
    fastinit.materialize(wrapped, "cpu", seed=0)


def test_peft_lora_with_data_free_init_is_not_refused():
    peft = pytest.importorskip("peft")
    with torch.device("meta"):
        model = peft.get_peft_model(nn.Sequential(nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 4)),
                                    peft.LoraConfig(r=2, target_modules=["0", "2"]))
    assert initscan.scan(model) == []
    fastinit.materialize(model, "cpu", seed=0)


def test_diffusers_controlnet_is_refused_and_its_unet_is_not():
    diffusers = pytest.importorskip("diffusers")
    kw = dict(block_out_channels=(8, 16), layers_per_block=1, cross_attention_dim=8,
              attention_head_dim=2, norm_num_groups=4)
    with torch.device("meta"):
        controlnet = diffusers.ControlNetModel(
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            conditioning_embedding_out_channels=(4, 8), **kw)
        unet = diffusers.UNet2DConditionModel(
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), **kw)
    with pytest.raises(LostInitError, match=r"ControlNetModel \(.*controlnet\.py:\d+: calls "
                                            r"zero_module"):
        fastinit.materialize(controlnet, "cpu")
    assert _all_meta(controlnet)
    assert initscan.scan(unet) == []


class Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.norm = nn.LayerNorm(8)


def test_the_scan_is_cheap_and_cached_per_class():
    model = _meta(lambda: nn.Sequential(*[Tiny() for _ in range(33)]))  # 100 modules
    assert len(list(model.modules())) == 100
    initscan._CACHE.pop(Tiny, None)
    t0 = time.perf_counter()
    assert initscan.scan(model) == []
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(10):
        initscan.scan(model)
    again = (time.perf_counter() - t0) / 10
    assert Tiny in initscan._CACHE
    assert first < 0.5 and again < 0.02, (first, again)
