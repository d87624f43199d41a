"""Models and helpers shared by the provenance tests (sessions, records, law check).

* :class:`TinyGPT`: GPT-shaped, its ``init_weights`` the init code that materialize runs
  (as torchtitan's); defects can be planted (an embedding std, embeddings left out);
* :func:`_materialized`: a TinyGPT built on meta and materialized; :func:`_checks`: the
  (name, check) pairs of a list of findings;
* :func:`_hf` / :func:`_build_hf`: small Hugging Face models built on meta or under
  ``empty_init`` and materialized; :func:`_defined_in`: a caller's location is its own.
"""
from __future__ import annotations

import linecache
import sys
import warnings

import pytest
import torch
from torch import nn

import fastinit


class Block(nn.Module):
    def __init__(self, d: int) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(d)
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.ln2 = nn.LayerNorm(d)
        self.fc = nn.Linear(d, 4 * d)
        self.out = nn.Linear(4 * d, d)

    def forward(self, x):
        return x


class TinyGPT(nn.Module):
    """GPT-shaped; ``init_weights`` is its init code (run by materialize, as torchtitan's)."""

    def __init__(self, vocab: int = 256, d: int = 64, layers: int = 4, emb_std: float = 0.02,
                 init_embeddings: bool = True) -> None:
        super().__init__()
        self.emb_std, self.init_embeddings = emb_std, init_embeddings
        self.wte = nn.Embedding(vocab, d)
        self.wpe = nn.Embedding(64, d)
        self.blocks = nn.ModuleList(Block(d) for _ in range(layers))
        self.ln_f = nn.LayerNorm(d)
        self.head = nn.Linear(d, vocab, bias=False)

    def init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Embedding) and self.init_embeddings:
                nn.init.normal_(m.weight, std=0.02)
        if self.init_embeddings:
            nn.init.normal_(self.wte.weight, std=self.emb_std)


def _materialized(**kw) -> TinyGPT:
    with torch.device("meta"):
        model = TinyGPT(**kw)
    return fastinit.materialize(model, "cpu", seed=0)


def _checks(findings, name=None):
    return sorted({(f.name, f.check) for f in findings if name is None or f.name == name})


def _hf(name):
    from transformers import (BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel,
                              LlamaConfig, LlamaForCausalLM, OPTConfig, OPTForCausalLM)

    return {
        "llama_tied": lambda: LlamaForCausalLM(LlamaConfig(
            vocab_size=256, hidden_size=64, intermediate_size=160, num_hidden_layers=2,
            num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=True,
            pad_token_id=0)),
        "gpt2": lambda: GPT2LMHeadModel(GPT2Config(vocab_size=256, n_embd=64, n_layer=3,
                                                   n_head=4, n_positions=64, bos_token_id=0,
                                                   eos_token_id=0)),
        "bert": lambda: BertForMaskedLM(BertConfig(
            vocab_size=256, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=128, max_position_embeddings=64, pad_token_id=0)),
        "opt": lambda: OPTForCausalLM(OPTConfig(
            vocab_size=256, hidden_size=64, num_hidden_layers=2, ffn_dim=128,
            num_attention_heads=4, max_position_embeddings=64, pad_token_id=1,
            word_embed_proj_dim=64)),
    }[name]


def _build_hf(name, mode):
    pytest.importorskip("transformers")
    from transformers.utils import logging

    logging.set_verbosity_error()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with torch.device("meta") if mode == "meta" else fastinit.empty_init():
            model = _hf(name)()
        fastinit.materialize(model, "cpu", seed=0)
    return model


def _defined_in(caller: str, location: str) -> bool:
    """``location`` (file:line) is a line of ``caller``'s module, inside a function
    named as ``caller`` says."""
    module = ".".join(p for p in caller.split(".") if not p[:1].isupper()).rsplit(".", 1)[0]
    file, line = location.rsplit(":", 1)
    mod = sys.modules.get(module)
    return mod is not None and mod.__file__ == file and linecache.getline(file, int(line)).strip() != ""
