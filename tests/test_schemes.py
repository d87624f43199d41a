"""The built-in schemes against their references, on real modules.

* ``resnet``: torchvision-style ResNet blocks (torchvision's ``BasicBlock`` / ``Bottleneck``
  structure and names, and its ``ResNet.__init__`` init loop as the reference) and Hugging
  Face ``ResNetForImageClassification``;
* ``rnn``: ``nn.LSTM`` (multi-layer, bidirectional, with projection), ``nn.GRU``, cells;
* ``dcgan``: the generator / discriminator of pytorch/examples and its ``weights_init``;
* ``rezero``: residual gates;
* ``lora``: a PEFT LoRA model against PEFT's own init (by distribution; shapes and zeros
  exact); PEFT on meta; ``patch()`` over PEFT's init calls;
* ``mup``: a model with ``mup.set_base_shapes`` against ``mup.init``'s own functions.

Random values are compared by law: a KS test and the standard deviation, with the
thresholds of tests/stats_helpers.py (tests/sample_checks.py). Every scheme is also checked
to give, through ``apply_recipe`` on a real model, exactly what ``materialize`` gives the
same model built on meta with the same seed.
"""
from __future__ import annotations

import contextlib
import math

import pytest
import torch
from torch import nn

import fastinit
from fastinit import recipes
from tests.common import assert_bitwise_equal
from tests.sample_checks import law_errors, same_law_errors
from tests.stats_helpers import normal_law, uniform_law

SEED = 2024


def on_meta(build):
    with torch.device("meta"):
        return build()


def snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {n: t.detach().clone() for n, t in model.state_dict(keep_vars=True).items()}


def assert_same_as_materialize(build, recipe, seed=SEED, own_init=True):
    """apply_recipe on a real model == materialize(meta model, recipe) on the tensors the
    recipe targets; the others are left as they were by apply_recipe and keep the model's
    own init under materialize (``own_init``: compare with a materialize without recipe)."""
    real = build()
    targets = set(recipes.resolve(recipe, real).plan(real, dict(real.named_parameters()))
                  .targets())
    assert targets, "the recipe targets nothing"
    before = snapshot(real)
    fastinit.apply_recipe(real, recipe, seed=seed)
    after = snapshot(real)
    mat = snapshot(fastinit.materialize(on_meta(build), "cpu", seed=seed, recipe=recipe))
    own = snapshot(fastinit.materialize(on_meta(build), "cpu", seed=seed)) if own_init else None
    for n in after:
        if n in targets:
            assert_bitwise_equal(mat[n], after[n])
        else:
            assert_bitwise_equal(after[n], before[n])
            if own is not None:
                assert_bitwise_equal(mat[n], own[n])
    return real


# --- resnet -----------------------------------------------------------------------------------------
# torchvision/models/resnet.py, reduced to what the init rule sees (names and layers).


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    def __init__(self, block, layers=(1, 1), width=32, num_classes=10, norm="bn"):
        super().__init__()
        self.inplanes = width
        self.conv1 = nn.Conv2d(3, width, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.layer1 = self._make_layer(block, width, layers[0])
        self.layer2 = self._make_layer(block, 2 * width, layers[1], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(2 * width * block.expansion, num_classes)

    def _make_layer(self, block, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion))
        layers = [block(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(self.avgpool(x), 1))


def torchvision_init(model: nn.Module, zero_init_residual: bool) -> None:
    """The init loop of torchvision's ``ResNet.__init__`` (the reference)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.constant_(m.weight, 1)
            nn.init.constant_(m.bias, 0)
    if zero_init_residual:
        for m in model.modules():
            if isinstance(m, Bottleneck) and m.bn3.weight is not None:
                nn.init.constant_(m.bn3.weight, 0)
            elif isinstance(m, BasicBlock) and m.bn2.weight is not None:
                nn.init.constant_(m.bn2.weight, 0)


@pytest.mark.parametrize("block", [BasicBlock, Bottleneck], ids=lambda b: b.__name__)
@pytest.mark.parametrize("zero", [False, True], ids=["plain", "zero_init_residual"])
def test_resnet_against_torchvision(block, zero):
    torch.manual_seed(0)
    model = ResNet(block, layers=(2, 1))
    with torch.no_grad():  # make every constant visible: nothing is left at 1 / 0 by chance
        for p in model.parameters():
            p.uniform_(2.0, 3.0)
    ref = ResNet(block, layers=(2, 1))
    torchvision_init(ref, zero)
    fc_before = model.fc.weight.detach().clone()
    fastinit.apply_recipe(model, recipes.resnet(zero_init_residual=zero), seed=SEED)
    for (name, p), q in zip(model.named_parameters(), ref.parameters()):
        p = p.detach()
        if name.startswith("fc."):
            continue
        if p.dim() == 4:  # conv: Kaiming normal, fan_out, ReLU gain
            fan_out = p.shape[0] * p[0, 0].numel()
            law = normal_law(0.0, math.sqrt(2.0 / fan_out))
            assert not law_errors(p, law, name)
            assert not same_law_errors(p, q, name)
        else:  # norms: exactly the reference's constants (incl. the zeroed last norms)
            assert torch.equal(p, q.detach()), name
    # Linear: torch's default, U(+-1/sqrt(fan_in)), newly drawn
    bound = 1 / math.sqrt(model.fc.in_features)
    assert not torch.equal(model.fc.weight, fc_before)
    assert not law_errors(model.fc.weight, uniform_law(-bound, bound), "fc.weight")
    assert model.fc.bias.abs().max() <= bound
    last = [m.bn3 if block is Bottleneck else m.bn2 for m in model.modules() if isinstance(m, block)]
    assert all((n.weight == 0).all() == zero for n in last)
    assert (model.bn1.weight == 1).all()


def test_resnet_same_as_materialize_and_custom_residual_norms():
    build = lambda: ResNet(BasicBlock)  # noqa: E731
    assert_same_as_materialize(build, recipes.resnet(zero_init_residual=True))

    class Block(nn.Module):  # another code base's names
        def __init__(self):
            super().__init__()
            self.conv_a = nn.Conv2d(8, 8, 3, padding=1)
            self.norm_a = nn.GroupNorm(2, 8)
            self.conv_b = nn.Conv2d(8, 8, 3, padding=1)
            self.norm_last = nn.GroupNorm(2, 8)

    model = nn.Sequential(Block(), Block())
    fastinit.apply_recipe(model, recipes.resnet(True, residual_norms="*.norm_last"), seed=1)
    assert all((b.norm_last.weight == 0).all() and (b.norm_a.weight == 1).all() for b in model)
    # the conv bias is not ResNet's to set: left as it was
    conv_bias = model[0].conv_a.bias.detach().clone()
    fastinit.apply_recipe(model, "resnet", seed=2)
    assert torch.equal(model[0].conv_a.bias, conv_bias)


def test_resnet_residual_norm_errors_and_warnings():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU())
    before = snapshot(model)
    with pytest.raises(ValueError, match="'2'.*ReLU.*no weight"):
        fastinit.apply_recipe(model, recipes.resnet(True, residual_norms="2"))
    assert all(torch.equal(before[n], t) for n, t in snapshot(model).items())
    with pytest.warns(UserWarning) as caught:  # one record: nested warns differ across pytest
        with pytest.raises(ValueError, match="no residual block was found in Sequential"):
            fastinit.apply_recipe(model, recipes.resnet(True, residual_norms="nothing.*"), seed=0)
    messages = [str(w.message) for w in caught]
    assert any("'nothing.*' matched no module" in m for m in messages), messages
    assert all(torch.equal(before[n], t) for n, t in snapshot(model).items())
    with pytest.raises(ValueError, match="zero_init_residual=True"):
        recipes.resnet(residual_norms="*.bn2")


@pytest.mark.parametrize("layer_type", ["basic", "bottleneck"])
def test_resnet_on_hugging_face_resnet(layer_type):
    transformers = pytest.importorskip("transformers")
    cfg = transformers.ResNetConfig(num_channels=3, embedding_size=16, hidden_sizes=[16, 32],
                                    depths=[1, 2], layer_type=layer_type, num_labels=5)
    build = lambda: transformers.ResNetForImageClassification(cfg)  # noqa: E731
    model = assert_same_as_materialize(build, recipes.resnet(zero_init_residual=True))
    layer_cls = {"basic": "ResNetBasicLayer", "bottleneck": "ResNetBottleNeckLayer"}[layer_type]
    blocks = [m for m in model.modules() if type(m).__name__ == layer_cls]
    assert len(blocks) == 3
    for b in blocks:
        assert (b.layer[-1].normalization.weight == 0).all()
        assert (b.layer[0].normalization.weight == 1).all()
    conv = model.resnet.encoder.stages[1].layers[1].layer[-1].convolution.weight
    fan_out = conv.shape[0] * conv[0, 0].numel()
    assert not law_errors(conv, normal_law(0.0, math.sqrt(2.0 / fan_out)), "conv")
    x = torch.randn(2, 3, 32, 32)
    assert torch.isfinite(model(pixel_values=x).logits).all()


# --- rnn ----------------------------------------------------------------------------------------------


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(40, 64, num_layers=2, bidirectional=True)
        self.proj = nn.LSTM(16, 32, proj_size=8)
        self.gru = nn.GRU(24, 48, num_layers=2)
        self.rnn = nn.RNN(8, 16)
        self.lstm_cell = nn.LSTMCell(12, 20)
        self.gru_cell = nn.GRUCell(12, 20)
        self.head = nn.Linear(128, 10)


def _gates(m: nn.Module) -> int:
    return 4 if isinstance(m, (nn.LSTM, nn.LSTMCell)) else 3 if isinstance(
        m, (nn.GRU, nn.GRUCell)) else 1


@pytest.mark.parametrize("forget_bias", [1.0, 2.5])
def test_rnn_per_gate_rules_and_forget_bias(forget_bias):
    torch.manual_seed(0)
    model = Recurrent()
    head = model.head.weight.detach().clone()
    fastinit.apply_recipe(model, recipes.rnn(forget_bias=forget_bias), seed=SEED)
    assert torch.equal(model.head.weight, head)  # only recurrent modules are touched
    for mname, m in model.named_children():
        if mname == "head":
            continue
        gates = _gates(m)
        hidden = m.hidden_size
        for pname, p in m.named_parameters():
            p = p.detach()
            blocks = p.split(hidden) if pname.startswith(("weight_ih", "weight_hh", "bias")) \
                else [p]
            assert len(blocks) == (gates if pname.startswith(("weight_i", "weight_hh", "bias"))
                                   else 1)
            if pname.startswith("weight_ih") or pname.startswith("weight_hr"):
                fan_in, fan_out = p.shape[1], blocks[0].shape[0]  # one gate's fans
                bound = math.sqrt(6.0 / (fan_in + fan_out))
                assert p.abs().max() <= bound
                if p.numel() >= 4096:
                    assert not law_errors(p, uniform_law(-bound, bound), f"{mname}.{pname}")
            elif pname.startswith("weight_hh"):
                for g, q in enumerate(blocks):  # each gate orthogonal on its own
                    r, c = q.shape
                    gram = q @ q.T if r <= c else q.T @ q
                    assert torch.allclose(gram, torch.eye(min(r, c)), atol=2e-5), (mname, pname, g)
                assert not torch.equal(blocks[0], blocks[-1]) or gates == 1
            elif pname.startswith("bias_ih") and gates == 4:
                expect = torch.zeros(4 * hidden)
                expect[hidden:2 * hidden] = forget_bias
                assert torch.equal(p, expect), (mname, pname)
            else:
                assert (p == 0).all(), (mname, pname)
    # the effective forget-gate bias (bias_ih + bias_hh of gate 1) is forget_bias
    for m in (model.lstm, model.proj, model.lstm_cell):
        for suffix in ([""] if isinstance(m, nn.LSTMCell) else
                       [f"_l{k}{d}" for k in range(m.num_layers)
                        for d in (["", "_reverse"] if m.bidirectional else [""])]):
            b = getattr(m, "bias_ih" + suffix) + getattr(m, "bias_hh" + suffix)
            h = m.hidden_size
            assert (b[h:2 * h] == forget_bias).all() and (b[:h] == 0).all()
    out, _ = model.lstm(torch.randn(5, 2, 40))  # flat weights still valid
    assert torch.isfinite(out).all()


def test_rnn_same_as_materialize_and_orthogonal_blocks_of_one():
    assert_same_as_materialize(Recurrent, "rnn")
    w = torch.empty(48, 32)
    assert_bitwise_equal(recipes.orthogonal()(w, seed=3),
                         fastinit.orthogonal_(torch.empty(48, 32), seed=3))
    gated = recipes.orthogonal(blocks=3)(torch.empty(48, 16), seed=3)
    full = torch.empty(48, 16)
    fastinit.normal_(full, seed=3)  # the same normal values, orthogonalized per block
    for i in range(3):
        assert torch.allclose(gated[16 * i:16 * (i + 1)],
                              fastinit.laws.orthonormalize(full[16 * i:16 * (i + 1)]), atol=1e-6)
    with pytest.raises(ValueError, match="do not split into 3"):
        recipes.orthogonal(blocks=3)(torch.empty(10, 4))


# --- dcgan ---------------------------------------------------------------------------------------------
# pytorch/examples dcgan/main.py (nz=100, ngf=ndf=64, nc=3), narrower.

NZ, NGF, NDF, NC = 16, 32, 32, 3


class Generator(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            nn.ConvTranspose2d(NZ, NGF * 8, 4, 1, 0, bias=False), nn.BatchNorm2d(NGF * 8), nn.ReLU(True),
            nn.ConvTranspose2d(NGF * 8, NGF * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(NGF * 4), nn.ReLU(True),
            nn.ConvTranspose2d(NGF * 4, NGF * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(NGF * 2), nn.ReLU(True),
            nn.ConvTranspose2d(NGF * 2, NC, 4, 2, 1, bias=False), nn.Tanh())


class Discriminator(nn.Module):
    def __init__(self):
        super().__init__()
        self.main = nn.Sequential(
            nn.Conv2d(NC, NDF, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv2d(NDF, NDF * 2, 4, 2, 1, bias=False), nn.BatchNorm2d(NDF * 2), nn.LeakyReLU(0.2, True),
            nn.Conv2d(NDF * 2, NDF * 4, 4, 2, 1, bias=False), nn.BatchNorm2d(NDF * 4), nn.LeakyReLU(0.2, True),
            nn.Conv2d(NDF * 4, 1, 4, 1, 0, bias=False), nn.Sigmoid())


def weights_init(m):
    """pytorch/examples dcgan/main.py, verbatim (the reference)."""
    classname = m.__class__.__name__
    if classname.find('Conv') != -1:
        torch.nn.init.normal_(m.weight, 0.0, 0.02)
    elif classname.find('BatchNorm') != -1:
        torch.nn.init.normal_(m.weight, 1.0, 0.02)
        torch.nn.init.zeros_(m.bias)


@pytest.mark.parametrize("net", [Generator, Discriminator], ids=lambda c: c.__name__)
def test_dcgan_against_weights_init(net):
    torch.manual_seed(0)
    model, ref = net(), net()
    ref.apply(weights_init)
    fastinit.apply_recipe(model, "dcgan", seed=SEED)
    convs = [(m, r) for m, r in zip(model.modules(), ref.modules())
             if isinstance(m, nn.modules.conv._ConvNd)]
    norms = [(m, r) for m, r in zip(model.modules(), ref.modules()) if isinstance(m, nn.BatchNorm2d)]
    for m, r in convs:
        if m.weight.numel() >= 1000:
            assert not law_errors(m.weight, normal_law(0.0, 0.02), "conv")
            assert not same_law_errors(m.weight, r.weight, "conv")
    gammas = torch.cat([m.weight.detach() for m, _ in norms])
    ref_gammas = torch.cat([r.weight.detach() for _, r in norms])
    assert not law_errors(gammas, normal_law(1.0, 0.02), "BatchNorm weight")
    assert not same_law_errors(gammas, ref_gammas, "BatchNorm weight")
    assert all((m.bias == 0).all() for m, _ in norms)
    assert_same_as_materialize(net, recipes.dcgan())


# --- rezero --------------------------------------------------------------------------------------------


class ReZeroBlock(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(8, 8)
        self.resweight = nn.Parameter(torch.tensor([0.7]))  # the paper's name
        self.alpha = nn.Parameter(torch.full((8,), 0.7))     # not a scalar gate
        self.gate = nn.Parameter(torch.tensor(0.7))          # another code's name

    def forward(self, x):
        return x + self.resweight * self.fc(x)


def test_rezero_sets_only_the_gates():
    model = nn.Sequential(ReZeroBlock(), ReZeroBlock())
    before = snapshot(model)
    fastinit.apply_recipe(model, "rezero", seed=0)
    after = snapshot(model)
    for n in after:
        if n.endswith("resweight"):
            assert (after[n] == 0).all()
        else:
            assert torch.equal(after[n], before[n]), n
    fastinit.apply_recipe(model, recipes.rezero("*.gate"), seed=0)
    assert all(b.gate == 0 for b in model) and all((b.alpha == 0.7).all() for b in model)
    x = torch.randn(3, 8)
    assert torch.equal(model(x), x)  # every block starts as the identity
    plain = nn.Sequential(nn.Linear(4, 4))
    before = snapshot(plain)
    with pytest.raises(ValueError, match=r"recipe 'rezero' found nothing.*'\*alpha\*'"):
        fastinit.apply_recipe(plain, "rezero")
    assert all(torch.equal(before[n], t) for n, t in snapshot(plain).items())
    with pytest.warns(UserWarning, match="glob '\\*.nothing' matched no parameter"):
        fastinit.apply_recipe(model, recipes.rezero(["*.gate", "*.nothing"]), seed=0)


# --- lora (PEFT) ---------------------------------------------------------------------------------------


class LoRABase(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(400, 64)
        self.fc1 = nn.Linear(64, 512)
        self.fc2 = nn.Linear(512, 256)
        self.conv = nn.Conv2d(16, 32, 3)

    def forward(self, x):
        return self.fc2(self.fc1(self.emb(x)))


def peft_model(init_lora_weights=True, device=None):
    peft = pytest.importorskip("peft")
    cfg = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["emb", "fc1", "fc2", "conv"],
                          init_lora_weights=init_lora_weights)
    with torch.device(device) if device else contextlib.nullcontext():
        base = LoRABase()
        return peft.get_peft_model(base, cfg)


def adapters(model):
    return {n: p for n, p in model.named_parameters() if "lora_" in n}


@pytest.mark.parametrize("init", ["kaiming", "gaussian"])
def test_lora_against_peft_init(init):
    torch.manual_seed(0)
    ref = peft_model(True if init == "kaiming" else "gaussian")  # PEFT's own init
    model = peft_model()
    with torch.no_grad():
        for p in adapters(model).values():
            p.fill_(7.0)  # nothing may be left as it was
    base_before = {n: p.detach().clone() for n, p in model.named_parameters() if "lora_" not in n}
    fastinit.apply_recipe(model, recipes.lora(init=init), seed=SEED)
    ours, theirs = adapters(model), adapters(ref)
    assert {n: p.shape for n, p in ours.items()} == {n: p.shape for n, p in theirs.items()}
    for n, p in ours.items():
        q = theirs[n]
        if "lora_B" in n or "lora_embedding_A" in n:
            assert (p == 0).all() and (q == 0).all(), n
            continue
        assert not same_law_errors(p, q, n)
        if "lora_embedding_B" in n:
            law = normal_law(0.0, 1.0)
        elif init == "gaussian":
            law = normal_law(0.0, 1.0 / 8)
        else:
            bound = 1.0 / math.sqrt(p[0].numel())  # Kaiming uniform, a = sqrt(5)
            law = uniform_law(-bound, bound)
        assert not law_errors(p, law, n)
    for n, p in model.named_parameters():  # the base model is not touched
        if "lora_" not in n:
            assert torch.equal(p, base_before[n]), n


def test_lora_same_as_materialize():
    assert_same_as_materialize(lambda: peft_model(), "lora", own_init=False)


def test_peft_on_meta_materializes_with_peft_init():
    model = peft_model(device="meta")
    fastinit.materialize(model, "cpu", seed=SEED)
    for n, p in adapters(model).items():
        if "lora_B" in n or "lora_embedding_A" in n:
            assert (p == 0).all(), n
        else:
            assert torch.isfinite(p).all() and p.std() > 0, n


@pytest.mark.parametrize("init_lora_weights", [True, "gaussian"])
def test_peft_built_under_empty_init_equals_peft_eager(init_lora_weights):
    """get_peft_model inside fastinit.empty_init(): materialize replays PEFT's own adapter
    init - B zeros, A from PEFT's law - and the base model's construction."""
    peft = pytest.importorskip("peft")
    cfg = peft.LoraConfig(r=8, lora_alpha=16, target_modules=["emb", "fc1", "fc2", "conv"],
                          init_lora_weights=init_lora_weights)
    with fastinit.empty_init():
        model = peft.get_peft_model(LoRABase(), cfg)
    fastinit.materialize(model, "cpu", seed=SEED)
    torch.manual_seed(0)
    ref = peft.get_peft_model(LoRABase(), peft.LoraConfig(
        r=8, lora_alpha=16, target_modules=["emb", "fc1", "fc2", "conv"],
        init_lora_weights=init_lora_weights))
    ours, theirs = adapters(model), adapters(ref)
    assert list(ours) == list(theirs)
    for n, p in ours.items():
        if (theirs[n] == 0).all():
            assert (p == 0).all(), n
        else:
            assert p.std() > 0, n
            assert same_law_errors(p.detach(), theirs[n].detach(), n) == []
    x = torch.randint(0, 400, (2, 5))
    assert torch.equal(model(x), model.get_base_model()(x))  # adapters start at zero


def test_peft_on_meta_with_the_lora_recipe():
    model = peft_model(device="meta")
    fastinit.materialize(model, "cpu", seed=SEED, recipe="lora")
    for n, p in adapters(model).items():
        if "lora_B" in n or "lora_embedding_A" in n:
            assert (p == 0).all(), n
    x = torch.randint(0, 400, (2, 5))
    assert torch.equal(model(x), model.get_base_model()(x))  # adapters start at zero


def test_patch_covers_peft_init_calls(monkeypatch):
    """Inside fastinit.patch(), PEFT's nn.init calls on the adapters run on fastinit."""
    import fastinit.init as fi

    seen: dict[str, list[torch.Tensor]] = {}
    for name in ("kaiming_uniform_", "zeros_", "normal_"):
        original = getattr(fi, name)

        def spy(tensor, *args, _name=name, _original=original, **kwargs):
            seen.setdefault(_name, []).append(tensor)
            return _original(tensor, *args, **kwargs)

        monkeypatch.setattr(fi, name, spy)
    torch.manual_seed(0)
    with fastinit.patch():
        model = peft_model()
    ids = {k: {id(t) for t in v} for k, v in seen.items()}
    for n, p in adapters(model).items():
        kind = ("kaiming_uniform_" if "lora_A" in n else "zeros_" if "lora_B" in n or
                "lora_embedding_A" in n else "normal_")
        assert id(p) in ids.get(kind, ()), f"{n} was not initialized through fastinit.{kind}"


# --- mup -----------------------------------------------------------------------------------------------


class MuMLP(nn.Module):
    """A µP MLP in mup's README style, with a hand-written init (the calls mup says to
    replace by mup.init's)."""

    def __init__(self, width):
        from mup import MuReadout

        super().__init__()
        self.fc1 = nn.Linear(64, width)
        self.fc2 = nn.Linear(width, width)
        self.fc3 = nn.Linear(width, width, bias=False)
        self.fc4 = nn.Linear(width, width, bias=False)
        self.norm = nn.LayerNorm(width)
        self.bn = nn.BatchNorm1d(width)
        self.readout = MuReadout(width, 32)

    def init_weights(self):
        nn.init.xavier_uniform_(self.fc1.weight)
        nn.init.zeros_(self.fc1.bias)
        nn.init.normal_(self.fc2.weight, std=0.05)  # (inf, inf): mup scales by width_mult^-1/2
        nn.init.uniform_(self.fc2.bias, -0.1, 0.1)
        nn.init.trunc_normal_(self.fc3.weight, std=0.05, a=-0.1, b=0.1)
        nn.init.ones_(self.norm.weight)
        nn.init.zeros_(self.norm.bias)
        self.bn.reset_parameters()
        nn.init.kaiming_uniform_(self.readout.weight, a=math.sqrt(5))
        nn.init.zeros_(self.readout.bias)
        nn.init.kaiming_normal_(self.fc4.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        return self.readout(self.bn(self.norm(self.fc4(self.fc3(self.fc2(self.fc1(x).relu()).relu())))))


WIDTH = 512


def mu_model(width=WIDTH, device=None):
    mup = pytest.importorskip("mup")
    with torch.device(device) if device else contextlib.nullcontext():
        model = MuMLP(width)
    with torch.device("meta"):
        base, delta = MuMLP(16), MuMLP(32)
    mup.set_base_shapes(model, base, delta=delta)
    return model


def test_mup_against_mup_init(monkeypatch):
    mup = pytest.importorskip("mup")
    ref = mu_model()
    for name in recipes._MUP_FUNCTIONS:  # the README's rule, with torch's sampling
        monkeypatch.setattr(torch.nn.init, name, getattr(mup.init, name))
    torch.manual_seed(0)
    with torch.no_grad():
        ref.init_weights()
    monkeypatch.undo()
    model = mu_model()
    with torch.no_grad():
        model.bn.running_mean.fill_(0.5)
        model.bn.num_batches_tracked.fill_(9)
    fastinit.apply_recipe(model, "mup", seed=SEED)
    for (n, p), q in zip(model.named_parameters(), ref.parameters()):
        if p.std() == 0:
            assert torch.equal(p, q), n
        else:
            assert not same_law_errors(p, q, n)
    # the test discriminates: standard parametrization would keep std 0.05 for fc2
    width_mult = WIDTH / 16
    assert model.fc2.weight.std().item() == pytest.approx(0.05 / math.sqrt(width_mult), rel=0.02)
    assert abs(model.fc3.weight).max() <= 0.1 / math.sqrt(width_mult)
    # only parameters are mup's targets: the buffers the model's init resets are kept
    assert (model.bn.running_mean == 0.5).all() and int(model.bn.num_batches_tracked) == 9


def test_mup_same_as_materialize_and_needs_base_shapes():
    pytest.importorskip("mup")
    real = mu_model()
    fastinit.apply_recipe(real, "mup", seed=SEED)
    meta = fastinit.materialize(mu_model(device="meta"), "cpu", seed=SEED, recipe="mup")
    for (n, p), q in zip(real.named_parameters(), meta.parameters()):
        assert_bitwise_equal(p.detach(), q.detach())
    plain = MuMLP(64)
    before = snapshot(plain)
    with pytest.raises(ValueError, match="set_base_shapes"):
        fastinit.apply_recipe(plain, "mup")
    assert all(torch.equal(before[n], t) for n, t in snapshot(plain).items())
    import fastinit.intercept as intercept

    assert not intercept._REDIRECTS  # restored after the recipe
