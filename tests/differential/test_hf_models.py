"""Hugging Face transformers models built on meta and materialized, against transformers'
own initialization (tiny configs built locally; no hub access).

Per tensor: constant tensors and buffers must be equal exactly; random tensors must
agree in mean and standard deviation with transformers' own tensor within 5 combined
standard errors (mean: sqrt(s1^2/n + s2^2/n); std: sqrt(s1^2/(2n) + s2^2/(2n)), the
normal-theory standard error of a sample standard deviation). With fixed seeds the test
is deterministic; 5 SE keeps a correct implementation far from the threshold.
"""
from __future__ import annotations

import math
import warnings

import pytest
import torch

transformers = pytest.importorskip("transformers")
from transformers import (BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel,  # noqa: E402
                          LlamaConfig, LlamaForCausalLM)

from fastinit.materialize import materialize  # noqa: E402

SEED = 42


def _llama():
    return LlamaForCausalLM, LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=160,
                                         num_hidden_layers=3, num_attention_heads=4,
                                         num_key_value_heads=2, max_position_embeddings=128,
                                         tie_word_embeddings=False)


def _llama_tied():
    return LlamaForCausalLM, LlamaConfig(vocab_size=512, hidden_size=64, intermediate_size=160,
                                         num_hidden_layers=2, num_attention_heads=4,
                                         num_key_value_heads=4, tie_word_embeddings=True,
                                         pad_token_id=0)


def _gpt2():
    return GPT2LMHeadModel, GPT2Config(vocab_size=512, n_embd=64, n_layer=4, n_head=4,
                                       n_positions=128, bos_token_id=0, eos_token_id=0)


def _bert():
    return BertForMaskedLM, BertConfig(vocab_size=512, hidden_size=64, num_hidden_layers=2,
                                       num_attention_heads=4, intermediate_size=128,
                                       max_position_embeddings=128, pad_token_id=0)


MODELS = {"llama": _llama, "llama_tied": _llama_tied, "gpt2": _gpt2, "bert": _bert}


def _build(name):
    cls, cfg = MODELS[name]()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.manual_seed(0)
        reference = cls(cfg)
        with torch.device("meta"):
            model = cls(cfg)
        materialize(model, "cpu", seed=SEED)
    return model.eval(), reference.eval(), cfg


@pytest.fixture(scope="module", params=list(MODELS))
def pair(request):
    return (request.param,) + _build(request.param)


def test_same_tensors_and_buffers(pair):
    name, model, reference, _ = pair
    assert set(model.state_dict()) == set(reference.state_dict())
    for n, b in reference.named_buffers():
        assert torch.equal(model.get_buffer(n), b), n
    assert not any(t.is_meta for t in model.state_dict().values())


def test_tensors_match_transformers_init(pair):
    name, model, reference, _ = pair
    ours = model.state_dict()
    for n, ref in reference.state_dict().items():
        x, y = ours[n].detach().double(), ref.detach().double()
        if y.numel() == 1 or y.std() == 0:  # a constant tensor
            assert torch.equal(x, y), n
            continue
        k = y.numel()
        sx, sy = x.std().item(), y.std().item()
        se_mean = math.sqrt((sx**2 + sy**2) / k)
        se_std = math.sqrt((sx**2 + sy**2) / (2 * k))
        assert abs(x.mean().item() - y.mean().item()) <= 5 * se_mean, (n, x.mean(), y.mean())
        assert abs(sx - sy) <= 5 * se_std, (n, sx, sy)


def test_ties_and_padding(pair):
    name, model, reference, cfg = pair
    emb = model.get_input_embeddings().weight
    head = model.get_output_embeddings().weight
    assert (head is emb) == (reference.get_output_embeddings().weight
                             is reference.get_input_embeddings().weight)
    pad = getattr(cfg, "pad_token_id", None)
    padding_idx = model.get_input_embeddings().padding_idx
    if padding_idx is not None:
        assert pad is not None
        assert (emb[padding_idx] == 0).all()
        assert torch.equal(emb[padding_idx] == 0,
                           reference.get_input_embeddings().weight[padding_idx] == 0)


def test_gpt2_residual_projections_are_scaled_as_eager():
    model, reference, cfg = _build("gpt2")
    # transformers scales GPT-2's residual projections by 1/sqrt(2 n_layer) on construction
    # in recent releases (5.10 and older do not): expect the law eager construction used.
    scaled = cfg.initializer_range / math.sqrt(2 * cfg.n_layer)
    eager = sum(b.attn.c_proj.weight.std().item() for b in reference.transformer.h) / cfg.n_layer
    expected = scaled if abs(eager - scaled) < abs(eager - cfg.initializer_range) else cfg.initializer_range
    for block in model.transformer.h:
        for w in (block.attn.c_proj.weight, block.mlp.c_proj.weight):
            n = w.numel()
            assert abs(w.std().item() - expected) <= 5 * expected / math.sqrt(2 * n)
        w = block.attn.c_attn.weight
        assert abs(w.std().item() - cfg.initializer_range) <= 5 * cfg.initializer_range / math.sqrt(2 * w.numel())


def test_forward_pass_is_finite(pair):
    name, model, _, cfg = pair
    ids = torch.randint(1, cfg.vocab_size, (2, 16))
    with torch.no_grad():
        out = model(input_ids=ids)
    assert torch.isfinite(out.logits).all()


def test_materialize_twice_gives_the_same_model():
    a, _, _ = _build("llama")
    b, _, _ = _build("llama")
    for (n, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y), n


@pytest.mark.parametrize("recipe", ["llama", "torchtitan_llama"])
def test_builtin_recipes_on_llama(recipe):
    cls, cfg = _llama()
    with torch.device("meta"):
        model = cls(cfg)
    materialize(model, "cpu", seed=SEED, recipe=recipe)
    layers = model.model.layers
    if recipe == "llama":
        w = layers[0].self_attn.q_proj.weight
        assert abs(w.std().item() - 0.02) <= 5 * 0.02 / math.sqrt(2 * w.numel())
    else:
        for i, layer in enumerate(layers):
            w = layer.mlp.down_proj.weight
            std = 0.02 / math.sqrt(2 * (i + 1))
            assert w.abs().max() <= 2.0
            # truncated at +-2 absolute: effectively untruncated for std << 2
            assert abs(w.std().item() - std) <= 5 * std / math.sqrt(2 * w.numel())
        head = model.lm_head.weight
        assert head.abs().max() <= 3 * cfg.hidden_size ** -0.5
    assert (model.model.norm.weight == 1).all()
    assert torch.equal(model.model.rotary_emb.inv_freq,
                       cls(cfg).model.rotary_emb.inv_freq)
