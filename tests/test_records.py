"""``fastinit.records``: what ``provenance(model)`` resolves from the recorded writes.

Torch's layers and Hugging Face models (built on meta and under ``fastinit.empty_init()``)
name the init code of each write (transformers' ``_init_weights``, file and line), the
padding row, the tie, which writes were overwritten, and the history of a tensor given other
memory.
"""
from __future__ import annotations

import linecache
import math

import pytest
import torch
from torch import nn

import fastinit
from fastinit import provenance as P
from tests.provenance_models import TinyGPT, _build_hf, _checks, _defined_in


def test_recipe_writes_are_recorded_and_overwrite_the_models_init():
    with torch.device("meta"):
        model = TinyGPT()
    fastinit.materialize(model, "cpu", seed=0, recipe="gpt2")
    writes = P.provenance(model)["blocks.0.proj.weight"]
    assert writes[-1].caller == "recipe 'gpt2'" and not writes[-1].overwritten
    assert all(w.overwritten for w in writes[:-1])
    assert writes[-2].caller.endswith("TinyGPT.init_weights")


class Rebinds(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.empty(8, 8))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        nn.init.normal_(self.w, std=0.1)
        self.w.data = self.w.data * 1.0  # the values move to other memory


def test_a_tensor_given_other_memory_keeps_its_history():
    with torch.device("meta"):
        model = Rebinds()
    fastinit.materialize(model, "cpu", seed=0)
    writes = P.provenance(model)["w"]
    assert [(w.law, w.overwritten) for w in writes] == [("normal_", True), ("copy", False)]
    assert writes[-1].caller.endswith("Rebinds.reset_parameters")


def test_torch_embedding_padding_row():
    with torch.device("meta"):
        model = nn.Embedding(10, 4, padding_idx=2)
    fastinit.materialize(model, "cpu", seed=0)
    draw, pad = P.provenance(model)["weight"]
    assert (draw.law, draw.params, draw.region, draw.overwritten) == (
        "normal_", {"mean": 0.0, "std": 1.0}, None, False)
    assert draw.seed == 0 and draw.stream is not None
    assert (pad.law, pad.params, pad.region, pad.overwritten) == (
        "constant", {"value": 0.0}, "rows 2:3", False)
    assert pad.caller.endswith("Embedding._fill_padding_idx_with_zero")
    assert P.check_laws(model) == []
    with torch.no_grad():
        model.weight[2, 1] = 0.25  # the padding row no longer zero
    assert _checks(P.check_laws(model)) == [("weight", "law")]


def test_linear_names_its_init_function():
    with torch.device("meta"):
        model = nn.Linear(16, 8)
    fastinit.materialize(model, "cpu", seed=0)
    (w,) = P.provenance(model)["weight"]
    bound = 1 / math.sqrt(16)
    assert w.law == "uniform_" and w.function == "kaiming_uniform_"
    assert w.params["a"] == pytest.approx(-bound) and w.params["b"] == pytest.approx(bound)
    assert w.caller == "torch.nn.modules.linear.Linear.reset_parameters"
    file, line = w.location.rsplit(":", 1)
    assert "kaiming_uniform_" in linecache.getline(file, int(line))
    assert w.as_dict()["law"] == "uniform_"


def test_no_record_is_a_clear_error():
    model = nn.Linear(4, 4)  # eager, nothing recorded
    with pytest.raises(ValueError, match="no writes were recorded"):
        P.provenance(model)
    with pytest.raises(TypeError):
        P.provenance(torch.zeros(3))


@pytest.mark.parametrize("mode", ["meta", "empty_init"])
@pytest.mark.parametrize("name", ["llama_tied", "gpt2", "bert", "opt"])
def test_hf_provenance_names_init_weights(name, mode):
    model = _build_hf(name, mode)
    prov = P.provenance(model)
    ties = {n: ws[-1].params["source"] for n, ws in prov.items() if ws and ws[-1].law == "tie"}
    for n, _ in model.named_parameters():
        if n in ties or "weight" not in n.rsplit(".", 1)[-1]:
            continue
        live = [w for w in prov[n] if not w.overwritten]
        assert live, n
        for w in live:
            assert w.caller.endswith("._init_weights"), (n, w)
            assert w.caller.startswith("transformers.models.") or w.caller.startswith(
                "transformers.modeling_utils."), (n, w)
            assert _defined_in(w.caller, w.location), (n, w)
        # writes before the model's init (torch's reset_parameters) are overwritten
        assert all(w.overwritten for w in prov[n][:-len(live)] if not w.modifies), n
    assert P.check_laws(model) == []
    if name == "llama_tied":
        assert ties == {"lm_head.weight": "model.embed_tokens.weight"}
        emb = [w for w in prov["model.embed_tokens.weight"] if not w.overwritten]
        assert [(w.law, w.region) for w in emb] == [("normal_", None), ("constant", "rows 0:1")]
        assert emb[0].params == {"mean": 0.0, "std": 0.02}
        assert prov["model.embed_tokens.weight"][0].caller.endswith("Embedding.reset_parameters")
        assert prov["model.embed_tokens.weight"][0].overwritten
        assert bool((model.model.embed_tokens.weight[0] == 0).all())
    if name == "gpt2":
        assert ties == {"lm_head.weight": "transformer.wte.weight"}
        last = prov["transformer.h.0.attn.c_proj.weight"][-1]
        assert last.params["std"] == pytest.approx(0.02 / math.sqrt(2 * 3))
        assert last.caller.endswith("GPT2PreTrainedModel._init_weights")
    if name == "opt":
        emb = [w for w in prov["model.decoder.embed_tokens.weight"] if not w.overwritten]
        assert [w.region for w in emb] == [None, "rows 1:2"]
