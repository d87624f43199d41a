"""Pipeline-degree invariance: a pipeline stage materialized on its own holds, bitwise, the
values the same names hold in the whole model materialized with the same seed.

Stages are made as torchtitan 0.3 makes them (``_split_module``: a deep copy of the whole
model with the other layers deleted from its ``ModuleDict`` and the other top-level
modules set to None; ``_generate_llm_fqn_per_model_part`` picks the modules of each
stage), for 1, 2 and 4 stages. Where a split renumbers (a ``ModuleList`` of layers
becomes a new, shorter ``ModuleList``), ``materialize(names=...)`` gives each tensor its
name in the whole model. The same split under FSDP2 inside a stage runs in
tests/differential/dist_helpers.py (``flows_worker``).
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

import fastinit
from fastinit.materialize import _stream_namer
from tests.common import bits

pp = pytest.importorskip("torchtitan.distributed.pipeline_parallel")


def _tensors(model: nn.Module) -> dict[str, torch.Tensor]:
    out = dict(model.named_parameters(remove_duplicate=False))
    out.update(model.named_buffers(remove_duplicate=False))
    return out


def _stages(n_stages: int, n_layers: int = 2) -> list[list[str]]:
    return pp._generate_llm_fqn_per_model_part(n_stages, n_layers, 1, 1)


def _differing(stage: nn.Module, whole: dict[str, torch.Tensor], rename=lambda n: n) -> list:
    return [n for n, t in _tensors(stage).items()
            if not torch.equal(bits(t), bits(whole[rename(n)]))]


@pytest.mark.parametrize("model", ["llama3", "deepseek_v3"])
@pytest.mark.parametrize("n_stages", [1, 2, 4])
def test_torchtitan_stages_hold_the_whole_models_values(model, n_stages):
    """torchtitan's Llama 3 (fused wqkv drawn through temporaries, depth-scaled std, RoPE
    table) and DeepSeek-V3 (MLA, MoE experts and router, yarn RoPE) built on meta and
    split by torchtitan's own split into 1, 2 and 4 stages: every parameter and buffer of
    every stage equals, bitwise, the same name in the whole model - the embedding on the
    first stage, the head and final norm on the last, the layers in between."""
    from tests.differential.client_zoo import _titan_dsv3, _titan_llama3

    build = (lambda: _titan_llama3(False)) if model == "llama3" else _titan_dsv3
    with torch.device("meta"):
        ref = build()
    whole = _tensors(fastinit.materialize(ref, "cpu", seed=3))
    seen: set[str] = set()
    for names in _stages(n_stages):
        with torch.device("meta"):
            full = build()
        stage = pp._split_module(full, names)
        fastinit.materialize(stage, "cpu", seed=3)
        assert _differing(stage, whole) == [], names
        seen |= set(_tensors(stage))
    assert seen == set(whole)  # the stages hold every tensor of the model


def test_temporaries_made_from_a_named_tensor_draw_from_its_name():
    """Regression: torchtitan's fused-QKV init draws q, k, v into ``t.new_empty(...)``
    temporaries and copies them into ``wqkv``. Those draws used to come from one key
    sequence for the whole model's init, so a stage without layer 0 gave layer 1 the
    values of layer 0; now each temporary draws from a stream of the name it was made
    from."""
    from tests.differential.client_zoo import _titan_llama3

    with torch.device("meta"):
        ref = _titan_llama3(False)
    fastinit.materialize(ref, "cpu", seed=0)
    with torch.device("meta"):
        stage = pp._split_module(_titan_llama3(False), ["layers.1"])
    fastinit.materialize(stage, "cpu", seed=0)
    w = "attention.qkv_linear.wqkv.weight"
    one = stage.layers["1"].get_parameter(w)
    assert torch.equal(bits(one), bits(ref.layers["1"].get_parameter(w)))
    assert not torch.equal(bits(one), bits(ref.layers["0"].get_parameter(w)))


# --- a torchtitan-style model whose layers are a ModuleList: the split renumbers -------------

DIM, VOCAB, LAYERS, SEQ = 16, 40, 4, 8


class _Block(nn.Module):
    def __init__(self, layer_id: int):
        super().__init__()
        self.layer_id = layer_id
        self.norm = nn.RMSNorm(DIM)
        self.wqkv = nn.Linear(DIM, 3 * DIM, bias=False)
        self.wo = nn.Linear(DIM, DIM, bias=False)

    def init_weights(self):
        nn.init.ones_(self.norm.weight)
        nn.init.trunc_normal_(self.wqkv.weight, std=0.02)
        nn.init.trunc_normal_(self.wo.weight, std=0.02 / math.sqrt(2 * (self.layer_id + 1)))


class _Model(nn.Module):
    """Embedding, ModuleList of blocks, final norm, head (tied or not), a RoPE buffer;
    ``init_weights`` tolerates deleted modules, as torchtitan's pipeline split asks."""

    def __init__(self, tied: bool):
        super().__init__()
        self.tok_embeddings = nn.Embedding(VOCAB, DIM)
        self.layers = nn.ModuleList(_Block(i) for i in range(LAYERS))
        self.norm = nn.RMSNorm(DIM)
        self.lm_head = nn.Linear(DIM, VOCAB, bias=False)
        if tied:
            self.lm_head.weight = self.tok_embeddings.weight
        self.register_buffer("freqs", torch.empty(SEQ, DIM // 2), persistent=False)

    def init_weights(self):
        with torch.no_grad():
            inv = 1.0 / (10000 ** (torch.arange(0, DIM, 2, device=self.freqs.device) / DIM))
            self.freqs.copy_(torch.outer(torch.arange(SEQ, device=self.freqs.device), inv))
        if self.tok_embeddings is not None:
            nn.init.normal_(self.tok_embeddings.weight)
        for layer in self.layers:
            layer.init_weights()
        if self.norm is not None:
            nn.init.ones_(self.norm.weight)
        if self.lm_head is not None:
            nn.init.trunc_normal_(self.lm_head.weight, std=DIM ** -0.5, a=-3 * DIM ** -0.5,
                                  b=3 * DIM ** -0.5)


def _stage_names(names: list[str], tied: bool) -> dict[str, str]:
    """``materialize(names=...)`` for a stage: its i-th kept layer was ``layers.k``, and
    (tied) the head's weight is the embedding's weight of the whole model."""
    kept = [n.split(".", 1)[1] for n in names if n.startswith("layers.")]
    table = {f"layers.{i}": f"layers.{k}" for i, k in enumerate(kept)}
    if tied and "tok_embeddings" not in names:
        table["lm_head.weight"] = "tok_embeddings.weight"
    return table


@pytest.mark.parametrize("tied", [False, True], ids=["untied", "tied"])
@pytest.mark.parametrize("n_stages", [1, 2, 4])
def test_renumbered_stages_take_the_whole_models_streams_through_names(tied, n_stages):
    """A ModuleList split renumbers the layers (the stage's ``layers.0`` is the whole
    model's ``layers.2``): with ``names=`` mapping each stage's layers (and, tied, the
    head's weight) to the whole model's names, every tensor of every stage equals the
    same tensor of the whole model bitwise; without it the renumbered layers take other
    streams (the mapping is needed, and checked). A tied weight split across stages is
    two tensors, each written by its own stage's init only: the head's stage holds the
    whole model's values (the head's init wrote them last), the embedding's stage the
    embedding's init - tied pipelines copy the head's weight over (torchtitan refuses
    tying with pipeline parallelism)."""
    torch.manual_seed(0)
    with torch.device("meta"):
        ref = _Model(tied)
    whole = _tensors(fastinit.materialize(ref, "cpu", seed=11))
    renamed = 0
    for names in _stages(n_stages, LAYERS):
        with torch.device("meta"):
            stage = pp._split_module(_Model(tied), names)
        table = _stage_names(names, tied)
        fastinit.materialize(stage, "cpu", seed=11, names=table)
        rename = _stream_namer(table)
        # tied: a stage holding the embedding but not the head runs only the embedding's
        # init, where the whole model's head init overwrote the shared weight after it
        lone_embedding = tied and "tok_embeddings" in names and "lm_head" not in names
        assert _differing(stage, whole, rename) == (
            ["tok_embeddings.weight"] if lone_embedding else []), names
        if any(k != v for k, v in table.items()):
            with torch.device("meta"):
                plain = pp._split_module(_Model(tied), names)
            fastinit.materialize(plain, "cpu", seed=11)
            assert _differing(plain, whole, rename), names
            renamed += 1
    assert renamed > 0 or n_stages == 1


def test_names_takes_prefixes_of_whole_components_or_a_function():
    rename = _stream_namer({"layers.1": "layers.3", "layers.1.wo": "out", "head": "x.head"})
    assert rename("layers.1.norm.weight") == "layers.3.norm.weight"
    assert rename("layers.1.wo.weight") == "out.weight"  # the longest prefix wins
    assert rename("layers.10.wo.weight") == "layers.10.wo.weight"  # whole components
    assert rename("head") == "x.head"
    with torch.device("meta"):
        a, b = nn.Linear(3, 4), nn.Linear(3, 4)
    fastinit.materialize(a, "cpu", seed=1, names=lambda n: "enc." + n)
    fastinit.materialize(b, "cpu", seed=1, names={"weight": "enc.weight", "bias": "enc.bias"})
    assert torch.equal(bits(a.weight), bits(b.weight)) and torch.equal(bits(a.bias), bits(b.bias))
    with torch.device("meta"):
        c = nn.Linear(3, 4)
    with pytest.raises(TypeError, match="names"):
        fastinit.materialize(c, "cpu", seed=1, names=["weight"])
    assert c.weight.is_meta  # refused before anything was allocated


def test_a_stage_cut_in_place_from_an_empty_init_build_takes_names():
    """A model built under empty_init() keeps its recording when its stage is cut out in
    place (no copy: layers dropped from the ModuleList, other modules set to None): with
    ``names=`` mapping the renumbered layers, the stage replays the whole model's values;
    without, materialize refuses (the renumbered names are other tensors' names in the
    recording) rather than guess."""
    def build():
        with fastinit.empty_init():
            m = _Model(tied=False)
            m.init_weights()  # in the block, as torchtitan's build() calls init_states()
        return m

    whole = _tensors(fastinit.materialize(build(), "cpu", seed=5))

    def stage():
        m = build()
        m.layers = nn.ModuleList([m.layers[2], m.layers[3]])
        m.tok_embeddings = None
        return m

    table = {"layers.0": "layers.2", "layers.1": "layers.3"}
    s = fastinit.materialize(stage(), "cpu", seed=5, names=table)
    assert _differing(s, whole, _stream_namer(table)) == []
    with pytest.raises(ValueError, match="layers.0.*pass names="):
        fastinit.materialize(stage(), "cpu", seed=5)
