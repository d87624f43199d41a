"""fastinit.propagation: the signal-propagation check catches the planted defects and stays
quiet on healthy models.

Defects: a 50-layer ReLU MLP with Xavier weights (the std halves in variance per layer),
a deep pre-norm transformer without std / sqrt(2 L) on its branch outputs (the residual
stream grows), a ResNet without zero-init residual (its stream grows; with it, every
block starts as the identity), NaN weights, a ReLU behind a large negative bias. Healthy:
the same models with He, with the scaled residual, with zero-init residual, the Hugging
Face zoo's decoder models, and torch's layers. Plus the depth rule itself, input
inference and that the pass leaves the model as it was. Runtime: ~30 s on two cores.
"""
from __future__ import annotations

import importlib.util
import math

import pytest
import torch
from torch import nn

import fastinit
from fastinit import propagation as P
from fastinit.findings import Finding
from tests.signal_models import GPT, ResNet, relu_mlp

SIGNAL = ("activation-shrink", "activation-growth", "gradient-shrink", "gradient-growth",
          "residual-growth", "residual-shrink")


def checks(prop) -> set[str]:
    return {f.check for f in prop.findings}


# --- the depth rule -------------------------------------------------------------------------


def test_depth_rule_flat_and_geometric():
    assert not P.depth_trend([1.0] * 50)[3]
    change, slope, se, flagged = P.depth_trend([2 ** (-l / 2) for l in range(50)])
    assert flagged and slope == pytest.approx(-math.log(2) / 2) and se < 1e-9
    assert change == pytest.approx(-49 * math.log(2) / 2)
    # a 4x change is the bound: just under it is quiet, just over it flagged
    under = [math.exp(l * 0.99 * math.log(4) / 9) for l in range(10)]
    over = [math.exp(l * 1.01 * math.log(4) / 9) for l in range(10)]
    assert not P.depth_trend(under)[3] and P.depth_trend(over)[3]
    # shorter than MIN_DEPTH: never judged, whatever the trend
    assert not P.depth_trend([1.0, 1e-3, 1e-6])[3]


def test_depth_rule_needs_a_significant_slope():
    # ragged points whose fitted change passes 4x but whose slope the scatter does not support
    ragged = [1.0, 100.0, 0.01, 50.0, 0.02, 30.0]
    change, slope, se, flagged = P.depth_trend(ragged)
    assert abs(change) > math.log(P.DEPTH_FACTOR) or abs(slope) < P.DEPTH_Z * se
    assert not flagged


def test_stream_rule_fits_the_variance():
    # Var(x_l) = 1 + l v: a sum of uncorrelated branches
    grow = [math.sqrt(1 + 2.0 * l) for l in range(33)]
    change, v, se, flagged = P.stream_trend(grow)
    assert flagged and v == pytest.approx(2.0) and change == pytest.approx(0.5 * math.log(65))
    assert not P.stream_trend([1.0] * 33)[3]
    assert not P.stream_trend([math.sqrt(1 + 0.1 * l) for l in range(33)])[3]  # 1.8x


# --- planted defects and their healthy twins -------------------------------------------------


def test_relu_mlp_xavier_vanishes_he_steady():
    torch.manual_seed(0)
    # width 384 >= 7 x depth: where the depth rule's bound is 3 sd of a correct init's noise
    xavier = P.propagate(relu_mlp("xavier", width=384))
    torch.manual_seed(0)
    he = P.propagate(relu_mlp("he", width=384))
    shrink = [f for f in xavier.findings if f.check == "activation-shrink"]
    assert {f.name for f in shrink} >= {"* (Linear)", "* (ReLU)"}
    relu = next(s for s in xavier.series if s.kind == "activation" and s.key == "* (ReLU)")
    # Xavier under ReLU halves the second moment per layer: ln std falls by ln(2)/2
    assert relu.slope == pytest.approx(-math.log(2) / 2, abs=0.03)
    assert "gradient-growth" in checks(xavier)  # the backward pass: larger towards the input
    assert not checks(he) & set(SIGNAL), he.findings
    assert he.findings == [], he.findings  # nor dead units: a deep stack aligns, never > half
    he_relu = next(s for s in he.series if s.kind == "activation" and s.key == "* (ReLU)")
    assert abs(he_relu.change) < math.log(2)


def test_prenorm_transformer_scaled_residual():
    torch.manual_seed(0)
    plain = P.propagate(GPT(scaled=False))
    torch.manual_seed(0)
    scaled = P.propagate(GPT(scaled=True))
    grown = [f for f in plain.findings if f.check == "residual-growth"]
    assert [f.name for f in grown] == ["h"] and grown[0].observed > P.DEPTH_FACTOR
    assert "scaled-residual" in grown[0].message
    # the layers inside the blocks are shown, not judged: the stream carries the signal
    inside = [s for s in plain.series if s.names[0].startswith("h.") and s.kind != "residual"
              and s.kind != "residual-grad"]
    assert inside and not any(s.judged or s.flagged for s in inside)
    assert scaled.findings == [], scaled.findings
    stream = next(s for s in scaled.series if s.kind == "residual")
    assert len(stream.stds) == 17 and stream.ratio < 2


def test_resnet_zero_init_residual():
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    plain = fastinit.apply_recipe(ResNet(blocks=24), "resnet", seed=0, progress=False)
    torch.manual_seed(0)
    zero = fastinit.apply_recipe(ResNet(blocks=24),
                                 fastinit.recipes.resnet(zero_init_residual=True),
                                 seed=0, progress=False)
    a, b = P.propagate(plain, x), P.propagate(zero, x)
    assert "residual-growth" in checks(a) and any(f.name == "layer1" for f in a.findings)
    # and the gradient along the stream: larger at the first blocks than at the last
    assert any(f.check == "gradient-shrink" and f.name == "layer1" for f in a.findings)
    assert b.findings == [], b.findings
    stream = next(s for s in b.series if s.kind == "residual")
    assert max(stream.stds) == pytest.approx(min(stream.stds), rel=1e-5)  # identity blocks


def test_nonfinite_names_the_first_module():
    torch.manual_seed(0)
    model = relu_mlp("he", depth=6, width=32)
    with torch.no_grad():
        model[4].weight[0, 0] = float("nan")
    prop = P.propagate(model)
    bad = [f for f in prop.findings if f.check == "nonfinite"]
    assert bad and bad[0].name == "4" and prop.findings[0].check == "nonfinite"
    assert any(f.name == "4.weight" for f in bad)


def test_dead_units_after_a_negative_bias():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 10))
    healthy = P.propagate(model)
    with torch.no_grad():
        model[0].bias[:200] = -10.0
    dead = P.propagate(model)
    assert not [f for f in healthy.findings if f.check == "dead-units"]
    found = [f for f in dead.findings if f.check == "dead-units"]
    assert [f.name for f in found] == ["1"] and found[0].observed >= 200 / 256 - 0.01
    assert found[0].expected == pytest.approx(P.dead_bound(256))


# --- healthy models ---------------------------------------------------------------------------


def _zoo_decoders():
    pytest.importorskip("transformers")
    from tests.differential.test_model_zoo import CASES

    return [c for c in CASES if c.name.endswith(("ForCausalLM", "LMHeadModel", "-tied"))][:6]


def test_hugging_face_zoo_is_quiet():
    cases = _zoo_decoders()
    assert len(cases) == 6
    for case in cases:
        torch.manual_seed(0)
        with fastinit.empty_init():
            model = case.build()
        fastinit.materialize(model, "cpu", seed=0, progress=False)
        inferred = P.propagate(model)
        assert inferred.inputs.startswith("token ids"), case.name
        assert inferred.findings == [], (case.name, inferred.findings)


def test_torch_layers_are_quiet():
    torch.manual_seed(0)
    enc = nn.TransformerEncoder(nn.TransformerEncoderLayer(64, 4, 128, dropout=0.0,
                                                           batch_first=True), 6)
    x = torch.randn(4, 16, 64, generator=torch.Generator().manual_seed(1))
    prop = P.propagate(enc, x)
    assert prop.findings == [], prop.findings
    assert any(s.kind == "param-grad" for s in prop.series)
    assert any(s.kind == "residual" for s in prop.series)  # layers of one class, same shape
    for layer in (nn.Conv2d(3, 8, 3), nn.Linear(32, 8), nn.Embedding(100, 16)):
        assert P.propagate(layer).findings == [], layer
    lstm = nn.LSTM(16, 32, batch_first=True)
    assert P.propagate(lstm, torch.randn(4, 8, 16)).findings == []


# --- inputs and side effects ------------------------------------------------------------------


def test_inferred_inputs():
    args, kwargs, what = P.infer_inputs(nn.Sequential(nn.Embedding(50, 8), nn.Linear(8, 4)))
    assert args[0].dtype == torch.int64 and args[0].shape == (P.TOKEN_BATCH, P.TOKEN_LENGTH)
    assert int(args[0].max()) < 50 and "token ids" in what
    args, _, what = P.infer_inputs(nn.Sequential(nn.Conv2d(5, 8, 3)))
    assert args[0].shape == (P.IMAGE_BATCH, 5, P.IMAGE_SIZE, P.IMAGE_SIZE)
    args, _, _ = P.infer_inputs(nn.Linear(7, 3))
    assert args[0].shape == (P.VECTOR_BATCH, 7)
    with pytest.raises(TypeError, match="example_inputs"):
        P.propagate(nn.LSTM(4, 4))
    with pytest.raises(TypeError, match="example_inputs"):
        P.propagate(nn.ReLU())


def test_inputs_of_a_hugging_face_model():
    transformers = pytest.importorskip("transformers")
    cfg = transformers.LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64,
                                   num_hidden_layers=2, num_attention_heads=4,
                                   num_key_value_heads=2)
    model = transformers.LlamaForCausalLM(cfg)
    _, kwargs, _ = P.infer_inputs(model)
    assert set(kwargs) == {"input_ids"} and int(kwargs["input_ids"].max()) < 97


def test_the_pass_leaves_the_model_as_it_was():
    torch.manual_seed(0)
    model = ResNet(blocks=4)
    model.train()
    model.fc.eval()  # a mixed state, kept
    before = {k: v.clone() for k, v in model.state_dict().items()}
    marker = torch.ones_like(model.fc.weight)
    model.fc.weight.grad = marker
    rng = torch.get_rng_state()
    prop = P.propagate(model)
    assert prop.inputs.startswith("N(0,1) images")
    assert torch.equal(torch.get_rng_state(), rng)
    after = model.state_dict()
    for k, v in before.items():
        assert torch.equal(v, after[k]), k  # BatchNorm running statistics included
    assert model.fc.weight.grad is marker and model.conv1.weight.grad is None
    assert model.training and not model.fc.training and model.layer1.training
    assert all(p.grad_std is not None for p in prop.params)


def test_meta_model_refused():
    with torch.device("meta"):
        model = nn.Linear(4, 4)
    with pytest.raises(ValueError, match="materialize"):
        P.propagate(model)


def test_findings_serialize():
    torch.manual_seed(0)
    prop = P.propagate(relu_mlp("xavier", depth=8, width=64))
    assert prop.findings and all(isinstance(f, Finding) for f in prop.findings)
    import json

    json.dumps([f.as_dict() for f in prop.findings])
    d = prop.as_dict()
    assert len(d["modules"]) == len(prop.modules) and d["series"][0]["ratio"] > 0


# --- zero-variance parameters (needs fastinit.provenance) -----------------------------------


@pytest.mark.skipif(importlib.util.find_spec("fastinit.provenance") is None,
                    reason="fastinit.provenance is not in this tree")
def test_zero_variance_behind_the_inits_back():
    with fastinit.empty_init():
        model = nn.Sequential(nn.Linear(32, 64), nn.ReLU(), nn.LayerNorm(64), nn.Linear(64, 8))
    fastinit.materialize(model, "cpu", seed=0, progress=False)
    quiet = P.propagate(model)
    assert not [f for f in quiet.findings if f.check == "zero-variance"]  # LayerNorm 1 / 0
    with torch.no_grad():
        model[3].weight.fill_(0.5)  # not through fastinit: the record still says random
    found = [f for f in P.propagate(model).findings if f.check == "zero-variance"]
    assert [f.name for f in found] == ["3.weight"]
