"""``fastinit.lawcheck``: ``check_laws`` and ``law_table``.

The law check must catch planted defects (a GPT's embedding at std 1.0, an init loop that
missed the embeddings, a tensor rewritten behind fastinit's back, a recipe rule that matched
nothing) and stay quiet on healthy models (torch's layers, the HF zoo). Thresholds are the
module's documented ones; nothing here is tuned.
"""
from __future__ import annotations

import math
import sys
import warnings

import pytest
import torch
from torch import nn

import fastinit
from fastinit import provenance as P
from fastinit import recipes
from tests.provenance_models import TinyGPT, _build_hf, _checks, _materialized


def test_healthy_gpt_gives_no_finding():
    model = _materialized()
    assert P.check_laws(model) == []
    rows = {r["name"]: r for r in P.law_table(model)}
    assert rows["wte.weight"]["law"] == "normal_"
    assert rows["wte.weight"]["expected_std_law"] == pytest.approx(0.02)
    assert rows["wte.weight"]["kind"] == "embedding"
    assert rows["blocks.0.fc.weight"]["fan_in"] == 64
    assert rows["blocks.0.fc.weight"]["fan_out"] == 256
    assert rows["blocks.0.fc.weight"]["expected_std_shape"]["he"] == pytest.approx(math.sqrt(2 / 64))
    assert all(r["checked"] for r in rows.values())


def test_gpt_embedding_at_std_one_is_flagged():
    model = _materialized(emb_std=1.0)
    findings = P.check_laws(model)
    assert _checks(findings) == [("wte.weight", "scale")]
    (f,) = findings
    assert f.observed == pytest.approx(1.0, rel=0.05) and f.expected == pytest.approx(0.02, rel=0.05)
    assert "TinyGPT.init_weights" in f.message  # the init code that gave it


def test_init_loop_that_missed_the_embeddings_is_flagged():
    model = _materialized(init_embeddings=False)
    findings = P.check_laws(model)
    assert _checks(findings) == [("wpe.weight", "scale"), ("wte.weight", "scale")]
    assert all("Embedding.reset_parameters" in f.message for f in findings)
    assert P.provenance(model)["wte.weight"][-1].caller.endswith("Embedding.reset_parameters")


def test_writes_behind_fastinits_back_are_flagged():
    model = _materialized()
    assert P.check_laws(model) == []  # (a result kept until a tensor changes)
    with torch.no_grad():
        model.blocks[1].fc.weight.normal_(0.0, 0.05)  # another std
        model.head.weight.mul_(1.1)  # 10% wider
        model.ln_f.weight.fill_(0.5)  # another constant
        model.blocks[2].proj.bias[:3] = 1.0  # part of a zero bias
    found = _checks(P.check_laws(model))
    assert found == [("blocks.1.fc.weight", "law"), ("blocks.2.proj.bias", "law"),
                     ("head.weight", "law"), ("ln_f.weight", "law")]


def test_a_subtle_rewrite_is_caught_by_the_moments_and_ks():
    model = _materialized()
    with torch.no_grad():
        w = model.blocks[0].out.weight  # 64 x 256: 16384 elements
        w.copy_(torch.randn(w.shape, generator=torch.Generator().manual_seed(3)) * 0.022)
    assert _checks(P.check_laws(model)) == [("blocks.0.out.weight", "law")]


def test_values_written_by_the_recorded_law_pass_in_every_dtype():
    for dtype in (torch.float32, torch.bfloat16, torch.float16, torch.float64):
        with torch.device("meta"):
            model = nn.Sequential(nn.Linear(512, 256), nn.Embedding(300, 128, padding_idx=3))
        model.to(dtype)
        fastinit.materialize(model, "cpu", seed=5)
        fastinit.apply_recipe(model, {"0.weight": recipes.trunc_normal(std=0.02, a=-0.04, b=0.04)},
                              seed=1)
        assert P.check_laws(model) == [], dtype
        with torch.no_grad():
            model[0].weight.clamp_(-0.03, 0.03)  # values beyond the recorded bounds' law
        assert _checks(P.check_laws(model)) == [("0.weight", "law")], dtype


def test_recipe_rule_that_matched_nothing_is_a_finding():
    with torch.device("meta"):
        model = TinyGPT()
    with pytest.warns(UserWarning, match="matched no parameter"):
        fastinit.materialize(model, "cpu", seed=0, recipe={
            "blocks.*.out.weight": recipes.normal(std=0.02 / math.sqrt(8)),
            "decoder.*.weight": recipes.zeros()})
    findings = P.check_laws(model)
    assert [(f.name, f.check) for f in findings] == [("decoder.*.weight", "unmatched-rule")]
    # the same for apply_recipe on a real model; a built-in recipe that finds nothing
    # still raises, as before
    with pytest.warns(UserWarning, match="matched no parameter"):
        fastinit.apply_recipe(model, {"head.weight": recipes.normal(std=0.02),
                                      "lm_head.weight": recipes.normal(std=0.02)}, seed=0)
    assert ("lm_head.weight", "unmatched-rule") in _checks(P.check_laws(model))
    with pytest.raises(ValueError, match="found nothing"):
        fastinit.apply_recipe(model, "rnn", seed=0)


TORCH_LAYERS = {
    "linear": lambda: nn.Linear(64, 32),
    "conv2d": lambda: nn.Conv2d(3, 16, 3),
    "conv1d": lambda: nn.Conv1d(8, 16, 5),
    "conv_transpose2d": lambda: nn.ConvTranspose2d(16, 8, 3),
    "embedding": lambda: nn.Embedding(100, 16, padding_idx=0),
    "embedding_bag": lambda: nn.EmbeddingBag(100, 16),
    "bilinear": lambda: nn.Bilinear(8, 8, 4),
    "lstm": lambda: nn.LSTM(16, 32, num_layers=2),
    "gru": lambda: nn.GRU(16, 32),
    "rnn": lambda: nn.RNN(16, 32),
    "layer_norm": lambda: nn.LayerNorm(32),
    "batch_norm": lambda: nn.BatchNorm2d(16),
    "group_norm": lambda: nn.GroupNorm(4, 16),
    "prelu": lambda: nn.PReLU(8),
    "multihead_attention": lambda: nn.MultiheadAttention(32, 4),
    "transformer_encoder_layer": lambda: nn.TransformerEncoderLayer(32, 4, 64),
    "deep_relu_mlp": lambda: nn.Sequential(*[m for _ in range(12)
                                             for m in (nn.Linear(64, 64), nn.ReLU())]),
}


@pytest.mark.parametrize("layer", list(TORCH_LAYERS))
def test_torch_layers_give_no_finding(layer):
    with torch.device("meta"):
        model = TORCH_LAYERS[layer]()
    fastinit.materialize(model, "cpu", seed=0)
    assert P.check_laws(model) == []
    for name, writes in P.provenance(model).items():
        if name.endswith("num_batches_tracked"):
            continue
        assert writes, name
        assert writes[-1].caller.startswith("torch.nn.modules."), (name, writes[-1])
        assert writes[-1].location.startswith(sys.modules["torch"].__file__.rsplit("/", 1)[0])


def test_fan_check_flags_a_wide_matrix():
    with torch.device("meta"):
        model = nn.Linear(256, 256)
    fastinit.materialize(model, "cpu", seed=0)
    fastinit.apply_recipe(model, {"weight": recipes.normal(std=1.0)}, seed=0)
    assert _checks(P.check_laws(model)) == [("weight", "fan")]


def test_siblings_check_flags_one_layer():
    with torch.device("meta"):
        model = nn.Sequential(*[nn.Linear(64, 64) for _ in range(6)])
    fastinit.materialize(model, "cpu", seed=0)
    fastinit.apply_recipe(model, {"*.weight": recipes.normal(std=0.02)}, seed=0)
    assert P.check_laws(model) == []
    fastinit.apply_recipe(model, {"3.weight": recipes.normal(std=0.3)}, seed=1)
    assert _checks(P.check_laws(model)) == [("3.weight", "scale"), ("3.weight", "siblings")]


@pytest.mark.parametrize("law", [(0, 0.02, -0.04, 0.04), (0, 1, -2, 2), (0.5, 1, 0, 3),
                                 (0, 1, 1, 5)])
def test_truncated_normal_moments_agree_with_scipy(law):
    stats = pytest.importorskip("scipy.stats")
    from fastinit.spec import InitSpec

    m, s, a, b = law
    kp = InitSpec.trunc_normal(m, s, a, b).kernel_params(torch.float64)
    mean, var, mu4 = P._moments(kp)
    ref = stats.truncnorm((kp.lo - m) / s, (kp.hi - m) / s, loc=m, scale=s)
    assert mean == pytest.approx(ref.mean(), rel=1e-12, abs=1e-15)
    assert var == pytest.approx(ref.var(), rel=1e-12)
    assert mu4 == pytest.approx(ref.expect(lambda x: (x - ref.mean()) ** 4), rel=1e-9)


def test_thresholds_are_the_test_suites():
    from fastinit.cli import laws

    assert (P.KS_ALPHA, P.Z_MAX) == (laws.KS_ALPHA, laws.Z_MAX)


def test_hf_gpt2_embedding_at_std_one_is_flagged():
    model = _build_hf("gpt2", "meta")
    fastinit.apply_recipe(model, {"transformer.wte.weight": recipes.normal(std=1.0)}, seed=0)
    assert _checks(P.check_laws(model)) == [("transformer.wte.weight", "scale")]
    assert P.provenance(model)["transformer.wte.weight"][-1].caller == "recipe 'rules'"


def _zoo_cases():
    sys.path.insert(0, str(__import__("pathlib").Path(__file__).parent))
    from tests.differential import test_model_zoo

    return test_model_zoo.CASES


#: Documented, explained findings of the HF zoo: the wav2vec2-family quantizer projects to
#: codevector logits with weights drawn at N(0, 1) on purpose (``_init_weights``:
#: ``weight_proj.weight.data.normal_(mean=0.0, std=1)``, the Gumbel-softmax temperature
#: sets the scale): wider than any fan scheme and 50x the model's 0.02.
ZOO_EXPLAINED = {("quantizer.weight_proj.weight", "fan"), ("quantizer.weight_proj.weight", "scale")}


@pytest.mark.slow
def test_hf_zoo_gives_no_unexplained_finding():
    from transformers.utils import logging

    logging.set_verbosity_error()
    unexplained = {}
    for case in _zoo_cases():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fastinit.empty_init():
                model = case.build()
            fastinit.materialize(model, "cpu", seed=1)
        found = set(_checks(P.check_laws(model))) - ZOO_EXPLAINED
        # every write is attributed to the init code that asked for it: transformers' or
        # torch's modules (the defaults transformers' init does not reach), not fastinit
        for name, writes in P.provenance(model).items():
            for w in writes:
                if w.law != "tie" and not (w.caller or "").startswith(("transformers.",
                                                                        "torch.nn.modules.")):
                    found.add((name, f"caller {w.caller}"))
        if found:
            unexplained[case.name] = found
    assert unexplained == {}
